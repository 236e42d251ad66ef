"""trainer.capture: the training step (forward, backward, the stacked optimizer) recorded once as a CUDA graph and
replayed, so that a step costs one launch instead of a few hundred. Boundaries (logged steps, evaluation, probes,
checkpoints) stay outside it and run eagerly.

What it needs, and has: batches of a fixed shape (harness.setup.batches.MemberBatches drops partial ones), inputs copied
into static buffers, no host synchronisation inside the step (tests/test_speed_paths.py guards that), and an
optimizer whose every value is a device tensor updated in place (harness.training.stacked_optim). On the CPU there are
no graphs: the same step runs eagerly, through the same static buffers, so that path is tested everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from harness.setup.config import TrainerConfig

# A logged step's gradient norms (harness.training.group.Group.gradients): by layer (K, L), global (K,), and per
# member ||dL/dh_t|| of each RNN layer
GradNorms = tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]
# What a step returns: losses (K,), logits (K, B, C), and the gradient norms of a logged step (else None)
StepOutput = tuple[torch.Tensor, torch.Tensor, GradNorms | None]
# The step itself: (x, y, logged) -> StepOutput (harness.training.group.Group.step)
Step = Callable[[torch.Tensor, torch.Tensor, bool], StepOutput]

# auto captures when a boundary is at least this many steps away: the capture itself costs the time of a few
# eager steps, and the warm-up steps before it run eagerly. (A provisional rule: on the first GPU the plain
# stacked loop of 64 MLPs ran 5.4x faster captured than eager, 22.3M against 4.14M samples/s; the cost of a
# capture has not been measured on a GPU yet. docs/speed.md.)
MIN_STEPS_BETWEEN_BOUNDARIES = 100
WARMUP_STEPS = 3  # eager steps on a side stream before capturing, as torch.cuda.graphs asks


def wanted(t: TrainerConfig, device: torch.device, capturable: bool) -> bool:
    """Whether the loop captures its step: trainer.capture=true always where it can (CUDA or, eagerly, the CPU),
    auto on CUDA when boundaries are far enough apart; never for fp16 or a compiled model, nor where an
    activation is not a stackable one (a custom module may synchronise with the host: harness.training.group)."""
    if t.capture is False or t.precision == "fp16" or t.compile or not capturable:
        return False
    if t.capture is True:
        return True
    return device.type == "cuda" and min(t.log_every, t.eval_every) >= MIN_STEPS_BETWEEN_BOUNDARIES


class CapturedStep:
    """step(x, y) -> (losses, logits, None) of an unlogged step, replayed from a CUDA graph after the warm-up."""

    def __init__(self, step: Step, device: torch.device) -> None:
        self.step, self.cuda = step, device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None  # the step's input buffers
        self.out: StepOutput | None = None  # the step's outputs: a captured step's are the graph's buffers
        self.calls = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        if self.static is None:
            self.static = (x.clone(), y.clone())
        else:
            self.static[0].copy_(x)
            self.static[1].copy_(y)
        if not self.cuda:
            self.out = self.step(*self.static, False)
        elif self.graph is None and self.calls < WARMUP_STEPS:
            self.out = self.warm_up()
        elif self.graph is None:
            self.capture()
        else:
            self.graph.replay()
        self.calls += 1
        assert self.out is not None  # set by this call or, replaying, by the capture
        losses, logits, _ = self.out
        return losses.clone(), logits.clone(), None  # the window keeps them; the next replay overwrites the buffers

    def warm_up(self) -> StepOutput:
        assert self.static is not None  # __call__ fills the buffers first
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.step(*self.static, False)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def capture(self) -> None:
        """Record the step once, then replay it for this step's batch (recording runs nothing)."""
        assert self.static is not None  # __call__ fills the buffers first
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self.step(*self.static, False)
        self.graph.replay()
