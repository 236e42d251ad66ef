"""The figures' intervals and axes: the same t-intervals as the tables (clipped to a metric's range), averages on
the log scale for norms, and axes fitted to the data (a log axis where values span decades)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes

from harness.report.stats import mean_ci

LOG_SPAN = 100.0  # positive values spanning more than this factor (two decades) are drawn on a log axis
MARGIN = 0.08  # of the plotted span, above and below a fitted axis
MIN_SPAN = 0.01  # a fraction axis spans at least this much (1% of the units), so a flat 0 still reads as a line


def t_interval(values: npt.ArrayLike) -> tuple[float, float]:
    """The bands of every figure: the same Student-t 95% interval of the mean as the tables."""
    return mean_ci(values)[2:]


def nonnegative_interval(values: npt.ArrayLike) -> tuple[float, float]:
    """The t-interval clipped at 0, for losses and accuracies."""
    lo, hi = t_interval(values)
    return max(lo, 0.0), hi


def fraction_interval(values: npt.ArrayLike) -> tuple[float, float]:
    """The t-interval clipped to [0, 1]: a fraction of units cannot be negative."""
    lo, hi = t_interval(values)
    return max(lo, 0.0), min(hi, 1.0)


def geometric_mean(values: npt.ArrayLike) -> float:
    """Norms span decades and are drawn on log axes: average them on the log scale."""
    x = np.asarray(values, dtype=float)
    x = x[x > 0]
    return float(np.exp(np.log(x).mean())) if len(x) else math.nan


def log_interval(values: npt.ArrayLike) -> tuple[float, float]:
    """The t-interval of the mean log, back on the original scale: positive, symmetric on a log axis."""
    x = np.asarray(values, dtype=float)
    lo, hi = mean_ci(np.log(x[x > 0]))[2:]
    return math.exp(lo), math.exp(hi)


def finite(values: npt.ArrayLike) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def wants_log(values: npt.ArrayLike) -> bool:
    """Positive values spanning more than LOG_SPAN (two decades): a linear axis would flatten all but the largest."""
    x = finite(values)
    return len(x) > 1 and bool((x > 0).all()) and x.max() / x.min() > LOG_SPAN


def fraction_limits(values: npt.ArrayLike, floor: bool = False) -> tuple[float, float]:
    """y limits of a fraction (dead, saturated units) fitted to the plotted values with a margin, inside [0, 1]
    give or take the margin: a few percent of dead units fill the panel instead of lying flat at the bottom of a
    0-1 axis. floor=True starts at 0 (bars)."""
    x = np.clip(finite(values), 0.0, 1.0)
    lo = 0.0 if floor or not len(x) else float(x.min())
    hi = float(x.max()) if len(x) else 0.0
    if hi - lo < MIN_SPAN:  # flat: a small span above it (below it at 1)
        lo, hi = (lo, lo + MIN_SPAN) if lo + MIN_SPAN <= 1.0 else (1.0 - MIN_SPAN, 1.0)
    pad = MARGIN * (hi - lo)
    return (0.0 if floor else lo - pad), hi + pad


def plotted_y(ax: Axes, bands: bool = True) -> np.ndarray:
    """Every y value an axes draws: its lines and (bands=True) the outlines of its bands (fill_between collections)."""
    ys = [np.asarray(line.get_ydata(), dtype=float).ravel() for line in ax.get_lines()]
    ys += [np.asarray(path.vertices)[:, 1] for c in ax.collections for path in c.get_paths()] if bands else []
    return finite(np.concatenate(ys)) if ys else np.array([])


def clip_bands(ax: Axes, lo: float, hi: float) -> None:
    """Clip the bands an axes draws to [lo, hi]: a fraction's interval ends at 0 and 1, whatever the t-interval says."""
    for c in ax.collections:
        for path in c.get_paths():
            vertices = np.asarray(path.vertices)  # the path's own array: clipped in place
            vertices[:, 1] = np.clip(vertices[:, 1], lo, hi)


def fit_fraction_axes(axes: list[Axes]) -> tuple[float, float]:
    """One y range for every axes of a fraction figure (shared y), fitted to the mean lines: with few seeds a band
    can span most of [0, 1] and would set the axis back to 0-1; a band is clipped to [0, 1] and cut at the axis."""
    for ax in axes:
        clip_bands(ax, 0.0, 1.0)
    limits = fraction_limits(np.concatenate([plotted_y(ax, bands=False) for ax in axes]))
    for ax in axes:
        ax.set_ylim(*limits)
    return limits


def fit_axes(axes: list[Axes]) -> None:
    """A log y axis where the plotted values span more than two decades (each axes on its own)."""
    for ax in axes:
        if wants_log(plotted_y(ax)):
            ax.set_yscale("log")
