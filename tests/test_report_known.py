"""The report's first screen from run folders with known numbers: every headline number checked against the
value the folders were written with (born-dead vs lost units, a seed with a known drawdown, known gradient norms,
known speeds), both for runs that carry the new summary keys and for schema-1 runs without them (the validated
reader upgrades those once: harness.records.upgrade)."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.records.results import write_metrics, write_summary
from harness.report import build_report
from harness.setup.config import to_dict
from tests.conftest import compose_config

N_TEST = 360  # digits' test split: summary.json's n_test, or for a schema-1 run without it the dataset's entry
ACTS = ["relu", "gelu", "leaky_relu"]
SEEDS = [0, 1, 2]
LAYERS = ["hidden.0", "hidden.1"]
CORRECT = {"relu": [279, 297, 315], "gelu": [297, 324, 333], "leaky_relu": [270, 297, 333]}  # right, per seed
DEAD_INIT = {"relu": {"hidden.0": 0.0, "hidden.1": 0.5}, "gelu": {}, "leaky_relu": {}}  # relu: born-dead layer
LOST = {"relu": {"hidden.0": 0.25, "hidden.1": 0.125}, "gelu": {}, "leaky_relu": {}}
DIP = [0.5, 0.8, 0.675, 0.9]  # relu seed 1's validation accuracy: a 12.5-point drawdown
RISE = [0.5, 0.7, 0.8, 0.9]
HEAD_OVER_FIRST = {"relu": [3.0, 3.0, 3.0], "gelu": [8.0, 9.0, 10.0], "leaky_relu": [1.0, 1.2, 1.4]}  # at init
SPEED = {"relu": [1000, 1010, 990], "gelu": [800, 808, 792], "leaky_relu": [500, 1000, 1500]}


@pytest.fixture(scope="module")
def base_config() -> dict:
    return to_dict(compose_config("model=mlp", "model.depth=2", "model.width=8", "dataset=digits"))


def run_rows(act: str, seed: int, val: list[float]) -> list[tuple]:
    """metrics.csv rows in the trainer's format: probes at step 0, train gradient norms, val and test accuracy."""
    rows = []
    for layer in LAYERS:
        rows.append((0, "probe", "dead_fraction", layer, DEAD_INIT[act].get(layer, 0.0), None))
        rows.append((0, "probe", "grad_norm", layer, 0.1, None))
    rows.append((0, "probe", "grad_norm", "head", 0.1 * HEAD_OVER_FIRST[act][seed], None))
    for i, v in enumerate(val):
        step = 10 * (i + 1)
        rows += [
            (step, "train", "loss", None, 1.0 / step, None),
            (step, "train", "grad_norm", "hidden.0", 0.2, None),
            (step, "train", "grad_norm", "head", 0.4, None),
            (step, "val", "acc", None, v, None),
            (step, "test", "acc", None, (CORRECT[act][seed] - 3 + i) / N_TEST, None),
        ]
    return rows


def summary_of(base: dict, act: str, seed: int, init: str, val: list[float], new_keys: bool) -> dict:
    config = copy.deepcopy(base)
    config.update(seed=seed, activation={"name": act})
    config["model"]["init"] = init
    acc = CORRECT[act][seed] / N_TEST
    chosen = init == "kaiming"  # every activation does best on validation with kaiming: the headline picks it
    end = {layer: DEAD_INIT[act].get(layer, 0.0) + LOST[act].get(layer, 0.0) for layer in LAYERS}
    s = {
        "schema_version": 1,
        "status": "ok",
        "activation": act,
        "model": "mlp",
        "dataset": "digits",
        "seed": seed,
        "config_hash": f"{act}-{seed}-{init}",
        "config": config,
        "test_acc_at_best_val": acc if chosen else 0.5,
        "test_acc": acc,
        "best_val_acc": max(val) if chosen else 0.6,
        "train_loss": 0.01,
        "test_loss": 0.3,
        "samples_per_s": SPEED[act][seed],
        "dead_fraction": sum(end.values()) / 2,
        "saturated_fraction": 0.0,
        "dead_fraction_by_layer": end,
        "n_params": 250,
        "grad_norm_init_by_layer": {"hidden.0": 0.1, "hidden.1": 0.1, "head": 0.1 * HEAD_OVER_FIRST[act][seed]},
        "grad_norm_by_layer": {"hidden.0": 0.2, "hidden.1": 0.2, "head": 0.4},
        "device": "cpu",
        "num_threads": 1,
    }
    if new_keys:  # what the trainer writes from now on (the same numbers, from its own per-unit masks)
        s.update(
            dead_fraction_init_by_layer={layer: DEAD_INIT[act].get(layer, 0.0) for layer in LAYERS},
            lost_fraction_by_layer={layer: LOST[act].get(layer, 0.0) for layer in LAYERS},
            grad_flow_ratio_init=HEAD_OVER_FIRST[act][seed],
            grad_flow_ratio=2.0,
            val_drawdown_max=float(np.max(np.maximum.accumulate(val) - val)),
            speed_clock="thread_cpu",
            clock_samples_per_s=SPEED[act][seed],
            train_cpu_time_s=1.0,
            init_used=init,
        )
    return s


def write_runs(folder: Path, base: dict, new_keys: bool) -> Path:
    for act in ACTS:
        for seed in SEEDS:
            for init in ["default", "kaiming"]:
                val = DIP if (act, seed, init) == ("relu", 1, "kaiming") else RISE
                run_dir = folder / f"{act}-{init}-s{seed}"
                run_dir.mkdir(parents=True)
                write_metrics(run_dir, run_rows(act, seed, val))
                write_summary(run_dir, summary_of(base, act, seed, init, val, new_keys))
    return folder


@pytest.fixture(scope="module", params=["new keys", "metrics.csv only"])
def known(request, base_config, tmp_path_factory) -> tuple[Path, bool]:
    new_keys = request.param == "new keys"
    folder = write_runs(tmp_path_factory.mktemp("known") / "runs", base_config, new_keys)
    return build_report([folder], out=folder.parent / "report", figures=False, latex=True), new_keys


def first_screen(report: Path) -> str:
    md = (report / "report.md").read_text(encoding="utf-8")
    return md.split("## digits / mlp")[1].split("\n## ")[0]


def answer(screen: str, question: str) -> str:
    return re.search(rf"\*\*{question}\.\*\* (.*)", screen).group(1)


def ci(x, level=0.95) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    return sps.t.interval(level, len(x) - 1, loc=x.mean(), scale=sps.sem(x))


def test_test_set_size_and_chosen_setting(known):
    report, new_keys = known
    screen = first_screen(report)
    assert "Test set: 360 samples; one sample is worth 0.28 points of accuracy." in screen
    assert "each activation at the setting chosen on validation" in screen
    used = " (init used: kaiming)" if new_keys else ""  # what model.init=auto chose, when the run recorded it
    assert all(
        f"{act}: init=kaiming, lr=0.01{used};" in screen or f"{act}: init=kaiming, lr=0.01{used}." in screen
        for act in ACTS
    )
    friedman = pd.read_json(report / "friedman.json", typ="series")
    assert friedman["tasks"] == 1  # two inits are settings of one task, never two tasks


def test_accuracy_and_bonferroni_interval_beside_holm(known):
    text = answer(first_screen(known[0]), "Accuracy")
    for act in ACTS:
        acc = np.array(CORRECT[act]) / N_TEST
        lo, hi = ci(acc)
        assert f"{act} {acc.mean():.3f} [{lo:.3f}, {min(hi, 1):.3f}]" in text  # no accuracy shown above 1
    assert "Bonferroni-adjusted for 2 comparisons" in text
    cmp = pd.read_csv(known[0] / "comparison.csv").query("setting == 'at best val setting'")
    base = np.array(CORRECT["relu"]) / N_TEST
    p = {act: sps.ttest_rel(np.array(CORRECT[act]) / N_TEST, base).pvalue for act in ["gelu", "leaky_relu"]}
    holm = dict(
        zip(sorted(p, key=p.get), [min(1, 2 * min(p.values())), min(1, max(2 * min(p.values()), max(p.values())))])
    )
    for act in ["gelu", "leaky_relu"]:
        d = np.array(CORRECT[act]) / N_TEST - base
        row = cmp[cmp["act"] == act].iloc[0]
        assert (row["diff_adj_low"], row["diff_adj_high"]) == pytest.approx(ci(d, 1 - 0.05 / 2))
        assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(ci(d))
        assert row["p_t_holm"] == pytest.approx(holm[act])
        excludes_zero = row["diff_adj_low"] > 0 or row["diff_adj_high"] < 0
        assert not excludes_zero or row["significant"]  # an interval that excludes 0 is never 'not significant'
        lo, hi = ci(d, 1 - 0.05 / 2)
        assert f"{act} {d.mean():+.3f} [{lo:.3f}, {hi:.3f}], p = {holm[act]:.3f}" in text


def test_stability_drawdown_mean_and_worst_seed(known):
    text = answer(first_screen(known[0]), "Stability")
    assert "Unstable runs (diverged, or ended at chance" in text and "relu 0/3" in text
    drawdowns = np.array([0.0, 0.125, 0.0])
    lo, hi = ci(drawdowns)
    assert f"relu {100 * drawdowns.mean():.1f} [{100 * max(lo, 0):.1f}, {100 * hi:.1f}], worst 12.5 (seed 1)" in text
    assert "gelu 0.0 [0.0, 0.0], worst 0.0 (seed 0)" in text


def test_dead_at_init_is_not_lost_in_training(known):
    report, new_keys = known
    text = answer(first_screen(report), "Dead units")
    if new_keys:
        assert (
            "relu 25% dead at init, 19% lost in training (most dead at init: hidden.1 50%) "
            "(most lost: hidden.0 25%), 44% dead at the end"
        ) in text
    else:  # older runs: dead at init from metrics.csv's step-0 probe; lost cannot be known, and is not faked
        assert "relu 25% dead at init (most dead at init: hidden.1 50%), 44% dead at the end" in text
        assert "Lost in training (alive at init, dead at the end, per unit): n/a" in text
    layers = pd.read_csv(report / "layers.csv")
    # run folders relative to the folder above the input (runs/...), never this machine's absolute path
    assert layers["run_dir"].str.startswith("runs/").all(), layers["run_dir"].iloc[0]
    assert all((report.parent / d).is_dir() for d in layers["run_dir"])
    relu = layers[(layers["act"] == "relu") & layers["setting"].str.startswith("init=kaiming")]
    assert relu.groupby("layer")["dead_init"].mean().to_dict() == {"hidden.0": 0.0, "hidden.1": 0.5}
    lost = relu.groupby("layer")["lost"].mean()
    if new_keys:
        assert lost.to_dict() == {"hidden.0": 0.25, "hidden.1": 0.125}
    else:
        assert lost.isna().all()


def test_gradient_flow_ratio_at_init_and_over_training(known):
    text = answer(first_screen(known[0]), "Gradient flow")
    for act, ratios in HEAD_OVER_FIRST.items():
        logs = np.log(ratios)
        g = math.exp(logs.mean())
        interval = f" [{g:.3g}, {g:.3g}]" if np.ptp(logs) == 0 else " [{:.3g}, {:.3g}]".format(*np.exp(ci(logs)))
        assert f"{act} {g:.3g}×{interval} at init, 2× [2, 2] over training" in text


def test_cost_shows_no_speed_from_the_runs_without_probe_records(known):
    """The runs' own samples/s (SPEED) are no cost figure: without the cost probe's records the answer says so."""
    report, _ = known
    text = answer(first_screen(report), "Cost")
    assert text.startswith("No cost probe records") and "250 parameters, width 8" in text
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "samples/s" not in md and "808" not in md and "1,010" not in md


def test_results_table_carries_the_five_answers(known):
    md = (known[0] / "report.md").read_text(encoding="utf-8")
    table = md.split("## Results per task")[1].split("###")[0]
    header = next(line for line in table.splitlines() if line.startswith("| task"))
    for column in [
        "test acc [95% CI]",
        "drawdown mean (worst)",
        "dead at init",
        "lost in training",
        "grad ratio init",
        "grad ratio training",
        "n_params",
        "matched width",
    ]:
        assert f"| {column} |" in header
    relu = next(line for line in table.splitlines() if line.startswith("| digits / mlp | relu |"))
    assert "| 4.2 (12.5) | 25% |" in relu and "| 3× | 2× |" in relu and "| 250 | units 8 |" in relu


def test_latex_tables_are_booktabs_with_escaped_names(known):
    tex = (known[0] / "tables.tex").read_text(encoding="utf-8")
    assert tex.count(r"\toprule") == 5 and tex.count(r"\bottomrule") == 5 and r"\midrule" in tex  # one a question
    assert r"leaky\_relu &" in tex and "leaky_relu" not in tex.replace(r"leaky\_relu", "")
    assert r"n\_params" in tex and r"$\times$" in tex and "×" not in tex
