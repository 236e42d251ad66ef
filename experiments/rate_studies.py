"""The studies that compare activations each at its own learning rate, tuned on the validation split:
lr_fairness (the MNIST-1D MLP over a rate grid) and transformer_ffn (Shazeer's FFN table in a small transformer)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from experiments.study_tables import (  # noqa: E402
    PAIRED_COLUMNS,
    against_relu,
    at_tuned_lr,
    cells,
    figure,
    tuned_lr,
    write_csv,
)
from harness.report import figures, stats  # noqa: E402
from harness.report.render import Heading, Table, Text  # noqa: E402

# compared with ReLU: the accuracy at the selected evaluation, and the final test loss, the analogue of the
# log-perplexity that Shazeer (2020) reports
SHAZEER_METRICS = ["test_acc_at_best_val", "test_loss"]
PAIRED_CAPTION = (
    "diff: the activation's value minus ReLU's (accuracy: higher is better; loss: lower is better) with "
    "its 95% t interval; paired t-test p, raw and Holm-corrected within a dataset and metric; wins: "
    "seeds on which the activation's value is the larger; effect_dz: Cohen's d_z, the mean "
    "difference over its sd across seeds."
)


def lr_fairness(runs, metrics, out: Path, draw: bool = True) -> list:
    r = runs.rename(columns={"config.trainer.lr": "lr"})
    choice, grid = tuned_lr(runs, ["activation"])  # the report's rule (docs/reports.md, "Choosing a setting")
    test = r[~stats.diverged(r)].groupby(["activation", "lr"]).test_acc_at_best_val.mean()  # as the report's acc
    grid = (
        grid.set_index(["activation", "lr"])
        .rename(columns={"val_acc_mean": "val", "seeds": "n"})
        .join(test.rename("test"))[["val", "test", "n", "diverged", "collapsed"]]
    )
    write_csv(grid.reset_index(), out, "summary.csv")
    fixed_lr = 0.01
    best_lr = choice.set_index("activation")["lr"]
    tuned = pd.DataFrame(
        {
            "tuned lr": best_lr,
            "val at tuned": [grid.loc[(a, lr), "val"] for a, lr in best_lr.items()],
            "test at tuned": [grid.loc[(a, lr), "test"] for a, lr in best_lr.items()],
            f"test at lr={fixed_lr}": grid.test.unstack("lr").reindex(columns=[fixed_lr])[fixed_lr],
        }
    )
    tuned["rank fixed"] = tuned[f"test at lr={fixed_lr}"].rank(ascending=False).astype("Int64")
    tuned["rank tuned"] = tuned["test at tuned"].rank(ascending=False).astype("Int64")
    tuned = tuned.sort_values("rank tuned")
    tau = kendalltau(tuned["rank fixed"], tuned["rank tuned"])
    write_csv(tuned.reset_index(), out, "tuned.csv")
    if draw:
        with figures.style():
            fig, ax = plt.subplots(figsize=(7, 4))
            sns.lineplot(
                data=r,
                x="lr",
                y="best_val_acc",
                hue="activation",
                palette=figures.palette(sorted(r.activation.unique())),
                marker="o",
                ax=ax,
            )
            ax.set(xscale="log", ylabel="best validation accuracy", xlabel="learning rate (Adam)")
    blocks = [
        Heading("Validation accuracy (best over training, mean over the seeds that did not diverge) per learning rate"),
        Table(cells(grid.val.unstack("lr"))),
        Heading("Tuned on validation, compared on test (test accuracy at the best-validation evaluation)"),
        Table(cells(tuned)),
        Text(f"Kendall tau between the fixed-rate and the tuned ranking: {tau.statistic:.2f} (p={tau.pvalue:.2g})."),
    ]
    if draw:
        blocks.append(figure(fig, out, "val_acc_vs_lr.png", "Best validation accuracy against the learning rate."))
    return blocks


def saved_per_sample(run: pd.Series, batch: int = 100) -> float:
    """Bytes autograd keeps for one training step's backward, per sample, in the model this run trained (rebuilt
    from its recorded configuration; weights drawn afresh: the count depends on shapes only)."""
    import torch

    from harness.networks.activations import activation_spec
    from harness.networks.models import build_model
    from harness.setup.config import ModelConfig
    from harness.setup.data import DATASETS
    from harness.training.bench import training_saved_bytes

    fields = {k: run[f"config.model.{k}"] for k in ModelConfig.__dataclass_fields__ if f"config.model.{k}" in run}
    m = ModelConfig(**{k: v.item() if hasattr(v, "item") else v for k, v in fields.items()})
    spec = DATASETS[run["dataset"]]
    node = {
        k.removeprefix("config.activation."): v
        for k, v in run.items()
        if k.startswith("config.activation.") and pd.notna(v)
    }
    act = activation_spec(node)
    x, y = torch.randn(batch, *spec.input_shape), torch.randint(0, spec.num_classes, (batch,))
    return training_saved_bytes(build_model(m, act, spec.input_shape, spec.num_classes), x, y)[0] / batch


def transformer_ffn(runs, metrics, out: Path, draw: bool = True) -> list:
    """Each activation at its own learning rate, chosen per dataset on validation by the report's rule
    (docs/reports.md), then paired by seed against ReLU at ReLU's own rate on accuracy and loss (stats.compare:
    Holm within a dataset and metric); the cost columns beside."""
    r = runs.assign(lr=runs["config.trainer.lr"])
    at_tuned, val = at_tuned_lr(runs, ["dataset", "activation"])
    comparisons = pd.concat(  # Holm within a dataset and metric
        [against_relu(at_tuned, ["dataset"], metric).assign(metric=metric) for metric in SHAZEER_METRICS],
        ignore_index=True,
    )[["activation", "dataset", "metric", *PAIRED_COLUMNS]]
    summary = (
        at_tuned.groupby(["dataset", "activation"])
        .agg(
            lr=("lr", "first"),
            test=("test_acc_at_best_val", "mean"),
            test_loss=("test_loss", "mean"),
            seeds=("seed", "count"),
            n_params=("n_params", "first"),
            cpu_samples_per_s=("clock_samples_per_s", "mean"),
        )
        .reset_index()
    )
    first = r.groupby(["dataset", "activation"]).head(1).set_index(["dataset", "activation"], drop=False)
    summary["saved_kb_per_sample"] = [
        saved_per_sample(first.loc[(d, a)]) / 1e3 for d, a in zip(summary.dataset, summary.activation)
    ]
    write_csv(summary, out, "summary.csv")
    write_csv(comparisons, out, "paired_vs_relu.csv")
    blocks = [
        Heading("Best validation accuracy (mean over seeds) per learning rate"),
        Table(cells(val.unstack("lr"))),
        Heading("At each activation's tuned rate: test accuracy at the best-validation evaluation, and cost"),
        Table(
            cells(summary.sort_values(["dataset", "test"], ascending=[True, False]), 3, True),
            "test_loss: the final test cross-entropy (Shazeer's table reports its analogue, the "
            "log-perplexity); cpu_samples_per_s: training samples per second of CPU time (one thread; "
            "steadier than the wall clock on a shared machine); saved_kb_per_sample: what autograd keeps "
            "for the backward of one training step, per sample, whole model "
            "(harness.training.bench.training_saved_bytes).",
        ),
        Heading("Paired difference from ReLU, each at its tuned rate (same seed)"),
        Table(cells(comparisons, 3, True), PAIRED_CAPTION),
    ]
    if draw:  # Shazeer's table as a picture: one dot per seed, each activation at its tuned rate
        order = summary.groupby("activation").test.mean().sort_values(ascending=False).index.tolist()
        blocks.append(
            figure(
                seeds_figure(at_tuned, order),
                out,
                "test_acc_at_tuned_lr.png",
                "Test accuracy per seed, each activation at its tuned learning rate, best first.",
            )
        )
    return blocks


def seeds_figure(at_tuned: pd.DataFrame, order: list[str]):
    """One dot per seed of each activation's test accuracy at its tuned rate, a panel per dataset."""
    with figures.style():
        grid = sns.catplot(
            data=at_tuned,
            x="test_acc_at_best_val",
            y="activation",
            col="dataset",
            order=order,
            hue="activation",
            palette=figures.palette(order),
            kind="strip",
            height=3.5,
            aspect=1.2,
            sharex=False,
            legend=False,
        )
        grid.set_axis_labels("test accuracy at best validation", "")
    return grid.figure
