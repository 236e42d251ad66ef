"""The loop's meters: a training clock, the running window of train loss and accuracy, and whole-split evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from harness.networks.stacked import StackedModel

EVAL_CHUNK = 1000  # evaluation batch: bounds memory on the larger datasets
# The clock a Timer on the CPU adds its segments' `total` up with (wall time), read when the Timer is made. A context
# variable, not a class attribute: the overhead benchmark sets a CPU-time clock for its own block
# (harness.training.bench.cpu_clock) while every other thread, and everything after the block, keeps wall time.
TIMER_CLOCK: ContextVar[Callable[[], float]] = ContextVar("TIMER_CLOCK", default=time.perf_counter)


class Timer:
    """Training segments' wall time and the calling thread's CPU time; on CUDA, wall time by CUDA events
    synchronised at the end of each segment.

    The CPU time (time.thread_time) is the clock nobody else moves: on one torch thread every op of a CPU run runs
    on this thread, so it counts this run's work only, however busy the machine is; other processes and waiting
    move wall time but not it.
    """

    cpu_clock = staticmethod(time.thread_time)

    def __init__(self, device: torch.device, total: float = 0.0, cpu_total: float = 0.0) -> None:
        self.cuda = device.type == "cuda"
        self.clock = TIMER_CLOCK.get()  # one clock for the timer's life: a segment starts and stops on the same one
        self.total, self.cpu_total = total, cpu_total  # a resumed run continues its clocks

    def start(self) -> None:
        if self.cuda:
            self.begin_event = torch.cuda.Event(enable_timing=True)
            self.begin_event.record()
        else:
            self.begin = self.clock()
        self.cpu_begin = self.cpu_clock()

    def stop(self) -> float:
        """End the segment (synchronising the device) and return the running wall total in seconds."""
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            self.total += self.begin_event.elapsed_time(end) / 1000
        else:
            self.total += self.clock() - self.begin
        self.cpu_total += self.cpu_clock() - self.cpu_begin
        return self.total


class WindowStats:
    """Each member's mean training loss and accuracy over a logging window, and its first non-finite loss, kept on
    the device.

    A step only keeps references to its (K,) losses, (K, B, C) logits and (K, B) labels (no kernel, no host sync);
    every FOLD steps a few kernels stack the losses and add up the correct predictions, so memory stays bounded in
    a long window. read() is the window's one host sync. Every op here runs in the hot loop, where even a tiny
    kernel costs microseconds (measured on a CPU MLP step of 430 us: folding every 8, 32 and 128 steps cost about
    4, 3.5 and 3% of it, and any per-step accuracy op more): keep them few, and never per member.
    """

    FOLD = 128

    def __init__(self, device: torch.device, k: int = 1) -> None:
        self.device, self.k = device, k
        self.reset()

    def reset(self) -> None:
        self.correct = torch.zeros(self.k, device=self.device)
        self.loss_chunks: list[torch.Tensor] = []  # (FOLD, K) each
        self.losses: list[torch.Tensor] = []  # the steps' since the last fold: (K,), (K, B, C) and (K, B) each
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.batches = self.samples = 0

    def add(self, losses: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.losses.append(losses.detach())
        self.logits.append(logits.detach())
        self.labels.append(y)
        self.batches += 1
        self.samples += y.shape[-1]
        if len(self.losses) == self.FOLD:
            self.fold()

    def fold(self) -> None:
        if self.losses:
            self.loss_chunks.append(torch.stack(self.losses))
            self.correct += (torch.cat(self.logits, 1).argmax(-1) == torch.cat(self.labels, 1)).sum(1)
            self.losses, self.logits, self.labels = [], [], []

    def read(self) -> list[tuple[float, float, int | None]]:
        """Per member (mean loss, accuracy, offset in the window of the first non-finite loss or None); then reset."""
        self.fold()
        losses = torch.cat(self.loss_chunks)  # (batches, K)
        bad = ~torch.isfinite(losses)
        sums, correct, any_bad, first_bad = torch.stack(  # each member's sum by one row's kernel, as at K=1
            [losses.t().contiguous().sum(1), self.correct, bad.any(0).float(), bad.float().argmax(0).float()]
        ).tolist()
        result = [
            (s / self.batches, c / self.samples, int(f) if a else None)
            for s, c, a, f in zip(sums, correct, any_bad, first_bad)
        ]
        self.reset()
        return result


@torch.no_grad()
def evaluate(
    stack: StackedModel, x: torch.Tensor, y: torch.Tensor, autocast: Callable[[], AbstractContextManager[object]]
) -> list[tuple[float, float]]:
    """Each member's (mean loss, accuracy) on a whole split, in eval mode: every member sees the same inputs
    (autocast: the group's precision context, made anew for each chunk)."""
    was_training = stack.training
    stack.eval()
    loss = torch.zeros(stack.k, device=x.device, dtype=x.dtype)  # the data's precision (the tests' float64)
    correct = torch.zeros(stack.k, device=x.device)
    for i in range(0, len(x), EVAL_CHUNK):
        xs, ys = x[i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK].expand(stack.k, -1)
        with autocast():
            logits = stack.forward(xs.expand(stack.k, *xs.shape))[0].to(x.dtype)  # autocast's bf16 back
        k, n, c = logits.shape
        if k == 1:  # the loss kernel's own sum, as a plain loop's evaluation adds up
            loss += F.cross_entropy(logits[0], ys[0], reduction="sum")
        else:
            loss += F.cross_entropy(logits.reshape(k * n, c), ys.reshape(k * n), reduction="none").view(k, n).sum(1)
        correct += (logits.argmax(-1) == ys).sum(1)
    stack.train(was_training)
    return [(s / len(x), c / len(x)) for s, c in zip(*torch.stack([loss, correct]).tolist())]
