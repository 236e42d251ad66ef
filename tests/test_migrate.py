"""Schema 1 -> 2 (harness.records.upgrade, harness.records.migrate): a schema-1 run folder reads as schema 2, each
missing key derived as its writer derives it, and `python -m harness.records.migrate` writes that once, keeping the old
file."""

from __future__ import annotations

import json
import math

import pytest

from harness.records import migrate
from harness.records.results import write_metrics, write_summary
from harness.records.schema import SCHEMA_VERSION, read_summary_file

VAL = [0.5, 0.8, 0.65, 0.9]  # a 15-point drawdown
OLD = {  # a schema-1 summary from before the course and speed keys (the keys that run wrote, nothing more)
    "schema_version": 1,
    "status": "ok",
    "activation": "relu",
    "model": "mlp",
    "dataset": "digits",
    "seed": 3,
    "config_hash": "abc",
    "config": {"model": {"name": "mlp", "width": 8}},
    "test_acc": 0.75,
    "samples_per_s": 1234.0,
    "dead_fraction_by_layer": {"hidden.0": 0.5, "hidden.1": 0.25},
    "grad_norm_init_by_layer": {"hidden.0": 0.5, "hidden.1": 0.4, "head": 2.0},
    "grad_norm_by_layer": {"hidden.0": 0.25, "hidden.1": 0.3, "head": 0.75},
}


def old_run(run_dir):
    run_dir.mkdir(parents=True)
    rows = [
        (0, "probe", "dead_fraction", "hidden.0", 0.125, None),
        (0, "probe", "dead_fraction", "hidden.1", 0.0, None),
    ]
    rows += [(10 * (i + 1), "val", "acc", None, v, None) for i, v in enumerate(VAL)]
    write_metrics(run_dir, rows)
    write_summary(run_dir, dict(OLD))
    return run_dir


def test_a_schema_1_summary_reads_as_schema_2_with_each_key_derived(tmp_path):
    s = read_summary_file(old_run(tmp_path / "run") / "summary.json")
    assert s["schema_version"] == SCHEMA_VERSION == 2
    assert s["n_test"] == 360  # digits' test split, from the dataset's registry entry
    assert math.isclose(s["val_drawdown_max"], 0.15)
    assert s["grad_flow_ratio_init"] == 4.0 and s["grad_flow_ratio"] == 3.0  # head over hidden.0
    assert s["dead_fraction_init_by_layer"] == {"hidden.0": 0.125, "hidden.1": 0.0}
    assert s["lost_fraction_by_layer"] is None  # needs per-unit masks those runs did not keep
    assert (s["speed_clock"], s["clock_samples_per_s"], s["width_used"]) == ("wall", 1234.0, 8)
    assert {k: s[k] for k in OLD if k != "schema_version"} == {k: v for k, v in OLD.items() if k != "schema_version"}


def test_a_key_the_run_wrote_is_kept_even_when_it_is_null(tmp_path):
    run_dir = tmp_path / "run"
    old_run(run_dir)
    write_summary(run_dir, dict(OLD, val_drawdown_max=None, n_test=40))
    s = read_summary_file(run_dir / "summary.json")
    assert s["val_drawdown_max"] is None and s["n_test"] == 40


def test_migrate_writes_schema_2_once_and_keeps_the_old_file(tmp_path, capsys):
    runs = tmp_path / "sweep"
    old_run(runs / "a")
    old_run(runs / "b")
    (runs / "c").mkdir()
    (runs / "c" / "summary.json").write_text("{truncated")
    before = json.loads((runs / "a" / "summary.json").read_text())
    assert migrate.main([str(runs)]) == 0
    assert "2 upgraded, 0 already schema 2, 1 unreadable" in capsys.readouterr().out
    after = json.loads((runs / "a" / "summary.json").read_text())
    assert after == read_summary_file(runs / "a" / "summary.json") and after["schema_version"] == 2
    assert after["files"] == before["files"]  # the recorded checksums are kept, still checked on every read
    assert json.loads((runs / "a" / "summary.v1.json").read_text()) == before
    assert migrate.main([str(runs)]) == 0
    assert "0 upgraded, 2 already schema 2" in capsys.readouterr().out


def test_migrate_refuses_a_folder_that_does_not_exist_in_one_line(tmp_path, capsys):
    assert migrate.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err


@pytest.mark.parametrize("status", ["failed"])
def test_a_failed_run_is_upgraded_without_measurements(tmp_path, status):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_summary(run_dir, {"schema_version": 1, "status": status, "config_hash": "x", "error": "boom"})
    s = read_summary_file(run_dir / "summary.json")
    assert s["schema_version"] == 2 and "n_test" not in s
