"""Probes against hand-built networks whose dead and saturated units are known, and gradients done by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.networks.activations import activation_spec
from harness.networks.models import CNN, MLP, RNN, Dense
from harness.networks.probes import overall_fractions, probe_gradients, probe_units


def mlp_with_biases(act: str, biases: list[float], n_in: int = 3) -> MLP:
    """One hidden layer with zero weights: each unit's pre-activation is exactly its bias."""
    net = MLP(n_in, 2, activation_spec({"name": act}), depth=1, width=len(biases))
    with torch.no_grad():
        net.hidden[0].linear.weight.zero_()
        net.hidden[0].linear.bias.copy_(torch.tensor(biases))
    return net


def test_relu_units_forced_negative_are_dead():
    net = mlp_with_biases("relu", [-1.0, -0.1, 0.5, 2.0, -3.0])
    stats = probe_units(net, torch.randn(64, 3))["hidden.0"]
    assert (stats.units, stats.dead) == (5, 3)
    assert stats.dead_fraction == pytest.approx(0.6)


def test_relu_unit_alive_for_one_sample_is_not_dead():
    net = MLP(1, 2, activation_spec({"name": "relu"}), depth=1, width=2)
    with torch.no_grad():
        net.hidden[0].linear.weight.copy_(torch.tensor([[1.0], [1.0]]))
        net.hidden[0].linear.bias.copy_(torch.tensor([-10.0, -100.0]))
    x = torch.cat([torch.zeros(99, 1), torch.full((1, 1), 11.0)])  # only the last sample wakes unit 0
    stats = probe_units(net, x)["hidden.0"]
    assert stats.dead == 1


def test_leaky_relu_never_dies_nor_saturates():
    net = mlp_with_biases("leaky_relu", [-1.0, -50.0, 3.0])
    stats = probe_units(net, torch.randn(16, 3))["hidden.0"]
    assert (stats.dead, stats.saturated) == (0, 0)


def test_sigmoid_saturation_and_death_thresholds():
    # |z| = 5 is live and unsaturated; 8 is saturated (sigma' < 0.005 * 0.25 past ~6.7); 20 is dead in fp32
    net = mlp_with_biases("sigmoid", [5.0, -5.0, 8.0, -8.0, 20.0, -20.0])
    stats = probe_units(net, torch.randn(16, 3))["hidden.0"]
    assert stats.saturated == 4
    assert stats.dead == 2  # sigmoid'(20) underflows to 0 in fp32; sigmoid'(-20) ~ 2e-9 <= 1e-8
    net = mlp_with_biases("tanh", [3.0, 3.6, -3.6])
    assert probe_units(net, torch.randn(16, 3))["hidden.0"].saturated == 2


def test_activation_statistics_match_the_outputs():
    torch.manual_seed(0)
    net = MLP(3, 2, activation_spec({"name": "tanh"}), depth=2, width=7)
    x = torch.randn(50, 3)
    stats = probe_units(net, x)
    h = torch.tanh(net.hidden[0].linear(x))
    assert stats["hidden.0"].mean == pytest.approx(h.mean().item(), abs=1e-6)
    assert stats["hidden.0"].std == pytest.approx(h.std().item(), rel=1e-4)


def test_cnn_unit_is_a_channel_over_all_positions():
    net = CNN((1, 12), 2, activation_spec({"name": "relu"}), depth=1, width=4)
    with torch.no_grad():
        net.hidden[0].conv.weight.zero_()
        net.hidden[0].conv.bias.copy_(torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    stats = probe_units(net, torch.randn(8, 1, 12))["hidden.0"]
    assert (stats.units, stats.dead) == (4, 2)


def test_rnn_units_are_counted_over_time_and_directions():
    net = RNN((1, 5), 2, activation_spec({"name": "relu"}), width=3, cell="elman", bidirectional=True)
    with torch.no_grad():
        for cell in net.hidden[0].cells:
            cell.weight_ih.zero_(), cell.weight_hh.zero_(), cell.bias_hh.zero_()
            cell.bias_ih.copy_(torch.tensor([-1.0, 1.0, -1.0]))
    stats = probe_units(net, torch.randn(4, 1, 5))["hidden.0"]
    assert (stats.units, stats.dead) == (6, 4)


def test_overall_fraction_weights_layers_by_units():
    # layers of unequal width: 1 of 8 units dead, then 1 of 2; by units 2/10, a mean of the layers' fractions 5/16
    net = MLP(3, 2, activation_spec({"name": "relu"}), depth=2, width=8)
    net.hidden[1] = Dense(8, 2, activation_spec({"name": "relu"}), "none")
    net.head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        for layer, bias in zip(net.hidden, [[-1.0] + [1.0] * 7, [-1.0, 1.0]]):
            layer.linear.weight.zero_()
            layer.linear.bias.copy_(torch.tensor(bias))
    stats = probe_units(net, torch.randn(8, 3))
    assert [(s.units, s.dead) for s in stats.values()] == [(8, 1), (2, 1)]
    assert overall_fractions(stats) == (pytest.approx(0.2), pytest.approx(0.2))


def test_gradient_norms_equal_autograd_by_hand():
    torch.manual_seed(0)
    net = MLP(6, 3, activation_spec({"name": "tanh"}), depth=2, width=5)
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    norms, through_time = probe_gradients(net, x, y)
    weights = [net.hidden[0].linear.weight, net.hidden[1].linear.weight, net.head.weight]
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights)
    assert list(norms) == ["hidden.0", "hidden.1", "head"]
    for got, g in zip(norms.values(), grads):
        assert got == pytest.approx(g.norm().item(), rel=1e-5)
    assert through_time == {}
    assert all(p.grad is None for p in net.parameters())  # leaves no gradients behind


def test_hidden_state_gradients_through_time_equal_autograd():
    torch.manual_seed(0)
    net = RNN((2, 7), 3, activation_spec({"name": "tanh"}), width=4, cell="elman", bidirectional=False)
    x, y = torch.randn(5, 2, 7), torch.randint(0, 3, (5,))
    _, through_time = probe_gradients(net, x, y)
    # by hand: rerun the recurrence, keep every h_t, differentiate the loss with respect to each
    cell = net.hidden[0].cells[0]
    xs = x.transpose(1, 2)
    h, states = torch.zeros(5, 4), []
    for t in range(7):
        h = torch.tanh(xs[:, t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh)
        states.append(h)
    loss = F.cross_entropy(net.head(torch.stack(states, 1).flatten(1)), y)
    grads = torch.autograd.grad(loss, states)
    assert through_time["hidden.0"] == pytest.approx([g.norm().item() for g in grads], rel=1e-5)


def test_gradient_norms_of_a_deep_sigmoid_mlp_vanish_towards_the_input():
    torch.manual_seed(0)
    net = MLP(40, 10, activation_spec({"name": "sigmoid"}), depth=10, width=100)
    norms, _ = probe_gradients(net, torch.randn(256, 40), torch.randint(0, 10, (256,)))
    assert norms["hidden.0"] < 1e-3 * norms["hidden.9"]


def test_prelu_slope_gradient_is_not_in_the_layer_gradient_norm():
    torch.manual_seed(0)
    net = MLP(6, 3, activation_spec({"name": "prelu"}), depth=2, width=5)
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    norms, _ = probe_gradients(net, x, y)
    weights = [net.hidden[0].linear.weight, net.hidden[1].linear.weight, net.head.weight]
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights + [net.hidden[0].act.weight])
    assert grads[-1].abs().item() > 1e-4  # the slope has a gradient, which must not be counted
    for got, g in zip(norms.values(), grads):
        assert got == pytest.approx(g.norm().item(), rel=1e-6)
