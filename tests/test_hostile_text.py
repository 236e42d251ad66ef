"""Text the harness did not choose (an activation name, a job folder, an error) cannot drive a terminal or stall a
report: every screen and every human-readable report output shows it through harness.common.text.clean; the CSV tables
keep it whole. Runs are written here by hand (no training), so the report takes seconds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from harness.common.text import ELLIPSIS, NAME_LIMIT, clean
from harness.records.results import write_metrics, write_summary
from harness.report import build_report
from harness.report.shown import shown_label
from harness.setup.config import Config, to_dict
from harness.sweeps.jobtable import format_table
from harness.sweeps.status import status_report
from harness.training.console import format_summary

ESC, BEL = "\x1b", "\x07"
CLIPBOARD = f"{ESC}]52;c;cm0gLXJmIH4={BEL}"  # OSC 52: writes the terminal's clipboard
HOSTILE = f"evil{CLIPBOARD}{ESC}[2J{ESC}[31m\u202eright-to-left\x9b1m\x7f\x00tail"
LONG = "x" * 100_000
CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]] + ["\u202e", "\u2066", "\u200f"]


def visible_controls(text: str) -> list[str]:
    return sorted({c for c in text if c in CONTROLS and c != "\n"})


@pytest.mark.parametrize(
    "raw, shown",
    [
        (f"a{CLIPBOARD}b", "ab"),
        (f"a{ESC}]52;c;QUJD{ESC}\\b", "ab"),
        (f"{ESC}[1;31mred{ESC}[0m", "red"),
        ("\x9b31mred", "red"),
        ("a\u202eb\u2066c\u2069", "abc"),
        ("tab\there\nnew\rline", "tab here new line"),
        (f"bell{BEL}\x7fdel\x00nul\x85", "belldelnul"),
        (f"{ESC}7saved{ESC}8", "saved"),
        (f"cut{ESC}]52;c;AAAA", "cut"),
        ("plain name, ünïcode ok", "plain name, ünïcode ok"),
    ],
)
def test_clean_strips_escape_sequences_and_control_characters(raw, shown):
    assert clean(raw) == shown


def test_clean_cuts_to_its_limit_with_an_ellipsis_even_for_5_mb():
    assert clean("abcdef", 4) == "abc" + ELLIPSIS and clean("abcd", 4) == "abcd"
    huge = clean(CLIPBOARD + "y" * 5_000_000, NAME_LIMIT)
    assert huge == "y" * (NAME_LIMIT - 1) + ELLIPSIS
    assert clean(f"{ESC}]52;c;" + "A" * 5_000_000 + BEL + "after", 20) == ELLIPSIS  # nothing shown but the cut


def test_the_status_and_end_of_sweep_tables_show_hostile_names_clean_and_cut(tmp_path):
    root = tmp_path / "sweep"
    jobs = [f"job{CLIPBOARD}a", "b" * 250]  # a folder name is at most 255 bytes (longer: tests/test_records.py)
    for job in jobs:
        (root / job).mkdir(parents=True)
    error = f"Traceback\nValueError: {HOSTILE}"
    write_summary(root / jobs[0], {"schema_version": 1, "status": "failed", "config_hash": "x", "error": error})
    (root / "sweep.json").write_text(json.dumps({"jobs": [{"dir": d} for d in jobs]}))
    status = status_report(root)
    end = format_table([("failed", jobs[0], {"error": f"Boom: {HOSTILE}{LONG}"}), ("ok", LONG, {"test_acc": 0.5})])
    for text in (status, end):
        assert visible_controls(text) == [] and max(map(len, text.splitlines())) < 1_500
    assert "joba" in status and "ValueError: evilright-to-lefttail" in status
    assert "Boom: evilright-to-lefttailxxx" in end


def test_the_single_run_screen_shows_a_hostile_activation_clean(tmp_path):
    summary = {
        "activation": HOSTILE + LONG,
        "model": "mlp",
        "dataset": "digits",
        "seed": 0,
        "status": "failed",
        "error": f"Traceback\nRuntimeError: {HOSTILE}",
        "run_dir": str(tmp_path / f"run{ESC}[2J"),
    }
    screen = format_summary(summary)
    assert visible_controls(screen) == [] and len(screen) < 1_000 and "RuntimeError: evilright-to-left" in screen


def fake_runs(folder: Path, names: dict[str, str]) -> Path:
    """Two seeds of each activation (key: folder prefix, value: its name), as the harness writes them."""
    base = to_dict(Config())
    for prefix, name in names.items():
        for seed in (0, 1):
            run_dir = folder / f"{prefix}-s{seed}"
            run_dir.mkdir(parents=True)
            write_metrics(run_dir, [(s, "val", "acc", None, 0.5 + 0.1 * seed + s / 1000, None) for s in (10, 20)])
            config = base | {"activation": {"name": name}, "seed": seed}
            write_summary(
                run_dir,
                {
                    "schema_version": 1,
                    "status": "ok",
                    "activation": name,
                    "model": "mlp",
                    "dataset": "digits",
                    "seed": seed,
                    "config_hash": f"{prefix}-{seed}",
                    "config": config,
                    "test_acc": 0.6 + 0.1 * seed,
                    "test_acc_at_best_val": 0.6 + 0.1 * seed,
                    "best_val_acc": 0.6,
                    "samples_per_s": 1000.0 + seed,
                    "n_params": 10,
                    "device": "cpu",
                    "num_threads": 1,
                },
            )
    return folder


def test_a_report_of_a_100k_hostile_name_is_clean_where_people_read_and_whole_in_the_csv(tmp_path):
    name = HOSTILE + LONG
    out = build_report([fake_runs(tmp_path / "runs", {"relu": "relu", "evil": name})], figures=False)
    shown = shown_label(name)
    assert (
        len(shown) <= NAME_LIMIT
        and shown.startswith("evilright-to-lefttailxxx")
        and shown != shown_label(HOSTILE + LONG[1:])
    )  # cut names stay apart
    for page in ("report.md", "report.html"):
        text = (out / page).read_text(encoding="utf-8")
        assert visible_controls(text) == [] and LONG[:1_000] not in text and shown in text, page
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert name in set(summary["act"])  # the data, whole


def test_report_figures_and_latex_get_the_shown_labels(tmp_path):
    """The figures draw from the shown analysis: matplotlib never lays out a 100,000-character legend."""
    from harness.report.analysis import analyse
    from harness.report.load import gather
    from harness.report.shown import shown_analysis

    name = HOSTILE + LONG
    a = analyse(gather([fake_runs(tmp_path / "runs", {"relu": "relu", "evil": name})]))
    shown = shown_analysis(a)
    frames = [shown.data.runs, shown.data.metrics, shown.summary, shown.tuned, shown.comparison, shown.ranks]
    labels = {v for f in frames for c in ("task", "act", "setting", "baseline") if c in f for v in f[c].astype(str)}
    labels |= set(shown.means.columns) | set(shown.means.index)
    assert {shown_label(name), "relu"} <= labels and max(map(len, labels)) <= NAME_LIMIT
    assert visible_controls("".join(labels)) == []
    assert shown_analysis(dataclasses.replace(a, data=a.data)) is not a  # relabelled, a itself untouched
    assert name in set(a.data.runs["act"])


def test_a_sweep_jobs_log_line_shows_its_folder_clean(tmp_path):
    from run import job_line

    line = job_line((1, 2), {"status": "ok", "test_acc": 0.5}, tmp_path / f"job{CLIPBOARD}a")
    assert visible_controls(line) == [] and line == "[1/2 done] ok joba test_acc 0.5000", line
