"""harness.networks.stacked_probes: the unit probe of every member of a stack at once equals probes.probe_units on each
member's own model (float64: counts and masks exactly, mean and std to 1e-9), in a few stacked calls."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from harness.networks import probes, stacked, stacked_probes
from harness.networks.activations import activation_spec
from tests.test_stacked_model import CASES, members

SEEDS = (1, 2, 3)
PROBE = stacked_probes.PROBE_CHUNK + 44  # two chunks: the second one short


def probe_inputs(case: str) -> torch.Tensor:
    shape = CASES[case][2]
    return torch.randn(PROBE, *shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def assert_same_stats(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        a, b = got[name], want[name]
        assert (a.units, a.dead, a.saturated) == (b.units, b.dead, b.saturated), name
        assert torch.equal(a.alive, b.alive), name
        assert math.isclose(a.mean, b.mean, rel_tol=1e-9, abs_tol=1e-12), name
        # std comes from one pass, sqrt(E[x^2] - E[x]^2): where the outputs are all but constant the difference is a
        # rounding error of E[x^2], so either side may read 0 or up to sqrt(eps) |mean| (1.5e-8 for a mean of 1 in
        # float64), depending on the order of the sums (the machine's vector width)
        noise = 4 * math.sqrt(torch.finfo(torch.float64).eps) * max(abs(b.mean), 1.0)
        assert math.isclose(a.std, b.std, rel_tol=1e-9, abs_tol=noise), name


def probe_both(models: list[torch.nn.Module], x: torch.Tensor, max_slopes: list) -> tuple[list, list]:
    """(stacked probe of the members, each member's own probe_units on an independent copy)."""
    alone = [probes.probe_units(copy.deepcopy(m), x, s) for m, s in zip(models, max_slopes)]
    return stacked_probes.probe_members(stacked.StackedModel(models), x, max_slopes), alone


@pytest.mark.parametrize("case", list(CASES))
def test_each_member_gets_its_own_probe(case):
    spec = activation_spec({"name": CASES[case][1]})
    got, want = probe_both(members(case, SEEDS), probe_inputs(case), [spec.max_slope] * len(SEEDS))
    for g, w in zip(got, want):
        assert_same_stats(g, w)


def test_learnt_slopes_give_each_member_its_own_saturation_threshold():
    """PReLU's max|f'| is each member's own (max_slope None): a member with slope 0.001 saturates, one with 0.5 does
    not, on the same negative inputs."""
    models = members("mlp_residual_layernorm_prelu", SEEDS)
    for m, slope in zip(models, (0.001, 0.5, 3.0)):
        for act in (b.act for b in m.hidden):
            act.weight.data.fill_(slope)
    got, want = probe_both(models, -probe_inputs("mlp_residual_layernorm_prelu").abs(), [None] * len(SEEDS))
    for g, w in zip(got, want):
        assert_same_stats(g, w)


def test_a_dead_unit_counts_for_its_member_only():
    models = members("mlp", SEEDS)
    with torch.no_grad():
        models[1].hidden[0].linear.bias[:2] = -1e6  # two units of member 1's first layer never open
    got, want = probe_both(models, probe_inputs("mlp"), [1.0] * len(SEEDS))
    assert [g["hidden.0"].dead for g in got] == [0, 2, 0]
    for g, w in zip(got, want):
        assert_same_stats(g, w)


def test_the_probe_is_a_few_stacked_calls_whatever_k(monkeypatch):
    """Host work at a boundary does not grow with K: ceil(n / PROBE_CHUNK) stacked forwards, no member's own."""
    calls = []
    forward = stacked.StackedModel.forward
    monkeypatch.setattr(
        stacked.StackedModel,
        "forward",
        lambda self, x, record=False: calls.append(x.shape[0]) or forward(self, x, record),
    )
    fired = []
    for k in (2, 8):
        models = members("mlp", range(k))
        for m in models:
            m.register_forward_hook(lambda *a: fired.append(1))
        calls.clear()
        stacked_probes.probe_members(stacked.StackedModel(models), probe_inputs("mlp"), [1.0] * k)
        assert calls == [k, k] and not fired
