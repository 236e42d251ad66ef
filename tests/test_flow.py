"""Dead at init vs lost in training, gradient flow and drawdown (harness/common/flow.py): hand-built networks and runs
checked against masks, norms and series computed here by hand with torch and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness import run
from harness.common import flow
from harness.networks import probes
from harness.networks.activations import activation_spec
from harness.networks.models import MLP
from harness.setup.data import load_dataset
from harness.setup.resolve import resolve
from harness.training import group
from harness.training.group import build_group, build_member_model
from harness.training.train import train

KILLED_AT_INIT, KILLED_IN_TRAINING = range(0, 4), range(4, 8)  # units of hidden.0 (width 16)


def test_lost_units_come_from_per_unit_masks_not_a_difference_of_fractions():
    torch.manual_seed(0)
    net = MLP(6, 3, activation_spec({"name": "relu"}), depth=1, width=8)
    x = torch.randn(64, 6)
    with torch.no_grad():
        net.hidden[0].linear.bias[:2] = -1e4  # units 0, 1 dead at init
    init = {k: s.alive.cpu() for k, s in probes.probe_units(net, x).items()}
    with torch.no_grad():
        net.hidden[0].linear.bias[0] = 1e4  # unit 0 revived, unit 5 killed: the dead fraction is unchanged
        net.hidden[0].linear.bias[5] = -1e4
    end = {k: s.alive for k, s in probes.probe_units(net, x).items()}
    by_hand = (net.hidden[0].linear(x) > 0).any(0)  # ReLU: alive iff some sample's pre-activation is > 0
    assert torch.equal(end["hidden.0"], by_hand)
    assert flow.dead_fractions(init) == {"hidden.0": 2 / 8}
    assert flow.dead_fractions(end) == {"hidden.0": 2 / 8}
    assert flow.lost_fractions(init, end) == {"hidden.0": 1 / 8}  # unit 5 only; a difference would say 0


def test_grad_flow_ratio_is_head_over_first_layer_norm_by_autograd():
    torch.manual_seed(0)
    net = MLP(6, 3, activation_spec({"name": "gelu"}), depth=3, width=5)
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    norms, _ = probes.probe_gradients(net, x, y)
    net.eval()
    head, first = torch.autograd.grad(F.cross_entropy(net(x), y), [net.head.weight, net.hidden[0].linear.weight])
    assert flow.grad_flow_ratio(norms) == pytest.approx((head.norm() / first.norm()).item(), rel=1e-6)
    assert flow.grad_flow_ratio({"head": 1.0}) is None  # depth 0: no first hidden layer
    assert flow.grad_flow_ratio({"hidden.0": 0.0, "head": 1.0}) is None  # undefined, not infinite


def test_drawdown_of_a_known_validation_sequence():
    val = [0.50, 0.70, 0.60, 0.75, 0.55, 0.80, 0.79]
    assert flow.drawdown(val) == pytest.approx(0.20)  # 0.75 -> 0.55, not 0.70 -> 0.55 nor 0.80 -> 0.55
    x = np.array(val)
    assert flow.drawdown(val) == pytest.approx(np.max(np.maximum.accumulate(x) - x))
    assert flow.drawdown([0.1, 0.2, 0.3]) == 0.0
    assert flow.drawdown([]) is None


def killed_at_init(resolved, data):
    """The run's model with units forced dead at init, before the loop probes it."""
    model = build_member_model(resolved, data)
    with torch.no_grad():
        model.hidden[0].linear.bias[list(KILLED_AT_INIT)] = -1e4
    return model


def kill_in_training(optimizer, bias: torch.Tensor, after_step: int) -> None:
    """Kill other units in training with one big negative bias step (bias: a view into the stacked state)."""
    steps = []

    def hook(optimizer, args, kwargs):
        steps.append(1)
        if len(steps) == after_step:
            with torch.no_grad():
                bias[list(KILLED_IN_TRAINING)] -= 1e4

    optimizer.register_step_post_hook(hook)


def test_a_run_tells_units_dead_at_init_from_units_lost_in_training(tiny, tmp_path, monkeypatch):
    config = tiny("model.width=16", "model.depth=2", "trainer.steps=20")
    resolved = resolve(config)
    d = config.dataset
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, resolved.device)
    monkeypatch.setattr(group, "build_member_model", killed_at_init)
    run_group = build_group([resolved], data, [tmp_path / "run"])
    model = run_group.members[0].model
    kill_in_training(run_group.optimizer, model.hidden[0].linear.bias, after_step=5)
    probe_x, probe_y = data.x_train[: probes.PROBE_SIZE], data.y_train[: probes.PROBE_SIZE]
    flat = probe_x.flatten(1)
    model.eval()
    alive_init = (model.hidden[0].linear(flat) > 0).any(0)
    head, first = torch.autograd.grad(
        F.cross_entropy(model(probe_x), probe_y), [model.head.weight, model.hidden[0].linear.weight]
    )
    train(run_group)
    s = run_group.members[0].summary
    with torch.no_grad():
        alive_end = (model.hidden[0].linear(flat) > 0).any(0)
    assert not alive_init[list(KILLED_AT_INIT)].any() and not alive_end[list(KILLED_IN_TRAINING)].any()
    assert s["dead_fraction_init_by_layer"]["hidden.0"] == (~alive_init).sum().item() / 16
    assert s["lost_fraction_by_layer"]["hidden.0"] == (alive_init & ~alive_end).sum().item() / 16
    assert s["lost_fraction_by_layer"]["hidden.0"] >= len(KILLED_IN_TRAINING) / 16  # the dead at init are not lost
    assert s["grad_flow_ratio_init"] == pytest.approx((head.norm() / first.norm()).item(), rel=1e-5)
    means = s["grad_norm_by_layer"]
    assert s["grad_flow_ratio"] == pytest.approx(means["head"] / means["hidden.0"])
    assert s["n_test"] == len(data.x_test)


def test_a_run_records_its_drawdown_and_a_depth_zero_model_has_no_ratio(tiny, tmp_path):
    import pandas as pd

    s = run(tiny("model.depth=0", "trainer.steps=40", "trainer.eval_every=5", "trainer.lr=0.3"), tmp_path / "r")
    metrics = pd.read_csv(tmp_path / "r" / "metrics.csv")
    val = metrics.query("split == 'val' and metric == 'acc'").sort_values("step", kind="stable")["value"].to_numpy()
    assert s["val_drawdown_max"] == pytest.approx(np.max(np.maximum.accumulate(val) - val))
    assert s["grad_flow_ratio_init"] is None and s["grad_flow_ratio"] is None
    assert s["dead_fraction_init_by_layer"] == {} and s["lost_fraction_by_layer"] == {}


def test_the_report_reads_the_trainers_keys_and_a_schema_1_runs_from_its_upgrade(tiny, tmp_path):
    import json

    from harness.report.load import gather

    for seed in (0, 1):
        run(tiny("trainer.steps=10", f"seed={seed}"), tmp_path / f"s{seed}")
    s0, s1 = (tmp_path / "s0" / "summary.json"), (tmp_path / "s1" / "summary.json")
    summary = json.loads(s0.read_text())
    true_size = summary["n_test"]
    s0.write_text(json.dumps({**summary, "n_test": 999}))  # what the run says is what the report shows
    older = {**json.loads(s1.read_text()), "schema_version": 1}
    del older["n_test"], older["lost_fraction_by_layer"]  # a schema-1 run written before the keys
    s1.write_text(json.dumps(older))
    data = gather([tmp_path])
    n_test = dict(zip(data.runs["seed"], data.runs["n_test"]))
    assert n_test[0] == 999 and n_test[1] != 999
    lost = data.layers.set_index(["seed", "layer"])["lost"]
    assert lost[(0, "hidden.0")] == summary["lost_fraction_by_layer"]["hidden.0"] and np.isnan(lost[(1, "hidden.0")])
    assert n_test[1] == true_size  # harness.records.upgrade: the dataset's test split, for the run without the key
