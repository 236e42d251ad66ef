"""The loop's meters: a training clock, the running window of train loss and accuracy, and whole-split evaluation."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

EVAL_CHUNK = 1000  # evaluation batch: bounds memory on the larger datasets


class Timer:
    """Training segments' wall time and the calling thread's CPU time; on CUDA, wall time by CUDA events
    synchronised at the end of each segment.

    The CPU time (time.thread_time) is the clock nobody else moves: on one torch thread every op of a CPU run runs
    on this thread, so it counts this run's work only, however busy the machine is; other processes and waiting
    move wall time but not it.
    """

    clock = staticmethod(time.perf_counter)  # on the CPU; the overhead benchmark swaps in a CPU-time clock
    cpu_clock = staticmethod(time.thread_time)

    def __init__(self, device: torch.device, total: float = 0.0, cpu_total: float = 0.0):
        self.cuda = device.type == "cuda"
        self.total, self.cpu_total = total, cpu_total  # a resumed run continues its clocks

    def start(self) -> None:
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.begin = self.clock()
        self.cpu_begin = self.cpu_clock()

    def stop(self) -> float:
        """End the segment (synchronising the device) and return the running wall total in seconds."""
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            self.total += self.begin.elapsed_time(end) / 1000
        else:
            self.total += self.clock() - self.begin
        self.cpu_total += self.cpu_clock() - self.cpu_begin
        return self.total


class WindowStats:
    """Mean training loss and accuracy over a logging window, and its first non-finite loss, kept on the device.

    A step only keeps references to its loss, logits and labels (no kernel, no host sync); every FOLD steps a few
    kernels stack the losses (one float per step) and add up the correct predictions, so memory stays bounded in a
    long window. read() is the window's one host sync. Every op here runs in the hot loop, where even a tiny
    kernel costs microseconds (measured on a CPU MLP step of 430 us: folding every 8, 32 and 128 steps cost about
    4, 3.5 and 3% of it, and any per-step accuracy op more): keep them few.
    """

    FOLD = 128

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.correct = torch.zeros((), device=self.device)
        self.loss_chunks = []  # (FOLD,) each
        self.losses, self.logits, self.labels = [], [], []
        self.batches = self.samples = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.logits.append(logits.detach())
        self.labels.append(y)
        self.batches += 1
        self.samples += y.shape[0]
        if len(self.losses) == self.FOLD:
            self.fold()

    def fold(self) -> None:
        if self.losses:
            self.loss_chunks.append(torch.stack(self.losses))
            self.correct += (torch.cat(self.logits).argmax(1) == torch.cat(self.labels)).sum()
            self.losses, self.logits, self.labels = [], [], []

    def read(self) -> tuple[float, float, int | None]:
        """(mean loss, accuracy, offset in the window of the first non-finite loss or None); then reset."""
        self.fold()
        losses = torch.cat(self.loss_chunks)  # (batches,)
        bad = ~torch.isfinite(losses)
        loss_sum, correct, any_bad, first_bad = torch.stack(
            [losses.sum(), self.correct, bad.any().float(), bad.float().argmax().float()]).tolist()
        result = loss_sum / self.batches, correct / self.samples, int(first_bad) if any_bad else None
        self.reset()
        return result


@torch.no_grad()
def evaluate(model, x, y, autocast) -> tuple[float, float]:
    """(mean loss, accuracy) on a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), EVAL_CHUNK):
        with autocast():
            logits = model(x[i : i + EVAL_CHUNK]).float()
        loss += F.cross_entropy(logits, y[i : i + EVAL_CHUNK], reduction="sum")
        correct += (logits.argmax(1) == y[i : i + EVAL_CHUNK]).sum()
    model.train(was_training)
    loss, correct = torch.stack([loss, correct]).tolist()
    return loss / len(x), correct / len(x)
