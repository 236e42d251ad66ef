"""Benchmark helpers without Hydra: device timing, saved-for-backward bytes, bf16 error, the overhead comparison."""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from harness.setup.config import Config
    from harness.setup.data import Dataset
    from harness.setup.resolve import Resolved


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit status 2 (argparse's own adds the usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name where Linux tells it (platform.processor() is often just x86_64)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_blocks(
    block: Callable[[object], None],
    device: torch.device,
    repeats: int,
    warmup: int = 2,
    setup: Callable[[], object] | None = None,
) -> list[float]:
    """Seconds of each of `repeats` timed calls of block(setup()), after `warmup` untimed ones.

    setup runs outside the timing (it restores the input of an in-place operation). On CUDA a block is timed with
    CUDA events recorded around it, then synchronised; on one CPU thread by that thread's CPU time (other processes
    do not move it); on several CPU threads by perf_counter: the run's speed_clock (harness.training.loop.speed_clock).
    """
    from harness.training.loop import speed_clock

    clock = time.thread_time if speed_clock(device, 0.0) == "thread_cpu" else time.perf_counter
    times = []
    for i in range(warmup + repeats):
        state = setup() if setup else None
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            block(state)
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1000
        else:
            begin = clock()
            block(state)
            elapsed = clock() - begin
        if i >= warmup:
            times.append(elapsed)
    return times


@contextmanager
def cpu_clock() -> Iterator[None]:
    """Within the block, Timers made by this thread (the harness loop's and plain_loop's) time their CPU segments
    in this thread's CPU time instead of wall time; on leaving it, the clock that was set before is back. Other
    threads' Timers are not touched (harness.training.meters.TIMER_CLOCK is a context variable).

    On a shared machine wall time counts the other processes' turns too; CPU time of a single-threaded run
    (torch.set_num_threads(1): every op then runs on this thread) counts only the work being compared.
    """
    from harness.training.meters import TIMER_CLOCK

    token = TIMER_CLOCK.set(time.thread_time)
    try:
        yield
    finally:
        TIMER_CLOCK.reset(token)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


# ---------------------------------------------------------------- what an activation keeps for backward, and bf16


def saved_bytes(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass of fn(x), each distinct tensor counted once.

    Counted with torch.autograd.graph.saved_tensors_hooks while the graph is built. Parameters (PReLU's slope) count
    too; a saved tensor that is a view counts its own elements, not the whole storage.
    """
    seen: dict[tuple, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        seen[(tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn(x)
    del out
    return sum(seen.values())


def training_saved_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """(bytes autograd keeps for the backward of model's cross-entropy on (x, y), of which saved inside its
    activation layers), each distinct tensor counted once: what an activation costs a training step in memory."""
    from harness.networks.models import activation_layers

    seen: dict[tuple, int] = {}
    inside: set[tuple] = set()
    depth = [0]  # > 0 while an activation layer's forward runs

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        seen[key] = tensor.numel() * tensor.element_size()
        if depth[0]:
            inside.add(key)
        return tensor

    hooks = []
    for acts in activation_layers(model).values():
        for act in acts:
            hooks.append(act.register_forward_pre_hook(lambda *_: depth.__setitem__(0, depth[0] + 1)))
            hooks.append(act.register_forward_hook(lambda *_: depth.__setitem__(0, depth[0] - 1)))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = F.cross_entropy(model(x), y)
        del loss
    finally:
        for h in hooks:
            h.remove()
    return sum(seen.values()), sum(seen[k] for k in inside)


def bf16_error(act: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Error of act computed in bf16 against act computed in fp32 on the same (bf16-representable) inputs.

    Also the floor that rounding the exact fp32 result to bf16 would give, so that the op's own error shows.
    """
    x16 = x.to(torch.bfloat16)
    act32 = act.float().eval()  # eval: RReLU's fixed slope, the same in both precisions
    with torch.no_grad():
        ref = act32(x16.float())
        out = act.to(torch.bfloat16)(x16).float()
        rounded = ref.to(torch.bfloat16).float()
    act.float()  # leave the module as it came (PReLU's slope back to fp32)
    scale = ref.square().mean().sqrt().clamp_min(1e-30)
    return {
        "bf16_max_abs_err": (out - ref).abs().max().item(),
        "bf16_rel_rms_err": ((out - ref).square().mean().sqrt() / scale).item(),
        "bf16_rounding_rel_rms_err": ((rounded - ref).square().mean().sqrt() / scale).item(),
    }


# ---------------------------------------------------------------- the overhead comparison: harness loop vs a plain loop


def plain_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    batch_size: int,
    steps: int,
    warmup: int,
    eval_every: int,
    seed: int,
) -> tuple[float, float]:
    """The baseline: a hand-written loop on device-resident data with a device-side running loss, which reads the
    device and measures validation and test accuracy every `eval_every` steps and at the end, as any loop that
    reports accuracy must.

    Returns (training seconds after the first `warmup` steps, evaluation left out; seconds in all), timed with
    the harness's own Timer.
    """
    from harness.training.meters import Timer

    x, y = data.x_train, data.y_train
    device = x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    perm, position = torch.randperm(len(x), generator=generator, device=device), 0
    running_loss = torch.zeros((), device=device)
    total, training = Timer(device), Timer(device)
    model.train()
    total.start()
    for step in range(1, steps + 1):
        if position + batch_size > len(x):
            perm, position = torch.randperm(len(x), generator=generator, device=device), 0
        idx = perm[position : position + batch_size]
        position += batch_size
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running_loss += loss.detach()
        if step == warmup:
            training.start()
        if step % eval_every == 0 or step == steps:
            if step > warmup:
                training.stop()
            running_loss.item()  # a log line
            running_loss.zero_()
            plain_accuracy(model, data.x_val, data.y_val), plain_accuracy(model, data.x_test, data.y_test)
            training.start()
    return training.total, total.stop()


@torch.no_grad()
def plain_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1000) -> float:
    """Accuracy on a whole split, in eval mode, the way a plain loop would measure it."""
    model.eval()
    correct = sum((model(x[i : i + chunk]).argmax(1) == y[i : i + chunk]).sum() for i in range(0, len(x), chunk))
    model.train()
    return correct.item() / len(x)


@dataclass
class OverheadResult:
    """One harness run and the plain run just before it, on the same model, data, optimiser and device."""

    model: str
    probes: str  # "off" or "on"
    plain_samples_per_s: float  # after warm-up
    harness_samples_per_s: float  # the harness's own figure: after warm-up, evaluation and probes excluded
    plain_wall_s: float
    harness_loop_s: float  # the harness's loop_time_s: evaluation and probes included

    @property
    def step_ratio(self) -> float:
        return self.harness_samples_per_s / self.plain_samples_per_s

    @property
    def wall_ratio(self) -> float:
        return self.plain_wall_s / self.harness_loop_s


def overhead_pair(
    config: Config, data: Dataset, device: torch.device, probes: str, plain_first: bool = True
) -> OverheadResult:
    """Run the plain loop and the harness's loop on `config`, one after the other; probes 'off' logs and evaluates
    only at the last step. Alternate plain_first between calls so that an order effect cancels out.

    `config` is a harness Config whose log_every and eval_every set what 'on' means (the defaults: 250).
    """
    from harness.training.group import build_group
    from harness.training.train import train

    trainer = config.trainer
    if probes == "off":
        config = replace(config, trainer=replace(trainer, log_every=trainer.steps, eval_every=trainer.steps))
    if plain_first:
        plain = run_plain(config, data, device)
    with tempfile.TemporaryDirectory() as run_dir:
        group = build_group([resolved(config, device)], data, [Path(run_dir)])
        train(group)
        summary = group.members[0].summary
        assert summary is not None  # train sets every member's
    if not plain_first:
        plain = run_plain(config, data, device)
    return OverheadResult(
        config.model.name, probes, plain[0], summary["samples_per_s"], plain[1], summary["loop_time_s"]
    )


def resolved(config: Config, device: torch.device) -> Resolved:
    """config resolved for `device` without looking for it again (the benchmark picked it)."""
    from harness.setup.resolve import resolve

    return replace(resolve(config, device=False), device=device)


def build(config: Config, data: Dataset, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The harness's seeded model for config on already loaded data, and a torch optimizer for it: what a plain
    loop written without harness code trains."""
    from harness.setup.optimizers import make_optimizer
    from harness.training.group import build_member_model

    model = build_member_model(resolved(config, device), data)
    return model, make_optimizer(model, config.trainer)


def run_plain(config: Config, data: Dataset, device: torch.device) -> tuple[float, float]:
    """(samples/s after warm-up, seconds in all) of the plain loop on the harness's model and optimiser."""
    trainer = config.trainer
    batch = min(trainer.batch_size, len(data.x_train))
    warmup = min(10, max(trainer.steps // 10, 1))  # the harness's own warm-up
    model, optimizer = build(config, data, device)
    timed, wall = plain_loop(model, optimizer, data, batch, trainer.steps, warmup, trainer.eval_every, config.seed)
    return (trainer.steps - warmup) * batch / timed, wall
