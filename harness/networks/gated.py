"""Gated activations (GLU and its variants) and the squared-ReLU family, with the probe definitions and the
parameter-matched width they need.

A gated activation takes 2n inputs and gives n outputs: the input is split along `dim` into halves [u, g], and
out = v(u) * f(g). The first half u is the value and passes through v, the identity for every unit but dReLU's ReLU;
the second half g is the gate and goes through f. This is torch.nn.functional.glu's order, and it is fixed:
model.init and the probes rely on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # models imports this module
    from harness.networks.models.base import ActFactory, BaseModelConfig

    Construct = Callable[[BaseModelConfig, ActFactory], nn.Module]  # a model config and an activation -> the model

# StarReLU's defaults (MetaFormer Baselines, Yu et al. 2022): s * relu(z)^2 + b has mean 0 and variance 1 for
# z ~ N(0, 1), since E relu(z)^2 = 1/2 and Var relu(z)^2 = 5/4.
STAR_SCALE = 1 / math.sqrt(5 / 4)
STAR_BIAS = -STAR_SCALE / 2


def identity_gate(g: torch.Tensor) -> torch.Tensor:
    return g


class GatedActivation(nn.Module):
    """out = value(u) * gate(g) for the halves [u, g] of the input along `dim` (1: the MLP's features, the CNN's
    channels); value is the identity but for dReLU.

    `expansion` tells a model that the projection before this activation must give twice the units.
    """

    expansion = 2
    gate: Callable[[torch.Tensor], torch.Tensor] = staticmethod(identity_gate)
    value: Callable[[torch.Tensor], torch.Tensor] = staticmethod(identity_gate)

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, g): the value half and the gate half."""
        if x.shape[self.dim] % 2:
            raise ValueError(f"{type(self).__name__} needs an even size along dim {self.dim}, got {x.shape[self.dim]}")
        u, g = x.chunk(2, dim=self.dim)
        return u, g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, g = self.split(x)
        return self.value(u) * self.gate(g)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class GLU(GatedActivation):
    """Dauphin et al. 2017: u * sigmoid(g)."""

    gate = staticmethod(torch.sigmoid)


class ReGLU(GatedActivation):
    """Shazeer 2020: u * relu(g)."""

    gate = staticmethod(F.relu)


class GEGLU(GatedActivation):
    """Shazeer 2020: u * gelu(g), the exact (erf) GELU."""

    gate = staticmethod(F.gelu)


class SwiGLU(GatedActivation):
    """Shazeer 2020: u * silu(g), Swish with beta = 1 (LLaMA, PaLM)."""

    gate = staticmethod(F.silu)


class Bilinear(GatedActivation):
    """Shazeer 2020 (after Mnih and Hinton 2007): u * g, no gate function."""


class DReLU(GatedActivation):
    """Song et al. 2024 (Turbo Sparse, arXiv 2406.05955): relu(u) * relu(g), a ReLU on both halves, so that the
    unit is exactly zero wherever either half is negative (its sparsity is the point)."""

    value = staticmethod(F.relu)
    gate = staticmethod(F.relu)


def value_is_identity(act: GatedActivation) -> bool:
    """Whether the value half passes as the identity (model.init then draws it with gain 1; dReLU's goes through a
    ReLU and gets the ReLU gain: harness/networks/models/weights.py)."""
    return getattr(type(act), "value", identity_gate) is GatedActivation.value  # a stand-in without one: identity


class ReLUSquared(nn.Module):
    """So et al. 2021 (Primer): relu(z)^2. Its derivative 2 relu(z) is unbounded: saturation is not defined."""

    bounded_derivative = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(z).square()


class StarReLU(nn.Module):
    """Yu et al. 2022 (MetaFormer Baselines): s * relu(z)^2 + b, with s and b scalars learned by default."""

    bounded_derivative = False

    def __init__(self, scale: float = STAR_SCALE, bias: float = STAR_BIAS, learnable: bool = True) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(scale)]), requires_grad=learnable)
        self.bias = nn.Parameter(torch.tensor([float(bias)]), requires_grad=learnable)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(z).square() + self.bias


GATED_ACTIVATIONS = {
    "glu": GLU,
    "reglu": ReGLU,
    "geglu": GEGLU,
    "swiglu": SwiGLU,
    "bilinear": Bilinear,
    "drelu": DReLU,
}
SQUARED_ACTIVATIONS = {"relu_squared": ReLUSquared, "star_relu": StarReLU}


def expansion(act: nn.Module) -> int:
    """Inputs per output: 2 for a gated activation, 1 for an elementwise one."""
    return getattr(act, "expansion", 1)


def set_units(act: nn.Module, units: int) -> None:
    """Tell an activation how many units its layer has, once the model knows (an activation factory takes no
    arguments): the per-unit ones (the KAN spline) then make one set of parameters per unit. Every model calls it
    on each activation it builds; a module without a `set_units` method ignores it. Runs on the meta device too."""
    hook = getattr(act, "set_units", None)
    if callable(hook):
        hook(units)


def is_gated(act: nn.Module) -> TypeGuard[GatedActivation]:
    """expansion(act) == 2: a gated unit, which the probes read as GatedActivation's halves [u, g] and gate."""
    return expansion(act) == 2


def saturation_defined(act: nn.Module) -> bool:
    """False where f' is unbounded (relu_squared, star_relu): 'below a fraction of max|f'|' then means nothing."""
    return getattr(act, "bounded_derivative", True)


# ---------------------------------------------------------------- probes of a gated unit


def gated_slopes(act: GatedActivation, x: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, ...]:
    """(|dy/du|, |dy/dg|, |f'(g)|) elementwise for y = v(u) * f(g): dy/du = v'(u) f(g) and dy/dg = v(u) f'(g), what
    the unit passes back to its value input and to its gate input, and the gate's own slope; the halves [u, g]
    along dim (act.dim unless given: a stacked layout's unit axis). Calls `act.value` and `act.gate`, never
    `act(...)`, so that no forward hook fires."""
    x = x.detach().float()
    u, g = act.split(x) if dim is None else x.chunk(2, dim=dim)
    with torch.enable_grad():
        u, g = u.clone().requires_grad_(True), g.clone().requires_grad_(True)
        v, f = act.value(u), act.gate(g)
        (dv,) = torch.autograd.grad(v.sum(), u)
        (df,) = torch.autograd.grad(f.sum(), g)
    return (dv * f).detach().abs(), (v.detach() * df).abs(), df.abs()


def per_unit_peak(values: torch.Tensor) -> torch.Tensor:
    """The largest value of each unit (axis 1) over the batch and any positions: (B, units, ...) -> (units,)."""
    peak = values.amax(0)  # the batch axis first: a fast outer reduction
    return peak.flatten(1).amax(1) if peak.dim() > 1 else peak


def gated_unit_peaks(act: GatedActivation, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output unit over every sample: the largest gradient it passes to either input, max(|f(g)|, |u f'(g)|),
    and the largest gate slope |f'(g)|. NaN counts as neither alive nor unsaturated, as in the plain probe."""
    to_value, to_gate, gate_slope = (s.nan_to_num(nan=-1.0) for s in gated_slopes(act, x))
    return per_unit_peak(torch.maximum(to_value, to_gate)), per_unit_peak(gate_slope)


def gate_max_slope(act: GatedActivation, lo: float = -20.0, hi: float = 20.0, n: int = 40001) -> float:
    """max|f'| of the gate function over [lo, hi] (1 for the bilinear unit, whose gate is the identity)."""
    g = torch.linspace(lo, hi, n)
    u = torch.ones_like(g)
    return gated_slopes(act, torch.stack([u, g], dim=1))[2].max().item()


# ---------------------------------------------------------------- model.match_params


def parameter_count(construct: Construct, m: BaseModelConfig, act: ActFactory) -> int:
    """n_params of construct(m, act), built on the meta device: no memory, and no draw from the RNG."""
    with torch.device("meta"):
        return sum(p.numel() for p in construct(m, act).parameters())


def closest_size(count: Callable[[int], int], target: int, widest: int) -> int:
    """The size in [1, widest] whose count is closest to target; a tie goes to the larger. Bisection: count grows
    with the size."""
    lo, hi = 1, widest  # the largest size at or under the target lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count(mid) <= target else (lo, mid - 1)
    return min({lo, min(lo + 1, widest)}, key=lambda w: (abs(count(w) - target), -w))


def matched_width(m: BaseModelConfig, act: ActFactory, construct: Construct) -> int:
    """The hidden width whose n_params with `act` is closest to the ungated twin's (the same model at model.width
    with a parameter-free elementwise activation); a tie goes to the wider."""
    target = parameter_count(construct, m, nn.Identity)

    def count(width: int) -> int:
        return parameter_count(construct, dataclasses.replace(m, width=width), act)

    return closest_size(count, target, m.width)


def needs_matching(act: ActFactory) -> bool:
    """Whether model.match_params changes anything for this activation: a gated one (2n inputs) or one with
    parameters of its own (PReLU's slope, a spline's coefficients per unit). Built on the meta device: no draw from
    the random generator."""
    with torch.device("meta"):
        probe = act()
        set_units(probe, 2)
    return expansion(probe) == 2 or next(probe.parameters(), None) is not None


def hidden_width(m: BaseModelConfig, act: ActFactory, construct: Construct) -> int:
    """model.width, or with model.match_params=true and a gated or learnable activation, the parameter-matched width
    (for PReLU and StarReLU, whose few parameters per layer weigh less than a unit, that is model.width itself).
    construct(model config, act) builds the model (harness.networks.models.build_model passes its own)."""
    if not m.match_params or m.depth == 0 or not needs_matching(act):
        return m.width
    return matched_width(m, act, construct)
