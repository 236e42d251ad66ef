"""Gated and squared activations against torch.nn.functional.glu, hand formulas and gradcheck; the unit probe
(harness.networks.probes.probe_units) on gated layers built by hand, whose gates are forced open or shut."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from scipy.stats import norm
from torch import nn

from harness.networks.gated import (
    GATED_ACTIVATIONS,
    GLU,
    SQUARED_ACTIVATIONS,
    StarReLU,
    expansion,
    gate_max_slope,
    saturation_defined,
)
from harness.networks.probes import probe_units

# Reference: the value half u = x[:, :n] times f of the gate half g = x[:, n:], written out by hand.
HAND = {
    "glu": lambda u, g: u / (1 + torch.exp(-g)),
    "reglu": lambda u, g: u * torch.where(g > 0, g, torch.zeros_like(g)),
    "geglu": lambda u, g: u * g * 0.5 * (1 + torch.erf(g / math.sqrt(2))),
    "swiglu": lambda u, g: u * g / (1 + torch.exp(-g)),
    "bilinear": lambda u, g: u * g,
    "drelu": lambda u, g: torch.where(u > 0, u, torch.zeros_like(u)) * torch.where(g > 0, g, torch.zeros_like(g)),
}
# Their hand derivatives (d/du, d/dg).
HAND_GRAD = {
    "glu": lambda u, g: (torch.sigmoid(g), u * torch.sigmoid(g) * (1 - torch.sigmoid(g))),
    "reglu": lambda u, g: (g.clamp_min(0), u * (g > 0)),
    "geglu": lambda u, g: (g * norm_cdf(g), u * (norm_cdf(g) + g * torch.exp(-(g**2) / 2) / math.sqrt(2 * math.pi))),
    "swiglu": lambda u, g: (g * torch.sigmoid(g), u * torch.sigmoid(g) * (1 + g * (1 - torch.sigmoid(g)))),
    "bilinear": lambda u, g: (g, u),
    "drelu": lambda u, g: ((u > 0) * g.clamp_min(0), u.clamp_min(0) * (g > 0)),
}


def norm_cdf(g: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(g / math.sqrt(2)))


def test_every_gated_activation_has_references():
    assert set(HAND) == set(HAND_GRAD) == set(GATED_ACTIVATIONS)


def features(shape=(6, 2 * 57)) -> torch.Tensor:
    """Values in [-7, 7] that avoid ReLU's kink at exactly 0, in (B, 2n) layout."""
    return torch.linspace(-7, 7, math.prod(shape), dtype=torch.float64)[torch.randperm(math.prod(shape))].reshape(shape)


@pytest.mark.parametrize("name", sorted(GATED_ACTIVATIONS))
def test_gated_values_and_gradients_match_hand_formulas(name):
    torch.manual_seed(0)
    x = features().requires_grad_(True)
    act = GATED_ACTIVATIONS[name]()
    y = act(x)
    u, g = x.detach()[:, :57], x.detach()[:, 57:]
    torch.testing.assert_close(y, HAND[name](u, g))
    weights = torch.randn_like(y)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    du, dg = HAND_GRAD[name](u, g)
    torch.testing.assert_close(grad, torch.cat([weights * du, weights * dg], dim=1))


def test_glu_is_torch_glu_on_both_the_feature_and_the_channel_axis():
    x = torch.randn(4, 10, 7, dtype=torch.float64, requires_grad=True)  # (B, 2C, L)
    weights = torch.randn(4, 5, 7, dtype=torch.float64)
    (ours,) = torch.autograd.grad((GLU()(x) * weights).sum(), x)
    (ref,) = torch.autograd.grad((F.glu(x, dim=1) * weights).sum(), x)
    torch.testing.assert_close(GLU()(x), F.glu(x, dim=1))
    torch.testing.assert_close(ours, ref)
    flat = torch.randn(3, 8)
    torch.testing.assert_close(GLU()(flat), F.glu(flat, dim=1))


@pytest.mark.parametrize("name", sorted(GATED_ACTIVATIONS) + sorted(SQUARED_ACTIVATIONS))
def test_gradcheck_in_float64(name):
    torch.manual_seed(0)
    act = {**GATED_ACTIVATIONS, **SQUARED_ACTIVATIONS}[name]().double()
    x = features((3, 8)) + 0.01  # no input at ReLU's kink, where finite differences disagree with either side
    assert torch.autograd.gradcheck(act, (x.requires_grad_(True),))
    if name == "star_relu":  # and its learnable scale and bias
        assert torch.autograd.gradcheck(
            lambda s, b: s * F.relu(x.detach()) ** 2 + b,
            (act.scale.detach().clone().requires_grad_(), act.bias.detach().clone().requires_grad_()),
        )


def test_gated_refuses_an_odd_number_of_inputs():
    with pytest.raises(ValueError, match="even size along dim 1, got 7"):
        GLU()(torch.randn(2, 7))


def test_squared_relu_family_against_hand_formulas():
    z = torch.linspace(-3, 3, 61, dtype=torch.float64).requires_grad_(True)
    relu_sq = SQUARED_ACTIVATIONS["relu_squared"]()
    torch.testing.assert_close(relu_sq(z), torch.where(z > 0, z * z, 0 * z))
    (grad,) = torch.autograd.grad(relu_sq(z).sum(), z)
    torch.testing.assert_close(grad, torch.where(z > 0, 2 * z, 0 * z))
    star = StarReLU(scale=0.5, bias=-0.25).double()
    y = star(z)
    torch.testing.assert_close(y, 0.5 * torch.where(z > 0, z * z, 0 * z) - 0.25)
    y.sum().backward()
    assert star.scale.grad.item() == pytest.approx(float((z.detach().clamp_min(0) ** 2).sum()))
    assert star.bias.grad.item() == pytest.approx(61)
    assert not StarReLU(learnable=False).scale.requires_grad


def test_star_relu_defaults_standardise_a_normal_input():
    """MetaFormer's s = 0.8944, b = -0.4472: mean 0 and variance 1 on z ~ N(0, 1), by scipy quadrature."""
    star = StarReLU().double()
    f = lambda z: star(torch.tensor([z], dtype=torch.float64)).item()  # noqa: E731
    mean, _ = integrate.quad(lambda z: f(z) * norm.pdf(z), -12, 12, points=[0])
    second, _ = integrate.quad(lambda z: f(z) ** 2 * norm.pdf(z), -12, 12, points=[0])
    assert mean == pytest.approx(0, abs=1e-7) and second - mean**2 == pytest.approx(1, abs=1e-7)
    assert star.scale.item() == pytest.approx(0.8944, abs=1e-4) and star.bias.item() == pytest.approx(-0.4472, abs=1e-4)


def test_expansion_and_saturation_flags():
    assert {expansion(cls()) for cls in GATED_ACTIVATIONS.values()} == {2}
    assert expansion(nn.ReLU()) == 1 and expansion(SQUARED_ACTIVATIONS["relu_squared"]()) == 1
    assert not any(saturation_defined(cls()) for cls in SQUARED_ACTIVATIONS.values())
    assert saturation_defined(nn.ReLU()) and saturation_defined(GLU())


def test_gate_max_slope_matches_closed_forms():
    assert gate_max_slope(GATED_ACTIVATIONS["glu"]()) == pytest.approx(0.25, abs=1e-6)  # sigmoid'(0)
    assert gate_max_slope(GATED_ACTIVATIONS["reglu"]()) == 1
    assert gate_max_slope(GATED_ACTIVATIONS["bilinear"]()) == 1
    assert gate_max_slope(GATED_ACTIVATIONS["swiglu"]()) == pytest.approx(1.0998, abs=1e-4)  # silu' at z ~ 2.40


# ---------------------------------------------------------------- the unit probe on hand-built layers

UNITS = 4


class OneLayer(nn.Module):
    """A one-hidden-layer network as the probes see a model (harness.networks.models.activation_layers reads its
    `hidden` blocks' `act`): `linear` (hand-set, or none) then the activation under test."""

    def __init__(self, act: nn.Module, linear: nn.Module | None = None):
        super().__init__()
        block = nn.Module()
        block.linear, block.act = linear or nn.Identity(), act
        self.hidden = nn.ModuleList([block])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = self.hidden[0]
        return block.act(block.linear(x))


def forced_layer(gate_bias: float, value_weight: float = 1.0) -> nn.Linear:
    """A Linear(3, 2 * UNITS) whose gate half ignores the input and sits at gate_bias (forced open or shut), and
    whose value half is value_weight times the input's first feature."""
    layer = nn.Linear(3, 2 * UNITS)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:UNITS, 0] = value_weight
        layer.bias.zero_()
        layer.bias[UNITS:] = gate_bias
    return layer


def probe(name: str, layer: nn.Module | None, x: torch.Tensor | None = None) -> tuple[list[bool], int]:
    """What the production probe (harness.networks.probes.probe_units) finds in the layer: (dead or not, per unit; how
    many units are saturated)."""
    if x is None:
        x = torch.randn(256, 3, generator=torch.Generator().manual_seed(0))
    (stats,) = probe_units(OneLayer(GATED_ACTIVATIONS[name](), layer), x).values()
    return (~stats.alive).tolist(), stats.saturated


@pytest.mark.parametrize("name", ["glu", "reglu", "geglu", "swiglu"])
def test_a_gate_forced_shut_is_dead_and_saturated(name):
    assert probe(name, forced_layer(-50.0)) == ([True] * UNITS, UNITS)


def test_a_sigmoid_gate_forced_open_is_saturated_but_alive():
    """sigmoid(50) = 1: the unit is the identity on u (gradient flows to u) but its gate learns nothing."""
    assert probe("glu", forced_layer(50.0)) == ([False] * UNITS, UNITS)


@pytest.mark.parametrize("name", ["reglu", "geglu", "swiglu", "bilinear"])
def test_an_unbounded_gate_forced_open_is_alive_and_unsaturated(name):
    assert probe(name, forced_layer(50.0)) == ([False] * UNITS, 0)


def test_a_unit_whose_value_is_zero_is_alive_through_its_value_input():
    """u = 0 on every sample: dy/dg = u f'(g) = 0, but dy/du = f(g) is not, so the unit can still learn."""
    assert probe("swiglu", forced_layer(2.0, value_weight=0.0)) == ([False] * UNITS, 0)


def test_a_bilinear_unit_is_dead_only_when_both_halves_are_zero():
    assert probe("bilinear", forced_layer(0.0, value_weight=0.0)) == ([True] * UNITS, 0)
    assert probe("bilinear", forced_layer(0.0, value_weight=1.0)) == ([False] * UNITS, 0)


def test_units_are_judged_one_by_one_over_every_sample():
    """Unit 0 shut, unit 1 open on half the samples only (alive), on the channel axis of a (B, 2C, L) input."""
    g = torch.full((8, 2, 5), -50.0)
    g[:4, 1] = 3.0
    x = torch.cat([torch.ones(8, 2, 5), g], dim=1)
    assert probe("reglu", None, x) == ([True, False], 1)
