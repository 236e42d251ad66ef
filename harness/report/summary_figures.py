"""The report's figures drawn from the summary over seeds and the runs' speeds: speed relative to the baseline,
accuracy against speed, and accuracy at each setting (harness.report.figures holds the shared style and the
figures drawn from metrics.csv)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from harness.report.figures import LEGEND, save, style


def relative_speed(runs: pd.DataFrame, baseline: str, colours: dict, path: Path) -> Path:
    """Each run's samples/s over the baseline's median in the same task; bars are medians, dots single runs.
    Only tasks whose runs were all timed alike (clock, device, threads, group size) are drawn."""
    runs = runs[runs.groupby("task")["measured_as"].transform("nunique") == 1]
    if runs.empty:
        raise ValueError("no task's runs were all timed alike (clock, device, threads)")
    base = runs[runs["act"] == baseline].groupby("task")["speed"].median()
    data = runs.assign(relative=runs["speed"] / runs["task"].map(base)).dropna(subset=["relative"])
    order = [a for a in colours if a in set(data["act"])]
    with style():
        g = sns.catplot(
            data=data,
            x="relative",
            y="act",
            hue="act",
            order=order,
            hue_order=order,
            palette=colours,
            col="task",
            col_order=sorted(data["task"].unique()),
            col_wrap=min(3, data["task"].nunique()),
            kind="bar",
            estimator="median",
            errorbar=None,
            alpha=0.6,
            height=0.35 * len(order) + 1.2,
            aspect=1.6 if len(order) > 6 else 2,
            legend=False,
        )
        g.map_dataframe(sns.stripplot, x="relative", y="act", order=order, color="black", size=3, jitter=0.15)
        for ax in g.axes.flat:
            ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        g.set_titles("{col_name}")
        g.set_axis_labels(f"samples/s relative to {baseline} (1 = as fast)", "")
        return save(g.figure, path)


def accuracy_vs_speed(summary: pd.DataFrame, runs: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Mean accuracy (95% interval) against median samples/s (whiskers: slowest to fastest run), per task."""
    tasks = sorted(summary["task"].unique())
    speed = runs.groupby(["task", "act"])["speed"].agg(["median", "min", "max"])
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    with style():
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(4.2 * ncols + 1.8, 3.3 * nrows), squeeze=False, constrained_layout=True
        )
        for ax, task in zip(axes.flat, tasks):
            for r in summary[summary["task"] == task].itertuples():
                if (task, r.act) not in speed.index:
                    continue
                med, fastest, slowest = speed.loc[(task, r.act), ["median", "max", "min"]]
                xerr = [[med - slowest], [fastest - med]] if np.isfinite(med) else None
                yerr = interval_err(r.acc_mean, r.acc_ci_low, r.acc_ci_high)
                ax.errorbar(
                    med,
                    r.acc_mean,
                    xerr=xerr,
                    yerr=yerr,
                    fmt="o",
                    color=colours[r.act],
                    ecolor=colours[r.act],
                    elinewidth=1,
                    capsize=2,
                    markersize=7,
                )
            log_axis_in_thousands(ax)
            ax.set_title(task)
            ax.set_xlabel("samples/s, median (log scale; faster →)")
            ax.set_ylabel("test accuracy at best validation")
        for ax in axes.flat[len(tasks) :]:
            ax.axis("off")
        shown = [a for a in colours if a in set(summary["act"])]
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[a]) for a in shown]
        fig.legend(handles, shown, title=LEGEND, loc="outside right center")
        return save(fig, path)


def log_axis_in_thousands(ax: Axes) -> None:
    """A log x axis labelled 2k, 5k, 10k... (matplotlib's default crowds 2x10^3 3x10^3 ... into each other)."""
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    # Within a decade LogLocator falls back to linear ticks every 5k, which crowd a small panel: ask for four.
    wide = hi / max(lo, 1e-9) > 10
    ax.xaxis.set_major_locator(
        matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)) if wide else matplotlib.ticker.MaxNLocator(4)
    )
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}")
    )


def interval_err(mean: float, lo: float, hi: float) -> list[list[float]] | None:
    """matplotlib's (2, 1) error-bar array from an interval; None without one."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [[max(mean - lo, 0)], [max(hi - mean, 0)]]


def accuracy_by_setting(summary: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Accuracy at each setting per activation, with 95% intervals; the setting chosen on validation is ringed."""
    tasks = sorted(summary["task"].unique())
    acts = [a for a in colours if a in set(summary["act"])]
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
                ax.errorbar(x, r["acc_mean"], yerr=yerr, fmt="o-", color=colours[act], capsize=2, linewidth=1)
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
        handles = [plt.Line2D([], [], marker="o", color=colours[a]) for a in acts]
        fig.legend(handles, acts, title=LEGEND, loc="outside right center")
        return save(fig, path)
