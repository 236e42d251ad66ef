"""The report's figures drawn from the summary over seeds: accuracy at each setting (harness.report.figures holds
the shared style and the figures drawn from metrics.csv; harness.report.cost_figures the cost probe's)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.report.figures import LEGEND, save, style
from harness.report.palette import looks


def interval_err(
    mean: float, lo: float, hi: float, bounds: tuple[float, float] = (0.0, 1.0)
) -> list[list[float]] | None:
    """matplotlib's (2, 1) error-bar array from an interval clipped to the metric's range (an accuracy's: [0, 1]);
    None without one."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return [[max(mean - lo, 0)], [max(hi - mean, 0)]]


def accuracy_by_setting(summary: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Accuracy at each setting per activation, with 95% intervals; the setting chosen on validation is ringed."""
    tasks = sorted(summary["task"].unique())
    acts = [a for a in colours if a in set(summary["act"])]
    look = looks(colours)
    ncols = min(2, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    with style():
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(6.2 * ncols + 1.6, 3.6 * nrows), squeeze=False, constrained_layout=True
        )
        for ax, task in zip(axes.flat, tasks):
            rows = summary[summary["task"] == task].sort_values(["lr", "setting"])
            settings = list(pd.unique(rows["setting"]))
            for i, act in enumerate(acts):
                r = rows[rows["act"] == act]
                x = np.array([settings.index(v) for v in r["setting"]]) + 0.08 * (i - (len(acts) - 1) / 2)
                yerr = (
                    np.array(
                        [
                            interval_err(m, lo, hi) or [[0], [0]]
                            for m, lo, hi in zip(r["acc_mean"], r["acc_ci_low"], r["acc_ci_high"])
                        ]
                    )
                    .reshape(-1, 2)
                    .T
                )
                ax.errorbar(
                    x,
                    r["acc_mean"],
                    yerr=yerr,
                    marker=look[act].marker,
                    linestyle=look[act].linestyle,
                    color=colours[act],
                    capsize=2,
                    linewidth=1,
                )
                best = r["chosen"].to_numpy(dtype=bool)
                ax.scatter(
                    x[best],
                    r["acc_mean"][best],
                    s=160,
                    facecolors="none",
                    edgecolors=[colours[act]],
                    linewidths=1.8,
                    zorder=5,
                )
            ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right")
            ax.set(title=task, ylabel="test accuracy at best validation")
        for ax in axes.flat[len(tasks) :]:
            ax.axis("off")
        handles = [
            plt.Line2D([], [], marker=look[a].marker, linestyle=look[a].linestyle, color=colours[a]) for a in acts
        ]
        fig.legend(handles, acts, title=LEGEND, loc="outside right center")
        return save(fig, path)
