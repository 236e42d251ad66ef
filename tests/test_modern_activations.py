"""The activations of 2023-2026 (harness/networks/modern.py, spline.py, gated.py's dReLU): hand formulas, float64
gradcheck, values and slopes computed by each paper's reference code, per-unit parameters, parameter matching and
the dReLU value half's init gain."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.interpolate
import torch
import torch.nn.functional as F
from torch import nn

from harness.networks.activations import ACTIVATIONS, activation_spec, make_activation
from harness.networks.gated import DReLU, gated_slopes, parameter_count, saturation_defined, set_units
from harness.networks.models import build_model, initialise
from harness.networks.models.transformer import TransformerConfig, ffn_width
from harness.networks.spline import SplineActivation, bspline_bases
from harness.networks.stacked_layers import why_not_stacked
from harness.setup.config import ConfigError, ModelConfig

NEW = ["telu", "xielu", "polyrelu", "polynorm", "drelu", "rational", "spline"]
F64 = torch.float64


def values_and_slopes(act: nn.Module, x: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.tensor(x, dtype=F64).requires_grad_(True)
    y = act.double()(z if not isinstance(act, SplineActivation) else z)
    (slope,) = torch.autograd.grad(y.sum(), z)
    return y.detach(), slope


def close(a: torch.Tensor, expected: list[float], rtol: float = 1e-12) -> None:
    """Where a module's initial parameters are stored in float32 (as in every model) before .double(), they are
    the reference's rounded to float32: rtol a little above that rounding's effect."""
    torch.testing.assert_close(a, torch.tensor(expected, dtype=F64), rtol=rtol, atol=1e-12)


POINTS = [-3.0, -1.0, -0.25, 0.5, 2.0]


def test_xielu_against_its_reference_code():
    """rubber-duck-debug/xielu @ 59d60314edf5, xielu/ops/wrappers.py XIELUPy() in float64 at POINTS."""
    y, slope = values_and_slopes(make_activation("xielu"), POINTS)
    close(y, [0.13982965469429143, -0.20569644706284607, -0.1019593735428761, 0.45, 4.2], rtol=1e-6)
    close(slope, [-0.26017034530570887, -0.005696447062846166, 0.32304062645712395, 1.3, 3.7], rtol=1e-6)


def test_polyrelu_and_polynorm_against_their_reference_code():
    """BryceZhuo/PolyCom @ 0ed8ad460f1e, dense_model/megatron_patch/model/llama2/transformer.py: poly(relu(x)) and
    polynorm(x) with the reference init (weights 1/3, bias 0), the norm over the last axis (our units, dim 1)."""
    y, slope = values_and_slopes(make_activation("polyrelu"), POINTS)
    close(y, [0.0, 0.0, 0.0, 0.29166666666666663, 4.666666666666667], rtol=1e-6)
    close(slope, [0.0, 0.0, 0.0, 0.9166666666666666, 5.666666666666666], rtol=1e-6)
    x = torch.tensor([[-1.5, 0.3, 2.0, -0.7], [0.1, -0.2, 0.4, 1.2]], dtype=F64, requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 0.25, 2.0, 1.0]], dtype=F64)
    y = make_activation("polynorm").double()(x)
    (grad,) = torch.autograd.grad((y * upstream).sum(), x)
    expected_y = [
        [-0.31663780340254377, 0.09159657074589189, 1.7016034813096872, -0.13411704278858072],
        [0.05688484757641424, -0.0884862140894895, 0.30586477753564173, 1.9513209986286373],
    ]
    expected_grad = [
        [0.4032466025321211, -0.6910805569686963, 0.5597234054609463, 0.4389327476336658],
        [-0.6815220305944546, 0.2180967873989978, 1.8545993648936612, -0.5250499235922457],
    ]
    torch.testing.assert_close(y.detach(), torch.tensor(expected_y, dtype=F64), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=F64), rtol=1e-6, atol=1e-12)


def test_rational_against_its_reference_code():
    """ml-research/rational_activations @ 2496d918d924, rational/torch/rational_pytorch_functions.py
    Rational_PYTORCH_A_F with rationals_config.json's "Rational_version_A5/4" leaky_relu coefficients."""
    y, slope = values_and_slopes(make_activation("rational"), POINTS)
    close(
        y,
        [-0.04180985269220567, -0.010680218401804319, -0.013792086846137166, 0.5007255866545549, 2.000234975309886],
        1e-5,
    )
    close(
        slope,
        [0.0692239777104949, 0.03768664992469675, -0.06830149852998219, 1.0236130825622438, 1.005758570767078],
        1e-5,
    )


def test_spline_against_efficient_kan():
    """Blealtan/efficient-kan @ 7b6ce1c87f18, src/efficient_kan/kan.py: KANLinear(1, 1, grid_size=5,
    spline_order=3, grid_range=[-1, 1]) with base_weight 0.7, spline_scaler 1.3 and these 8 coefficients, in float64,
    at points inside, at the edge of and outside the grid."""
    act = make_activation("spline").double()
    with torch.no_grad():
        act.base_weight.fill_(0.7)
        act.spline_weight.fill_(1.3)
        act.coef.copy_(torch.tensor([[0.3, -0.2, 0.5, 0.1, -0.4, 0.25, 0.05, -0.15]], dtype=F64))
    y, slope = values_and_slopes(act, [-2.5, -1.3, -0.6, 0.05, 0.45, 0.95, 1.6, 2.2])
    expected_y = [-0.1327518150371762, -0.036452665431271625, 0.2628423152815008, -0.1986234635188859]
    expected_y += [0.16865344202733817, 0.5766818928643707, 0.839777258016662, 1.386384246755685]
    expected_slope = [-0.06958077793906878, -0.775110997976636, 0.6394512046501474, -0.5046752576832139]
    expected_slope += [1.8124977861364613, 0.010099527767869376, 1.0233233165587752, 0.7684671643379262]
    close(y, expected_y)
    close(slope, expected_slope)


def hand(name: str, x: torch.Tensor) -> torch.Tensor:
    """Each formula written out at its initial parameters (x in float64, units on axis 1)."""
    relu = x.clamp_min(0)
    if name == "telu":
        return x * torch.tanh(torch.exp(x))
    if name == "xielu":  # a_p = a_n = 0.8, beta = 0.5, eps = -1e-6
        return torch.where(x > 0, 0.8 * x**2 + 0.5 * x, 0.8 * (torch.exp(x.clamp(max=-1e-6)) - 1 - x) + 0.5 * x)
    if name == "polyrelu":
        return (relu**3 + relu**2 + relu) / 3
    if name == "polynorm":
        return sum(x**j / torch.sqrt((x ** (2 * j)).mean(1, keepdim=True) + 1e-6) for j in (1, 2, 3)) / 3
    if name == "drelu":
        u, g = x.chunk(2, dim=1)
        return u.clamp_min(0) * g.clamp_min(0)
    raise KeyError(name)


@pytest.mark.parametrize("name", ["telu", "xielu", "polyrelu", "polynorm", "drelu"])
def test_formulas_by_hand_and_gradcheck_in_float64(name):
    torch.manual_seed(0)
    x = (torch.rand(4, 6, dtype=F64) * 6 - 3).requires_grad_(True)  # no point at 0 (probability 0)
    act = make_activation(name).double()
    torch.testing.assert_close(act(x), hand(name, x), rtol=1e-6, atol=1e-12)  # its float32 initial parameters
    assert torch.autograd.gradcheck(act, (x,))
    params = [p for p in act.parameters()]
    if params:  # and the gradients of its own parameters

        def of_params(*values: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(act, dict(zip([n for n, _ in act.named_parameters()], values)), (x,))

        assert torch.autograd.gradcheck(of_params, tuple(p.detach().clone().requires_grad_(True) for p in params))


@pytest.mark.parametrize("name", ["rational", "spline"])
def test_rational_and_spline_gradcheck_in_float64(name):
    torch.manual_seed(0)
    act = make_activation(name).double()
    set_units(act, 6)
    x = (torch.rand(4, 6, dtype=F64) * 6 - 3).requires_grad_(True)
    assert torch.autograd.gradcheck(act, (x,))
    names = [n for n, _ in act.named_parameters()]

    def of_params(*values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(act, dict(zip(names, values)), (x.detach(),))

    assert torch.autograd.gradcheck(of_params, tuple(p.detach().clone().requires_grad_(True) for p in act.parameters()))


def test_telu_slope_is_the_papers_derivative():
    """arXiv 2412.20269: f'(z) = tanh(e^z) + z e^z sech^2(e^z) (no reference code found to run: the formula is the
    reference), at POINTS in float64."""
    y, slope = values_and_slopes(make_activation("telu"), POINTS)
    z = torch.tensor(POINTS, dtype=F64)
    torch.testing.assert_close(y, z * torch.tanh(torch.exp(z)), rtol=1e-14, atol=0)
    expected = torch.tanh(torch.exp(z)) + z * torch.exp(z) / torch.cosh(torch.exp(z)) ** 2
    torch.testing.assert_close(slope, expected, rtol=1e-12, atol=1e-14)


def test_telu_is_finite_far_out_in_float32():
    x = torch.linspace(-100, 100, 20001).requires_grad_(True)
    y = make_activation("telu")(x)
    (slope,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(y).all() and torch.isfinite(slope).all()
    assert y[-1].item() == 100.0 and abs(y[0].item()) < 1e-30  # z for z >> 0, z e^z -> 0 for z << 0
    assert slope[-1].item() == 1.0
    with torch.no_grad():  # the clamp at e^20 changes no value: tanh(e^z) is 1 there already in float64
        z = torch.tensor([19.0, 20.0, 25.0], dtype=F64)
        torch.testing.assert_close(make_activation("telu")(z), z * torch.tanh(torch.exp(z)), rtol=0, atol=0)


def test_drelu_slopes_for_the_probes():
    """dy/du = relu'(u) relu(g), dy/dg = relu(u) relu'(g), gate slope relu'(g): not the identity value's f(g), u f'."""
    u = torch.tensor([[-1.0, 2.0, 3.0, -0.5]])
    g = torch.tensor([[2.0, -1.0, 0.5, -2.0]])
    to_value, to_gate, gate_slope = gated_slopes(DReLU(), torch.cat([u, g], dim=1))
    torch.testing.assert_close(to_value, torch.tensor([[0.0, 0.0, 0.5, 0.0]]))
    torch.testing.assert_close(to_gate, torch.tensor([[0.0, 0.0, 3.0, 0.0]]))
    torch.testing.assert_close(gate_slope, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))


def test_bases_are_scipys_bsplines_and_only_the_base_carries_outside_the_grid():
    grid, order, lo, hi = 5, 3, -1.0, 1.0
    h = (hi - lo) / grid
    knots = lo + h * np.arange(-order, grid + order + 1)
    z = torch.linspace(-2.0, 2.0, 401, dtype=F64)
    ours = bspline_bases(z, grid, order, lo, hi).numpy()
    for i in range(grid + order):
        ref = scipy.interpolate.BSpline.basis_element(knots[i : i + order + 2], extrapolate=False)(z.numpy())
        np.testing.assert_allclose(ours[:, i], np.nan_to_num(ref), atol=1e-12)
    act = make_activation("spline").double()
    outside = torch.tensor([lo - order * h - 0.01, hi + order * h + 0.01, -30.0, 30.0], dtype=F64)
    torch.testing.assert_close(act(outside), F.silu(outside), rtol=0, atol=0)


def test_spline_parameters_per_unit_and_its_initialisation():
    torch.manual_seed(0)
    act = make_activation("spline", noise_scale=0.1)
    set_units(act, 7)
    assert act.base_weight.shape == act.spline_weight.shape == (7,) and act.coef.shape == (7, 8)
    assert (act.base_weight == 1).all() and (act.spline_weight == 1).all()
    points = torch.linspace(-1, 1, 6)  # efficient-kan's noise at the G + 1 grid points, fitted exactly
    curve = (bspline_bases(points, 5, 3, -1.0, 1.0)[None] * act.coef[:, None]).sum(-1)
    assert curve.abs().max() <= 0.1 / 5 / 2 and curve.abs().max() > 0
    x = torch.randn(3, 7)
    x[:, 3] = 0.5  # each unit its own function: unit 3 changes alone
    before = act(x).detach()
    with torch.no_grad():
        act.coef[3] += 1.0
    changed = (act(x).detach() != before).any(0)
    assert changed.tolist() == [False, False, False, True, False, False, False]


def test_units_are_set_by_every_model_and_on_the_meta_device_draw_nothing():
    spec = activation_spec({"name": "spline"})
    for name, units in [("mlp", [8, 8]), ("cnn", [8, 8]), ("transformer", [16, 16]), ("rnn", [8, 8])]:
        extra = {"ffn_ratio": 2.0} if name == "transformer" else {}
        net = build_model(ModelConfig(name=name, width=8, depth=2, **extra), spec, (1, 40), 10)
        acts = [m for m in net.modules() if isinstance(m, SplineActivation)]
        assert sorted({a.units for a in acts}) == sorted(set(units)), name
    state = torch.random.get_rng_state()
    n = parameter_count(lambda m, act: build_model(m, act, (1, 40), 10), ModelConfig(width=8), spec)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert n == (40 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10) + 2 * 8 * (2 + 8)


DEFAULT_WIDTHS = {  # what match_params gave before the learnable activations joined it: it must not change
    ("mlp", "prelu"): 100,
    ("mlp", "star_relu"): 100,
    ("mlp", "swiglu"): 67,
    ("mlp", "glu"): 67,
    ("cnn", "prelu"): 25,
    ("cnn", "star_relu"): 25,
    ("cnn", "swiglu"): 18,
    ("cnn", "glu"): 18,
    ("rnn", "prelu"): 6,
    ("rnn", "star_relu"): 6,
    ("transformer", "prelu"): 128,  # d_ff
    ("transformer", "star_relu"): 128,
    ("transformer", "swiglu"): 85,
    ("transformer", "glu"): 85,
}


@pytest.mark.parametrize("family, act", list(DEFAULT_WIDTHS))
def test_existing_activations_keep_their_matched_width(family, act):
    net = build_model(ModelConfig(name=family, match_params=True), activation_spec({"name": act}), (1, 40), 10)
    assert (net.d_ff if family == "transformer" else net.width_used) == DEFAULT_WIDTHS[family, act]


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_a_spline_gets_the_width_closest_to_the_parameter_free_count():
    m = ModelConfig(width=20, depth=2, match_params=True)
    spec = activation_spec({"name": "spline"})
    target = count(
        build_model(dataclasses.replace(m, match_params=False), activation_spec({"name": "relu"}), (1, 40), 10)
    )
    counts = {w: count(build_model(ModelConfig(width=w, depth=2), spec, (1, 40), 10)) for w in range(1, 21)}
    best = min(counts, key=lambda w: (abs(counts[w] - target), -w))
    assert build_model(m, spec, (1, 40), 10).width_used == best < 20
    t = TransformerConfig(width=8, ffn_ratio=2.0, match_params=True)
    per_d = {d: 2 * 8 * d + d + 10 * d for d in range(1, 17)}  # ffn_in, its bias, the spline's 10 per unit
    assert ffn_width(t, make_activation("spline")) == min(
        per_d, key=lambda d: (abs(per_d[d] - per_d[16] + 10 * 16), -d)
    )


def test_drelu_value_half_gets_the_relu_gain():
    torch.manual_seed(0)
    for name, value_std in [("drelu", math.sqrt(2)), ("reglu", 1.0)]:
        net = build_model(ModelConfig(width=300, depth=1), activation_spec({"name": name}), (1, 400), 10)
        initialise(net, "kaiming", math.sqrt(2))
        u_rows, g_rows = net.hidden[0].linear.weight.detach().chunk(2, dim=0)
        assert u_rows.std().item() * 20 == pytest.approx(value_std, rel=0.02), name  # gain / sqrt(fan_in 400)
        assert g_rows.std().item() * 20 == pytest.approx(math.sqrt(2), rel=0.02)


def test_every_new_activation_stacks_and_has_its_saturation_rule():
    for name in NEW:
        act = make_activation(name)
        assert why_not_stacked(act) is None, name
    assert why_not_stacked(make_activation("polynorm", dim=-1)) is not None  # a norm over another axis
    unbounded = {n for n in NEW if not saturation_defined(make_activation(n))}
    assert unbounded == {"xielu", "polyrelu", "polynorm"}
    assert all(ACTIVATIONS[n].init == "kaiming" for n in NEW)


def test_bad_parameters_are_refused_in_one_line():
    from harness.setup.config import ActivationError

    for node, message in [
        ({"name": "rational", "numerator_degree": 4}, "no stored initial fit"),
        ({"name": "spline", "grid_min": 1.0}, "grid_min < grid_max"),
        ({"name": "xielu", "alpha_n_init": 0.2}, "alpha_n_init > beta"),
        ({"name": "polynorm", "dim": 0}, "dim 0 is the batch"),
    ]:
        with pytest.raises(ActivationError, match=message):
            activation_spec(node)


def test_the_rnn_takes_every_new_activation_but_the_gated_one():
    from harness.setup.resolve import check_gated_fits

    for name in NEW:
        if name == "drelu":
            with pytest.raises(ConfigError, match="^activation=drelu is gated"):
                check_gated_fits("rnn", activation_spec({"name": name}))
        else:
            check_gated_fits("rnn", activation_spec({"name": name}))


def test_the_memory_check_counts_every_spline_unit_as_the_real_model_does():
    """The preflight's meta-device model (harness.setup.footprint) holds a stand-in activation: it must pass the
    layer's units on, or it counts one spline per layer instead of one per unit."""
    from harness.networks.models import build_model
    from harness.setup.data import DATASETS
    from harness.setup.footprint import build_on_meta
    from tests.conftest import compose_config

    config = compose_config("activation=spline", "model=mlp")
    spec = activation_spec({"name": "spline"})
    shape = DATASETS[config.dataset.name]
    real = build_model(config.model, spec, shape.input_shape, shape.num_classes)
    assert build_on_meta(config, spec).params == sum(p.numel() for p in real.parameters())
