"""A learnable spline activation per unit, as each edge function of a KAN (Liu et al. 2024, KindXiaoming/pykan;
Blealtan/efficient-kan): f(z) = w_b silu(z) + w_s sum_i c_i B_i(z), B_i the B-splines of order k on a uniform grid
of G intervals over [grid_min, grid_max] (extended by k knots each side). Here a unit has one function, not each
edge: KAN layers themselves are out of scope. Formula, initialisation and support in docs/activations.md.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def bspline_bases(z: torch.Tensor, grid_size: int, order: int, lo: float, hi: float) -> torch.Tensor:
    """The G + k B-splines of order k at z, on the knots lo + h j (j = -k .. G + k, h = (hi - lo) / G): a tensor
    z.shape + (G + k,). Cox-de Boor's recursion on uniform knots, from the interval indicators up; every basis is
    zero outside [lo - k h, hi + k h]."""
    h = (hi - lo) / grid_size
    knots = lo + h * torch.arange(-order, grid_size + order + 1, dtype=z.dtype, device=z.device)
    x = z.unsqueeze(-1)
    bases = ((x >= knots[:-1]) & (x < knots[1:])).to(z.dtype)  # order 0: G + 2k intervals
    for p in range(1, order + 1):  # order p from order p - 1: each knot span is p h wide
        rising = (x - knots[: -(p + 1)]) / (p * h)
        falling = (knots[p + 1 :] - x) / (p * h)
        bases = rising * bases[..., :-1] + falling * bases[..., 1:]
    return bases


@functools.cache
def least_squares_fit(grid_size: int, order: int, lo: float, hi: float) -> torch.Tensor:
    """(G + k, G + 1): the minimum-norm least-squares map from values at the G + 1 grid points to coefficients, in
    float64 on the CPU (the pseudo-inverse of the bases there; computed once per grid)."""
    points = torch.linspace(lo, hi, grid_size + 1, dtype=torch.float64, device="cpu")
    return torch.linalg.pinv(bspline_bases(points, grid_size, order, lo, hi))


def unit_view(t: torch.Tensor, z: torch.Tensor, kdim: int | None, cdim: int, trailing: int = 0) -> torch.Tensor:
    """A per-unit parameter, (units, *trailing) or stacked (K, units, *trailing), shaped to broadcast over z whose
    unit axis is cdim (and member axis kdim); a 1-D z (a grid of points) takes a one-unit parameter as it is."""
    shape = [1] * z.dim()
    lead = t.shape[: t.dim() - trailing]
    if kdim is not None:
        shape[kdim] = lead[0]
    if z.dim() > 1:
        shape[cdim] = lead[-1]
    elif lead[-1] != 1:
        raise ValueError(f"a spline of {lead[-1]} units needs its units on axis 1, got a 1-D input")
    return t.view(*shape, *t.shape[t.dim() - trailing :])


def spline_activation(z: torch.Tensor, act: SplineActivation, kdim: int | None, cdim: int) -> torch.Tensor:
    """w_b silu(z) + w_s sum_i c_i B_i(z), with each unit's (and member's) own w_b, w_s and c."""
    bases = bspline_bases(z, act.grid_size, act.order, act.grid_min, act.grid_max)
    curve = (bases * unit_view(act.coef, z, kdim, cdim, trailing=1)).sum(-1)
    return unit_view(act.base_weight, z, kdim, cdim) * F.silu(z) + unit_view(act.spline_weight, z, kdim, cdim) * curve


def stacked_spline(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    """The stacked form (harness/networks/stacked_layers.py): each member's own per-unit parameters (K, units, ...)."""
    assert isinstance(act, SplineActivation)  # STACKED_ACTIVATIONS' key
    return spline_activation(z, act, kdim, cdim)


class SplineActivation(nn.Module):
    """A KAN edge function per unit: w_b silu(z) + w_s sum_i c_i B_i(z), unit axis 1.

    Parameters, per unit (a vector of `units`, set by the model through set_units): `base_weight` w_b and
    `spline_weight` w_s, initialised to base_scale and spline_scale (1); `coef` c (units, G + k), initialised as
    efficient-kan does: uniform noise in +-noise_scale / (2 G) at the G + 1 grid points, fitted by least squares (the
    minimum-norm solution). Before set_units it has one unit, shared by every input.

    Args:
        grid_size: G, the intervals of the grid over [grid_min, grid_max].
        order: k, the B-splines' order (3: cubic).
        grid_min: the grid's lower end; the splines reach k intervals below it, only the base beyond.
        grid_max: the grid's upper end; the splines reach k intervals above it, only the base beyond.
        noise_scale: the spline's initial noise, uniform in +-noise_scale / (2 G) at the grid points.
        base_scale: w_b at the start, the weight of silu(z).
        spline_scale: w_s at the start, the weight of the spline.
    """

    def __init__(
        self,
        grid_size: int = 5,
        order: int = 3,
        grid_min: float = -1.0,
        grid_max: float = 1.0,
        noise_scale: float = 0.1,
        base_scale: float = 1.0,
        spline_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if grid_size < 1 or order < 0 or not grid_min < grid_max:
            raise ValueError(
                f"needs grid_size >= 1, order >= 0 and grid_min < grid_max, got {grid_size}, {order}, "
                f"[{grid_min}, {grid_max}]"
            )
        self.grid_size, self.order = grid_size, order
        self.grid_min, self.grid_max = float(grid_min), float(grid_max)
        self.noise_scale, self.base_scale, self.spline_scale = (
            float(noise_scale),
            float(base_scale),
            float(spline_scale),
        )
        self.set_units(1)

    def set_units(self, units: int) -> None:
        """One w_b, w_s and c per unit, drawn afresh on the device and in the dtype the module has (the meta device
        draws nothing from the random generator)."""
        like = getattr(self, "base_weight", torch.empty(0))  # the default device and dtype when first built
        self.units = units
        # base_weight first: the probes shape their grid of points by an activation's first parameter
        self.base_weight = nn.Parameter(torch.full((units,), self.base_scale, dtype=like.dtype, device=like.device))
        self.spline_weight = nn.Parameter(torch.full_like(self.base_weight, self.spline_scale))
        self.coef = nn.Parameter(self.initial_coef(units, like))

    def initial_coef(self, units: int, like: torch.Tensor) -> torch.Tensor:
        shape = (units, self.grid_size + self.order)
        if like.device.type == "meta":  # shapes only (the parameter-matching search builds many)
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        noise = torch.rand(units, self.grid_size + 1, dtype=like.dtype, device=like.device)
        noise = (noise - 0.5) * self.noise_scale / self.grid_size
        fit = least_squares_fit(self.grid_size, self.order, self.grid_min, self.grid_max)
        return noise @ fit.T.to(noise.device, noise.dtype)  # (units, G + 1) @ (G + 1, G + k)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return spline_activation(z, self, None, 1)

    def extra_repr(self) -> str:
        return (
            f"units={self.units}, grid_size={self.grid_size}, order={self.order}, "
            f"range=[{self.grid_min}, {self.grid_max}]"
        )
