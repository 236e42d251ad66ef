"""The fast paths of the training loop: bf16 and compile run and are recorded; no per-step host sync creeps back."""

from __future__ import annotations

import math
import sys
import warnings

import pytest
import torch

from harness import run
from harness.networks.stacked import OneModel, StackedModel
from harness.training.meters import WindowStats

SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")  # Tensor methods that wait for it


def output_dtypes(config, run_dir, monkeypatch) -> tuple[dict, set]:
    """Run a job, recording the dtype of the training forward's logits (a single run's OneModel, a group's
    StackedModel), and of every Linear and Conv1d output of the probes (which run the member's own modules)."""
    seen = {"train": set(), "probe": set()}

    def recorded(forward):
        def wrapper(self, x, record=False):
            logits, states = forward(self, x, record)
            if self.training:
                seen["train"].add(logits.dtype)
            return logits, states

        return wrapper

    def hook(module, inputs, output):
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)) and not module.training:  # eval mode
            seen["probe"].add(output.dtype)

    for kind in (StackedModel, OneModel):
        monkeypatch.setattr(kind, "forward", recorded(kind.forward))
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        summary = run(config, run_dir)
    finally:
        handle.remove()
    return summary, seen


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_runs_the_forward_under_autocast(tiny, tmp_path, monkeypatch, precision, dtype):
    # bf16: the training forward computes in bf16 (the probes stay fp32); fp32: nothing in bf16
    s, seen = output_dtypes(
        tiny(f"trainer.precision={precision}", "trainer.steps=4", "model=cnn"), tmp_path / "r", monkeypatch
    )
    assert s["status"] == "ok" and s["precision"] == precision and s["compile"] is False
    assert seen["train"] == {dtype}  # the training forward under autocast
    assert torch.float32 in seen["probe"]  # the unit probes run in float32 (evaluation runs under autocast too)
    assert precision == "bf16" or seen["probe"] == {torch.float32}
    assert math.isfinite(s["train_loss"]) and 0 < s["train_loss"] < 5  # a cross-entropy over 10 classes


def test_compile_wraps_the_model_for_unlogged_steps(tiny, tmp_path, monkeypatch):
    # The fast twin of the real compile test below: torch.compile patched to count what it compiles and runs.
    compiled = []

    def fake_compile(model, **kwargs):
        def forward(x):
            forward.calls += 1
            return model(x)

        forward.calls = 0
        compiled.append((model, forward))
        return forward

    monkeypatch.setattr(torch, "compile", fake_compile)
    s = run(
        tiny("trainer.compile=true", "trainer.steps=6", "trainer.log_every=3", "trainer.eval_every=3"),
        tmp_path / "compiled",
    )
    assert s["status"] == "ok" and s["compile"] is True
    assert len(compiled) == 1 and isinstance(compiled[0][0], torch.nn.Module)
    assert compiled[0][1].calls == 4  # steps 1, 2, 4, 5; the logged steps 3 and 6 run the eager model


@pytest.mark.slow
def test_compile_trains_and_is_recorded(tiny, tmp_path):
    # The real compile (a first compile takes tens of seconds): step 1 runs compiled, the logged step 2 eager.
    s = run(tiny("trainer.compile=true", "trainer.steps=2"), tmp_path / "compiled")
    assert s["status"] == "ok", s.get("error")
    assert s["compile"] is True and math.isfinite(s["train_loss"]) and 0 < s["train_loss"] < 5


def count_host_syncs(monkeypatch, config, run_dir) -> int:
    """Run a training job, counting the calls of Tensor methods that wait for the device.

    Calls from torch's own code are left out: Adam reads its step counter, a CPU tensor, with .item() every step.
    """
    count = 0

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            nonlocal count
            if not sys._getframe(1).f_globals.get("__name__", "").startswith("torch"):
                count += 1
            return original(self, *args, **kwargs)

        return wrapper

    with monkeypatch.context() as patch:
        for name in SYNCS:
            patch.setattr(torch.Tensor, name, counting(name))
        summary = run(config, run_dir)
    assert summary["status"] == "ok", summary.get("error")
    return count


@pytest.mark.parametrize("per_step_sync", [False, True])
def test_host_syncs_grow_with_boundaries_not_with_steps(tiny, tmp_path, monkeypatch, per_step_sync):
    # Two runs with the same two log/eval boundaries, one three times as long: the same number of host syncs.
    if per_step_sync:  # the guard's own check: a sync added to every step must show
        add = WindowStats.add
        monkeypatch.setattr(
            WindowStats, "add", lambda self, loss, logits, y: (add(self, loss, logits, y), loss.sum().item())
        )
    short = count_host_syncs(
        monkeypatch, tiny("trainer.steps=20", "trainer.log_every=10", "trainer.eval_every=10"), tmp_path / "short"
    )
    long = count_host_syncs(
        monkeypatch, tiny("trainer.steps=60", "trainer.log_every=30", "trainer.eval_every=30"), tmp_path / "long"
    )
    assert short > 0
    assert (long == short) != per_step_sync, (short, long)


def test_window_stats_find_each_members_first_non_finite_loss_across_folds(monkeypatch):
    monkeypatch.setattr(WindowStats, "FOLD", 16)
    window = WindowStats(torch.device("cpu"), k=2)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).expand(2, 2, 2)  # predicts classes 0, 1
    for i in range(40):  # three folds of 16, the last one partial; member 1 goes bad at step 20, member 0 never
        loss = torch.tensor([1.0, float("nan") if i in (20, 30) else 1.0])
        window.add(loss, logits, torch.tensor([[0, 1], [0, 0]]))
    (loss0, acc0, bad0), (loss1, acc1, bad1) = window.read()
    assert (loss0, acc0, bad0) == (1.0, 1.0, None)
    assert bad1 == 20 and acc1 == 0.5 and loss1 != loss1
    for _ in range(5):
        window.add(torch.tensor([2.0, 2.0]), logits, torch.tensor([[0, 1], [0, 1]]))
    assert window.read() == [(2.0, 1.0, None)] * 2  # read() started a new window


# ---------------------------------------------------------------- on a GPU (gpu_check.sh runs these: pytest -m cuda)


@pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)
def test_cuda_run_records_device_memory_and_precision(tiny, tmp_path):
    s = run(tiny("trainer.device=cuda", "trainer.precision=bf16", "model=cnn"), tmp_path / "gpu")
    assert s["status"] == "ok" and s["device"] == "cuda" and s["precision"] == "bf16"
    assert s["device_name"] == torch.cuda.get_device_name() and s["peak_mem_mb"] > 0 and s["samples_per_s"] > 0


@pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)
def test_cuda_compile_trains(tiny, tmp_path):
    s = run(tiny("trainer.device=cuda", "trainer.compile=true", "trainer.steps=12"), tmp_path / "compiled")
    assert s["status"] == "ok", s.get("error")
    assert s["compile"] is True


@pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)
def test_cuda_syncs_grow_with_boundaries_not_with_steps(tiny, tmp_path):
    """CUDA's own sync detector: warnings per synchronising call, counted in two runs with the same boundaries."""

    def syncs(steps: int, every: int) -> int:
        config = tiny(
            "trainer.device=cuda", f"trainer.steps={steps}", f"trainer.log_every={every}", f"trainer.eval_every={every}"
        )
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert run(config, tmp_path / f"s{steps}")["status"] == "ok"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(20, 10)  # warm-up: the first CUDA run initialises kernels and the allocator
    assert syncs(20, 10) == syncs(60, 30)
