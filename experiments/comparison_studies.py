"""The studies that compare activations with each other, each at its learning rate tuned on validation when the
sweep has several (study_tables.tuned_runs): article_claims (the reference article's claims, pair by pair) and
modern_activations (each activation against ReLU, harness.report.stats.compare)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from experiments.study_tables import (  # noqa: E402
    against_relu,
    cells,
    figure,
    mean_interval,
    paired_table,
    tuned_runs,
    variant,
    write_csv,
)
from harness.report import figures, stats  # noqa: E402
from harness.report.render import Heading, Table, Text  # noqa: E402

PAIRED = ["pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "p_t", "wins"]  # the columns the tables show
ARTICLE = ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "rrelu", "relu6"]


def first_window_loss(metrics: pd.DataFrame) -> pd.Series:
    """Train loss over the first logging window of each run, by run_dir: the speed of early learning."""
    tl = metrics[(metrics.split == "train") & (metrics.metric == "loss")]
    return tl.loc[tl.groupby("run_dir").step.idxmin()].set_index("run_dir")["value"]


ARTICLE_PAIRS = [
    ("tanh", "sigmoid", "test_acc"),
    ("tanh", "sigmoid", "early_loss"),
    ("leaky_relu", "relu", "test_acc"),
    ("leaky_relu", "relu", "early_loss"),
    ("rrelu", "leaky_relu", "test_acc"),
    ("rrelu", "leaky_relu", "gap"),
    ("rrelu", "relu", "test_acc"),
    ("relu6", "relu", "test_acc"),
    ("relu6", "relu", "grad_norm_global"),
    ("tanh", "relu", "test_acc"),
    ("relu", "softmax", "test_acc"),
    ("relu", "sigmoid", "early_loss"),
]


def article_claims(runs, metrics, out: Path, draw: bool = True) -> list:
    r = runs.assign(model=variant(runs, "article").fillna(runs["model"]), gap=runs.train_acc - runs.test_acc)
    order = [a for a in ARTICLE if a in set(r.activation)]
    r, blocks = tuned_runs(r, ["model", "activation"], order)
    if len(metrics):
        r["early_loss"] = r.run_dir.map(first_window_loss(metrics))
    blocks += [
        Heading("Test accuracy % (mean [95% CI] over seeds)"),
        Table(cells(r.groupby(["activation", "model"]).test_acc.apply(mean_interval).unstack("model").reindex(order))),
    ]
    blocks += mean_tables(r, order)
    rows = [
        {"a": a, "b": b, "metric": value, "model": model, **paired_table(part, value, a, b)}
        for a, b, value in ARTICLE_PAIRS
        if value in r
        for model, part in r.groupby("model")
    ]
    comparisons = pd.DataFrame(rows).reindex(columns=["a", "b", "metric", "model", *PAIRED])
    write_csv(comparisons, out, "paired.csv")
    write_csv(
        r[
            [
                "run_dir",
                "activation",
                "model",
                "seed",
                "status",
                "test_acc",
                "train_acc",
                "dead_fraction",
                "saturated_fraction",
                "grad_norm_global",
                "samples_per_s",
            ]
        ],
        out,
        "summary.csv",
    )
    shown = comparisons[
        ["a", "b", "metric", "model", "pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "p_t", "wins"]
    ]
    blocks += [
        Heading("Paired comparisons"),
        Table(
            cells(shown, 3, True),
            "Same seed; diff = a - b with its 95% t interval, paired t-test p "
            "(harness.report.stats.paired), wins = seeds where a > b.",
        ),
    ]
    if draw:
        with figures.style():
            fig, ax = plt.subplots(figsize=(10, 3.8))
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11 the `vert` it deprecated
                warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
                sns.boxplot(data=r, x="activation", y="test_acc", hue="model", order=order, ax=ax, fliersize=2)
            ax.set(xlabel="", ylabel="test accuracy")
        blocks.append(figure(fig, out, "test_acc.png", "Test accuracy per activation and model, over seeds."))
    return blocks


def mean_tables(r: pd.DataFrame, order: list[str]) -> list:
    """A table of each measured quantity's mean, activation x model, for the claims that need one."""
    blocks = []
    for col, title, sig in [
        ("early_loss", "Train loss over the first logging window", False),
        ("dead_fraction", "Dead fraction of hidden units at the end", False),
        ("saturated_fraction", "Saturated fraction at the end", False),
        ("gap", "Generalisation gap (train acc of the last window - test acc)", False),
        ("grad_norm_global", "Global gradient norm, mean over training", True),
        (
            "clock_samples_per_s",
            "Training throughput, samples per second of CPU time (one thread; a group's time shared by its runs)",
            True,
        ),
    ]:
        if col in r:
            blocks += [
                Heading(title),
                Table(cells(r.groupby(["activation", "model"])[col].mean().unstack().reindex(order), 3, sig)),
            ]
    return blocks


def modern_activations(runs, metrics, out: Path, draw: bool = True) -> list:
    by = ["model", "dataset"]
    runs, tuning = tuned_runs(runs, [*by, "activation"], sorted(set(runs.activation)))
    acc = runs.groupby(["activation"] + by).test_acc.apply(mean_interval).unstack(by)
    comparisons = against_relu(runs, by, "test_acc")  # Holm within a setting
    write_csv(comparisons, out, "paired_vs_relu.csv")
    kept = ["activation", *by, "seed", "status", "test_acc", "test_acc_at_best_val", "dead_fraction", "samples_per_s"]
    write_csv(runs[kept], out, "summary.csv")
    shown = comparisons[
        ["activation", *by, "pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "p_t", "p_t_holm", "wins"]
    ]
    blocks = [
        *tuning,
        Heading("Test accuracy % (mean [95% CI] over seeds)"),
        Table(cells(acc)),
        Heading("Paired difference from ReLU (same seed, same data order)"),
        Table(
            cells(shown, 3, True),
            "diff: test accuracy minus ReLU's with its 95% t interval; paired t-test "
            "p, raw and Holm-corrected within a setting (harness.report.stats.compare; a diverged seed is left "
            "out); wins: seeds on which the activation beat ReLU.",
        ),
        Text(
            "Friedman test across all activations, per setting (harness.report.stats.friedman): "
            + "; ".join(friedman_lines(runs, by))
            + "."
        ),
    ]
    if draw:
        fig = paired_figure(comparisons)
        blocks.append(figure(fig, out, "paired_vs_relu.png", "Mean paired difference from ReLU per setting."))
    return blocks


def friedman_lines(runs: pd.DataFrame, by: list[str]) -> list[str]:
    """The Friedman test of each setting's activations, seeds as blocks, as one line each."""
    lines = []
    for (model, dataset), part in runs.groupby(by):
        f = stats.friedman(part.pivot_table(index="seed", columns="activation", values="test_acc").dropna())
        lines.append(
            f"{model}/{dataset}: " + (f"chi2={f['statistic']:.1f}, p={f['p']:.2g}" if f["p"] == f["p"] else f["note"])
        )
    return lines


def paired_figure(comparisons: pd.DataFrame):
    """Each activation's mean paired difference from ReLU with its interval, one dodged series per setting."""
    with figures.style():
        fig, ax = plt.subplots(figsize=(10, 4))
        settings = comparisons.model.astype(str) + "/" + comparisons.dataset.astype(str)  # no rows: no strings
        acts = sorted(comparisons.activation.unique())
        for j, (setting, part) in enumerate(comparisons.groupby(settings)):
            part = part.set_index("activation").reindex(acts)
            x = np.arange(len(acts)) + (j - (settings.nunique() - 1) / 2) * 0.18
            ax.errorbar(
                x,
                part.diff_mean,
                yerr=[part.diff_mean - part.diff_ci_low, part.diff_ci_high - part.diff_mean],
                fmt="o",
                capsize=3,
                label=setting,
            )
        ax.set_xticks(range(len(acts)), acts)
        if len(comparisons):  # runs without ReLU, or without a partner for it, have nothing to label
            ax.legend(fontsize=8)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(ylabel="test acc - ReLU's (paired by seed)", xlabel="")
    return fig
