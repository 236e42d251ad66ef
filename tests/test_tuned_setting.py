"""One rule chooses each activation's setting on validation (harness.report.stats.choose_settings, stated in
docs/reports.md): the generic report and every study that tunes a learning rate pick the same one for the same
runs, with a diverged seed, a non-finite loss, a seed collapsed to chance and an exact tie among them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from experiments import rate_studies, study_report
from experiments.study_tables import against_relu, at_tuned_lr, tuned_runs
from harness.records.results import write_metrics, write_summary
from harness.report import build_report
from harness.report import stats as rs
from harness.setup.config import to_dict
from tests.conftest import compose_config

OK = ("ok", 0.5, 0.8)  # (status, train loss, final validation accuracy) of a seed that trained normally
DIVERGED = ("diverged", 0.5, 0.8)
INFINITE_LOSS = ("ok", math.inf, 0.8)  # a loss the summary records as infinite, status notwithstanding
AT_CHANCE = ("ok", 0.5, 0.12)  # mnist1d has 10 classes: chance 0.1, collapsed at or below 1.5 x 0.1
# activation -> lr -> (best validation accuracy of each seed, what each seed did); test accuracy is highest where
# validation does not choose, so a rule that peeked at the test split would pick another rate
GRID = {
    "relu": {
        0.1: ([0.95, 0.95, 0.95], [OK, DIVERGED, OK]),  # the best validation mean, but a seed diverged
        0.03: ([0.90, 0.90, 0.90], [OK, OK, AT_CHANCE]),  # next best, but a seed ended at chance
        0.01: ([0.80, 0.70, 0.75], [OK, OK, OK]),
        0.003: ([0.70, 0.80, 0.75], [OK, OK, OK]),  # an exact tie with 0.01: the smaller rate wins
    },
    "tanh": {
        0.1: ([0.95, 0.95, 0.95], [INFINITE_LOSS, OK, OK]),
        0.01: ([0.70, 0.72, 0.74], [OK, OK, OK]),
        0.001: ([0.60, 0.62, 0.64], [OK, OK, OK]),
    },
    "gelu": {  # every rate has an unstable seed: those with the fewest (one) compete
        0.1: ([0.99, 0.99, 0.99], [DIVERGED, DIVERGED, OK]),
        0.01: ([0.85, 0.85, 0.85], [OK, AT_CHANCE, OK]),
        0.001: ([0.80, 0.80, 0.80], [DIVERGED, OK, OK]),
    },
}
EXPECTED = {"relu": 0.003, "tanh": 0.01, "gelu": 0.01}


def grid_runs() -> pd.DataFrame:
    """GRID as run rows with the columns the studies read and the report's labels (task, act, setting, lr)."""
    rows = []
    for act, rates in GRID.items():
        for lr, (vals, seeds) in rates.items():
            for seed, (val, (status, loss, final_val)) in enumerate(zip(vals, seeds)):
                rows.append(
                    {
                        "activation": act,
                        "act": act,
                        "config.trainer.lr": lr,
                        "lr": lr,
                        "setting": f"lr={lr:g}",
                        "dataset": "mnist1d",
                        "model": "mlp",
                        "task": "mnist1d / mlp",
                        "seed": seed,
                        "status": status,
                        "train_loss": loss,
                        "test_loss": 1.0 + lr,
                        "best_val_acc": val,
                        "val_acc": final_val,
                        "test_acc_at_best_val": 1.0 - val + lr,
                        "test_acc": 1.0 - val,
                        "n_params": 100,
                        "clock_samples_per_s": 1000.0,
                        "run_dir": f"{act}-{lr:g}-s{seed}",
                    }
                )
    return pd.DataFrame(rows)


def by_report(runs: pd.DataFrame, tmp_path: Path, monkeypatch) -> dict:
    summary = rs.summarise(runs)
    chosen = summary.merge(rs.best_setting(summary), on=["task", "act", "setting"])
    return dict(zip(chosen["act"], chosen["lr"]))


def by_at_tuned_lr(runs: pd.DataFrame, tmp_path: Path, monkeypatch) -> dict:
    at_tuned, _ = at_tuned_lr(runs, ["activation"])
    return at_tuned.groupby("activation")["lr"].unique().map(lambda rates: rates.item()).to_dict()


def by_tuned_runs(runs: pd.DataFrame, tmp_path: Path, monkeypatch) -> dict:  # article_claims, modern_activations
    at_tuned, _ = tuned_runs(runs, ["activation"], sorted(GRID))
    return at_tuned.groupby("activation")["config.trainer.lr"].unique().map(lambda rates: rates.item()).to_dict()


def by_lr_fairness(runs: pd.DataFrame, tmp_path: Path, monkeypatch) -> dict:
    rate_studies.lr_fairness(runs, pd.DataFrame(), tmp_path, draw=False)
    tuned = pd.read_csv(tmp_path / "tuned.csv")
    return dict(zip(tuned["activation"], tuned["tuned lr"]))


def by_transformer_ffn(runs: pd.DataFrame, tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.setattr(rate_studies, "saved_per_sample", lambda run: 0.0)  # a model rebuild: not what is tested
    rate_studies.transformer_ffn(runs, pd.DataFrame(), tmp_path, draw=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    return dict(zip(summary["activation"], summary["lr"]))


@pytest.mark.parametrize("choose", [by_report, by_at_tuned_lr, by_tuned_runs, by_lr_fairness, by_transformer_ffn])
def test_the_report_and_every_study_choose_the_same_rate(choose, tmp_path, monkeypatch):
    runs = grid_runs()
    if choose is not by_report:  # a study reads run columns as load_runs gives them: no report labels
        runs = runs.drop(columns=["act", "lr", "setting", "task"])
    chosen = choose(runs, tmp_path, monkeypatch)
    assert chosen == pytest.approx(EXPECTED)


def test_collapse_is_judged_against_the_datasets_own_chance_level():
    # final validation accuracy 0.45: at chance for 3-class spirals (at most 1.5 / 3), well above it for 10 classes
    runs = pd.DataFrame(
        {
            "dataset": ["spirals", "mnist1d", "spirals", "no_such_dataset", "mnist1d"],
            "val_acc": [0.45, 0.45, 0.55, 0.01, 0.15],
            "status": ["ok", "ok", "ok", "ok", "ok"],
        }
    )
    assert rs.collapsed(runs).tolist() == [True, False, False, False, True]  # 0.15: at 1.5 x chance, included


def test_a_diverged_seed_is_left_out_of_the_studies_paired_comparison():
    acc = {"relu": [0.80, 0.82, 0.78, 0.81], "gelu": [0.83, 0.84, 0.79, 0.10]}
    runs = pd.DataFrame(
        [
            {"activation": act, "dataset": "d", "seed": seed, "acc": v, "status": "ok"}
            for act, values in acc.items()
            for seed, v in enumerate(values)
        ]
    )
    runs.loc[(runs["activation"] == "gelu") & (runs["seed"] == 3), "status"] = "diverged"
    row = against_relu(runs, ["dataset"], "acc").iloc[0]
    gelu, relu = np.array(acc["gelu"][:3]), np.array(acc["relu"][:3])
    assert row["pairs"] == 3 and row["wins"] == 3
    assert row["diff_mean"] == pytest.approx((gelu - relu).mean())
    assert row["p_t"] == pytest.approx(scipy.stats.ttest_rel(gelu, relu).pvalue)
    assert row["p_t_holm"] == pytest.approx(row["p_t"])  # one comparison: Holm leaves it as it is


def write_grid(folder: Path) -> Path:
    """GRID as run folders, each written as the harness writes one (summary.json and metrics.csv)."""
    base = to_dict(compose_config("model=mlp", "dataset=mnist1d"))
    for r in grid_runs().itertuples():
        run_dir = folder / r.run_dir
        run_dir.mkdir(parents=True)
        write_metrics(run_dir, [(10, "val", "acc", None, r.best_val_acc, None)])
        config = base | {"seed": r.seed, "activation": {"name": r.act}, "trainer": base["trainer"] | {"lr": r.lr}}
        # an infinite loss cannot be written (summary.json stores it as null): that seed is written as the
        # trainer records it, diverged
        finite = math.isfinite(r.train_loss)
        outcome = {k: getattr(r, k) for k in ["best_val_acc", "val_acc", "test_acc_at_best_val", "test_acc"]}
        outcome |= {"status": r.status if finite else "diverged", "train_loss": r.train_loss if finite else None}
        provenance = {"schema_version": 1, "activation": r.act, "model": "mlp", "dataset": "mnist1d", "seed": r.seed}
        extra = {"config_hash": r.run_dir, "config": config, "test_loss": r.test_loss, "n_params": 100}
        timing = {"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:00Z", "samples_per_s": 1e3}
        code = {"git_sha": None, "git_dirty": False, "torch_version": "2", "device": "cpu"}
        write_summary(run_dir, outcome | provenance | extra | timing | code)
    return folder


def test_the_report_and_a_study_choose_the_same_rate_from_run_folders(tmp_path):
    runs = write_grid(tmp_path / "runs")
    report = build_report([runs], out=tmp_path / "report", figures=False)
    summary = pd.read_csv(report / "summary.csv").query("chosen")
    study_report.build("lr_fairness", [str(runs)], tmp_path / "study", draw=False)
    tuned = pd.read_csv(tmp_path / "study" / "tuned.csv")
    assert dict(zip(summary["act"], summary["lr"])) == pytest.approx(EXPECTED)
    assert dict(zip(tuned["activation"], tuned["tuned lr"])) == pytest.approx(EXPECTED)
