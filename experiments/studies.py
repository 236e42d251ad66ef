"""What each study asks of its runs: its tables and figures, as harness.report blocks (one report pipeline)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from experiments import rate_studies  # noqa: E402
from experiments.study_tables import (  # noqa: E402
    by_layer,
    cells,
    figure,
    layer_index,
    mean_interval,
    paired_table,
    training_samples,
    tuned_runs,
    variant,
    write_csv,
)
from harness.report import figures, stats  # noqa: E402
from harness.report.render import Heading, Table, Text  # noqa: E402

PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "mlp_residual": 0.68, "cnn": 0.94, "gru": 0.91}  # MNIST-1D README
PAIRED = ["pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "p_t", "wins"]  # the columns the tables show
ARTICLE = ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "rrelu", "relu6"]


def dying_relu(runs, metrics, out: Path, draw: bool = True) -> list:
    r = runs.rename(columns={"config.model.init": "init", "config.model.width": "width", "config.model.depth": "depth"})
    cols = [
        "activation",
        "init",
        "width",
        "depth",
        "init_trials",
        "born_dead_fraction",
        "born_dead_se",
        "init_dead_fraction_mean",
    ]
    table = r[cols].sort_values(cols[:4]).reset_index(drop=True)
    mc_path = out / "montecarlo.csv"  # experiments/dying_relu_montecarlo.py, when it has been run
    mc = pd.read_csv(mc_path) if mc_path.exists() else None
    if mc is not None:
        table = table.merge(
            mc.rename(columns={"born_dead_fraction": "mc_fraction", "born_dead_se": "mc_se", "trials": "mc_trials"})[
                ["init", "width", "depth", "mc_fraction", "mc_se", "mc_trials"]
            ],
            on=["init", "width", "depth"],
            how="left",
        )
    write_csv(table, out, "summary.csv")
    blocks = [
        Heading("Born-dead fraction of ReLU MLPs (MNIST-1D probe inputs)"),
        Text(
            "Fraction of initialisations with some hidden layer dead for all probe inputs (± binomial "
            "standard error). Rows: width; columns: depth."
        ),
    ]
    relu, leaky = table[table.activation == "relu"], table[table.activation == "leaky_relu"]
    for init, part in relu.groupby("init"):
        cell = part.assign(v=[f"{p:.2f} ± {s:.2f}" for p, s in zip(part.born_dead_fraction, part.born_dead_se)])
        blocks.append(
            Table(
                cells(cell.pivot(index="width", columns="depth", values="v")),
                f"model.init={init} (harness, {int(part.init_trials.iloc[0])} initialisations per cell)",
            )
        )
        if mc is not None and part["mc_fraction"].notna().any():
            blocks.append(
                Table(
                    cells(part.pivot(index="width", columns="depth", values="mc_fraction"), 2),
                    f"Direct Monte Carlo (experiments/dying_relu_montecarlo.py, Gaussian inputs, "
                    f"{int(part.mc_trials.max())} networks per cell)",
                )
            )
    if len(leaky):
        blocks.append(
            Text(
                f"Leaky ReLU control: {len(leaky)} configurations, {int(leaky.init_trials.sum())} "
                f"initialisations in all, largest born-dead fraction {leaky.born_dead_fraction.max():.3f}, "
                f"largest mean dead-unit fraction {leaky.init_dead_fraction_mean.max():.3f}."
            )
        )
    deepest = r[(r.activation == "relu") & (r.depth == r.depth.max())]
    if len(deepest):
        blocks += [
            Heading(f"Where they die: the first all-dead layer at depth {deepest.depth.iloc[0]}"),
            Table(
                cells(first_dead_layer(deepest).unstack("init"), 1),
                "Mean over the born-dead initialisations of the first hidden layer (1 = the first) with "
                "every unit dead for every probe input; blank where none was born dead.",
            ),
        ]
    if draw:
        with figures.style():
            fig, axes = plt.subplots(
                1, relu.init.nunique(), figsize=(5.5 * relu.init.nunique(), 4), sharey=True, squeeze=False
            )
            colours = dict(zip(sorted(relu.width.unique()), sns.color_palette("viridis", relu.width.nunique())))
            for ax, (init, part) in zip(axes[0], relu.groupby("init")):
                for w, g in part.groupby("width"):
                    ax.errorbar(
                        g.depth,
                        g.born_dead_fraction,
                        yerr=g.born_dead_se,
                        color=colours[w],
                        marker="o",
                        label=f"width {w}",
                    )
                    if mc is not None:
                        ax.plot(g.depth, g.mc_fraction, color=colours[w], ls="--", alpha=0.7)
                ax.set(title=f"model.init={init}", xlabel="depth (hidden layers)", ylabel="P(born dead)")
            axes[0][0].legend(fontsize=7)
        blocks.append(
            figure(
                fig,
                out,
                "born_dead_vs_depth.png",
                "Born-dead fraction against depth. Solid: harness (MNIST-1D inputs); dashed: direct Monte "
                "Carlo (Gaussian inputs).",
            )
        )
    return blocks


def first_dead_layer(runs: pd.DataFrame) -> pd.Series:
    """Mean 1-based index of the first all-dead layer over each run's born-dead initialisations, by init x width
    (from the `born_dead_first_layer.hidden.K` counts of its summary)."""
    cols = [c for c in runs.columns if c.startswith("born_dead_first_layer.")]
    counts = runs[cols].fillna(0).to_numpy()
    layer = np.array([layer_index(c.removeprefix("born_dead_first_layer.")) + 1 for c in cols])
    mean = (counts * layer).sum(axis=1) / np.where(counts.sum(axis=1) > 0, counts.sum(axis=1), np.nan)
    return pd.Series(mean, index=pd.MultiIndex.from_frame(runs[["width", "init"]]), name="first dead layer")


def baseline_name(row) -> str:
    if row["config.model.name"] == "mlp":
        return (
            "logistic" if row["config.model.depth"] == 0 else "mlp_residual" if row["config.model.residual"] else "mlp"
        )
    return {"cnn": "cnn", "rnn": "gru"}[row["config.model.name"]]


def group_sizes(runs: pd.DataFrame) -> pd.Series:
    """Runs trained together in each run's job: its group's size, 1 for a one-job run (or one from before groups)."""
    return runs["group.size"].fillna(1) if "group.size" in runs else pd.Series(1, index=runs.index)


def mnist1d_baselines(runs, metrics, out: Path, draw: bool = True) -> list:
    r = runs.assign(baseline=runs.apply(baseline_name, axis=1), train_n=training_samples(runs))
    rows = []
    for (train_n, name), g in sorted(
        r.groupby(["train_n", "baseline"]), key=lambda kv: (-kv[0][0], list(PUBLISHED).index(kv[0][1]))
    ):
        rows.append(
            {
                "model": name,
                "train samples": train_n,
                "seeds": len(g),
                "steps": int(g.steps.max()),
                "test acc % (final)": mean_interval(g.test_acc),
                "test acc % (at best val)": mean_interval(g.test_acc_at_best_val),
                "published %": f"{100 * PUBLISHED[name]:.0f}",
                "gap (final - published)": f"{100 * (g.test_acc.mean() - PUBLISHED[name]):+.1f}",
                "train time s": f"{g.train_time_s.mean():.1f}",
                "runs per job": f"{group_sizes(g).mean():.0f}",
            }
        )
    table = pd.DataFrame(rows)
    write_csv(table, out, "summary.csv")
    if draw:
        with figures.style():
            fig, ax = plt.subplots(figsize=(7, 3.5))
            order = [n for n in PUBLISHED if n in set(r.baseline)]
            sns.stripplot(data=r, x="baseline", y="test_acc", hue="train_n", order=order, ax=ax, size=5, dodge=True)
            ax.scatter(
                range(len(order)), [PUBLISHED[n] for n in order], marker="_", s=900, color="red", label="published"
            )
            ax.set(ylabel="test accuracy", xlabel="")
            ax.legend(fontsize=8)
    blocks = [
        Heading("Accuracy beside the published baselines"),
        Text(
            "Published: github.com/greydanus/mnist1d README (logistic 32%, MLP 68%, CNN 94%, GRU 91%). Ours: "
            "mean [95% CI] over seeds; final is the test accuracy after the last step, at best val the test "
            "accuracy at the evaluation with the best validation accuracy. train time: the training of one "
            "job, which for a group trains all its runs at once (runs per job; docs/grouped.md)."
        ),
        Table(cells(table)),
    ]
    if draw:
        blocks.append(figure(fig, out, "baselines.png", "Test accuracy per seed beside the published baselines."))
    return blocks


def vanishing_gradients(runs, metrics, out: Path, draw: bool = True) -> list:
    r = runs.rename(columns={"config.model.init": "init", "config.trainer.lr": "lr"})
    r["part"] = r["config.model.name"].map({"mlp": "mlp10", "rnn": "elman"})
    keep = ["run_dir", "part", "activation", "init"]
    acc = r.pivot_table(index=["part", "activation", "lr"], columns="init", values="test_acc", aggfunc="mean")
    main_lr = r["lr"].mode().iloc[0]  # the study's own rate; other rates only enter the accuracy table
    r = r[r["lr"] == main_lr]
    init_norms = by_layer(r, "grad_norm_init", keep).query("layer != 'head'")
    ratio = init_norms.pivot_table(index="run_dir", columns="depth", values="value")
    mlp = r[r.part == "mlp10"].set_index("run_dir")
    mlp = mlp.join((ratio.loc[mlp.index, 0] / ratio.loc[mlp.index, ratio.columns.max()]).rename("ratio"))
    blocks = [
        Heading("Test accuracy (final)"),
        Table(cells(acc)),
        Text(f"Every table and figure below is at the study's learning rate, {main_lr:g}."),
        Heading("10-layer MLP: gradient norm of the first hidden layer / the last, at initialisation"),
        Table(cells(mlp.pivot_table(index="activation", columns="init", values="ratio"), 3, True)),
        Heading("10-layer MLP: saturated fraction of all hidden units at the end of training"),
        Table(cells(mlp.pivot_table(index="activation", columns="init", values="saturated_fraction"))),
        Heading("10-layer MLP: dead fraction at the end of training"),
        Table(cells(mlp.pivot_table(index="activation", columns="init", values="dead_fraction"))),
    ]
    write_csv(
        mlp.reset_index()[
            keep + ["seed", "status", "test_acc", "dead_fraction", "saturated_fraction", "grad_norm_global", "ratio"]
        ],
        out,
        "summary.csv",
    )
    colours = figures.palette(sorted(r.activation.unique()))
    for key, title in [("grad_norm_init", "at initialisation"), ("grad_norm", "mean over training")][: 2 * draw]:
        g = by_layer(r[r.part == "mlp10"], key, keep).query("layer != 'head'")
        with figures.style():
            grid = sns.relplot(
                data=g,
                x="depth",
                y="value",
                hue="activation",
                palette=colours,
                col="init",
                kind="line",
                marker="o",
                height=2.8,
                aspect=1.0,
            )
            grid.set(yscale="log", xlabel="hidden layer", ylabel="||dL/dW||")
        blocks.append(
            figure(
                grid.figure, out, f"mlp_{key}_by_layer.png", f"10-layer MLP: weight-gradient norm per layer, {title}."
            )
        )
    ht = (
        metrics.merge(r[keep], on="run_dir").query("metric == 'grad_norm_h' and part == 'elman' and split == 'probe'")
        if len(metrics)
        else metrics
    )
    if draw and len(ht):
        steps = sorted(ht.step.unique())
        ht = ht[ht.step.isin([steps[0], steps[-1]])].assign(
            when=lambda d: np.where(d.step == steps[0], "init", f"end (step {steps[-1]})")
        )
        with figures.style():
            grid = sns.relplot(
                data=ht,
                x="t",
                y="value",
                hue="activation",
                palette=colours,
                col="init",
                row="when",
                kind="line",
                height=2.5,
                aspect=1.1,
            )
            grid.set(yscale="log", xlabel="time step t", ylabel="||dL/dh_t||")
        blocks += [
            Heading("Elman RNN: gradient through time"),
            figure(
                grid.figure,
                out,
                "elman_grad_through_time.png",
                "||dL/dh_t|| per time step at initialisation and at the end (the loss reads every step "
                "through the head, so the norm at t mixes the direct path and the path through time).",
            ),
        ]
    return blocks


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


def modern_activations(runs, metrics, out: Path, draw: bool = True) -> list:
    by = ["model", "dataset"]
    runs, tuning = tuned_runs(runs, [*by, "activation"], sorted(set(runs.activation)))
    acc = runs.groupby(["activation"] + by).test_acc.apply(mean_interval).unstack(by)
    rows, friedman = [], []
    for (model, dataset), part in runs.groupby(by):
        family = [a for a in sorted(set(part.activation) - {"relu"})]
        compared = pd.DataFrame(
            [
                {"activation": a, "model": model, "dataset": dataset, **paired_table(part, "test_acc", a, "relu")}
                for a in family
            ],
            columns=["activation", "model", "dataset", *PAIRED],
        )
        compared["p_t_holm"] = stats.holm(compared["p_t"]) if len(compared) else []  # within a setting
        rows.append(compared)
        wide = part.pivot_table(index="seed", columns="activation", values="test_acc").dropna()
        f = stats.friedman(wide)  # seeds as blocks, activations as treatments
        friedman.append(
            f"{model}/{dataset}: " + (f"chi2={f['statistic']:.1f}, p={f['p']:.2g}" if f["p"] == f["p"] else f["note"])
        )
    comparisons = pd.concat(rows, ignore_index=True)
    write_csv(comparisons, out, "paired_vs_relu.csv")
    write_csv(
        runs[
            [
                "activation",
                "model",
                "dataset",
                "seed",
                "status",
                "test_acc",
                "test_acc_at_best_val",
                "dead_fraction",
                "samples_per_s",
            ]
        ],
        out,
        "summary.csv",
    )
    shown = comparisons[
        [
            "activation",
            "model",
            "dataset",
            "pairs",
            "diff_mean",
            "diff_ci_low",
            "diff_ci_high",
            "p_t",
            "p_t_holm",
            "wins",
        ]
    ]
    if draw:
        with figures.style():
            fig, ax = plt.subplots(figsize=(10, 4))
            settings = comparisons.model + "/" + comparisons.dataset
            acts = sorted(comparisons.activation.unique())
            for j, (setting, part) in enumerate(comparisons.groupby(settings)):  # one dodged series per setting
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
            ax.legend(fontsize=8)
            ax.axhline(0, color="k", lw=0.8)
            ax.set(ylabel="test acc - ReLU's (paired by seed)", xlabel="")
    blocks = [
        *tuning,
        Heading("Test accuracy % (mean [95% CI] over seeds)"),
        Table(cells(acc)),
        Heading("Paired difference from ReLU (same seed, same data order)"),
        Table(
            cells(shown, 3, True),
            "diff: test accuracy minus ReLU's with its 95% t interval; paired t-test "
            "p, raw and Holm-corrected within a setting; wins: seeds on which the "
            "activation beat ReLU.",
        ),
        Text(
            "Friedman test across all activations, per setting (harness.report.stats.friedman): "
            + "; ".join(friedman)
            + "."
        ),
    ]
    if draw:
        blocks.append(figure(fig, out, "paired_vs_relu.png", "Mean paired difference from ReLU per setting."))
    return blocks


STUDIES = {
    f.__name__: f
    for f in [
        dying_relu,
        mnist1d_baselines,
        vanishing_gradients,
        article_claims,
        modern_activations,
        rate_studies.lr_fairness,
        rate_studies.transformer_ffn,
    ]
}
NEEDS_METRICS = {"vanishing_gradients", "article_claims"}
__all__ = ["STUDIES", "NEEDS_METRICS", "layer_index"]
