"""Activations of 2023-2025: TeLU, xIELU, PolyReLU and PolyNorm (PolyCom), and the Padé activation unit (a learnable
rational function). Formulas and sources in docs/activations.md; the KAN-style spline is harness/networks/spline.py
and dReLU, a gated unit, harness/networks/gated.py.

Each learnable one keeps its formula in a function of the input and its parameters, which the module's forward calls
with its own parameters and a grouped run's stacked forward (harness/networks/stacked_layers.py) with every member's
(K, ...) parameters shaped to broadcast over the stacked input: one formula, alone or grouped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# e^20 > 4.8e8: tanh(e^z) is 1 in float64 there, so the clamp changes no value; without it e^z overflows to inf for
# z > 88 (float32) and tanh's backward multiplies its zero slope by that inf: a NaN gradient.
TELU_EXP_CAP = 20.0


def telu(z: torch.Tensor) -> torch.Tensor:
    return z * torch.tanh(torch.exp(z.clamp(max=TELU_EXP_CAP)))


class TeLU(nn.Module):
    """Fernandez and Mali 2024 (arXiv 2412.20269): z tanh(e^z). Parameter-free, elementwise; near z for z >> 0 and
    decaying to 0 as z e^z for z << 0."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return telu(z)


def softplus_inverse(y: float) -> float:
    """The x with softplus(x) = y (y > 0), as xIELU's reference code stores its parameters."""
    return math.log(math.expm1(y))


def xielu(z: torch.Tensor, alpha_p: torch.Tensor, alpha_n: torch.Tensor, beta: float, eps: float) -> torch.Tensor:
    """a_p z^2 + beta z for z > 0, a_n (expm1(min(z, eps)) - z) + beta z for z <= 0, with a_p = softplus(alpha_p)
    and a_n = beta + softplus(alpha_n) (both positive, a_n above beta)."""
    a_p = F.softplus(alpha_p)
    a_n = beta + F.softplus(alpha_n)
    negative = a_n * (torch.expm1(torch.clamp(z, max=eps)) - z)
    return torch.where(z > 0, a_p * z * z, negative) + beta * z


class XIELU(nn.Module):
    """Huang and Schlag 2024 (xIELU, arXiv 2411.13010; the Apertus models): the integral of an ELU-like slope,
    quadratic for z > 0, and for z << 0 a line of slope beta - a_n (< 0) above -a_n.

    Parameters, one each per layer: `alpha_p` and `alpha_n`, stored as softplus inverses of a_p and a_n - beta
    (so that the learnt a_p > 0 and a_n > beta); beta and eps are fixed. Its slope 2 a_p z + beta grows without bound.

    Args:
        alpha_p_init: a_p at the start, the curvature for z > 0 (> 0).
        alpha_n_init: a_n at the start, the scale of the ELU part for z <= 0 (> beta).
        beta: the fixed slope at 0, on both sides.
        eps: the fixed cap on z inside expm1 for z <= 0 (the reference code's -1e-6).
    """

    bounded_derivative = False

    def __init__(
        self, alpha_p_init: float = 0.8, alpha_n_init: float = 0.8, beta: float = 0.5, eps: float = -1e-6
    ) -> None:
        super().__init__()
        if alpha_p_init <= 0 or alpha_n_init <= beta:
            raise ValueError(f"needs alpha_p_init > 0 and alpha_n_init > beta, got {alpha_p_init}, {alpha_n_init}")
        self.beta, self.eps = float(beta), float(eps)
        self.alpha_p = nn.Parameter(torch.tensor([softplus_inverse(alpha_p_init)]))
        self.alpha_n = nn.Parameter(torch.tensor([softplus_inverse(alpha_n_init - beta)]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return xielu(z, self.alpha_p, self.alpha_n, self.beta, self.eps)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, eps={self.eps}"


def cubic(p: Sequence[torch.Tensor], weight: Sequence[torch.Tensor], bias: torch.Tensor) -> torch.Tensor:
    """weight[0] p[3] + weight[1] p[2] + weight[2] p[1] + bias, p[j] the j-th power (PolyCom's order: the cube
    first)."""
    return weight[0] * p[3] + weight[1] * p[2] + weight[2] * p[1] + bias


def powers(z: torch.Tensor) -> list[torch.Tensor]:
    return [torch.ones_like(z), z, z * z, z * z * z]


def rms_normalised(x: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2 over the units) + eps): PolyCom's norm, over the units axis `dim`."""
    return x * torch.rsqrt(x.square().mean(dim, keepdim=True) + eps)


def polynorm(z: torch.Tensor, weight: Sequence[torch.Tensor], bias: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
    p = powers(z)
    return cubic([p[0], *(rms_normalised(q, dim, eps) for q in p[1:])], weight, bias)


class PolyReLU(nn.Module):
    """Zhuo et al. 2025 (PolyCom, ICLR): w0 relu(z)^3 + w1 relu(z)^2 + w2 relu(z) + b, elementwise.

    Parameters, per layer: `weight` (w0, w1, w2), initialised to 1/3 each, and `bias` b, initialised to 0, as in the
    reference code. Its slope grows as z^2."""

    bounded_derivative = False

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((3,), 1 / 3))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return cubic(powers(F.relu(z)), list(self.weight), self.bias)


class PolyNorm(nn.Module):
    """Zhuo et al. 2025 (PolyCom, ICLR): w0 N(z^3) + w1 N(z^2) + w2 N(z) + b, N(x) = x / sqrt(mean(x^2) + eps) over
    the units (axis `dim`: the MLP's and the FFN's features, the CNN's channels at each position, the RNN's hidden
    units). Not elementwise: each unit's output depends on the layer's other units.

    Parameters, per layer: `weight` (w0, w1, w2), initialised to 1/3 each, and `bias` b, initialised to 0, as in the
    reference code; eps = 1e-6 is its too.

    Args:
        dim: the units axis normalised over; 1: the features (channels), 0 (the batch) refused.
        eps: added to the mean square before the square root.
    """

    bounded_derivative = False

    def __init__(self, dim: int = 1, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, float(eps)
        self.weight = nn.Parameter(torch.full((3,), 1 / 3))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return polynorm(z, list(self.weight), self.bias, self.dim, self.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


# The reference code's stored initial coefficients (ml-research/rational_activations, rational/rationals_config.json,
# "Rational_version_A"): least-squares fits of leaky_relu (slope 0.01) on [-3, 3], numerator a_0..a_m, denominator
# b_1..b_n, by (numerator degree, denominator degree).
RATIONAL_LEAKY_RELU_INIT: dict[tuple[int, int], tuple[tuple[float, ...], tuple[float, ...]]] = {
    (5, 4): (
        (
            0.029792778657264946,
            0.6183735264987601,
            2.323309062531321,
            3.051936237265109,
            1.4854203263828845,
            0.2510244961111299,
        ),
        (-1.1419548357285474, 4.393159974992486, 0.8714712309957245, 0.34719662339598834),
    ),
    (3, 2): (
        (0.11440311001189646, 0.5891610756805713, 0.5423986871505561, 0.13286948390430828),
        (0.2074994452826854, 0.20726656124953777),
    ),
}


def rational(z: torch.Tensor, numerator: Sequence[torch.Tensor], denominator: Sequence[torch.Tensor]) -> torch.Tensor:
    """P(z) / Q(z), P(z) = sum_i a_i z^i and the safe Q(z) = 1 + sum_j |b_j| |z|^j (>= 1: no pole)."""
    p = numerator[-1]
    for a in reversed(numerator[:-1]):  # Horner
        p = p * z + a
    q = torch.ones_like(z)
    magnitude, power = z.abs(), torch.ones_like(z)
    for b in denominator:
        power = power * magnitude
        q = q + b.abs() * power
    return p / q


class Rational(nn.Module):
    """Molina et al. 2020 (Padé Activation Units, ICLR): P(z) / Q(z) of degrees (5, 4) by default with the safe
    denominator Q(z) = 1 + sum_j |b_j| |z|^j (the reference code's version A).

    Parameters, per layer: `numerator` (a_0 .. a_m) and `denominator` (b_1 .. b_n), initialised to the reference
    code's stored fit of leaky ReLU. Its slope tends to a_m / |b_n| far out (m = n + 1): bounded.

    Args:
        numerator_degree: m, the degree of P (5 or 3: the reference code's stored leaky ReLU fits).
        denominator_degree: n, the degree of Q (4 with m = 5, 2 with m = 3).
    """

    def __init__(self, numerator_degree: int = 5, denominator_degree: int = 4) -> None:
        super().__init__()
        degrees = (numerator_degree, denominator_degree)
        if degrees not in RATIONAL_LEAKY_RELU_INIT:
            known = " or ".join(f"{m}/{n}" for m, n in RATIONAL_LEAKY_RELU_INIT)
            raise ValueError(f"degrees {numerator_degree}/{denominator_degree} have no stored initial fit; use {known}")
        numerator, denominator = RATIONAL_LEAKY_RELU_INIT[degrees]
        self.numerator = nn.Parameter(torch.tensor(numerator))
        self.denominator = nn.Parameter(torch.tensor(denominator))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return rational(z, list(self.numerator), list(self.denominator))

    def extra_repr(self) -> str:
        return f"degrees=({len(self.numerator) - 1}, {len(self.denominator)})"


# ---------------------------------------------------------------- stacked forms (harness/networks/stacked_layers.py)
# z holds K members' pre-activations, member axis kdim and unit axis cdim; each member's parameter is row k of the
# stacked (K, ...) parameter of the shadow module `act`.


def shaped(w: torch.Tensor, z: torch.Tensor, kdim: int, cdim: int) -> torch.Tensor:
    """A stacked activation parameter ((K, 1) or (K, units)) shaped to broadcast over z."""
    shape = [1] * z.dim()
    shape[kdim], shape[cdim] = w.shape
    return w.view(shape)


def columns(w: torch.Tensor, z: torch.Tensor, kdim: int, cdim: int) -> list[torch.Tensor]:
    """A stacked per-layer coefficient vector (K, n) as n tensors (K, 1), each shaped to broadcast over z."""
    return [shaped(c, z, kdim, cdim) for c in w.split(1, dim=1)]


def stacked_xielu(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    assert isinstance(act, XIELU)  # STACKED_FORMS' key
    return xielu(z, shaped(act.alpha_p, z, kdim, cdim), shaped(act.alpha_n, z, kdim, cdim), act.beta, act.eps)


def stacked_polyrelu(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    assert isinstance(act, PolyReLU)  # STACKED_FORMS' key
    return cubic(powers(F.relu(z)), columns(act.weight, z, kdim, cdim), shaped(act.bias, z, kdim, cdim))


def stacked_polynorm(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    """The norm over cdim: one member's units only (its features, or its channels at one position)."""
    assert isinstance(act, PolyNorm)  # STACKED_FORMS' key
    return polynorm(z, columns(act.weight, z, kdim, cdim), shaped(act.bias, z, kdim, cdim), cdim, act.eps)


def stacked_rational(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    assert isinstance(act, Rational)  # STACKED_FORMS' key
    return rational(z, columns(act.numerator, z, kdim, cdim), columns(act.denominator, z, kdim, cdim))


STACKED_FORMS: dict[type[nn.Module], Callable[[torch.Tensor, nn.Module, int, int], torch.Tensor]] = {
    XIELU: stacked_xielu,
    PolyReLU: stacked_polyrelu,
    PolyNorm: stacked_polynorm,
    Rational: stacked_rational,
}
