"""What each study asks of its runs: its tables and figures, as harness.report blocks (one report pipeline).
Here dying_relu, mnist1d_baselines and vanishing_gradients; the comparisons of activations in
experiments/comparison_studies.py, the learning-rate studies in experiments/rate_studies.py; STUDIES names all."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from experiments import comparison_studies, ffn_studies, rate_studies  # noqa: E402
from experiments.study_tables import (  # noqa: E402
    by_layer,
    cells,
    figure,
    layer_index,
    mean_interval,
    training_samples,
    write_csv,
)
from harness.report import figures  # noqa: E402
from harness.report.render import Heading, Table, Text  # noqa: E402

PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "mlp_residual": 0.68, "cnn": 0.94, "gru": 0.91}  # MNIST-1D README


def with_montecarlo(table: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The born-dead table with experiments/dying_relu_montecarlo.py's figures beside it, when it has been run."""
    mc_path = out / "montecarlo.csv"
    mc = pd.read_csv(mc_path) if mc_path.exists() else None
    if mc is not None:
        table = table.merge(
            mc.rename(columns={"born_dead_fraction": "mc_fraction", "born_dead_se": "mc_se", "trials": "mc_trials"})[
                ["init", "width", "depth", "mc_fraction", "mc_se", "mc_trials"]
            ],
            on=["init", "width", "depth"],
            how="left",
        )
    return table, mc


def born_dead_figure(relu: pd.DataFrame, mc: bool, out: Path):
    """Born-dead fraction against depth per init, one line per width (dashed: the direct Monte Carlo)."""
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
                if mc:
                    ax.plot(g.depth, g.mc_fraction, color=colours[w], ls="--", alpha=0.7)
            ax.set(title=f"model.init={init}", xlabel="depth (hidden layers)", ylabel="P(born dead)")
        axes[0][0].legend(fontsize=7)
    return figure(
        fig,
        out,
        "born_dead_vs_depth.png",
        "Born-dead fraction against depth. Solid: harness (MNIST-1D inputs); dashed: direct Monte "
        "Carlo (Gaussian inputs).",
    )


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
    table, mc = with_montecarlo(r[cols].sort_values(cols[:4]).reset_index(drop=True), out)
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
        blocks.append(born_dead_figure(relu, mc is not None, out))
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


def elman_through_time(metrics: pd.DataFrame, runs: pd.DataFrame, colours: dict, out: Path) -> list:
    """The Elman RNN's ||dL/dh_t|| per time step at the first and last probe, per init (runs: run_dir, part,
    activation, init)."""
    ht = (
        metrics.merge(runs, on="run_dir").query("metric == 'grad_norm_h' and part == 'elman' and split == 'probe'")
        if len(metrics)
        else metrics
    )
    if not len(ht):
        return []
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
    return [
        Heading("Elman RNN: gradient through time"),
        figure(
            grid.figure,
            out,
            "elman_grad_through_time.png",
            "||dL/dh_t|| per time step at initialisation and at the end (the loss reads every step "
            "through the head, so the norm at t mixes the direct path and the path through time).",
        ),
    ]


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
    if draw:
        blocks += elman_through_time(metrics, r[keep], colours, out)
    return blocks


STUDIES = {
    f.__name__: f
    for f in [
        dying_relu,
        mnist1d_baselines,
        vanishing_gradients,
        comparison_studies.article_claims,
        comparison_studies.modern_activations,
        rate_studies.lr_fairness,
        rate_studies.transformer_ffn,
        ffn_studies.ffn_activations,
    ]
}
NEEDS_METRICS = {"vanishing_gradients", "article_claims", "ffn_activations"}
__all__ = ["STUDIES", "NEEDS_METRICS", "layer_index"]
