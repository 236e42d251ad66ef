"""The static figure of the report's first screen (Markdown and the README): one panel per question."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from harness.report.figures import geometric_mean, save, style


def overview(runs: pd.DataFrame, metrics: pd.DataFrame, layers: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Accuracy per seed, validation curves, dead at init vs lost per layer, gradient norm by depth, speed."""
    acts = [a for a in colours if a in set(runs["act"])]
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
        per_seed(axes[0, 0], runs[runs["status"] == "ok"], "test_acc_at_best_val", acts, colours)
        axes[0, 0].set(title="1 accuracy (dots: seeds)", ylabel="test acc at best val")
        val = metrics[(metrics["split"] == "val") & (metrics["metric"] == "acc") & metrics["layer"].isna()]
        for (act, _), r in val.sort_values("step").groupby(["act", "seed"]):
            if act in colours:
                axes[0, 1].plot(r["step"], r["value"], color=colours[act], linewidth=1, alpha=0.8)
        axes[0, 1].set(title="2 stability (lines: seeds)", xlabel="step", ylabel="validation accuracy")
        dead_bars(axes[0, 2], layers, acts, colours)
        for act in acts:
            g = layers[layers["act"] == act].groupby(["depth", "layer"])
            for key, ls in [("grad_init", "-"), ("grad_train", "--")]:
                mean = g[key].agg(geometric_mean).reset_index()
                axes[1, 0].plot(mean["depth"], mean[key], ls, marker="o", color=colours[act], markersize=3)
        names = layers.drop_duplicates("depth").sort_values("depth")["layer"]
        axes[1, 0].set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes[1, 0].set(yscale="log", title="4 gradient flow (solid: init, dashed: training)", ylabel="‖∇W‖ (log)")
        per_seed(axes[1, 1], runs, "speed", acts, colours)
        axes[1, 1].set(title="5 cost (dots: seeds)", ylabel="training samples/s")
        axes[1, 2].axis("off")
        handles = [plt.Line2D([], [], color=colours[a], marker="o", linestyle="-") for a in acts]
        axes[1, 2].legend(handles, acts, title="activation", loc="center", frameon=False)
        return save(fig, path)


def per_seed(ax: Axes, runs: pd.DataFrame, column: str, acts: list[str], colours: dict) -> None:
    for i, act in enumerate(acts):
        y = runs.loc[runs["act"] == act, column].dropna().to_numpy()
        if len(y) == 0:
            continue
        x = i + np.linspace(-0.15, 0.15, len(y)) if len(y) > 1 else np.array([i])
        ax.scatter(x, y, color=colours[act], s=18, zorder=3)
        ax.hlines(y.mean(), i - 0.3, i + 0.3, color=colours[act], linewidth=2)
    ax.set_xticks(range(len(acts)), acts, rotation=30, ha="right")


def dead_bars(ax: Axes, layers: pd.DataFrame, acts: list[str], colours: dict) -> None:
    """Per layer, per activation: a solid bar for dead at init, a hatched one stacked on it for lost."""
    names = layers.drop_duplicates("depth").sort_values("depth")["layer"].tolist()
    width = 0.8 / max(len(acts), 1)
    for i, act in enumerate(acts):
        mean = layers[layers["act"] == act].groupby("depth")[["dead_init", "lost"]].mean().reindex(range(len(names)))
        x = np.arange(len(names)) - 0.4 + width * (i + 0.5)
        init, lost = mean["dead_init"].fillna(0).to_numpy(), mean["lost"].fillna(0).to_numpy()
        ax.bar(x, init, width, color=colours[act])
        ax.bar(x, lost, width, bottom=init, color="white", edgecolor=colours[act], hatch="///")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set(title="3 dead units (solid: at init, hatched: lost)", ylabel="fraction of the layer's units", ylim=(0, 1))
