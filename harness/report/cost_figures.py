"""The cost section's figures, from the cost probe's records only (harness.report.cost): time and memory per step
relative to the baseline, and accuracy against time per step with the Pareto front marked."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from harness.report.figures import LEGEND, save, style
from harness.report.palette import looks


def panels(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, machine) pairs, one panel (or row of panels) each."""
    return sorted({(str(t), str(m)) for t, m in zip(frame["task"], frame["machine"])})


def markers(colours: dict) -> dict[str, str]:
    """Each activation's marker, as the report's other figures draw it (harness.report.palette)."""
    return {act: look.marker for act, look in looks(colours).items()}


def ratio_error(value: float, lo: float, hi: float) -> list[list[float]] | None:
    """matplotlib's (2, 1) error-bar array from an interval; None without one."""
    if math.isnan(lo) or math.isnan(hi):
        return None
    return [[max(value - lo, 0.0)], [max(hi - value, 0.0)]]


def relative_cost(table: pd.DataFrame, baseline: str, colours: dict, path: Path) -> Path:
    """Per task and machine (a row of two panels): time per training step and memory per step over the baseline's,
    dots the paired ratio, bars its 95% interval; an activation without a ratio says why on its axis label."""
    pairs, marker = panels(table), markers(colours)
    if not pairs:
        raise ValueError("no cost probe records")
    with style():
        height = 0.4 * table.groupby(["task", "machine"]).size().max() + 1.4
        fig, axes = plt.subplots(
            len(pairs), 2, figsize=(11, height * len(pairs)), squeeze=False, constrained_layout=True
        )
        for (task, where), row in zip(pairs, axes):
            rows = table[(table["task"] == task) & (table["machine"] == where)]
            acts = [a for a in colours if a in set(rows["act"])]
            for ax, (what, name) in zip(row, [("step", "time per training step"), ("memory", "memory per step")]):
                labels = []
                for y, act in enumerate(acts):
                    r = rows[rows["act"] == act].iloc[0]
                    value = 1.0 if act == baseline else float(r[f"{what}_ratio"])
                    # memory is one measurement per setting: no interval
                    lo, hi = (math.nan, math.nan) if what == "memory" else (r["step_ratio_low"], r["step_ratio_high"])
                    err = None if act == baseline else ratio_error(value, float(lo), float(hi))
                    labels.append(act if not math.isnan(value) else f"{act} (no ratio)")
                    if not math.isnan(value):
                        ax.errorbar(value, y, xerr=err, fmt=marker[act], color=colours[act], capsize=3, markersize=7)
                ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
                ax.set_yticks(range(len(acts)), labels)
                ax.invert_yaxis()
                ax.set(title=f"{task}, {where}", xlabel=f"{name} relative to {baseline} (1 = as {baseline})")
        return save(fig, path)


def accuracy_vs_cost(points: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Test accuracy at best validation (95% interval) against time per training step (median over the probe's
    rounds, 95% interval), per task and machine; the Pareto front (harness.report.cost.pareto) ringed and joined."""
    pairs, marker = panels(points), markers(colours)
    if not pairs:
        raise ValueError("no cost probe records")
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    with style():
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(4.4 * ncols + 1.8, 3.4 * nrows), squeeze=False, constrained_layout=True
        )
        for ax, (task, where) in zip(axes.flat, pairs):
            rows = points[(points["task"] == task) & (points["machine"] == where)]
            for r in rows.itertuples():
                ms = 1e3 * r.step_s
                ax.errorbar(
                    ms,
                    r.acc_mean,
                    xerr=ratio_error(ms, 1e3 * r.step_low, 1e3 * r.step_high),
                    yerr=ratio_error(r.acc_mean, r.acc_ci_low, r.acc_ci_high),
                    fmt=marker[r.act],
                    color=colours[r.act],
                    capsize=2,
                    markersize=7,
                )
            front = rows[rows["pareto"]].sort_values("step_s")
            ax.plot(1e3 * front["step_s"], front["acc_mean"], color="black", linewidth=1, drawstyle="steps-post")
            ax.scatter(1e3 * front["step_s"], front["acc_mean"], s=180, facecolors="none", edgecolors="black", zorder=5)
            ax.set(title=f"{task}, {where}", xlabel="ms per training step (cost probe; faster ←)")
            ax.set_ylabel("test accuracy at best validation")
        for ax in axes.flat[len(pairs) :]:
            ax.axis("off")
        shown = [a for a in colours if a in set(points["act"])]
        handles = [plt.Line2D([], [], marker=marker[a], linestyle="", color=colours[a]) for a in shown]
        handles.append(plt.Line2D([], [], marker="o", linestyle="-", color="black", markerfacecolor="none"))
        fig.legend(handles, [*shown, "Pareto front"], title=LEGEND, loc="outside right center")
        return save(fig, path)
