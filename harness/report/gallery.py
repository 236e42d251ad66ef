"""The activation gallery: f and f' of each activation on one grid, and its properties computed numerically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from harness.networks.activations import ACTIVATIONS, grid_input, make_activation, max_abs_derivative
from harness.networks.gated import expansion, saturation_defined
from harness.records.results import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import ColorType

PLOT_RANGE = (-5.0, 5.0)  # the reference article's torch.arange(-5, 5, 0.1)
PLOT_RANGES = {"relu6": (-5.0, 10.0)}  # as the article draws ReLU6, so that its cap at 6 shows
DENSE = torch.linspace(-10, 10, 20001, dtype=torch.float64)  # step 1e-3: kinks and flat regions show up here
FAR = torch.tensor([1e2, 1e4], dtype=torch.float64)  # still growing out here: unbounded
ZERO_CENTRED = 0.05  # |E f(z)| below this on z ~ N(0, 1) counts as zero-centred
SMOOTH_JUMP = 0.01  # a step of f' larger than this fraction of max|f'| between grid neighbours is a kink
BOUNDED = {(False, False): "yes", (True, True): "no", (True, False): "below only", (False, True): "above only"}
NOT_DEFINED = "n/a"


def curve(act: nn.Module, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(f(z), f'(z)) in float64 by autograd; softmax is taken on the pair (z, 0), as max_abs_derivative does.

    float64, unlike the probes' float32, so that a tanh far out is not mistaken for a flat region.
    """
    act = act.double().eval()  # RReLU: its deterministic eval-mode slope
    z = z.detach().clone().requires_grad_(True)
    f = act(grid_input(act, z))
    f = f[:, 0] if f.dim() == 2 else f  # softmax's two-class case; a per-channel PReLU's first channel
    (df,) = torch.autograd.grad(f.sum(), z)
    return f.detach().numpy(), df.numpy()


def zero_gradient_region(z: np.ndarray, df: np.ndarray) -> str:
    """Where f' is exactly 0, entered through a kink: 'z ≤ 0', 'z ≥ 6', '-1 ≤ z ≤ 1'; '' if nowhere.

    A region must be entered from a slope that float64 resolves: a jump of f' (ReLU at 0, Hardtanh at ±1) or a
    finite slope (squared ReLU's 2z, 2e-3 one grid step from 0); a smooth tail that decays below float64's
    resolution (the tanh inside gelu_tanh past z ~ -7, from ~1e-15) is not a zero-gradient region.
    """
    flat = np.concatenate([[False], df == 0, [False]])
    starts = np.flatnonzero(~flat[:-1] & flat[1:])
    ends = np.flatnonzero(flat[:-1] & ~flat[1:]) - 1
    kink = 1e-9 * np.abs(df).max()
    parts = []
    for a, b in zip(starts, ends):
        edges = [abs(df[i]) for i in (a - 1, b + 1) if 0 <= i < len(z)]
        if b <= a or (edges and max(edges) < kink):
            continue
        lo, hi = fmt_number(z[a]), fmt_number(z[b])
        if a == 0 and b == len(z) - 1:
            parts.append("everywhere")
        elif a == 0:
            parts.append(f"z ≤ {hi}")
        elif b == len(z) - 1:
            parts.append(f"z ≥ {lo}")
        else:
            parts.append(f"{lo} ≤ z ≤ {hi}")
    return " or ".join(parts)


def fmt_number(value: float) -> str:
    """Three significant digits, and no '-0' or '-2e-16' where the grid point is zero."""
    value = round(float(value), 6) + 0.0
    return f"{value:.3g}"


def fmt_bound(value: float) -> str:
    return "∞" if value == math.inf else "-∞" if value == -math.inf else fmt_number(value)


def normal_mean(act: nn.Module) -> float:
    """E f(z) for z ~ N(0, 1), by quadrature on [-10, 10] (the tails beyond carry under 1e-22 of the mass)."""
    f, _ = curve(act, DENSE)
    z = DENSE.numpy()
    return float(np.trapezoid(f * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi), z))


def properties(name: str, params: dict | None = None) -> dict:
    """The properties of one activation, all measured on the function itself rather than typed in."""
    act = make_activation(name, **(params or {}))
    if expansion(act) == 2:
        return gated_properties(name, act)
    z = DENSE.numpy()
    f, df = curve(act, DENSE)
    f_far_pos, _ = curve(act, FAR)
    f_far_neg, _ = curve(act, -FAR)
    up = f_far_pos[1] > f_far_pos[0] + 1  # still climbing between 1e2 and 1e4
    down = f_far_neg[1] < f_far_neg[0] - 1
    lo = -math.inf if down else float(min(f.min(), f_far_neg.min(), f_far_pos.min()))
    hi = math.inf if up else float(max(f.max(), f_far_neg.max(), f_far_pos.max()))
    max_df = max_abs_derivative(make_activation(name, **(params or {})))
    smooth = np.abs(np.diff(df)).max() < SMOOTH_JUMP * max_df
    if not saturation_defined(act):  # relu_squared, star_relu: f' grows without bound
        max_df = math.inf
    f0, _ = curve(act, torch.zeros(1, dtype=torch.float64))
    mean = normal_mean(act)
    return {
        "activation": name,
        "output range": f"{fmt_bound(lo)} to {fmt_bound(hi)}",
        "bounded": BOUNDED[up, down],
        "monotonic": "yes" if np.all(np.diff(f) >= -1e-12) else "no",
        "f(0)": float(f0[0]),
        "E f(z), z~N(0,1)": mean,
        "zero-centred": "yes" if abs(mean) < ZERO_CENTRED else "no",
        "smooth (C¹)": "yes" if smooth else "no",
        "zero-gradient region": zero_gradient_region(z, df) or "none",
        "max |f'|": max_df,
    }


def gate_curve(act: nn.Module, g: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(f(g), f'(g)) of a gated activation's gate function: the unit against a fixed value u = 1."""
    _, (f, df) = two_input_curves(act, g)
    return f, df


def two_input_curves(act: nn.Module, z: torch.Tensor) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """For y = u * f(g), in float64: ((y, dy/dz) along the diagonal u = g = z), ((y, dy/dg) at u = 1 with g = z)."""
    act = act.double().eval()
    curves = []
    for value in (z, torch.ones_like(z)):
        g = z.detach().clone().requires_grad_(True)
        u = value.detach().clone() if value is not z else g
        y = act(torch.stack([u, g], dim=1))[:, 0]  # (n,): the [u, g] halves of one unit each
        (dy,) = torch.autograd.grad(y.sum(), g)
        curves.append((y.detach().numpy(), dy.numpy()))
    return curves[0], curves[1]


def plane_extremes(act: nn.Module, scale: float) -> tuple[float, float]:
    """min and max of u * f(g) over the square [-scale, scale]^2 (201 x 201 points)."""
    t = torch.linspace(-scale, scale, 201, dtype=torch.float64)
    u, g = torch.meshgrid(t, t, indexing="ij")
    with torch.no_grad():
        y = act.double().eval()(torch.stack([u.flatten(), g.flatten()], dim=1))
    return y.min().item(), y.max().item()


def plane_normal_mean(act: nn.Module, n: int = 801) -> float:
    """E u * f(g) for independent u, g ~ N(0, 1), by the trapezoid rule on [-10, 10]^2."""
    t = torch.linspace(-10, 10, n, dtype=torch.float64)
    u, g = torch.meshgrid(t, t, indexing="ij")
    with torch.no_grad():
        y = act.double().eval()(torch.stack([u.flatten(), g.flatten()], dim=1)).reshape(n, n).numpy()
    points = t.numpy()
    pdf = np.exp(-(points**2) / 2) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(np.trapezoid(y * pdf[:, None] * pdf[None, :], points, axis=1), points))


def gated_properties(name: str, act: nn.Module) -> dict:
    """The properties of a two-input unit y = u * f(g): range and E y over the plane (u, g independent N(0, 1)),
    smoothness and zero-gradient region from the gate f (y is C¹ iff f is; dy/du = f(g) and dy/dg = u f'(g) both
    vanish, for every u, exactly where f and f' do). Monotonic: not defined for two inputs. max |dy|: unbounded."""
    extremes = [plane_extremes(act, s) for s in (10.0, *FAR.tolist())]
    (lo_near, hi_near), (lo_far, hi_far) = extremes[1], extremes[2]
    up, down = hi_far > hi_near + 1, lo_far < lo_near - 1  # still growing between scales 1e2 and 1e4
    lo = -math.inf if down else min(e[0] for e in extremes)
    hi = math.inf if up else max(e[1] for e in extremes)
    f, df = gate_curve(act, DENSE)
    zero = zero_gradient_region(DENSE.numpy(), np.abs(f) + np.abs(df))
    mean = plane_normal_mean(act)
    y0 = act.double()(torch.zeros(1, 2, dtype=torch.float64)).item()
    return {
        "activation": name,
        "output range": f"{fmt_bound(lo)} to {fmt_bound(hi)}",
        "bounded": BOUNDED[up, down],
        "monotonic": NOT_DEFINED,
        "f(0)": y0,
        "E f(z), z~N(0,1)": mean,
        "zero-centred": "yes" if abs(mean) < ZERO_CENTRED else "no",
        "smooth (C¹)": "yes" if np.abs(np.diff(df)).max() < SMOOTH_JUMP * np.abs(df).max() else "no",
        "zero-gradient region": zero.replace("z", "g") or "none",
        "max |f'|": math.inf,
    }


Item = tuple[str, str, dict]  # (label shown, registry name, keyword parameters)


def default_activations() -> list[Item]:
    """Every registered activation with its default parameters, the reference article's seven first."""
    return [(name, name, {}) for name in ACTIVATIONS]


def property_table(items: list[Item]) -> pd.DataFrame:
    """One row of properties per activation, named by its label."""
    return pd.DataFrame([{**properties(name, params), "activation": text} for text, name, params in items])


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The property table with its numbers to three decimals (and no '-0.000')."""
    shown = table.copy()
    for column in ["f(0)", "E f(z), z~N(0,1)", "max |f'|"]:
        shown[column] = shown[column].map(lambda v: "∞" if v == math.inf else f"{round(v, 3) + 0.0:.3f}")
    return shown


def broken_at_jumps(df: np.ndarray) -> np.ndarray:
    """f' with a gap at each jump, so that ReLU's derivative is not drawn as a vertical wall at 0."""
    df = df.copy()
    jumps = np.flatnonzero(np.abs(np.diff(df)) > 0.05 * max(np.abs(df).max(), 1e-12))
    df[jumps + 1] = np.nan
    return df


def draw_two_input(ax: Axes, act: nn.Module, z: torch.Tensor, colour: ColorType) -> None:
    """A gated unit's panel: u·f(g) along the diagonal u = g = x (solid) with its derivative (dashed), and the gate
    f(g) against a fixed value u = 1 (dash-dot)."""
    (diagonal, d_diagonal), (gate, _) = two_input_curves(act, z)
    ax.plot(z.numpy(), diagonal, color=colour, linewidth=2)
    ax.plot(z.numpy(), broken_at_jumps(d_diagonal), color="0.35", linewidth=1.3, linestyle="--")
    ax.plot(z.numpy(), gate, color=colour, linewidth=1.5, linestyle="-.")


def plot(items: list[Item], path: Path, colours: dict | None = None, ncols: int = 4) -> Path:
    """f (solid, the activation's colour) and f' (dashed grey) of each activation, one small plot each."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from harness.report.palette import palette

    colours = colours or palette([i[0] for i in items])  # the report's palette: the same look as its other figures
    ncols = min(ncols, len(items))
    nrows = math.ceil(len(items) / ncols)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(2.9 * ncols, 2.4 * nrows + 0.5), squeeze=False, constrained_layout=True
        )
        for ax, (text, name, params) in zip(axes.flat, items):
            lo, hi = PLOT_RANGES.get(name, PLOT_RANGE)
            z = torch.linspace(lo, hi, 1001, dtype=torch.float64)
            act = make_activation(name, **params)
            ax.axhline(0, color="black", linewidth=0.6)
            ax.axvline(0, color="black", linewidth=0.6)
            if expansion(act) == 2:
                draw_two_input(ax, act, z, colours.get(text, "C0"))
            else:
                f, df = curve(act, z)
                ax.plot(z.numpy(), f, color=colours.get(text, "C0"), linewidth=2)
                ax.plot(z.numpy(), broken_at_jumps(df), color="0.35", linewidth=1.3, linestyle="--")
            ax.set_title(text + (" (u·f(g))" if expansion(act) == 2 else ""), fontsize=10)
        for ax in axes.flat[len(items) :]:
            ax.axis("off")
        handles = [plt.Line2D([], [], color="black", linewidth=2), plt.Line2D([], [], color="0.35", linestyle="--")]
        labels = ["f(x)", "f'(x)"]
        if any(expansion(make_activation(name, **params)) == 2 for _, name, params in items):
            handles.append(plt.Line2D([], [], color="black", linewidth=1.5, linestyle="-."))
            labels = ["f(x); gated: u·f(g) along u = g = x", "its derivative", "gated: f(g), the gate at u = 1"]
        fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), frameon=False)
        try:  # atomically; a symlink at path is refused, never written through
            atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"), binary=True)
        finally:
            plt.close(fig)
    return path
