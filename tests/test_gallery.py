"""The gallery's properties against closed forms and scipy; the gallery command's files and bad input."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from scipy import integrate, optimize
from scipy.stats import norm

from harness.networks.activations import make_activation
from harness.networks.gated import GatedActivation
from harness.report.gallery import (
    default_activations,
    display,
    plane_normal_mean,
    properties,
    property_table,
    two_input_curves,
)
from scripts import gallery
from tests.test_bench import assert_drawn

ROOT = Path(__file__).resolve().parents[1]


def f(name: str, **params):
    """The activation as a plain float function, for scipy."""
    act = make_activation(name, **params).double().eval()
    return lambda x: act(torch.tensor([x], dtype=torch.float64)).item()


@pytest.mark.parametrize(
    "name, params",
    [
        ("relu", {}),
        ("elu", {}),
        ("selu", {}),
        ("gelu", {}),
        ("silu", {}),
        ("sigmoid", {}),
        ("softplus", {}),
        ("leaky_relu", {"negative_slope": 0.2}),
    ],
)
def test_mean_on_standard_normal_matches_scipy_quadrature(name, params):
    g = f(name, **params)
    expected, _ = integrate.quad(lambda z: g(z) * norm.pdf(z), -12, 12, points=[0], limit=200)
    assert properties(name, params)["E f(z), z~N(0,1)"] == pytest.approx(expected, abs=1e-6)


def test_closed_forms():
    assert properties("relu")["E f(z), z~N(0,1)"] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-7)
    assert properties("leaky_relu", {"negative_slope": 0.2})["E f(z), z~N(0,1)"] == pytest.approx(
        0.8 / math.sqrt(2 * math.pi), abs=1e-7
    )
    assert properties("softplus")["f(0)"] == pytest.approx(math.log(2))
    assert properties("sigmoid")["max |f'|"] == pytest.approx(0.25, abs=1e-6)
    assert properties("hardswish")["max |f'|"] == pytest.approx(1.5, abs=1e-3)


@pytest.mark.parametrize("name", ["gelu", "silu", "mish"])
def test_lower_bound_of_non_monotonic_activations_matches_scipy_minimum(name):
    found = optimize.minimize_scalar(f(name), bounds=(-5, 0), method="bounded", options={"xatol": 1e-9})
    row = properties(name)
    assert row["output range"] == f"{found.fun:.3g} to ∞"
    assert row["monotonic"] == "no" and row["bounded"] == "below only"


EXPECTED = {  # activation: (output range, bounded, monotonic, zero-centred, smooth, zero-gradient region)
    "relu": ("0 to ∞", "below only", "yes", "no", "no", "z ≤ 0"),
    "leaky_relu": ("-∞ to ∞", "no", "yes", "no", "no", "none"),
    "sigmoid": ("0 to 1", "yes", "yes", "no", "yes", "none"),
    "tanh": ("-1 to 1", "yes", "yes", "yes", "yes", "none"),
    "softmax": ("0 to 1", "yes", "yes", "no", "yes", "none"),
    "relu6": ("0 to 6", "yes", "yes", "no", "no", "z ≤ 0 or z ≥ 6"),
    "elu": ("-1 to ∞", "below only", "yes", "no", "yes", "none"),
    "selu": ("-1.76 to ∞", "below only", "yes", "yes", "no", "none"),
    "gelu_tanh": ("-0.17 to ∞", "below only", "no", "no", "yes", "none"),  # its float64 tail is not a flat region
    "hardswish": ("-0.375 to ∞", "below only", "no", "no", "no", "z ≤ -3"),
    "hardsigmoid": ("0 to 1", "yes", "yes", "no", "no", "z ≤ -3 or z ≥ 3"),
    "hardtanh": ("-1 to 1", "yes", "yes", "yes", "no", "z ≤ -1 or z ≥ 1"),
    "softsign": ("-1 to 1", "yes", "yes", "yes", "yes", "none"),
    "tanhshrink": ("-∞ to ∞", "no", "yes", "yes", "yes", "none"),
    "logsigmoid": ("-∞ to 0", "above only", "yes", "no", "yes", "none"),
    "identity": ("-∞ to ∞", "no", "yes", "yes", "yes", "none"),
    "relu_squared": ("0 to ∞", "below only", "yes", "no", "yes", "z ≤ 0"),  # C¹: f' = 2 relu(z) is continuous
    "star_relu": ("-0.447 to ∞", "below only", "yes", "yes", "yes", "z ≤ 0"),
    # two inputs, y = u * f(g): monotonic is not defined; smoothness and the flat region are the gate's
    "glu": ("-∞ to ∞", "no", "n/a", "yes", "yes", "none"),
    "reglu": ("-∞ to ∞", "no", "n/a", "yes", "no", "g ≤ 0"),
    "geglu": ("-∞ to ∞", "no", "n/a", "yes", "yes", "none"),
    "swiglu": ("-∞ to ∞", "no", "n/a", "yes", "yes", "none"),
    "bilinear": ("-∞ to ∞", "no", "n/a", "yes", "yes", "none"),
}


def test_properties_of_the_reference_article_and_others():
    table = property_table([(n, n, {}) for n in EXPECTED]).set_index("activation")
    columns = ["output range", "bounded", "monotonic", "zero-centred", "smooth (C¹)", "zero-gradient region"]
    got = {name: tuple(table.loc[name, columns]) for name in EXPECTED}
    assert got == EXPECTED


def test_unbounded_derivatives_are_shown_as_infinite():
    table = display(property_table([(n, n, {}) for n in ("relu", "relu_squared", "star_relu", "swiglu")]))
    assert list(table["max |f'|"]) == ["1.000", "∞", "∞", "∞"]


def test_two_input_curves_match_hand_formulas():
    """SwiGLU along u = g = z is z·silu(z), slope silu(z) + z·silu'(z); at u = 1 it is the gate silu(z)."""
    z = torch.linspace(-4, 4, 81, dtype=torch.float64)
    (diagonal, slope), (gate, gate_slope) = two_input_curves(make_activation("swiglu"), z)
    s = torch.sigmoid(z)
    torch.testing.assert_close(torch.from_numpy(diagonal), z * z * s)
    torch.testing.assert_close(torch.from_numpy(slope), z * s + z * s * (1 + z * (1 - s)))
    torch.testing.assert_close(torch.from_numpy(gate), z * s)
    torch.testing.assert_close(torch.from_numpy(gate_slope), s * (1 + z * (1 - s)))


class SquaredProduct(GatedActivation):
    """u² g²: E = E u² · E g² = 1 for independent standard normals; E u·g² = 0."""

    def forward(self, x):
        u, g = self.split(x)
        return u**2 * g**2


def test_plane_mean_is_a_two_dimensional_normal_expectation():
    assert plane_normal_mean(SquaredProduct()) == pytest.approx(1, abs=1e-6)
    assert plane_normal_mean(make_activation("bilinear")) == pytest.approx(0, abs=1e-12)
    assert properties("swiglu")["f(0)"] == 0


def test_every_registered_activation_has_properties():
    table = property_table(default_activations())
    assert len(table) == len(default_activations()) and table.notna().all().all()
    assert list(table["activation"][:7]) == ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "rrelu", "relu6"]


def test_gallery_command_writes_figure_and_table(tmp_path, capsys):
    assert gallery.main(["--out", str(tmp_path), "--activations", "relu,swiglu"]) == 0
    assert capsys.readouterr().err == ""
    assert_drawn(tmp_path / "gallery.png")
    assert list(pd.read_csv(tmp_path / "properties.csv")["activation"]) == ["relu", "swiglu"]


@pytest.mark.slow  # the same, as a user runs it from a checkout: by path, in its own process
def test_gallery_script_runs_by_path(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "gallery.py"), "--out", str(tmp_path), "--activations", "relu"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert_drawn(tmp_path / "gallery.png")


def test_gallery_command_refuses_an_unknown_activation_in_one_line(tmp_path, capsys):
    assert gallery.main(["--out", str(tmp_path), "--activations", "relu,swish"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown activation swish; valid: relu,") and err.count("\n") == 1
