"""The ffn_activations study: the activations of 2023-2026 in the transformer's FFN and in the MLP, each at its own
learning rate tuned on validation, and the claims their papers make set beside what the harness measures.

A claim is a paired comparison of two activations by seed, each at its own tuned rate, within one model and
dataset; every claim's tests of one model and dataset form one Holm family. A claim "shows" where the difference
points the paper's way and its Holm-corrected p is under 0.05, "opposite" where it is significant the other way,
"not shown" otherwise. The level-with claim (dReLU level with SwiGLU at about 90% sparsity) shows where the paired
accuracy difference's 95% interval lies inside +-LEVEL_MARGIN and dReLU's sparsity reaches SPARSE_ENOUGH. The loss
claims are read twice: on the test loss where the validation loss is lowest (LOSS, the analogue of a pretraining
loss) and on the final test loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.study_tables import at_tuned_lr, cells, figure, write_csv
from harness.report import stats
from harness.report.render import Heading, Table, Text

BY = ["model", "dataset", "activation"]
LEVEL_MARGIN = 0.01  # accuracy (1 point): a difference whose interval lies inside +-1 point is "level"
SPARSE_ENOUGH = 0.8  # "about 90%": a stated floor below the paper's figure, since the scale differs
SPARSITY = ["zero_fraction", "cett_sparsity"]  # the summary's sparsity keys (harness.common.metrics)
# The loss claims' metric. The papers' losses are pretraining losses of models that never see a sample twice; ours
# see each training sample hundreds of times and overfit, so their final test loss measures overconfidence on the
# samples they get wrong more than the fit. The test loss at the evaluation with the lowest validation loss is the
# analogue: chosen on validation, read on test, as test_acc_at_best_val is for accuracy.
LOSS = "test_loss_at_best_val_loss"


@dataclass(frozen=True)
class Claim:
    """One paper's claim as a paired test: a against b on metric, where `better` says which way a wins."""

    paper: str
    a: str
    b: str
    metric: str
    better: str  # "lower", "higher", or "level"
    scale: str  # where the paper showed it

    @property
    def text(self) -> str:
        if self.better == "level":
            return f"{self.a} level with {self.b} ({self.metric}) at about 90% sparsity"
        return f"{self.a} ahead of {self.b} in {self.metric}"


LOSS_CLAIMS = [
    ("xIELU (Huang and Schlag 2024)", "xielu", "relu_squared", "1.1B-3B Llama, FineWeb"),
    ("xIELU (Huang and Schlag 2024)", "xielu", "swiglu", "1.1B-3B Llama, FineWeb"),
    ("PolyCom (Zhuo et al. 2025)", "polynorm", "swiglu", "1B dense, MoE 1B/7B, RedPajama"),
]
# Each loss claim on LOSS and, as a second reading, on the final test loss; all in one Holm family.
CLAIMS = [
    Claim(paper, a, b, metric, "lower", scale) for metric in (LOSS, "test_loss") for paper, a, b, scale in LOSS_CLAIMS
]
CLAIMS.append(
    Claim("Turbo Sparse (Song et al. 2024)", "drelu", "swiglu", "test_acc_at_best_val", "level", "Mistral-7B, Mixtral")
)


def loss_at_best_val_loss(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.Series:
    """Per run (aligned with `runs`), the test loss at the evaluation with the lowest validation loss (see LOSS);
    NaN for a run with no finite validation loss."""
    evals = metrics[metrics.split.isin(["val", "test"]) & (metrics.metric == "loss")]
    if evals.empty:
        return pd.Series(float("nan"), index=runs.index)
    wide = evals.pivot_table(index=["run_dir", "step"], columns="split", values="value").reset_index()
    wide = wide[wide["val"].notna() & (wide["val"] < float("inf"))]
    best = wide.loc[wide.groupby("run_dir")["val"].idxmin()].set_index("run_dir")
    return runs["run_dir"].map(best["test"])


def claim_rows(at_tuned: pd.DataFrame) -> pd.DataFrame:
    """Every claim tested in every model and dataset that ran both its activations; Holm within a model and
    dataset."""
    rows = []
    for (model, dataset), runs in at_tuned.groupby(["model", "dataset"], sort=True):
        ok = runs[~stats.diverged(runs)]
        family = [c for c in CLAIMS if {c.a, c.b} <= set(ok.activation)]
        for claim in family:
            by_seed = ok.pivot_table(index="seed", columns="activation", values=claim.metric, aggfunc="first")
            row = {"model": model, "dataset": dataset, "paper": claim.paper, "claim": claim.text}
            row |= stats.paired(by_seed[claim.a], by_seed[claim.b], family=len(family))
            row["sparsity_a"] = ok.loc[ok.activation == claim.a, sparsity_key(ok)].mean() if sparsity_key(ok) else None
            row["paper_scale"] = claim.scale
            rows.append((claim, row))
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame([row for _, row in rows])
    for _, family in frame.groupby(["model", "dataset"], sort=False):
        frame.loc[family.index, "p_t_holm"] = stats.holm(family["p_t"])
    frame["verdict"] = [verdict(claim, row) for (claim, _), row in zip(rows, frame.to_dict("records"))]
    return frame


def sparsity_key(runs: pd.DataFrame) -> str | None:
    """The CETT sparsity where the runs have it (MLP, transformer FFN), else the exact-zero fraction."""
    return next((k for k in reversed(SPARSITY) if k in runs and runs[k].notna().any()), None)


def verdict(claim: Claim, row: dict) -> str:
    if claim.better == "level":
        inside = -LEVEL_MARGIN <= row["diff_ci_low"] and row["diff_ci_high"] <= LEVEL_MARGIN
        sparse = row["sparsity_a"] is not None and row["sparsity_a"] >= SPARSE_ENOUGH
        return "shows" if inside and sparse else "level, not sparse" if inside else "not shown"
    if not row["p_t_holm"] < stats.ALPHA:
        return "not shown"
    wins = row["diff_mean"] < 0 if claim.better == "lower" else row["diff_mean"] > 0
    return "shows" if wins else "opposite"


def tuned_summary(at_tuned: pd.DataFrame) -> pd.DataFrame:
    """Per model, dataset and activation at its tuned rate: accuracy, loss, sparsity, parameters, seeds."""
    extra = {k: (k, "mean") for k in SPARSITY if k in at_tuned}
    return (
        at_tuned.groupby(BY)
        .agg(
            lr=("lr", "first"),
            test=("test_acc_at_best_val", "mean"),
            test_loss=("test_loss", "mean"),
            **{LOSS: (LOSS, "mean")},
            **extra,
            seeds=("seed", "count"),
            n_params=("n_params", "first"),
        )
        .reset_index()
    )


def ffn_activations(runs, metrics, out: Path, draw: bool = True) -> list:
    """Each activation at its own tuned rate per model and dataset; the claims as paired tests (see the module)."""
    runs = runs.assign(**{LOSS: loss_at_best_val_loss(runs, metrics)})
    at_tuned, val = at_tuned_lr(runs, BY)
    summary = tuned_summary(at_tuned)
    claims = claim_rows(at_tuned)
    write_csv(summary, out, "summary.csv")
    write_csv(claims, out, "claims.csv")
    blocks = [
        Heading("Best validation accuracy (mean over seeds) per learning rate"),
        Table(cells(val.unstack("lr"))),
        Heading("At each activation's tuned rate: accuracy, loss, sparsity and size"),
        Table(
            cells(summary.sort_values(["model", "dataset", "test"], ascending=[True, True, False]), 3, True),
            "test: test accuracy at the best-validation evaluation; test_loss: the final test cross-entropy; "
            f"{LOSS}: the test cross-entropy at the evaluation with the lowest validation loss; "
            "zero_fraction: hidden activations exactly 0; cett_sparsity: the 'ReLU^2 Wins' sparsity at CETT 0.2 "
            "(docs/activations.md), both at the final probe, mean over layers.",
        ),
        Heading("The papers' claims at this scale"),
    ]
    if claims.empty:
        blocks.append(Text("No claim could be tested: no model and dataset ran both activations of one."))
    else:
        shown = ["model", "dataset", "claim", "paper_scale", "pairs", "diff_mean", "diff_ci_low", "diff_ci_high"]
        blocks.append(
            Table(
                cells(claims[[*shown, "p_t", "p_t_holm", "sparsity_a", "verdict"]], 3, True),
                "diff: the first activation's value minus the second's, paired by seed, each at its tuned rate, with "
                "its 95% t interval; p_t_holm: Holm within a model and dataset over the claims tested there; "
                f"level: the interval inside +-{LEVEL_MARGIN:g} (accuracy) and the first activation's sparsity at "
                f"least {SPARSE_ENOUGH:g}.",
            )
        )
    if draw:
        blocks.append(figure(accuracy_figure(at_tuned), out, "test_acc_at_tuned_lr.png", ACCURACY_CAPTION))
    return blocks


ACCURACY_CAPTION = "Test accuracy per seed, each activation at its tuned rate; a panel per model and dataset."


def accuracy_figure(at_tuned: pd.DataFrame):
    """One dot per seed of each activation's test accuracy at its tuned rate."""
    import seaborn as sns

    from harness.report import figures

    with figures.style():
        grid = sns.catplot(
            data=at_tuned,
            x="test_acc_at_best_val",
            y="activation",
            col="dataset",
            row="model",
            kind="strip",
            height=2.6,
            aspect=1.4,
            sharex=False,
        )
        grid.set_axis_labels("test accuracy", "")
    return grid.figure
