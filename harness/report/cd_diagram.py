"""Demšar's (2006) critical-difference diagram of average ranks across tasks."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.report.figures import save, style
from harness.report.palette import looks


def critical_difference(ranks: pd.DataFrame, cd: float, colours: dict, path: Path) -> Path:
    """Demšar's critical-difference diagram: average ranks on a line; a bar joins activations whose ranks
    differ by less than the critical difference (not significantly different by the Nemenyi test)."""
    r = ranks.set_index("act")["mean_rank"].sort_values()
    k, bars = len(r), cliques(r.to_numpy(), cd)
    half = math.ceil(k / 2)  # the better half is labelled on the left, the worse on the right
    first = -0.45 - 0.2 * len(bars)  # label rows start below the bars
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.3 * half + 0.15 * len(bars)))
        ax.hlines(0, 1, k, color="black", linewidth=1)
        for i in range(1, k + 1):
            ax.vlines(i, 0, 0.12, color="black")
            ax.text(i, 0.2, str(i), ha="center", va="bottom")
        ax.hlines(0.75, 1, 1 + cd, color="black", linewidth=2)
        ax.vlines([1, 1 + cd], 0.68, 0.82, color="black")
        ax.text(1 + cd / 2, 0.85, f"critical difference = {cd:.2f}", ha="center", va="bottom")
        for i, (act, rank) in enumerate(r.items()):
            left = i < half
            y = first - 0.35 * (i if left else k - 1 - i)
            end = 0.6 if left else k + 0.4
            ax.plot([rank, rank, end], [0, y, y], color=colours[act], linestyle=looks(colours)[act].linestyle, lw=1.5)
            ax.text(
                end - 0.05 if left else end + 0.05,
                y,
                f"{act} ({rank:.2f})",
                ha="right" if left else "left",
                va="center",
                color=colours[act],
                fontweight="bold",
            )
        for j, (lo, hi) in enumerate(bars):
            ax.hlines(-0.25 - 0.2 * j, r.iloc[lo] - 0.05, r.iloc[hi] + 0.05, color="black", linewidth=4)
        ax.set_xlim(0.5, k + 0.5)
        ax.set_ylim(first - 0.35 * (half - 1) - 0.3, 1.2)
        ax.set_title(
            "average rank across tasks (1 = best); a black bar joins activations that do not differ significantly",
            fontsize=9,
        )
        ax.axis("off")
        return save(fig, path)


def cliques(sorted_ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs i..j of sorted average ranks spanning less than cd (the bars of a CD diagram)."""
    spans: list[tuple[int, int]] = []
    for i in range(len(sorted_ranks)):
        j = i
        while j + 1 < len(sorted_ranks) and sorted_ranks[j + 1] - sorted_ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in spans):
            spans.append((i, j))
    return spans
