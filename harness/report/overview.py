"""The static figure of the report's first screen (Markdown and the README): one panel per question."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from harness.report.axes import fraction_limits, geometric_mean
from harness.report.figures import save, style
from harness.report.palette import looks


def overview(
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    layers: pd.DataFrame,
    colours: dict,
    path: Path,
    cost: pd.DataFrame | None = None,
) -> Path:
    """Accuracy per seed, validation curves, dead at init vs lost per layer, gradient norm by depth, and time per
    step from the cost probe (harness.report.cost.cost_table's rows of the task; never the runs' own timing)."""
    acts = [a for a in colours if a in set(runs["act"])]
    look = looks(colours)
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
        per_seed(axes[0, 0], runs[runs["status"] == "ok"], "test_acc_at_best_val", acts, colours)
        axes[0, 0].set(title="1 accuracy (dots: seeds)", ylabel="test acc at best val")
        val = metrics[(metrics["split"] == "val") & (metrics["metric"] == "acc") & metrics["layer"].isna()]
        for (act, _), r in val.sort_values("step").groupby(["act", "seed"]):
            if act in colours:
                axes[0, 1].plot(
                    r["step"], r["value"], color=colours[act], linestyle=look[act].linestyle, linewidth=1, alpha=0.8
                )
        axes[0, 1].set(title="2 stability (lines: seeds)", xlabel="step", ylabel="validation accuracy")
        dead_bars(axes[0, 2], layers, acts, colours)
        for act in acts:  # each activation in its own line style; the phase by weight (faint: at init)
            g = layers[layers["act"] == act].groupby(["depth", "layer"])
            for key, alpha, width in [("grad_init", 0.4, 1.0), ("grad_train", 1.0, 1.8)]:
                mean = g[key].agg(geometric_mean).reset_index()
                axes[1, 0].plot(
                    mean["depth"],
                    mean[key],
                    color=colours[act],
                    linestyle=look[act].linestyle,
                    marker=look[act].marker,
                    markersize=3,
                    alpha=alpha,
                    linewidth=width,
                )
        names = layers.drop_duplicates("depth").sort_values("depth")["layer"]
        axes[1, 0].set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes[1, 0].set(yscale="log", title="4 gradient flow (faint: init, bold: training)", ylabel="‖∇W‖ (log)")
        step_times(axes[1, 1], cost if cost is not None else pd.DataFrame(), acts, colours)
        axes[1, 2].axis("off")
        handles = [
            plt.Line2D([], [], color=colours[a], marker=look[a].marker, linestyle=look[a].linestyle) for a in acts
        ]
        axes[1, 2].legend(handles, acts, title="activation", loc="center", frameon=False)
        return save(fig, path)


def per_seed(ax: Axes, runs: pd.DataFrame, column: str, acts: list[str], colours: dict) -> None:
    for i, act in enumerate(acts):
        y = runs.loc[runs["act"] == act, column].dropna().to_numpy()
        if len(y) == 0:
            continue
        x = i + np.linspace(-0.15, 0.15, len(y)) if len(y) > 1 else np.array([i])
        ax.scatter(x, y, color=colours[act], marker=looks(colours)[act].marker, s=18, zorder=3)
        ax.hlines(y.mean(), i - 0.3, i + 0.3, color=colours[act], linewidth=2)
    ax.set_xticks(range(len(acts)), acts, rotation=30, ha="right")


def step_times(ax: Axes, cost: pd.DataFrame, acts: list[str], colours: dict) -> None:
    """Per activation, the cost probe's median time per training step and its 95% interval; the first machine's
    markers filled, any other's hollow (log scale: a GPU and a CPU differ by decades)."""
    ax.set(title="5 cost (cost probe)", ylabel="ms per training step")
    if cost.empty:
        ax.text(0.5, 0.5, "no cost probe records", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        return
    machines = sorted(cost["machine"].unique())
    marker = {act: look.marker for act, look in looks(colours).items()}
    for i, act in enumerate(acts):
        for j, where in enumerate(machines):
            r = cost[(cost["act"] == act) & (cost["machine"] == where)]
            if r.empty:
                continue
            ms, low, high = (1e3 * float(r[c].iloc[0]) for c in ("step_s", "step_low", "step_high"))
            err = None if np.isnan(low) else [[ms - low], [high - ms]]
            x = i + 0.15 * (j - (len(machines) - 1) / 2)
            face = colours[act] if j == 0 else "none"
            ax.errorbar(x, ms, yerr=err, fmt=marker[act], color=colours[act], markerfacecolor=face, capsize=2)
    if len(machines) > 1:
        ax.set_yscale("log")
        where = f"filled: {machines[0]}\nhollow: {', '.join(machines[1:])}"
        ax.text(0.02, 0.98, where, fontsize=7, va="top", transform=ax.transAxes)
    ax.set_xticks(range(len(acts)), acts, rotation=30, ha="right")


def dead_bars(ax: Axes, layers: pd.DataFrame, acts: list[str], colours: dict) -> None:
    """Per layer, per activation: a solid bar for dead at init, a hatched one stacked on it for lost."""
    names = layers.drop_duplicates("depth").sort_values("depth")["layer"].tolist()
    width = 0.8 / max(len(acts), 1)
    tops = [np.zeros(0)]
    for i, act in enumerate(acts):
        mean = layers[layers["act"] == act].groupby("depth")[["dead_init", "lost"]].mean().reindex(range(len(names)))
        x = np.arange(len(names)) - 0.4 + width * (i + 0.5)
        init, lost = mean["dead_init"].fillna(0).to_numpy(), mean["lost"].fillna(0).to_numpy()
        ax.bar(x, init, width, color=colours[act])
        ax.bar(x, lost, width, bottom=init, color="white", edgecolor=colours[act], hatch="///")
        tops.append(init + lost)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ylim = fraction_limits(np.concatenate(tops), floor=True)  # fitted: a few percent fill the panel
    ax.set(title="3 dead units (solid: at init, hatched: lost)", ylabel="fraction of the layer's units", ylim=ylim)
