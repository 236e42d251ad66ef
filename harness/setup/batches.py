"""The members' mini-batches, drawn per epoch on the CPU for all members at once and indexed on the device."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


class MemberBatches:
    """Shuffled mini-batches for K members at once, indexed on the device: drops each epoch's last partial batch
    so shapes stay fixed.

    Member i's epochs are torch.randperm from a CPU generator seeded with its seed, drawn for every member at once
    when an epoch ends and copied to the device once (K, N): a member's batch order depends on its seed alone, the
    same on the CPU and on CUDA (whose generator draws other numbers) and whatever group it trains in. While the
    members move in step (the usual case) a batch is one slice of that table, with no host work that grows with K.
    A member waiting to join (resumed from a later step) does not advance."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seeds: list[int]):
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x))
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.perm = self.draw(range(len(seeds)))  # (K, N) on the data's device
        self.common: int | None = 0  # every member's place in its epoch while they move in step, else None
        self.positions = np.zeros(len(seeds), dtype=np.int64)  # each member's place, kept when common is None

    def draw(self, members: Iterable[int]) -> torch.Tensor:
        """The next epoch's orders of these members, (len(members), N) on the data's device."""
        return torch.stack([torch.randperm(len(self.x), generator=self.generators[i]) for i in members]).to(
            self.x.device
        )

    def next(self, waiting: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, B, ...) inputs and (K, B) labels of the next step. Members `waiting` (a (K,) bool array; None:
        nobody) are handed a batch they do not train on and do not advance."""
        if self.common is not None and waiting is None:  # the usual case: one slice, in Python integers
            if self.common + self.batch_size > len(self.x):
                self.perm, self.common = self.draw(range(len(self.generators))), 0
            idx = self.perm[:, self.common : self.common + self.batch_size]
            self.common += self.batch_size
            return self.x[idx], self.y[idx]
        if self.common is not None:
            self.positions[:], self.common = self.common, None
        ended = self.positions + self.batch_size > len(self.x)
        if ended.any():
            members = np.flatnonzero(ended)
            self.perm[torch.as_tensor(members, device=self.perm.device)] = self.draw(members)
            self.positions[members] = 0
        # members at different places in their epochs (one waits to join from a later checkpoint): one gather
        offsets = torch.as_tensor(self.positions[:, None] + np.arange(self.batch_size), device=self.perm.device)
        idx = self.perm.gather(1, offsets)
        self.positions += self.batch_size if waiting is None else self.batch_size * ~waiting
        if (self.positions == self.positions[0]).all():  # the waiting member has caught up
            self.common = int(self.positions[0])
        return self.x[idx], self.y[idx]

    def state_dict(self, i: int) -> dict:
        """Member i's place, as a one-member checkpoint keeps it."""
        position = self.common if self.common is not None else int(self.positions[i])
        return {"generator": self.generators[i].get_state(), "perm": self.perm[i].cpu(), "position": position}

    def state_problem(self, state: dict) -> str | None:
        """Why a checkpoint's batch state cannot be continued here, or None: a CUDA run's checkpoint from before
        batch orders were drawn on the CPU holds a CUDA generator's state."""
        if state["generator"].numel() != self.generators[0].get_state().numel():
            return "holds a batch order drawn by a CUDA generator (written before orders were drawn on the CPU)"
        return None

    def load_state_dict(self, i: int, state: dict) -> None:
        self.generators[i].set_state(state["generator"])
        self.perm[i] = state["perm"].to(self.perm.device)
        if self.common is not None:
            self.positions[:], self.common = self.common, None
        self.positions[i] = state["position"]
        if (self.positions == self.positions[0]).all():
            self.common = int(self.positions[0])
