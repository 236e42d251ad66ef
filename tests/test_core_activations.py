"""Activations: the registry against torch.nn.functional, its YAML files, parameters and derivatives."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from harness.networks.activations import ACTIVATIONS, NAMES, derivative, make_activation, max_abs_derivative
from harness.setup.config import ActivationError

CONF = Path(__file__).resolve().parents[1] / "conf" / "activation"

# The reference answer for each registry entry, from torch.nn.functional (eval mode for RReLU).
REFERENCE = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: F.softmax(x, dim=1),
    "rrelu": lambda x: F.rrelu(x, 1 / 8, 1 / 3, training=False),
    "relu6": F.relu6,
    "elu": F.elu,
    "selu": F.selu,
    "celu": F.celu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "mish": F.mish,
    "prelu": lambda x: F.prelu(x, torch.tensor([0.25])),
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "hardtanh": F.hardtanh,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "tanhshrink": F.tanhshrink,
    "logsigmoid": F.logsigmoid,
    "identity": lambda x: x,
    # gated: the first half is the value, the second the gate (F.glu's order); tests/test_gated.py has more
    "glu": lambda x: F.glu(x, dim=1),
    "reglu": lambda x: x.chunk(2, 1)[0] * F.relu(x.chunk(2, 1)[1]),
    "geglu": lambda x: x.chunk(2, 1)[0] * F.gelu(x.chunk(2, 1)[1]),
    "swiglu": lambda x: x.chunk(2, 1)[0] * F.silu(x.chunk(2, 1)[1]),
    "bilinear": lambda x: x.chunk(2, 1)[0] * x.chunk(2, 1)[1],
    "relu_squared": lambda x: F.relu(x) ** 2,
    "star_relu": lambda x: 0.8944271909999159 * F.relu(x) ** 2 - 0.4472135954999579,
    # 2023-2026, at their initial parameters (tests/test_modern_activations.py checks them against the papers' code)
    "telu": lambda x: x * torch.tanh(torch.exp(x)),
    "xielu": lambda x: torch.where(x > 0, 0.8 * x**2 + 0.5 * x, 0.8 * torch.expm1(x.clamp(max=-1e-6)) - 0.3 * x),
    "polyrelu": lambda x: (F.relu(x) ** 3 + F.relu(x) ** 2 + F.relu(x)) / 3,
    "polynorm": lambda x: sum(x**j * torch.rsqrt((x ** (2 * j)).mean(1, keepdim=True) + 1e-6) for j in (1, 2, 3)) / 3,
    "drelu": lambda x: F.relu(x.chunk(2, 1)[0]) * F.relu(x.chunk(2, 1)[1]),
    "rational": lambda x: rational_by_hand(x),
    "spline": F.silu,  # with its coefficients zeroed by the test: the base alone
}


def rational_by_hand(x: torch.Tensor) -> torch.Tensor:
    """rationals_config.json's "Rational_version_A5/4" leaky_relu fit, in float32 as the module stores it."""
    a = torch.tensor([0.029792778657264946, 0.6183735264987601, 2.323309062531321, 3.051936237265109])
    a = torch.cat([a, torch.tensor([1.4854203263828845, 0.2510244961111299])])
    b = torch.tensor([-1.1419548357285474, 4.393159974992486, 0.8714712309957245, 0.34719662339598834])
    return sum(a[i] * x**i for i in range(6)) / (1 + sum(b[j].abs() * x.abs() ** (j + 1) for j in range(4)))


def test_every_activation_has_a_reference():
    assert set(REFERENCE) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_values_and_gradients_match_torch_functional(name):
    params = {k: v for k, v in yaml.safe_load((CONF / f"{name}.yaml").read_text()).items() if k != "name"}
    act = make_activation(name, **params).eval()
    if name == "spline":  # its coefficients are drawn at random: zero them, leaving w_b silu(z) with w_b = 1
        torch.nn.init.zeros_(act.coef)
    x = torch.linspace(-7, 7, 6 * 58).reshape(6, 58)  # (B, features), avoiding exact kinks at 0 and 3
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y1, y2 = act(x1), REFERENCE[name](x2)
    weights = torch.randn_like(y1)  # a non-uniform upstream gradient, so softmax's Jacobian is tested too
    torch.testing.assert_close(y1, y2)
    (y1 * weights).sum().backward()
    (y2 * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_name_matches_registry_key(path):
    node = yaml.safe_load(path.read_text())
    assert node["name"] == path.stem
    assert path.stem in NAMES


def test_every_registry_entry_has_a_yaml_file():
    assert {p.stem for p in CONF.glob("*.yaml")} == set(NAMES)


def test_parameters_reach_the_module():
    act = make_activation("leaky_relu", negative_slope=0.2)
    assert act(torch.tensor([-1.0])).item() == pytest.approx(-0.2)


def test_unknown_parameter_is_refused_with_the_valid_ones():
    with pytest.raises(ActivationError, match="negative_slope"):
        make_activation("leaky_relu", slope=0.2)
    with pytest.raises(ActivationError, match="valid: none"):
        make_activation("relu", alpha=1.0)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ActivationError, match="leaky_relu"):
        make_activation("lrelu")


class Square(torch.nn.Module):
    """A user's own activation, importable as tests.test_core_activations.Square."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return self.scale * x * x


def test_custom_activation_plugs_in_by_import_path():
    act = make_activation("custom", target="tests.test_core_activations.Square", scale=2.0)
    assert act(torch.tensor([3.0])).item() == 18.0
    with pytest.raises(ActivationError, match="scale"):
        make_activation("custom", target="tests.test_core_activations.Square", alpha=2.0)
    with pytest.raises(ActivationError, match="cannot import"):
        make_activation("custom", target="tests.nowhere.Square")


def test_each_layer_gets_its_own_prelu_slope():
    from harness.networks.activations import activation_spec

    factory = activation_spec({"name": "prelu"})
    a, b = factory(), factory()
    assert a.weight is not b.weight


@pytest.mark.parametrize(
    "name, expected",
    [
        ("relu", 1.0),
        ("sigmoid", 0.25),
        ("tanh", 1.0),
        ("leaky_relu", 1.0),
        ("softmax", 0.25),
        ("relu6", 1.0),
        ("selu", 1.0507009873554805 * 1.6732632423543772),
        ("identity", 1.0),
    ],
)
def test_max_abs_derivative(name, expected):
    assert max_abs_derivative(make_activation(name)) == pytest.approx(expected, rel=2e-3)


def test_prelu_max_derivative_follows_its_learned_slope():
    act = make_activation("prelu")
    with torch.no_grad():
        act.weight.fill_(-3.0)
    assert max_abs_derivative(act) == pytest.approx(3.0)


def test_derivative_against_closed_forms():
    z = torch.linspace(-5, 5, 101)
    s = torch.sigmoid(z)
    torch.testing.assert_close(derivative(make_activation("sigmoid"), z), s * (1 - s))
    torch.testing.assert_close(derivative(make_activation("tanh"), z), 1 - torch.tanh(z) ** 2)
    # the softmax diagonal on a (B, C) batch
    zb = torch.randn(4, 7)
    sm = torch.softmax(zb, dim=1)
    jac_diag = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: torch.softmax(v, 0), row).diagonal() for row in zb]
    )
    torch.testing.assert_close(derivative(make_activation("softmax"), zb), sm * (1 - sm))
    torch.testing.assert_close(derivative(make_activation("softmax"), zb), jac_diag)
    assert not math.isnan(derivative(make_activation("relu"), z).sum().item())
