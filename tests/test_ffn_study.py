"""The ffn_activations study's claims (experiments/ffn_studies.py): paired by seed at each activation's tuned rate,
Holm within a model and dataset, and verdicts that follow the paper's direction; scipy is the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from experiments import ffn_studies

SEEDS = range(8)


def synthetic_runs(loss_shift: dict[str, float], acc_shift: dict[str, float], sparsity: float = 0.9) -> pd.DataFrame:
    """Eight seeds of each activation at two rates on one model and dataset; the rate 0.01 is best on validation
    for everyone, and the rate 0.001's test numbers are absurd so that a wrong rate choice shows."""
    rng = np.random.default_rng(0)
    rows = []
    for act in sorted(set(loss_shift) | set(acc_shift)):
        for lr, val in ((0.001, 0.5), (0.01, 0.9)):
            for seed in SEEDS:
                noise = rng.normal(0, 0.002)
                rows.append(
                    {
                        "model": "mlp",
                        "dataset": "digits",
                        "activation": act,
                        "seed": seed,
                        "config.trainer.lr": lr,
                        "status": "ok",
                        "best_val_acc": val,
                        "val_acc": val,
                        "test_acc_at_best_val": 0.9 + acc_shift.get(act, 0) + noise if lr == 0.01 else 0.0,
                        "test_loss": 0.3 + loss_shift.get(act, 0) + noise if lr == 0.01 else 9.0,
                        ffn_studies.LOSS: 0.2 + loss_shift.get(act, 0) + noise if lr == 0.01 else 9.0,
                        "cett_sparsity": sparsity if act == "drelu" else 0.1,
                        "n_params": 1000,
                    }
                )
    return pd.DataFrame(rows)


def test_claims_are_paired_t_tests_at_the_tuned_rate_with_holm_within_a_model_and_dataset():
    runs = synthetic_runs({"xielu": -0.05, "relu_squared": 0, "swiglu": 0.001, "polynorm": 0.01, "drelu": 0}, {})
    claims = ffn_studies.claim_rows(ffn_studies.at_tuned_lr(runs, ffn_studies.BY)[0]).set_index("claim")
    tuned = runs[runs["config.trainer.lr"] == 0.01]
    p = {}
    for claim in ffn_studies.CLAIMS:
        by_seed = tuned.pivot_table(index="seed", columns="activation", values=claim.metric)
        row = claims.loc[claim.text]
        assert row["diff_mean"] == pytest.approx((by_seed[claim.a] - by_seed[claim.b]).mean())
        p[claim.text] = scipy.stats.ttest_rel(by_seed[claim.a], by_seed[claim.b]).pvalue
        assert row["p_t"] == pytest.approx(p[claim.text])
    ordered = sorted(p, key=p.get)  # Holm's step-down by hand
    running = 0.0
    for i, text in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - i) * p[text]))
        assert claims.loc[text, "p_t_holm"] == pytest.approx(running)
    assert claims.loc["xielu ahead of relu_squared in test_loss", "verdict"] == "shows"
    assert claims.loc["polynorm ahead of swiglu in test_loss", "verdict"] == "opposite"  # its loss is the higher


def test_level_needs_the_interval_inside_the_margin_and_the_sparsity():
    level = "drelu level with swiglu (test_acc_at_best_val) at about 90% sparsity"
    for shift, sparsity, expected in ((0.0, 0.9, "shows"), (0.0, 0.3, "level, not sparse"), (-0.05, 0.9, "not shown")):
        runs = synthetic_runs({}, {"drelu": shift, "swiglu": 0.0}, sparsity)
        claims = ffn_studies.claim_rows(ffn_studies.at_tuned_lr(runs, ffn_studies.BY)[0]).set_index("claim")
        assert claims.loc[level, "verdict"] == expected, (shift, sparsity)
        assert claims.loc[level, "sparsity_a"] == pytest.approx(sparsity)


def test_a_claim_is_left_out_where_one_of_its_activations_did_not_run():
    runs = synthetic_runs({"relu": 0, "swiglu": 0}, {})
    assert ffn_studies.claim_rows(ffn_studies.at_tuned_lr(runs, ffn_studies.BY)[0]).empty


def test_loss_claims_read_the_test_loss_where_validation_loss_is_lowest_not_the_last_or_the_lowest_test_loss():
    def evaluation(run, step, val, test):
        return [
            {"run_dir": run, "step": step, "split": "val", "metric": "loss", "value": val},
            {"run_dir": run, "step": step, "split": "test", "metric": "loss", "value": test},
            {"run_dir": run, "step": step, "split": "val", "metric": "acc", "value": 0.5},
        ]

    metrics = pd.DataFrame(
        evaluation("a", 250, 0.9, 0.8)
        + evaluation("a", 500, 0.6, 0.7)  # a's lowest validation loss: its test loss here, 0.7
        + evaluation("a", 750, 0.7, 0.5)  # a's lowest and last test loss, which must not be taken
        + evaluation("b", 250, float("nan"), 0.3)  # b diverged: no finite validation loss at all
        + [{"run_dir": "a", "step": 500, "split": "probe", "metric": "loss", "value": -1.0}]
    )
    runs = pd.DataFrame({"run_dir": ["b", "a", "c"]}, index=[7, 8, 9])  # c wrote no evaluation
    got = ffn_studies.loss_at_best_val_loss(runs, metrics)
    assert list(got.index) == [7, 8, 9]
    assert got[8] == pytest.approx(0.7)
    assert np.isnan(got[7]) and np.isnan(got[9])
