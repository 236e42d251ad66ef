"""Reports from tiny runs made here: every table number against pandas/scipy computed independently."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness import run
from harness.report import ReportError, build_report
from harness.report import stats as rs
from scripts import report as report_command
from tests.conftest import chromium, tiny_config

ROOT = Path(__file__).resolve().parents[1]
ACTS = ["relu", "tanh", "sigmoid"]
SEEDS = [0, 1, 2]


def make_runs(folder: Path, data_root: str, combos) -> None:
    for i, (act, seed, lr, dataset) in enumerate(combos):
        config = tiny_config(data_root, f"activation={act}", f"seed={seed}", f"trainer.lr={lr}", f"dataset={dataset}")
        run(config, folder / f"{i:02d}_{act}-{dataset}-lr{lr}-s{seed}")


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, data_root) -> list[Path]:
    """Two sweeps: mnist1d with two learning rates (and a diverging third for relu), and spirals."""
    root = tmp_path_factory.mktemp("sweeps")
    a = [(act, s, 0.01, "mnist1d") for act in ACTS for s in SEEDS]
    a += [(act, s, 0.003, "mnist1d") for act in ["relu", "tanh"] for s in SEEDS]
    a += [("relu", s, 1e30, "mnist1d") for s in [0, 1]]  # diverges within two steps
    b = [(act, s, 0.01, "spirals") for act in ACTS for s in SEEDS]
    make_runs(root / "a", data_root, a)
    make_runs(root / "b", data_root, b)
    return [root / "a", root / "b"]


@pytest.fixture(scope="module")
def report(sweeps, tmp_path_factory) -> Path:
    return build_report(sweeps, out=tmp_path_factory.mktemp("report"), figures=False)


@pytest.fixture(scope="module")
def truth(sweeps) -> pd.DataFrame:
    """The runs read straight from their summary.json files, without the harness's loader."""
    rows = []
    for path in sorted(p for s in sweeps for p in s.glob("*/summary.json")):
        s = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            {
                "task": f"{s['dataset']} / {s['model']}",
                "act": s["activation"],
                "seed": s["seed"],
                "lr": s["config"]["trainer"]["lr"],
                "status": s["status"],
                "acc": s["test_acc_at_best_val"],
                "final_acc": s["test_acc"],
                "val": s["best_val_acc"],
                "final_val": s["val_acc"],
                "classes": {"mnist1d": 10, "spirals": 3}[s["dataset"]],
                "loss": s["train_loss"],
                "speed": s["samples_per_s"],
                "dead": s["dead_fraction"],
                "sat": s["saturated_fraction"],
            }
        )
    return pd.DataFrame(rows)


def t_ci(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    return sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))


def sign_flip_bruteforce(d) -> float:
    """Two-sided exact sign-flip p by counting, loop by loop."""
    observed = abs(sum(d))
    hits = sum(
        abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12
        for signs in itertools.product([1, -1], repeat=len(d))
    )
    return hits / 2 ** len(d)


def holm_reference(p: list[float]) -> list[float]:
    """Holm (1979), written from its definition: p_(i) * (m - i + 1), made monotone, capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    for rank, i in enumerate(order):
        adjusted[i] = min(1.0, max((m - r) * p[order[r]] for r in range(rank + 1)))
    return adjusted


def test_summary_table_matches_pandas_and_scipy(report, truth):
    table = pd.read_csv(report / "summary.csv")
    assert len(table) == truth.groupby(["task", "act", "lr"]).ngroups == 9
    for (task, act, lr), group in truth.groupby(["task", "act", "lr"]):
        row = table[(table["task"] == task) & (table["act"] == act) & np.isclose(table["lr"], lr)].iloc[0]
        ok = group[group["status"] == "ok"]
        assert row["seeds"] == len(group)
        assert row["diverged"] == (group["status"] == "diverged").sum()
        if ok.empty:
            assert math.isnan(row["acc_mean"]) and "2/2 diverged" in row["note"]
            continue
        assert row["acc_mean"] == pytest.approx(ok["acc"].mean())
        assert row["acc_sd"] == pytest.approx(ok["acc"].std(ddof=1))
        assert (row["acc_ci_low"], row["acc_ci_high"]) == pytest.approx(t_ci(ok["acc"]))
        assert row["final_acc_mean"] == pytest.approx(ok["final_acc"].mean())
        assert row["train_loss_mean"] == pytest.approx(ok["loss"].mean())
        assert row["samples_per_s_mean"] == pytest.approx(ok["speed"].mean())
        assert (row["samples_per_s_ci_low"], row["samples_per_s_ci_high"]) == pytest.approx(t_ci(ok["speed"]))
        assert row["dead_mean"] == pytest.approx(ok["dead"].mean())
        assert row["saturated_mean"] == pytest.approx(ok["sat"].mean())
        assert f"few seeds ({len(group)})" in row["note"]


def test_each_activation_is_chosen_at_its_best_validation_lr(report, truth):
    table = pd.read_csv(report / "summary.csv")
    # the rule of docs/reports.md, written out here: a seed that diverged or ended at chance (final validation
    # accuracy <= 1.5 / classes) keeps its setting out while another setting has fewer such seeds
    unstable = (truth["status"] == "diverged") | (truth["final_val"] <= 1.5 / truth["classes"])
    per_lr = (
        truth.assign(unstable=unstable, val=truth["val"].where(truth["status"] == "ok"))
        .groupby(["task", "act", "lr"], as_index=False)
        .agg(unstable=("unstable", "sum"), val=("val", "mean"))
    )
    fewest = per_lr.groupby(["task", "act"])["unstable"].transform("min")
    competing = per_lr[per_lr["unstable"] == fewest].sort_values("lr")  # idxmax keeps the first: the smaller lr
    expected = competing.loc[competing.groupby(["task", "act"])["val"].idxmax()]
    chosen = table[table["chosen"]]
    assert len(chosen) == len(expected) == 6
    for r in expected.itertuples():
        assert chosen[(chosen["task"] == r.task) & (chosen["act"] == r.act)]["lr"].item() == pytest.approx(r.lr)
    assert not chosen["lr"].gt(1).any()  # the diverging learning rate is never chosen
    counted = table.set_index(["task", "act", "lr"])["collapsed"]
    at_chance = truth.assign(at_chance=unstable & (truth["status"] == "ok")).groupby(["task", "act", "lr"])
    assert counted.sort_index().tolist() == at_chance["at_chance"].sum().sort_index().tolist()


def expected_comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """Paired by seed against relu with scipy, Holm across the activations of one task."""
    rows = []
    for task, group in runs.groupby("task"):
        acc = group[group["status"] == "ok"].pivot(index="seed", columns="act", values="acc")
        family = []
        for act in sorted(set(acc.columns) - {"relu"}):
            pair = acc[[act, "relu"]].dropna()
            d = (pair[act] - pair["relu"]).to_numpy()
            family.append(
                {
                    "task": task,
                    "act": act,
                    "pairs": len(d),
                    "diff_mean": d.mean(),
                    "ci": t_ci(d),
                    "p_t": sps.ttest_rel(pair[act], pair["relu"]).pvalue,
                    "p_perm": sign_flip_bruteforce(list(d)),
                    "dz": d.mean() / d.std(ddof=1),
                }
            )
        for key in ["p_t", "p_perm"]:
            for r, adjusted in zip(family, holm_reference([r[key] for r in family])):
                r[f"{key}_holm"] = adjusted
        rows += family
    return pd.DataFrame(rows)


def check_comparisons(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(table) == len(expected)
    for e in expected.itertuples():
        row = table[(table["task"] == e.task) & (table["act"] == e.act)].iloc[0]
        assert row["pairs"] == e.pairs
        assert row["diff_mean"] == pytest.approx(e.diff_mean)
        assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(e.ci)
        assert row["p_t"] == pytest.approx(e.p_t)
        assert row["p_perm"] == pytest.approx(e.p_perm)
        assert row["p_t_holm"] == pytest.approx(e.p_t_holm)
        assert row["p_perm_holm"] == pytest.approx(e.p_perm_holm)
        assert row["effect_dz"] == pytest.approx(e.dz)
        assert bool(row["significant"]) == (e.p_t_holm < 0.05)
        assert row["p_perm_min"] == pytest.approx(2 / 2**e.pairs)


def test_comparison_at_best_lr_matches_scipy(report, truth):
    table = pd.read_csv(report / "comparison.csv")
    chosen = pd.read_csv(report / "summary.csv").query("chosen")[["task", "act", "lr"]]
    tuned = truth.merge(chosen, on=["task", "act", "lr"])
    check_comparisons(table[table["setting"] == "at best val setting"], expected_comparisons(tuned))


def test_comparison_at_each_shared_lr_matches_scipy(report, truth):
    table = pd.read_csv(report / "comparison.csv")
    at = table[table["setting"] == "lr=0.01"]
    # Only mnist1d tried several learning rates; spirals' single lr is already its best-lr comparison.
    check_comparisons(at, expected_comparisons(truth[(truth["lr"] == 0.01) & (truth["task"] == "mnist1d / mlp")]))
    # At lr=0.003 only tanh has a relu partner; at 1e30 every relu run diverged: no baseline to pair with.
    assert list(table[table["setting"] == "lr=0.003"]["act"]) == ["tanh"]
    assert table[table["setting"] == "lr=1e+30"].empty


def test_ranks_and_friedman_match_scipy(report):
    chosen = pd.read_csv(report / "summary.csv").query("chosen")
    means = chosen.pivot(index="task", columns="act", values="acc_mean")
    expected_ranks = means.rank(axis=1, ascending=False).mean().sort_values()
    ranks = pd.read_csv(report / "ranks.csv").set_index("act")["mean_rank"]
    pd.testing.assert_series_equal(ranks.sort_index(), expected_ranks.sort_index(), check_names=False)
    friedman = json.loads((report / "friedman.json").read_text(encoding="utf-8"))
    statistic, p = sps.friedmanchisquare(*[means[a] for a in means.columns])
    assert (friedman["statistic"], friedman["p"]) == pytest.approx((statistic, p))
    assert friedman["cd"] == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 2)), abs=1e-3)  # Demšar's q(0.05, 3)
    assert "few tasks (2)" in friedman["note"]


def test_report_files_and_summary_text(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    html = (report / "report.html").read_text(encoding="utf-8")
    for name in ["summary.csv", "comparison.csv", "ranks.csv", "skipped.csv", "properties.csv"]:
        assert (report / name).exists(), name
    summary = md.split("## Summary")[1].split("\n## ")[0]
    chosen = pd.read_csv(report / "summary.csv").query("chosen")
    for task, rows in chosen.groupby("task"):
        best = rows.loc[rows["acc_mean"].idxmax()]
        assert f"- {task}: {best['act']} has the best mean test accuracy ({best['acc_mean']:.3f} [" in summary
    assert "relu diverged in 2/2 runs at lr=1e+30 on mnist1d / mlp" in summary
    assert "Few seeds" in summary
    assert "## Activation gallery" in md and "| relu |" in md
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_small_sample_notes_and_divergence_in_summarise():
    runs = pd.DataFrame(
        {
            "task": "t",
            "act": "a",
            "setting": "lr=0.1",
            "lr": 0.1,
            "seed": [0, 1, 2],
            "status": ["ok", "ok", "diverged"],
            "test_acc_at_best_val": [0.5, 0.7, 0.1],
        }
    )
    row = rs.summarise(runs).iloc[0]
    assert row["diverged"] == 1 and row["divergence_rate"] == pytest.approx(1 / 3)
    assert row["acc_mean"] == pytest.approx(0.6)  # the diverged run's accuracy is left out
    assert "1/3 diverged" in row["note"]


def test_sign_flip_cannot_reach_005_with_five_pairs():
    assert rs.sign_flip_test([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    assert rs.sign_flip_test([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == pytest.approx(2 / 64)
    assert rs.sign_flip_test([0.1, -0.1]) == pytest.approx(1.0)


def test_holm_against_reference_with_nan():
    p = [0.01, 0.04, 0.03, math.nan, 0.5]
    out = rs.holm(p)
    assert math.isnan(out[3])
    assert list(np.delete(out, 3)) == pytest.approx(holm_reference([0.01, 0.04, 0.03, 0.5]))


def corrupt_folder(tmp_path: Path, sweeps: list[Path]) -> Path:
    """Two good runs, then one of each kind of broken run."""
    folder = tmp_path / "mixed"
    good = sorted(sweeps[1].iterdir())[:2]
    for src in good:
        shutil.copytree(src, folder / src.name)
    truncated = shutil.copytree(good[0], folder / "truncated")
    (truncated / "summary.json").write_text((good[0] / "summary.json").read_text(encoding="utf-8")[:50])
    (folder / "unfinished" / ".hydra").mkdir(parents=True)
    failed = shutil.copytree(good[0], folder / "failed")
    summary = json.loads((failed / "summary.json").read_text(encoding="utf-8"))
    summary.update(status="failed", error="Traceback (most recent call last):\nRuntimeError: out of memory\n")
    (failed / "summary.json").write_text(json.dumps(summary))
    bad_metrics = shutil.copytree(sorted(sweeps[1].iterdir())[3], folder / "bad_metrics")
    (bad_metrics / "metrics.csv").write_bytes(b'step,split\n1,"unterminated\n')
    shutil.copytree(good[1], folder / "duplicate")
    listed = shutil.copytree(good[0], folder / "not_an_object")
    (listed / "summary.json").write_text("[1, 2]")
    nameless = shutil.copytree(good[0], folder / "no_activation")
    summary = json.loads((nameless / "summary.json").read_text(encoding="utf-8"))
    del summary["activation"]
    (nameless / "summary.json").write_text(json.dumps(summary))
    worded = shutil.copytree(good[0], folder / "string_seed")  # the validated reader refuses it (tests/test_records.py)
    summary = json.loads((worded / "summary.json").read_text(encoding="utf-8"))
    summary["seed"] = "zero"
    (worded / "summary.json").write_text(json.dumps(summary))
    binary = shutil.copytree(good[0], folder / "binary_metrics")
    (binary / "metrics.csv").write_bytes(bytes(range(256)) * 4)
    return folder


def test_corrupt_runs_are_listed_as_skipped(sweeps, tmp_path):
    folder = corrupt_folder(tmp_path, sweeps)
    out = build_report([folder], figures=False)
    assert out == folder / "report"
    skipped = pd.read_csv(out / "skipped.csv")
    reasons = {Path(d).name: r for d, r in zip(skipped["run_dir"], skipped["reason"])}
    assert reasons["truncated"].startswith("unreadable summary.json")
    assert reasons["unfinished"] == "unfinished (no summary.json)"
    assert reasons["failed"] == "failed: RuntimeError: out of memory"
    assert reasons["bad_metrics"].startswith("unreadable metrics.csv")
    assert reasons["not_an_object"].startswith("unreadable summary.json")
    assert reasons["no_activation"] == "summary.json lacks a usable activation"
    assert reasons["string_seed"] == 'unreadable summary.json: seed: Input should be a valid integer (got "zero")'
    assert reasons["binary_metrics"].startswith("unreadable metrics.csv")
    assert len(reasons) == 9 and any(r.startswith("duplicate of") for r in reasons.values())
    assert pd.read_csv(out / "summary.csv")["seeds"].tolist() == [2]  # the two good runs: relu, seeds 0 and 1
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Skipped runs" in md and "failed: RuntimeError: out of memory" in md


def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    assert report_command.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: no such file or folder: {tmp_path / 'nope'}\n"
    with pytest.raises(ReportError, match="no finished runs"):
        build_report([tmp_path])


@pytest.mark.slow  # the same, as a user runs it from a checkout: by path, in its own process
def test_bad_input_by_path_is_one_line_and_exit_2(tmp_path):
    script = ROOT / "scripts" / "report.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "nope")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: no such file or folder: {tmp_path / 'nope'}"


def test_unknown_baseline_is_an_error(sweeps):
    with pytest.raises(ReportError, match="baseline 'swish' is not among"):
        build_report(sweeps[1:], baseline="swish", figures=False)


EVIL = '<img src=x onerror="document.title=1">'


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chrome-profile"), {"browser": "ALL"})
    yield driver
    driver.quit()


def open_page(driver, page: Path) -> tuple[list, list]:
    """Load a file; return (complete and natural width of each image, console errors)."""
    driver.get(page.as_uri())
    images = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return images, errors


@pytest.mark.slow  # the check of the slow test below
@pytest.mark.extra("browser")
def test_the_browser_check_can_fail(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="missing.png"><script>console.error("boom")</script></body></html>'
    )
    images, errors = open_page(browser, page)
    assert images == [[True, 0]] and len(errors) >= 1


@pytest.mark.slow  # about 15 s (figures and a browser); tests/test_report_browser.py has the fast structural twin
@pytest.mark.extra("browser")
def test_html_report_opens_offline_with_every_image_loaded(browser, sweeps, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(sweeps[1], folder)  # spirals: three activations x three seeds, figures on
    evil = folder / f"run {EVIL}"
    (evil / ".hydra").mkdir(parents=True)  # an unfinished run whose folder name is markup
    out = build_report([folder], out=tmp_path / "report")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert EVIL not in html and "&lt;img src=x" in html  # escaped, in the skipped-runs table
    figures = sorted((out / "figures").glob("*.png"))
    names = {p.stem for p in figures}
    assert {
        "learning_curves",
        "gallery",
        "spirals-mlp_units",
        "spirals-mlp_activations",
        "spirals-mlp_gradients",
        "spirals-mlp_gradient_heatmap",
    } <= names
    md = (out / "report.md").read_text(encoding="utf-8")
    assert all(f"](figures/{p.name})" in md for p in figures)  # every figure is linked from the Markdown

    images, errors = open_page(browser, out / "report.html")
    # The first screen's overview PNG is the Markdown's; the HTML page draws those answers with plotly instead.
    assert len(images) == len([p for p in figures if not p.stem.endswith("_overview")])
    assert all(complete and width > 0 for complete, width in images), images
    assert errors == []
    assert browser.title == "Activation comparison"  # the markup in the folder name did not run


def test_every_figure_gives_an_activation_the_same_colour(sweeps, monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from harness.report import figures as fig
    from harness.report.load import gather

    data = gather(sweeps[1:])
    colours = fig.palette(["tanh", "sigmoid", "relu"], baseline="relu")
    assert list(colours) == ["relu", "sigmoid", "tanh"]  # baseline first, then alphabetical: stable across reports
    captured = []
    monkeypatch.setattr(fig, "save", lambda figure, path: captured.append(figure) or path)
    for draw in [fig.learning_curves, fig.units, fig.activation_stats, fig.gradients_by_depth]:
        draw(data.metrics, colours, Path("unused.png"))
    for figure in captured:
        handles, labels = figure.legends[0].legend_handles, [t.get_text() for t in figure.legends[0].get_texts()]
        assert {label: to_rgb(h.get_color()) for h, label in zip(handles, labels)} == {
            act: to_rgb(c) for act, c in colours.items()
        }
        plt.close(figure)


def matched_and_not() -> pd.DataFrame:
    """Two MLP runs at model.width=100: SwiGLU with model.match_params=true (it trained width 67) and ReLU."""
    return pd.DataFrame(
        {
            "config.model.width": [100, 100],
            "width_used": [67, None],
            "config.trainer.lr": [0.01] * 2,
            "seed": [0, 1],
            "dataset": ["digits"] * 2,
            "model": ["mlp"] * 2,
            "activation": ["swiglu", "relu"],
        }
    )


def test_width_is_the_width_trained_when_matched():
    """A gated run with model.match_params=true trains a narrower width than config.model.width: show that one."""
    from harness.report.load import label

    assert label(matched_and_not())["width"].tolist() == [67, 100]
