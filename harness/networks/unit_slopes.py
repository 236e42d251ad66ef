"""Per-unit slopes the probes read where an activation is not one fixed elementwise function (docs/activations.md,
"Probes"): PolyNorm's per-unit slope, the diagonal of its Jacobian (it normalises over the units, as softmax does),
and max|f'| per unit of an activation with parameters per unit (the KAN spline, set_units), from its current
parameters. Everything else keeps harness.networks.activations' derivative and max_abs_derivative.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.networks import activations
from harness.networks.activations import derivative
from harness.networks.modern import PolyNorm, columns
from harness.networks.spline import SplineActivation

SLOPE_RANGE = (-20.0, 20.0)  # where max|f'| is taken, as activations.max_abs_derivative
SPLINE_POINTS_PER_KNOT = 64  # the spline's derivative is a polynomial of degree k - 1 between knots


def polynorm_diagonal(z: torch.Tensor, weight: Sequence[torch.Tensor], dim: int, eps: float) -> torch.Tensor:
    """dy_j/dz_j of y = w0 N(z^3) + w1 N(z^2) + w2 N(z) + b, N(x) = x / r, r = sqrt(mean over the units of x^2 +
    eps): with x = z^p, dN(x)_j/dx_j = 1/r - x_j^2 / (U r^3), so the diagonal is
    sum_p w_p p z_j^(p-1) (1/r_p - z_j^(2p) / (U r_p^3)), U the units along dim. weight (w0, w1, w2) as
    harness.networks.modern.polynorm takes them (scalars, or stacked columns shaped to broadcast)."""
    z = z.detach().to(torch.float64 if z.dtype == torch.float64 else torch.float32)
    units = z.shape[dim]
    total = torch.zeros_like(z)
    for w, p in zip(weight, (3, 2, 1)):
        x = z**p
        r = (x.square().mean(dim, keepdim=True) + eps).sqrt()
        total = total + w.detach() * p * z ** (p - 1) * (1 / r - x.square() / (units * r**3))
    return total


def unit_derivative(act: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """f'(z) per unit (axis 1) of one module: PolyNorm's Jacobian diagonal, else activations.derivative."""
    if isinstance(act, PolyNorm):
        return polynorm_diagonal(z, list(act.weight), act.dim, act.eps)
    return derivative(act, z)


def stacked_unit_derivative(act: nn.Module, z: torch.Tensor, kdim: int, cdim: int) -> torch.Tensor | None:
    """PolyNorm's Jacobian diagonal on a stacked z (each member's own weights, its own units along cdim); None for
    any other activation (the caller takes the gradient of its stacked form)."""
    if isinstance(act, PolyNorm):
        return polynorm_diagonal(z, columns(act.weight, z, kdim, cdim), cdim, act.eps)
    return None


def spline_max_slopes(act: SplineActivation) -> torch.Tensor:
    """max|f'| over SLOPE_RANGE of each unit's spline, (units,). Outside the B-splines' support only w_b silu(z)
    carries, whose largest |slope| there is |w_b| x max|silu'| on that part of the range; inside it, f' on a grid
    SPLINE_POINTS_PER_KNOT points to a knot interval (40,001 points per unit made a probe take seconds)."""
    lo, hi = SLOPE_RANGE
    step = (act.grid_max - act.grid_min) / act.grid_size
    start, stop = max(lo, act.grid_min - act.order * step), min(hi, act.grid_max + act.order * step)
    param = act.base_weight
    inside = torch.linspace(
        start, stop, (act.grid_size + 2 * act.order) * SPLINE_POINTS_PER_KNOT + 1, dtype=param.dtype
    ).to(param.device)
    was_training = act.training
    act.eval()
    try:
        peak = derivative(act, inside[:, None].expand(len(inside), act.units)).abs().amax(0)
    finally:
        act.train(was_training)
    outside = torch.cat([torch.linspace(lo, start, 20001), torch.linspace(stop, hi, 20001)]).to(param.device)
    with torch.enable_grad():
        grid = outside.requires_grad_(True)
        (silu_slope,) = torch.autograd.grad(F.silu(grid).sum(), grid)
    return torch.maximum(peak, act.base_weight.detach().abs() * silu_slope.abs().max().to(param.dtype))


def unit_max_slope(act: nn.Module) -> float | torch.Tensor:
    """max|f'| of a module with its current parameters: per unit ((units,)) for a per-unit activation, one number
    otherwise (activations.max_abs_derivative, over every channel of a per-channel PReLU)."""
    if isinstance(act, SplineActivation):
        return spline_max_slopes(act)
    return activations.max_abs_derivative(act)  # looked up on call: tests count its calls
