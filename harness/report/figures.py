"""Seaborn figures of a report; every figure colours an activation the same way."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
import seaborn as sns

from harness.records.results import atomic_write
from harness.report.axes import (
    clip_bands,
    fit_axes,
    fit_fraction_axes,
    fraction_interval,
    fraction_limits,
    geometric_mean,
    log_interval,
    nonnegative_interval,
    plotted_y,
    t_interval,
)
from harness.report.palette import looks
from harness.report.palette import palette as palette  # every figure's caller takes it from here too

DPI = 110
LEGEND = "activation"
WRAP = 3  # panels per row of a per-layer figure
Interval = Callable[[npt.ArrayLike], tuple[float, float]]  # the band drawn around a mean, from the seeds' values


@contextmanager
def style() -> Iterator[None]:
    """Seaborn's look for our figures only: a notebook user's own rcParams are left alone."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        yield


def line_styles(colours: dict, acts: list[str], markers: bool = False) -> dict:
    """seaborn's style arguments that give each activation its palette's line style (and marker): with the hue,
    every activation of a figure is told apart twice over (harness.report.palette)."""
    look = looks(colours)
    return {
        "style": "act",
        "style_order": acts,
        "dashes": {a: look[a].dashes for a in acts},
        "markers": {a: look[a].marker for a in acts} if markers else False,
    }


def save(fig: plt.Figure, path: Path) -> Path:
    """The figure as a PNG, written atomically (a symlink at path is refused, never written through)."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight"), binary=True)
    finally:
        plt.close(fig)
    return path


def layer_order(frame: pd.DataFrame) -> list[str]:
    """Layers by depth: the order in which a run logged them first (the model's order)."""
    return list(pd.unique(frame.sort_values("step", kind="stable")["layer"].dropna()))


def curves(
    data: pd.DataFrame,
    colours: dict,
    *,
    row: str,
    col: str,
    x: str = "step",
    y: str = "value",
    col_order: list[str] | None = None,
    row_order: list[str] | None = None,
    sharex: bool | str = True,
    sharey: bool = False,
    log: bool = False,
    errorbar: Interval = t_interval,
    height: float = 2.6,
) -> sns.FacetGrid:
    """Mean lines with a 95% band across seeds on a row x col grid, rows named on the left, legend on the right.

    log=True: a log axis, with the geometric mean and its interval on the log scale.
    """
    hue_order = [a for a in colours if a in set(data["act"])]
    g = sns.relplot(
        data=data,
        x=x,
        y=y,
        hue="act",
        hue_order=hue_order,
        palette=colours,
        row=row,
        col=col,
        row_order=row_order,
        col_order=col_order,
        kind="line",
        estimator=geometric_mean if log else "mean",
        errorbar=log_interval if log else errorbar,
        height=height,
        aspect=1.35,
        facet_kws={"sharey": sharey, "sharex": sharex},
        **line_styles(colours, hue_order),
    )
    for ax in g.axes.flat:  # column names once, on top; row names as the first column's y label
        ax.set_title("")
    for ax, name in zip(g.axes[0], col_order or g.col_names or [""]):
        ax.set_title(name)
    for ax, name in zip(g.axes[:, 0], row_order or g.row_names or [""]):
        ax.set_ylabel(name)
    if log:
        g.set(yscale="log")
    g.legend.set_title(LEGEND)
    return g


def learning_curves(metrics: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Training loss, validation loss and validation accuracy against step, one row per task."""
    panels = {
        ("train", "loss"): "train loss",
        ("val", "loss"): "validation loss",
        ("val", "acc"): "validation accuracy",
    }
    keys = pd.MultiIndex.from_frame(metrics[["split", "metric"]])
    data = metrics[keys.isin(list(panels)) & metrics["layer"].isna()].copy()
    data["panel"] = [panels[k] for k in zip(data["split"], data["metric"])]
    with style():
        g = curves(
            data,
            colours,
            row="task",
            col="panel",
            col_order=list(panels.values()),
            row_order=sorted(data["task"].unique()),
            errorbar=nonnegative_interval,
            sharex="row",
        )  # tasks may train for different numbers of steps
        g.set_xlabels("step")
        accuracy = list(panels.values()).index("validation accuracy")
        for ax in g.axes[:, accuracy]:  # an accuracy's band ends at 1; the loss panels only at 0
            clip_bands(ax, 0.0, 1.0)
            ax.set_ylim(*fraction_limits(plotted_y(ax)))
        fit_axes([g.axes[r, c] for r in range(g.axes.shape[0]) for c in range(g.axes.shape[1]) if c != accuracy])
        return save(g.figure, path)


def per_layer(
    metrics: pd.DataFrame,
    colours: dict,
    names: dict[str, str],
    path: Path,
    errorbar: Interval,
    fraction: bool = False,
) -> Path:
    """Probe metrics per layer against step: one panel per quantity and layer, at most WRAP panels a row, so that a
    deep network's panels stay legible at the report's width. fraction=True: one y range for every panel, fitted to
    the data inside [0, 1] (fraction_limits); else each panel its own, on a log axis where its values span decades."""
    data = metrics[(metrics["split"] == "probe") & metrics["metric"].isin(list(names))].copy()
    layers = layer_order(data)
    data["panel"] = data["metric"].map(names) + " · " + data["layer"]
    order = [f"{q} · {layer}" for q in names.values() for layer in layers]
    hue_order = [a for a in colours if a in set(data["act"])]
    with style():
        g = sns.relplot(
            data=data,
            x="step",
            y="value",
            hue="act",
            hue_order=hue_order,
            palette=colours,
            col="panel",
            col_order=order,
            col_wrap=min(WRAP, len(layers)),
            kind="line",
            errorbar=errorbar,
            height=2.6,
            aspect=1.35,
            facet_kws={"sharey": False, "sharex": True},
            **line_styles(colours, hue_order),
        )
        g.set_titles("{col_name}")
        g.set_axis_labels("step", "")
        g.legend.set_title(LEGEND)
        shown = [ax for ax in g.axes.flat if ax.has_data()]
        if fraction:
            fit_fraction_axes(shown)
        else:
            fit_axes(shown)
        return save(g.figure, path)


UNITS = {"dead_fraction": "dead fraction", "saturated_fraction": "saturated fraction"}
STATS = {"act_mean": "output mean", "act_std": "output std"}


def units(metrics: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Dead and saturated fraction of each layer's units over training."""
    return per_layer(metrics, colours, UNITS, path, errorbar=fraction_interval, fraction=True)


def activation_stats(metrics: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Mean and standard deviation of each activation layer's output over training (Glorot and Bengio, 2010)."""
    return per_layer(metrics, colours, STATS, path, errorbar=t_interval)


def gradient_phases(metrics: pd.DataFrame) -> pd.DataFrame:
    """Weight-gradient norm per run and layer at initialisation, averaged over training, and at the end."""
    grads = metrics[(metrics["metric"] == "grad_norm") & metrics["layer"].notna()]
    probe = grads[grads["split"] == "probe"]
    init = probe[probe["step"] == 0].assign(phase="at initialisation")
    last = probe.groupby("run_dir")["step"].transform("max")
    end = probe[(probe["step"] == last) & (last > 0)].assign(phase="at the end")
    train = grads[grads["split"] == "train"].groupby(["run_dir", "act", "layer"], as_index=False)["value"].mean()
    return pd.concat([init, train.assign(phase="mean over training"), end], ignore_index=True)


def gradients_by_depth(metrics: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Gradient norm against depth (lines by layer): the vanishing- or exploding-gradient picture."""
    data = gradient_phases(metrics)
    phases = [p for p in ["at initialisation", "mean over training", "at the end"] if p in set(data["phase"])]
    order = layer_order(metrics[metrics["metric"] == "grad_norm"])
    data["depth"] = data["layer"].map({name: i for i, name in enumerate(order)})
    hue_order = [a for a in colours if a in set(data["act"])]
    with style():
        g = sns.relplot(
            data=data,
            x="depth",
            y="value",
            hue="act",
            hue_order=hue_order,
            palette=colours,
            col="phase",
            col_order=phases,
            kind="line",
            estimator=geometric_mean,
            errorbar=log_interval,
            height=2.8,
            aspect=1.2,
            facet_kws={"sharey": True},
            **line_styles(colours, hue_order, markers=True),
        )
        g.set(yscale="log", xticks=range(len(order)))
        for ax in g.axes.flat:
            ax.set_xticklabels(order, rotation=90 if len(order) > 5 else 0)
            ax.margins(x=0.08)
        g.set_titles("{col_name}")
        g.set_axis_labels("layer (input → output)", "‖∇W‖ (log scale)")
        g.legend.set_title(LEGEND)
        return save(g.figure, path)


def gradient_heatmap(metrics: pd.DataFrame, colours: dict, path: Path) -> Path:
    """Layer x step heatmaps of the training gradient norm relative to the other layers at the same step.

    Each column is divided by its geometric mean over layers (log10 minus the column's mean log10): the decay of
    every layer's gradient over training, which would otherwise set the colour, drops out, and what is left is how
    much more or less one layer learns than the others."""
    grads = metrics[(metrics["split"] == "train") & (metrics["metric"] == "grad_norm") & metrics["layer"].notna()]
    order = layer_order(grads)
    acts = [a for a in colours if a in set(grads["act"])]
    logged = grads.assign(value=np.log10(grads["value"].where(grads["value"] > 0)))
    logs = {
        a: logged[logged["act"] == a]
        .pivot_table(index="layer", columns="step", values="value", aggfunc="mean")
        .reindex(order)
        for a in acts
    }  # mean of log10 over seeds: the log of the geometric mean
    logs = {a: v - v.mean(axis=0) for a, v in logs.items()}  # relative to the step's other layers
    finite = np.concatenate([v.to_numpy().ravel() for v in logs.values()])
    finite = finite[np.isfinite(finite)]
    bound = max(float(np.abs(finite).max()), 0.1) if len(finite) else 1.0
    vmin, vmax = -bound, bound  # symmetric: 0 (white) is a layer as large as the step's geometric mean
    ncols = min(len(acts), 3)
    nrows = math.ceil(len(acts) / ncols)
    with style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(3.6 * ncols + 1, 0.35 * len(order) * nrows + 1.4 * nrows),
            squeeze=False,
            constrained_layout=True,
        )
        for ax, act in zip(axes.flat, acts):
            image = sns.heatmap(
                logs[act], ax=ax, vmin=vmin, vmax=vmax, cmap="RdBu_r", cbar=False, xticklabels="auto", yticklabels=True
            )
            ax.set_title(act, color=colours[act], fontweight="bold")
            ax.set_xlabel("step")
            ax.set_ylabel("")
            ax.tick_params(axis="x", labelrotation=90, labelsize=7)
            ax.tick_params(axis="y", labelrotation=0)
        for ax in axes.flat[len(acts) :]:
            ax.axis("off")
        fig.colorbar(
            image.collections[0],
            ax=axes,
            shrink=0.8,
            label="log10 ‖∇W‖ minus the step's mean over layers (training batches)",
        )
        return save(fig, path)


def through_time(metrics: pd.DataFrame, colours: dict, path: Path) -> Path:
    """RNNs: ||dL/dh_t|| against time step t at initialisation and at the end (vanishing through time)."""
    data = metrics[(metrics["split"] == "probe") & (metrics["metric"] == "grad_norm_h")].copy()
    last = data.groupby("run_dir")["step"].transform("max")
    data["phase"] = np.where(data["step"] == 0, "at initialisation", np.where(data["step"] == last, "at the end", ""))
    data = data[data["phase"] != ""]
    with style():
        g = curves(
            data,
            colours,
            row="layer",
            col="phase",
            x="t",
            col_order=["at initialisation", "at the end"],
            row_order=layer_order(data),
            sharey=True,
            log=True,
        )
        g.set_xlabels("time step t")
        for ax, layer in zip(g.axes[:, 0], layer_order(data)):
            ax.set_ylabel(f"{layer}: ‖∂L/∂h_t‖")
        return save(g.figure, path)
