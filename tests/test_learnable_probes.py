"""Dead and saturated units for the learnable and unbounded-slope activations of 2023-2026 (docs/activations.md,
"Probes"): units forced into each state by their pre-activations (a Linear with zero weights, whose output is its
bias) or by parameters set by hand; saturation null where f' is unbounded or not one function of z; max|f'| from
each module's current parameters, per unit for the spline; PolyNorm's slope the diagonal of its Jacobian; and the
stacked probe equals the single one."""

from __future__ import annotations

import pytest
import torch

from harness.networks import probes, stacked
from harness.networks.activations import activation_spec, derivative
from harness.networks.models import MLP
from harness.networks.modern import PolyNorm, polynorm
from harness.networks.spline import SplineActivation
from harness.networks.unit_slopes import polynorm_diagonal, spline_max_slopes, stacked_unit_derivative
from tests.test_stacked_probes import assert_same_stats, probe_both


def forced(name: str, biases: list[float], **params: object) -> MLP:
    """One hidden layer with zero weights: each pre-activation is exactly its bias (a gated unit's [u, g] halves:
    the first half of the biases, then the second)."""
    spec = activation_spec({"name": name, **params})
    width = len(biases) // 2 if name == "drelu" else len(biases)
    net = MLP(3, 2, spec, depth=1, width=width).double()
    with torch.no_grad():
        net.hidden[0].linear.weight.zero_()
        net.hidden[0].linear.bias.copy_(torch.tensor(biases))
    return net


def probe(net: MLP) -> probes.LayerStats:
    """The probe on its own, with max|f'| from the module (as a learnable activation's run does)."""
    return probes.probe_units(net, torch.randn(16, 3, dtype=torch.float64), None)["hidden.0"]


def act_of(net: MLP) -> torch.nn.Module:
    return net.hidden[0].act


def test_telu_dies_far_below_zero_and_saturates_before_it_dies():
    """telu'(z) ~ (1 + z) e^z for z << 0: 4e-4 at -10 (under 0.5% of max|f'| 1.06: saturated, not dead), 3e-12 at
    -30 (dead); near 1 for z > 0."""
    stats = probe(forced("telu", [-30.0, -10.0, 0.0, 5.0]))
    assert (stats.dead, stats.saturated) == (1, 2)


@pytest.mark.parametrize("name", ["xielu", "polyrelu", "polynorm"])
def test_saturation_is_null_where_the_slope_is_unbounded_or_not_one_function_of_z(name):
    stats = probe(forced(name, [-50.0, -1.0, 0.5, 50.0]))
    assert stats.saturated is None and stats.saturated_fraction is None
    assert probes.overall_fractions({"hidden.0": stats})[1] is None


def test_xielu_dies_only_when_its_learnt_left_tail_flattens():
    """Its slope a_n e^z - a_n + beta tends to beta - a_n (-0.3 at init) for z << 0 and grows as 2 a_p z + beta for
    z > 0: no unit dies at init. Learnt down to a_n = beta + softplus(-30) (~ beta + 1e-13), the left tail is flat:
    the units at -500 and at 0 (the left formula's, its slope there beta - a_n) die, the one at -1 does not."""
    net = forced("xielu", [-500.0, -1.0, 0.0, 500.0])
    assert probe(net).dead == 0
    with torch.no_grad():
        act_of(net).alpha_n.fill_(-30.0)
    stats = probe(net)
    assert stats.dead == 2 and stats.alive is not None and stats.alive.tolist() == [False, True, False, True]


def test_polyrelu_dies_where_z_never_rises_above_zero():
    stats = probe(forced("polyrelu", [-5.0, -0.1, 0.5, 3.0]))
    assert stats.dead == 2


def test_polynorm_slope_is_the_diagonal_of_its_jacobian():
    """Against torch.autograd's full Jacobian, on an MLP's (batch, units) and a CNN's (batch, channels, positions)
    layout; the stacked form normalises over one member's units and equals each member's own."""
    g = torch.Generator().manual_seed(0)
    act = PolyNorm().double()
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.5, -1.5, 2.0]))
    for shape in [(4, 6), (2, 5, 3)]:
        z = torch.randn(*shape, generator=g, dtype=torch.float64)
        jacobian = torch.autograd.functional.jacobian(act, z).reshape(z.numel(), z.numel())
        got = polynorm_diagonal(z, list(act.weight), 1, act.eps)
        torch.testing.assert_close(got.flatten(), jacobian.diagonal(), rtol=1e-10, atol=1e-12)
    weights = torch.tensor([[0.5, -1.5, 2.0], [1.0, 0.2, -0.3]], dtype=torch.float64)
    z = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)  # (K, B, units)
    shadow = PolyNorm().double()
    shadow.weight = torch.nn.Parameter(weights)
    got = stacked_unit_derivative(shadow, z, 0, 2)
    assert got is not None
    for k in range(2):
        torch.testing.assert_close(got[k], polynorm_diagonal(z[k], list(weights[k]), 1, shadow.eps))
    with torch.no_grad():  # a sanity check of the formula's own input: PolyNorm's forward
        torch.testing.assert_close(act(z[0]), polynorm(z[0], list(act.weight), act.bias, 1, act.eps))


def test_polynorm_is_dead_only_when_its_weights_vanish():
    """Every unit at one same pre-activation z still has a slope, p (1 - 1/U)/z per power p, though the gradient of
    the sum of its outputs is ~0 there (each N(z^p) is constant along (1, ..., 1) but for eps): a probe that took the
    column sums of the Jacobian for the slope, as for an elementwise unit, would call all four dead. Zero weights
    leave y = b: dead. Alone and stacked alike."""
    nets = [forced("polynorm", [20.0] * 4), forced("polynorm", [20.0] * 4)]  # eps moves that sum by ~1e-10
    with torch.no_grad():
        act_of(nets[1]).weight.zero_()
    got, want = probe_both(nets, torch.randn(16, 3, dtype=torch.float64), [None, None])
    assert [w["hidden.0"].dead for w in want] == [0, 4]
    for g, w in zip(got, want):
        assert_same_stats(g, w)


SOFTSIGN = {"numerator": [0.0, 1.0, 0.0, 0.0, 0.0, 0.0], "denominator": [1.0, 0.0, 0.0, 0.0]}  # z / (1 + |z|)


@pytest.mark.parametrize("scale", [1.0, 0.01, 30.0])
def test_rational_saturates_against_its_own_current_max_slope(scale):
    """Coefficients set to softsign times `scale`: f' = scale / (1 + |z|)^2, max|f'| = scale at 0. Past |z| ~ 13
    the slope is under 0.5% of it whatever the scale (z = 30: saturated, z = 5: not); a max|f'| not taken from the
    current coefficients (the initial fit's, ~1.04) would call the z = 5 unit saturated at scale 0.01."""
    net = forced("rational", [0.0, 5.0, -30.0, 30.0])
    with torch.no_grad():
        act_of(net).numerator.copy_(scale * torch.tensor(SOFTSIGN["numerator"]))
        act_of(net).denominator.copy_(torch.tensor(SOFTSIGN["denominator"]))
    stats = probe(net)
    assert (stats.dead, stats.saturated) == (0, 2)


def test_a_constant_rational_is_dead():
    net = forced("rational", [-1.0, 0.0, 4.0])
    with torch.no_grad():
        act_of(net).numerator.copy_(torch.tensor([0.7, 0.0, 0.0, 0.0, 0.0, 0.0]))
        act_of(net).denominator.zero_()  # Q = 1: f = 0.7
    assert probe(net).dead == 3


def spline_net(biases: list[float], base: list[float]) -> MLP:
    """Each unit its own w_b; no spline term (c = 0): f(z) = w_b silu(z)."""
    net = forced("spline", biases)
    act = act_of(net)
    with torch.no_grad():
        act.base_weight.copy_(torch.tensor(base))
        act.coef.zero_()
    return net


def test_spline_units_saturate_against_their_own_max_slope():
    """|silu'(-4)| = 0.053 is 4.8% of max|silu'| (1.0998): unsaturated for a unit of w_b 0.1 and one of 10 alike.
    One max|f'| for the whole layer (11.0) would call the w_b = 0.1 unit saturated (its slope 0.0053 < 0.055)."""
    net = spline_net([-4.0, -4.0], [10.0, 0.1])
    assert spline_max_slopes(act_of(net)).tolist() == pytest.approx([10 * 1.0998393, 0.1 * 1.0998393], rel=1e-6)
    stats = probe(net)
    assert (stats.dead, stats.saturated) == (0, 0)
    stats = probe(spline_net([-9.0, -40.0], [10.0, 0.1]))  # silu'(-9) ~ -1e-3: saturated; silu'(-40) ~ 0: dead
    assert (stats.dead, stats.saturated) == (1, 2)


def test_spline_max_slope_matches_a_dense_grid():
    """With learnt-looking coefficients (random) and a grid of its own, per unit, against f' on 40,001 points."""
    torch.manual_seed(3)
    act = SplineActivation(grid_size=4, order=2, grid_min=-2.0, grid_max=3.0).double()
    act.set_units(3)
    act.double()
    with torch.no_grad():
        act.coef.normal_()
        act.base_weight.copy_(torch.tensor([0.5, 0.0, -2.0]))
    z = torch.linspace(-20, 20, 40001, dtype=torch.float64)[:, None].expand(40001, 3)
    want = derivative(act, z).abs().amax(0)
    torch.testing.assert_close(spline_max_slopes(act), want, rtol=2e-3, atol=0)


def test_drelu_dies_with_either_half_shut_and_saturates_with_its_gate_shut():
    """y = relu(u) relu(g), [u, g] = [(1, 1, -1, -1), (1, -1, 1, -1)]: alive only with both open; dead when
    either half is shut (it passes nothing back); saturated where the gate is shut (relu'(g) = 0)."""
    stats = probe(forced("drelu", [1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))
    assert (stats.units, stats.dead, stats.saturated) == (4, 3, 2)
    assert stats.alive is not None and stats.alive.tolist() == [True, False, False, False]


NAMES = ["telu", "xielu", "polyrelu", "polynorm", "drelu", "rational", "spline"]


@pytest.mark.parametrize("name", NAMES)
def test_the_stacked_probe_equals_each_members_own(name):
    """Two members with their own parameters (shifted by their seed's noise), two units of each forced far below
    zero (dead, where the activation dies there): every count and mask equal, as in tests/test_stacked_probes.py."""
    spec = activation_spec({"name": name})
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = MLP(6, 3, spec, depth=2, width=6).double()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.3 * torch.randn_like(p))
            net.hidden[0].linear.bias[:2] = -40.0  # two units forced shut (some activations' dead)
        models.append(net)
    assert stacked.why_not_stacked(spec()) is None
    x = 4 * torch.randn(300, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got, want = probe_both(models, x, [spec.max_slope] * 2)
    for g, w in zip(got, want):
        assert_same_stats(g, w)
    never_shut = name in ("xielu", "polynorm", "rational")  # no slope of theirs vanishes at z ~ -40
    assert never_shut or all(w["hidden.0"].dead >= 2 for w in want)
