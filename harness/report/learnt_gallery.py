"""The learnt shapes: f and f' of each learnable activation at initialisation and after training, rebuilt from the
parameters its runs recorded (summary.json's activation_params_init and activation_params_final,
harness/networks/learnt.py): a fresh module of the activation, the recorded values loaded into it, evaluated on a
grid in float64. An activation with parameters per unit (the spline) is drawn as the pointwise median over the
layer's units, with the band from the 10th to the 90th percentile over units around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from harness.networks import learnt
from harness.networks.activations import grid_input, make_activation
from harness.networks.gated import expansion
from harness.records.results import atomic_write
from harness.report.gallery import broken_at_jumps

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import ColorType

Z = torch.linspace(-5.0, 5.0, 501, dtype=torch.float64)  # the gallery's range (harness.report.gallery.PLOT_RANGE)
BAND = (10, 90)  # percentiles over units drawn around a per-unit activation's median
MAX_LAYERS = 4  # panels per row: the first layers


@dataclass
class Shape:
    """f and f' on Z of one layer's activation: (units, n) each; one row unless its parameters are per unit."""

    f: np.ndarray
    df: np.ndarray


def shape(name: str, params: dict, recorded: dict[str, list]) -> Shape:
    """The activation `name` (its configured parameters) with one layer's recorded parameters, on Z."""
    act = learnt.load_parameters(make_activation(name, **params), learnt.one_module(recorded)).eval()
    x = grid_input(act, Z).detach().clone().requires_grad_(True)
    f = act(x)
    (df,) = torch.autograd.grad(f.sum(), x)  # elementwise per unit: each element's own derivative
    f2, df2 = (t.detach().reshape(len(Z), -1).T.numpy() for t in (f, df))
    return Shape(f2, df2)


@dataclass
class Panel:
    """One learnable activation in one task and layer: its shape at initialisation and each run's at the end."""

    label: str
    title: str
    init: Shape
    final: list[Shape]


def panels(items: list[tuple[str, str, dict]], runs: list[tuple[str, str, dict]]) -> list[list[Panel]]:
    """Rows of panels, one row per (learnable activation, task), one panel per layer (the first MAX_LAYERS).
    items: the report's (label, name, parameters); runs: (label, task, summary) of the runs to draw."""
    rows = []
    for label, name, params in items:
        if expansion(make_activation(name, **params)) == 2:
            continue  # a gated unit has no learnt parameters here
        mine = [(task, s) for lab, task, s in runs if lab == label and s.get("activation_params_final")]
        for task in sorted({task for task, _ in mine}):
            summaries = [s for t, s in mine if t == task]
            first = next((s["activation_params_init"] for s in summaries if s.get("activation_params_init")), None)
            if first is None:
                continue
            row = [
                Panel(label, f"{label}, {task}, {layer}", shape(name, params, first[layer]),
                      [shape(name, params, s["activation_params_final"][layer]) for s in summaries])
                for layer in list(first)[:MAX_LAYERS]
            ]  # fmt: skip
            rows.append(row)
    return rows


def draw_shape(ax: Axes, s: Shape, colour: ColorType, width: float, alpha: float, band: bool) -> None:
    """f solid and f' dashed; per unit: the median over units, and the band around it where asked."""
    z = Z.numpy()
    for values, style in ((s.f, "-"), (s.df, "--")):
        middle = np.median(values, axis=0)
        middle = broken_at_jumps(middle) if style == "--" else middle  # no vertical wall at PReLU's kink
        ax.plot(z, middle, color=colour, linewidth=width, linestyle=style, alpha=alpha)
        if band and len(values) > 1:
            lo, hi = np.percentile(values, BAND, axis=0)
            ax.fill_between(z, lo, hi, color=colour, alpha=0.15, linewidth=0)


def plot_learnt(rows: list[list[Panel]], path: Path, colours: dict) -> Path:
    """Each row's panels: at initialisation (black) and after training (the activation's colour, one line per run),
    f solid and f' dashed."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ncols = max(len(r) for r in rows)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        fig, axes = plt.subplots(
            len(rows), ncols, figsize=(3.0 * ncols, 2.4 * len(rows) + 0.5), squeeze=False, constrained_layout=True
        )
        for ax_row, row in zip(axes, rows):
            for ax, panel in zip(ax_row, row):
                ax.axhline(0, color="black", linewidth=0.6)
                colour = colours.get(panel.label, "C0")
                for i, s in enumerate(panel.final):
                    draw_shape(ax, s, colour, 1.4, 0.6, band=i == 0)
                draw_shape(ax, panel.init, "black", 1.0, 0.9, band=True)
                ax.set_title(panel.title, fontsize=9)
            for ax in ax_row[len(row) :]:
                ax.axis("off")
        handles = [plt.Line2D([], [], color="black"), plt.Line2D([], [], color="C0"),
                   plt.Line2D([], [], color="0.3", linestyle="--")]  # fmt: skip
        labels = ["at initialisation", "after training (one line per run)", "f' (dashed)"]
        fig.legend(handles, labels, loc="outside upper center", ncols=3, frameon=False)
        try:
            atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"), binary=True)
        finally:
            plt.close(fig)
    return path


def learnt_job(items: list[tuple[str, str, dict]], tuned: pd.DataFrame, colours: dict) -> Callable[[Path], Path] | None:
    """The report's figure job (path -> path) for its learnable activations at their chosen setting (tuned: a row
    per run with its act, task and run_dir), or None when none of them has recorded parameters."""
    from harness.records.results import read_summary

    learnable = {label for label, _, _ in items}
    runs = [
        (r.act, r.task, read_summary(r.run_dir)) for r in tuned.itertuples() if r.act in learnable
    ]  # fmt: skip
    rows = panels(items, runs)
    if not rows:
        return None
    return lambda p: plot_learnt(rows, p, colours)
