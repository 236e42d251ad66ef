"""Gated activations in the models: doubled projections, parameter-matched widths, the two halves' initialisation,
the RNN's refusal, the probes on hand-built layers, and a whole run."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from harness.networks.activations import activation_spec
from harness.networks.models import CNN, MLP, Dense, build_model, init_gain, initialise
from harness.networks.probes import overall_fractions, probe_units
from harness.setup.config import ConfigError, ModelConfig

SHAPE = (1, 40)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_the_projection_before_a_gated_activation_doubles_its_outputs():
    mlp = MLP(40, 10, activation_spec({"name": "swiglu"}), depth=2, width=8, norm="layer")
    assert [b.linear.out_features for b in mlp.hidden] == [16, 16] and mlp.hidden[1].linear.in_features == 8
    assert mlp.hidden[0].norm.normalized_shape == (16,) and mlp.head.in_features == 8
    assert mlp(torch.randn(3, 1, 40)).shape == (3, 10)
    cnn = CNN(SHAPE, 10, activation_spec({"name": "glu"}), depth=3, width=6, norm="batch")
    assert [b.conv.out_channels for b in cnn.hidden] == [12, 12, 12] and cnn.hidden[1].conv.in_channels == 6
    assert cnn.head.in_features == 6 * 5  # 40 -> 19 -> 10 -> 5 positions of 6 channels
    image = CNN((3, 16, 16), 10, activation_spec({"name": "reglu"}), depth=2, width=4)
    assert image(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("model, width, depth", [("mlp", 100, 2), ("cnn", 25, 3), ("mlp", 7, 4)])
def test_matched_width_is_the_closest_by_brute_force(model, width, depth):
    """Against every width built for real (PyTorch's parameters, counted), not the meta-device count."""
    m = ModelConfig(name=model, width=width, depth=depth, match_params=True)
    target = count(
        build_model(dataclasses.replace(m, match_params=False), activation_spec({"name": "relu"}), SHAPE, 10)
    )
    gated = {
        w: count(
            build_model(
                dataclasses.replace(m, width=w, match_params=False), activation_spec({"name": "swiglu"}), SHAPE, 10
            )
        )
        for w in range(width // 3, width + 1)
    }  # 2/3 x width lies inside
    best = min(gated, key=lambda w: (abs(gated[w] - target), -w))
    net = build_model(m, activation_spec({"name": "swiglu"}), SHAPE, 10)
    assert net.width_used == best and count(net) == gated[best]
    if width >= 25:  # coarse below: one unit of width is a large step
        assert abs(count(net) - target) / target < 0.05
    if model == "mlp" and width == 100:
        assert best == 67  # n(w) = 2w^2 + 94w + 10 against 15,210: 15,286 at 67, 14,926 at 66


def test_match_params_does_nothing_for_ungated_activations_or_when_off():
    on = ModelConfig(match_params=True)
    assert build_model(on, activation_spec({"name": "relu"}), SHAPE, 10).width_used == 100
    assert build_model(on, activation_spec({"name": "star_relu"}), SHAPE, 10).width_used == 100
    assert build_model(ModelConfig(), activation_spec({"name": "swiglu"}), SHAPE, 10).width_used == 100


def test_matching_draws_nothing_from_the_rng():
    """The search builds on the meta device: the matched model's initialisation is the one built at that width."""
    torch.manual_seed(0)
    matched = build_model(ModelConfig(match_params=True), activation_spec({"name": "geglu"}), SHAPE, 10)
    torch.manual_seed(0)
    direct = build_model(ModelConfig(width=matched.width_used), activation_spec({"name": "geglu"}), SHAPE, 10)
    assert all(torch.equal(a, b) for a, b in zip(matched.parameters(), direct.parameters()))


FAN_IN, UNITS = 400, 300


def gated_weight(scheme: str, act: str = "swiglu") -> tuple[torch.Tensor, torch.Tensor]:
    """(value rows, gate rows) of the second hidden layer's weight, 2 x 300 rows of 400 inputs."""
    torch.manual_seed(0)
    net = MLP(FAN_IN, 10, activation_spec({"name": act}), depth=2, width=FAN_IN)
    net.hidden[1] = Dense(FAN_IN, UNITS, activation_spec({"name": act}), "none")
    initialise(net, scheme, init_gain(act, {}))
    return net.hidden[1].linear.weight.detach().chunk(2, dim=0)


@pytest.mark.parametrize(
    "scheme, value_std, gate_std",
    [
        ("kaiming", 1 / math.sqrt(FAN_IN), math.sqrt(2) / math.sqrt(FAN_IN)),  # identity gain 1, the gate ReLU's sqrt 2
        (
            "xavier",
            math.sqrt(2 / (FAN_IN + UNITS)),
            math.sqrt(2) * math.sqrt(2 / (FAN_IN + UNITS)),
        ),  # fan-out n, not 2n
        ("lecun", 1 / math.sqrt(FAN_IN), 1 / math.sqrt(FAN_IN)),
    ],
)
def test_init_treats_the_halves_as_the_identity_and_the_activation(scheme, value_std, gate_std):
    value, gate = gated_weight(scheme)
    assert value.std().item() == pytest.approx(value_std, rel=0.03)
    assert gate.std().item() == pytest.approx(gate_std, rel=0.03)


def test_orthogonal_init_draws_each_half_orthogonal_with_its_gain():
    value, gate = gated_weight("orthogonal")
    torch.testing.assert_close(value @ value.T, torch.eye(UNITS), atol=1e-4, rtol=0)
    torch.testing.assert_close(gate @ gate.T, 2 * torch.eye(UNITS), atol=1e-4, rtol=0)


def test_gate_gains_follow_the_gate_function():
    assert init_gain("glu", {}) == 1.0  # calculate_gain("sigmoid")
    assert init_gain("bilinear", {}) == 1.0
    assert init_gain("swiglu", {}) == init_gain("reglu", {}) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("act", ["glu", "reglu", "geglu", "swiglu", "bilinear"])
def test_the_rnn_refuses_a_gated_activation_in_one_line(act, tiny):
    from harness.sweeps.sweep import check_job
    from harness.training.train import check

    config = tiny(f"activation={act}", "model=rnn")
    for checker in (check, check_job):
        with pytest.raises(ConfigError) as refused:
            checker(config)
        message = str(refused.value)
        assert message.startswith(f"activation={act} is gated") and "\n" not in message


def test_the_rnn_still_takes_the_squared_relus(tiny):
    from harness.training.train import check

    for act in ("relu_squared", "star_relu"):
        check(tiny(f"activation={act}", "model=rnn"))


# ---------------------------------------------------------------- the probes on hand-built networks


def forced_mlp(act: str, gate_bias: float) -> MLP:
    """A one-layer MLP of 4 gated units whose gate half is held at gate_bias, whatever the input."""
    net = MLP(3, 2, activation_spec({"name": act}), depth=1, width=4)
    with torch.no_grad():
        net.hidden[0].linear.weight[4:].zero_()
        net.hidden[0].linear.bias[4:] = gate_bias
    return net


@pytest.mark.parametrize(
    "act, bias, dead, saturated",
    [
        ("reglu", -5.0, 4, 4),
        ("reglu", 5.0, 0, 0),
        ("glu", 50.0, 0, 4),
        ("glu", 0.0, 0, 0),
        ("swiglu", -50.0, 4, 4),
    ],
)
def test_probe_units_counts_gated_units_with_forced_gates(act, bias, dead, saturated):
    stats = probe_units(forced_mlp(act, bias), torch.randn(64, 3))["hidden.0"]
    assert (stats.units, stats.dead, stats.saturated) == (4, dead, saturated)


def test_probe_units_mixes_open_and_shut_gates_unit_by_unit():
    net = forced_mlp("reglu", 5.0)
    with torch.no_grad():
        net.hidden[0].linear.bias[4:6] = -5.0  # units 0 and 1 shut
    stats = probe_units(net, torch.randn(64, 3))["hidden.0"]
    assert (stats.dead, stats.saturated, stats.dead_fraction) == (2, 2, 0.5)


def test_saturation_is_null_for_unbounded_derivatives():
    net = MLP(3, 2, activation_spec({"name": "relu_squared"}), depth=2, width=5)
    stats = probe_units(net, torch.randn(64, 3))
    assert all(s.saturated is None and s.saturated_fraction is None for s in stats.values())
    dead, saturated = overall_fractions(stats)
    assert saturated is None and 0 <= dead <= 1
    with torch.no_grad():
        net.hidden[0].linear.bias.fill_(-100.0)  # every pre-activation negative: relu(z)^2 is flat there
        net.hidden[0].linear.weight.zero_()
    assert probe_units(net, torch.randn(64, 3))["hidden.0"].dead == 5


# ---------------------------------------------------------------- a whole run


def test_a_matched_swiglu_run_records_its_width_and_parameters(tiny, tmp_path):
    from harness.training.train import run

    summary = run(tiny("activation=swiglu", "model.match_params=true"), tmp_path / "swiglu")
    assert summary["status"] == "ok", summary.get("error")
    assert summary["width_used"] == 67 and summary["n_params"] == 15_286
    assert summary["saturated_fraction"] is not None
    squared = run(tiny("activation=relu_squared", "model=cnn"), tmp_path / "relu_squared")
    assert squared["status"] == "ok" and squared["width_used"] == 25
    assert squared["saturated_fraction"] is None and set(squared["saturated_fraction_by_layer"].values()) == {None}


def test_match_params_at_its_default_leaves_config_hash_unchanged():
    from harness.setup.config import Config, config_hash

    config = Config()
    assert config_hash(config) == "574315a7d2ef94c0"  # the default config's hash before the key existed
    config.model.match_params = True
    assert config_hash(config) != "574315a7d2ef94c0"
