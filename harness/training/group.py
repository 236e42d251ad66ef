"""The K members of one loop (harness.training.train) and what they share: one stacked model whose tensors are the only
state (each member's modules are views into it), one optimizer stepping every member at once with its own
learning rate and weight decay, one batch table, one step. A single run is a group of one.

Which runs may share a loop (a configuration equal but for MEMBER_KEYS) is decided here too, for the sweeper
(harness/sweeps/grouping.py) and run_group alike.
"""

from __future__ import annotations

import dataclasses
import json
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.networks import probes, stacked, stacked_probes
from harness.networks.models import MODELS, build_model
from harness.records.recorder import CHECKPOINT, TrainState, load_checkpoint, restore_rng, save_checkpoint
from harness.setup.batches import MemberBatches
from harness.setup.config import Config, ConfigError, TrainerConfig, to_dict
from harness.setup.data import Dataset
from harness.setup.optimizers import decay_flags
from harness.setup.resolve import Resolved, resolve_threads
from harness.training import capture
from harness.training.loop import Member, provenance
from harness.training.meters import evaluate
from harness.training.stacked_optim import StackedOptimizer, clip_member_grads_

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Group:
    """The loop's K members and their shared machinery, built once by build_group."""

    members: list[Member]
    stack: stacked.StackedModel
    optimizer: StackedOptimizer
    batches: MemberBatches
    scaler: torch.amp.GradScaler
    data: Dataset
    device: torch.device
    trainer: TrainerConfig  # the members' common one (their lr and weight decay are the optimizer's)
    active: np.ndarray  # (K,) bool: the members that train at the next step (changes only at boundaries)
    capturable: bool  # every op of the step is one a CUDA graph can hold (the stackable activations' are)

    def __post_init__(self) -> None:
        self.amp = AMP_DTYPES[self.trainer.precision]
        self.probe_x, self.probe_y = self.data.x_train[: probes.PROBE_SIZE], self.data.y_train[: probes.PROBE_SIZE]
        self.active_t = torch.as_tensor(self.active, device=self.device)
        wanted = capture.wanted(self.trainer, self.device, self.capturable)
        self.captured = capture.CapturedStep(self.step, self.device) if wanted else None

    @cached_property
    def shared(self) -> dict:
        """What every member's summary shares (versions, git, data checksum, host), made once per group."""
        return {**provenance(self.device, self.trainer, self.data.checksum), "n_test": len(self.data.x_test)}

    def autocast(self) -> AbstractContextManager[object]:
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()

    def live(self) -> list[tuple[int, Member]]:
        return [(i, m) for i, m in enumerate(self.members) if self.active[i]]

    def activate(self, next_step: int, clock: float, cpu_clock: float) -> None:
        """Who trains from next_step on: not finished, and past its checkpoint's step (a member resumed from a
        later step joins there, its clocks continuing from the group's now)."""
        waits = np.zeros(len(self.members), dtype=bool)
        for i, m in enumerate(self.members):
            joins = m.summary is None and next_step > m.first_step
            if joins and not self.active[i]:
                m.joined_at, m.joined_at_cpu = clock, cpu_clock
            self.active[i] = joins
            waits[i] = m.summary is None and not joins
        self.waiting = waits if waits.any() else None  # members resumed from a later step (the batches' argument)
        self.active_t.copy_(torch.as_tensor(self.active))  # in place: a captured step reads this very tensor
        # the optimizer's member mask, needed only while a member is out (a captured step always takes it)
        self.mask = None if self.active.all() and self.captured is None else self.active_t

    def train_step(self, x: torch.Tensor, y: torch.Tensor, logged: bool) -> capture.StepOutput:
        """The step the loop takes: logged steps eagerly (their probes read the gradients), the others captured
        where trainer.capture says so (harness.training.capture)."""
        if logged or self.captured is None:
            return self.step(x, y, logged)
        return self.captured(x, y)

    def step(self, x: torch.Tensor, y: torch.Tensor, logged: bool) -> capture.StepOutput:
        """One optimiser step of every member: (losses (K,), logits (K, B, C), gradient norms if logged)."""
        stack, t = self.stack, self.trainer
        for p in stack.params:
            p.grad = None
        with self.autocast():
            logits, states = stack.forward(x, record=logged)
            k, b, c = logits.shape
            flat = (logits.float() if self.amp else logits).reshape(k * b, c)
            if k == 1:  # one node in the backward, as a plain loop's loss (a single run's step is that cheap)
                total = F.cross_entropy(flat, y.reshape(b))
                losses = total.reshape(1)
            else:  # members never mix, so each member's gradient is that of its own mean loss
                losses = F.cross_entropy(flat, y.reshape(k * b), reduction="none").view(k, b).mean(1)
                total = losses.sum()
        self.scaler.scale(total).backward()
        if logged or t.grad_clip:
            self.scaler.unscale_(self.optimizer)
        grads = self.gradients(states) if logged else None
        if t.grad_clip:
            clip_member_grads_(stack.params, t.grad_clip, stack.member_axis)
        self.scaler.step(self.optimizer, self.mask)  # members not active keep their tensors as they are
        self.scaler.update()
        return losses.detach(), logits.detach(), grads

    def gradients(self, states: list) -> capture.GradNorms:
        """Per member: weight-gradient norms by layer (K, L), the global norm (K,), ||dL/dh_t|| per RNN layer."""
        through_time = [stacked.hidden_grad_norms(states, i) for i in range(self.stack.k)]
        return stacked.weight_grad_norms(self.stack), stacked.global_grad_norm(self.stack), through_time

    def probe_units(self) -> list[dict[str, probes.LayerStats]]:
        """Every member's unit probe on the probe set, in stacked calls (harness.networks.stacked_probes)."""
        return stacked_probes.probe_members(self.stack, self.probe_x, [m.max_slope for m in self.members])

    def evaluate(self, split: str) -> list[tuple[float, float]]:
        """Every member's (mean loss, accuracy) on a split, stacked."""
        x, y = {
            "val": (self.data.x_val, self.data.y_val),
            "test": (self.data.x_test, self.data.y_test),
            "train": (self.data.x_train, self.data.y_train),
        }[split]
        return evaluate(self.stack, x, y, self.autocast)

    def save(self, i: int) -> None:
        """Member i's checkpoint, in a single run's format (it may resume alone or in another group)."""
        m = self.members[i]
        parts = {
            "model": m.model.state_dict(),
            "optimizer": self.optimizer.member_state_dict(i),
            "scaler": self.scaler.state_dict(),
            "batches": self.batches.state_dict(i),
        }
        save_checkpoint(m.checkpoint, parts, dataclasses.asdict(m.state), m.config)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_member_model(resolved: Resolved, data: Dataset) -> torch.nn.Module:
    """Seed, then build the model: its draws are the first from the seeded generators, as a run's always were."""
    config, spec = resolved.config, resolved.activation
    seed_everything(config.seed)
    model_cfg = dataclasses.replace(config.model, init=resolved.init)  # model.init=auto resolved
    model = build_model(model_cfg, spec, data.input_shape, data.num_classes, spec.gain)
    return model.to(resolved.device, data.x_train.dtype)  # float32, or the tests' float64 (the same draws, cast)


def build_group(resolved: list[Resolved], data: Dataset, run_dirs: list[Path], cpu_threads: int | None = None) -> Group:
    """The members' models (each from its seed), stacked; the optimizer, batches and scaler; each member continued
    from its checkpoint or probed at initialisation. Sets torch's threads (trainer.threads; auto needs the size)."""
    first, t = resolved[0], resolved[0].config.trainer
    device = first.device
    assert device is not None, "build_group needs the members resolved with their device"
    models = [build_member_model(r, data) for r in resolved]
    # a group of one trains its model's own modules (nn.Linear's kernels, no member axis): a single run costs what
    # a plain torch loop costs; K > 1 train the stacked model
    stack = stacked.StackedModel(
        models, stack=len(models) > 1, compiled=torch.compile(models[0]) if t.compile else None
    )
    n_params = sum(p.numel() for p in stack.params)
    torch.set_num_threads(resolve_threads(t.threads, n_params, t.batch_size, device, cpu_threads))
    optimizer = StackedOptimizer(
        stack.params,
        t.optimizer,
        [r.config.trainer.lr for r in resolved],
        [r.config.trainer.weight_decay for r in resolved],
        t.momentum,
        member_axis=stack.member_axis,
        decay=decay_flags(models[0], stack.names, t),  # the activations' own parameters: no decay unless asked
    )
    batches = MemberBatches(data.x_train, data.y_train, t.batch_size, [r.config.seed for r in resolved])
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    group = Group(
        [],
        stack,
        optimizer,
        batches,
        scaler,
        data,
        device,
        t,
        np.zeros(len(models), dtype=bool),
        why_not_grouped(first) is None,
    )
    for i, (r, model, run_dir) in enumerate(zip(resolved, models, run_dirs)):
        group.members.append(start_member(group, i, r, model, Path(run_dir)))
    if any(m.state.step == 0 for m in group.members):  # fresh members: the network at initialisation
        units = group.probe_units()
        for m, u in zip(group.members, units):
            if m.state.step == 0:
                m.probe_init(u, group.probe_x, group.probe_y)
    return group


def start_member(group: Group, i: int, r: Resolved, model: torch.nn.Module, run_dir: Path) -> Member:
    """Member i from its checkpoint (a damaged one is set aside and it starts over), or fresh."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = TrainState(grad_sum=torch.zeros(len(probes.layer_weights(model))))
    checkpoint = run_dir / CHECKPOINT
    loaded = load_checkpoint(checkpoint, r.config, group.batches.state_problem) if checkpoint.exists() else None
    if loaded:
        blob, state = loaded
        model.load_state_dict(blob["model"])  # into the stacked state: the model's tensors are views of it
        group.optimizer.load_member_state_dict(i, blob["optimizer"])
        group.scaler.load_state_dict(blob["scaler"])
        group.batches.load_state_dict(i, blob["batches"])
        restore_rng(blob)
    return Member(r.config, run_dir, model, r.activation.max_slope, state, first_step=state.step)


# ---- which runs may share a loop

# What may differ within a group, and only that: group_key, check_group's message, and the sweeper's group jobs
# (harness/sweeps/grouping.py: member_values, with_member_values) all read it from here.
MEMBER_KEYS = (("seed",), ("trainer", "lr"), ("trainer", "weight_decay"))


def group_key(config: Config) -> str:
    """Equal for configurations that may train in one group: everything but the MEMBER_KEYS."""
    d = to_dict(config)
    for *path, key in MEMBER_KEYS:
        node = d
        for part in path:
            node = node[part]
        del node[key]
    return json.dumps(d, sort_keys=True, default=str)


def why_not_grouped(resolved: Resolved) -> str | None:
    """Why a run must train alone (one line; it is then a group of one on its own model's forward), or None."""
    t, model = resolved.config.trainer, resolved.config.model.name
    if not MODELS[model].stacked:
        return f"model={model} has no stacked forward (harness/networks/stacked_layers.py)"
    if t.init_trials or t.steps == 0:
        return "trainer.init_trials / trainer.steps=0 runs only probe the initialisation"
    if t.compile:
        return "trainer.compile compiles one model's forward"
    if t.precision == "fp16":
        return "fp16's loss scale cannot be per member"
    return stacked.why_not_stacked(resolved.activation())


def check_group(resolved: list[Resolved]) -> None:
    """ConfigError (one line) unless the members differ only in MEMBER_KEYS and each can be grouped."""
    keys = {group_key(r.config) for r in resolved}
    if len(keys) > 1:
        *others, last = (".".join(path) for path in MEMBER_KEYS)
        raise ConfigError(f"a group's members may differ only in {', '.join(others)} and {last}")
    reason = why_not_grouped(resolved[0])
    if reason:
        raise ConfigError(f"not grouped: {reason}")
