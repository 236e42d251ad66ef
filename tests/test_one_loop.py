"""The one loop at K = 1 against plain torch: the member's own nn modules trained by torch.optim in a loop written
here, on the same batch order, agree with the harness's records within 1e-9 in float64 over 100 steps, for every
family and option the grouped twin tests cover (tests/test_grouped.py CASES)."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.setup.data import load_dataset
from harness.setup.optimizers import make_optimizer
from harness.setup.resolve import resolve
from harness.training.group import build_member_model
from harness.training.train import run, run_group
from tests.test_grouped import CASES, STEPS

RTOL = 1e-9


def plain_torch(config) -> dict[tuple[int, str, str], float]:
    """(step, split, metric) -> value: the window-mean training loss at each log step and the validation and
    test losses at each evaluation, of the model trained by torch alone."""
    return train_plain(config, make_optimizer)[0]


def train_plain(config, make) -> tuple[dict[tuple[int, str, str], float], torch.nn.Module]:
    """plain_torch's records with the optimizer make(model, trainer config) builds, and the trained model."""
    t, d = config.trainer, config.dataset
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, torch.device("cpu"))
    data = data.astype(torch.float64)
    model = build_member_model(resolve(config), data)  # the seeded nn modules a run starts from
    optimizer = make(model, t)  # torch.optim's own Adam, AdamW or SGD
    order = torch.Generator().manual_seed(config.seed)
    perm, position, window, records = torch.randperm(len(data.x_train), generator=order), 0, [], {}
    for step in range(1, t.steps + 1):
        if position + t.batch_size > len(perm):
            perm, position = torch.randperm(len(data.x_train), generator=order), 0
        idx = perm[position : position + t.batch_size]
        position += t.batch_size
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        window.append(loss.item())
        if step % t.log_every == 0:
            records[step, "train", "loss"], window = sum(window) / len(window), []
        if step % t.eval_every == 0:
            model.eval()
            with torch.no_grad():
                records[step, "val", "loss"] = F.cross_entropy(model(data.x_val), data.y_val).item()
                records[step, "test", "loss"] = F.cross_entropy(model(data.x_test), data.y_test).item()
            model.train()
    return records, model


@pytest.mark.parametrize(
    "case", [pytest.param(k, marks=[pytest.mark.slow] if slow else []) for k, (_, slow) in CASES.items()]
)
def test_a_single_run_equals_plain_torch_float64(tiny, tmp_path, case):
    config = tiny(*STEPS, *CASES[case][0], "seed=3", "trainer.weight_decay=0.01")
    summary = run(config, tmp_path / "run", dtype=torch.float64)
    assert summary["status"] == "ok", summary.get("error")
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    rows = rows[rows.layer.isna() & rows.metric.eq("loss")]
    harness = {(r.step, r.split, r.metric): r.value for r in rows.itertuples() if r.step > 0}
    assert_same_records(harness, plain_torch(config))


def assert_same_records(harness: dict, reference: dict) -> None:
    assert harness.keys() == reference.keys()
    bad = {
        k: (harness[k], reference[k])
        for k in reference
        if not math.isclose(harness[k], reference[k], rel_tol=RTOL, abs_tol=1e-12)
    }
    assert not bad, bad


def loss_records(run_dir) -> dict[tuple[int, str, str], float]:
    """A run's (step, split, metric) -> value for its logged losses, as plain_torch records them."""
    rows = pd.read_csv(run_dir / "metrics.csv")
    rows = rows[rows.layer.isna() & rows.metric.eq("loss")]
    return {(r.step, r.split, r.metric): r.value for r in rows.itertuples() if r.step > 0}


def two_groups(model: torch.nn.Module, t) -> torch.optim.Optimizer:
    """The reference for learnable activations: torch.optim with the activation modules' parameters (named
    `...act...` by every model) in a second param group at weight decay 0, the rest at trainer.weight_decay."""
    named = list(model.named_parameters())
    acts = [p for n, p in named if ".act." in n]
    assert acts, "the model has no activation parameters: the test would not test the exemption"
    rest = [p for n, p in named if ".act." not in n]
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[t.optimizer]
    extra = {"momentum": t.momentum} if t.optimizer == "sgd" else {}
    groups = [{"params": rest}, {"params": acts, "weight_decay": 0.0}]
    return kind(groups, lr=t.lr, weight_decay=t.weight_decay, **extra)


@pytest.mark.parametrize(
    "activation, optimizer",
    [
        ("prelu", "adam"),
        pytest.param("star_relu", "adamw", marks=pytest.mark.slow),
        ("star_relu", "sgd"),
        pytest.param("prelu", "adamw", marks=pytest.mark.slow),
        pytest.param("rational", "adam", marks=pytest.mark.slow),
        ("spline", "adamw"),  # per-unit parameters
    ],
)
def test_learnable_activations_take_no_weight_decay_as_torch_with_two_param_groups(
    tiny, tmp_path, activation, optimizer
):
    """trainer.activation_decay=false (the default): the activation's parameters are in a param group at weight
    decay 0. A large weight decay, so that decaying them would move the records far beyond 1e-9."""
    overrides = ["trainer.steps=60", "trainer.log_every=30", "trainer.eval_every=30", "model.width=16"]
    lr = "trainer.lr=0.05" if optimizer == "sgd" else "trainer.lr=0.01"
    config = tiny(*overrides, f"activation={activation}", f"trainer.optimizer={optimizer}", lr, "seed=2",
                  "trainer.weight_decay=0.5")  # fmt: skip
    summary = run(config, tmp_path / "run", dtype=torch.float64)
    assert summary["status"] == "ok", summary.get("error")
    reference, model = train_plain(config, two_groups)
    assert_same_records(loss_records(tmp_path / "run"), reference)
    final = summary["activation_params_final"]  # the learnt shape the summary records is the reference's
    for name, p in model.named_parameters():
        if ".act." in name:
            layer, _, param = name.partition(".act.")
            recorded = torch.tensor(final[layer][param], dtype=torch.float64)
            torch.testing.assert_close(recorded, p.detach().reshape(recorded.shape), rtol=RTOL, atol=1e-12)
    every = dataclasses.replace(config.trainer, activation_decay=True)  # one group: the activations decay too
    decayed_too, _ = train_plain(config, lambda m, t: make_optimizer(m, every))
    far = [k for k in reference if not math.isclose(decayed_too[k], reference[k], rel_tol=1e-6)]
    assert far, "decaying the activations changes nothing here: this test could not tell"


def metric_rows(summary: dict) -> pd.DataFrame:
    return pd.read_csv(f"{summary['run_dir']}/metrics.csv")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_a_captured_step_records_what_the_eager_step_records(tiny, tmp_path, device):
    """trainer.capture=true: on CUDA the unlogged steps replay a CUDA graph (within float32 rounding of eager);
    on the CPU the same path (static buffers, copies) runs eagerly and records the very same bits."""
    common = [
        "trainer.steps=40",
        "trainer.log_every=20",
        "trainer.eval_every=20",
        f"trainer.device={device}",
        "model.width=16",
    ]
    configs = [tiny(*common, f"seed={s}", f"trainer.capture={c}") for c in ("false", "true") for s in (1, 2)]
    eager = run_group(configs[:2], [tmp_path / "e1", tmp_path / "e2"], [[], []], "e")
    captured = run_group(configs[2:], [tmp_path / "c1", tmp_path / "c2"], [[], []], "c")
    for e, c in zip(eager, captured):
        assert e["status"] == c["status"] == "ok", (e.get("error"), c.get("error"))
        a, b = metric_rows(e), metric_rows(c)
        if device == "cpu":
            assert a.equals(b)
        else:
            assert a[["step", "split", "metric", "layer"]].equals(b[["step", "split", "metric", "layer"]])
            assert (a.value - b.value).abs().max() < 1e-3 * (1 + a.value.abs().max())


def test_capture_auto_is_for_cuda_with_boundaries_far_apart(tiny):
    from harness.training.capture import MIN_STEPS_BETWEEN_BOUNDARIES, wanted

    far = MIN_STEPS_BETWEEN_BOUNDARIES
    t = tiny(f"trainer.log_every={far}", f"trainer.eval_every={far}").trainer
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert wanted(t, cuda, capturable=True) and not wanted(t, cpu, capturable=True)
    assert not wanted(t, cuda, capturable=False)  # a one-model fallback (an unstackable activation) stays eager
    near = tiny(f"trainer.log_every={far - 1}").trainer
    assert not wanted(near, cuda, capturable=True)
    assert wanted(tiny("trainer.capture=true").trainer, cpu, capturable=True)  # the CPU runs the path eagerly
    assert not wanted(
        tiny("trainer.capture=false", f"trainer.log_every={far}", f"trainer.eval_every={far}").trainer,
        cuda,
        capturable=True,
    )
