"""What a run carries from step to step: its TrainState (the checkpoint's content) and its metric rows."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.records.results import (  # noqa: F401  (CHECKPOINT: for the loop)
    CHECKPOINT,
    read_checkpoint,
    set_aside_checkpoint,
    write_checkpoint_file,
)
from harness.setup.config import Config, config_hash

Row = tuple  # (step, split, metric, layer, value, t): one metrics.csv line


@dataclass
class TrainState:
    """Where the loop stands: everything a checkpoint carries besides the model, optimizer, scaler and batches."""

    step: int = 0  # the last step at a boundary
    rows: list[Row] = field(default_factory=list)
    train_time: float = 0.0  # the training clock (boundaries excluded)
    loop_time: float = 0.0  # the loop's clock (evaluation and probes included)
    train_cpu_time: float = 0.0  # the training thread's CPU time over the same segments (NaN: not kept throughout)
    warm_time: tuple[int, float] | None = None  # (warm-up step, train_time then): speed leaves warm-up out
    warm_cpu_time: float = 0.0  # train_cpu_time at the warm-up step
    best_val_acc: float = -1.0
    test_acc_at_best_val: float | None = None
    grad_sum: torch.Tensor | None = None  # per layer, summed over the logged steps
    grad_global_sum: float = 0.0
    grad_count: int = 0
    diverged_at_step: int | None = None
    grad_norm_init_by_layer: dict = field(default_factory=dict)
    # the activation modules' parameters at initialisation (harness.networks.learnt); None: not known (a checkpoint
    # from before they were kept)
    activation_params_init: dict | None = None
    alive_init_by_layer: dict = field(default_factory=dict)  # layer -> (units,) bool on the CPU: the step-0 probe's
    latest: dict = field(default_factory=dict)  # "split.metric" -> the last value recorded of each scalar


class Recorder:
    """Appends metrics.csv rows to a TrainState and keeps the latest value of each whole-network scalar."""

    def __init__(self, state: TrainState):
        self.rows, self.latest = state.rows, state.latest

    def scalar(self, step: int, split: str, metric: str, value: float) -> None:
        self.rows.append((step, split, metric, None, value, None))
        self.latest[f"{split}.{metric}"] = value

    def last(self, split: str, metric: str) -> float:
        return self.latest.get(f"{split}.{metric}", math.nan)

    def units(self, step: int, stats: dict) -> None:
        """The rows of one unit probe: dead and saturated fractions, output mean and std, and the activation
        sparsity (harness.networks.sparsity; the CETT's only where it is defined), per layer."""
        for layer, s in stats.items():
            self.rows += [
                (step, "probe", "dead_fraction", layer, s.dead_fraction, None),
                (step, "probe", "saturated_fraction", layer, s.saturated_fraction, None),
                (step, "probe", "act_mean", layer, s.mean, None),
                (step, "probe", "act_std", layer, s.std, None),
                (step, "probe", "zero_fraction", layer, s.zero_fraction, None),
                (step, "probe", "small_fraction", layer, s.small_fraction, None),
            ]
            if s.cett_sparsity is not None:
                self.rows.append((step, "probe", "cett_sparsity", layer, s.cett_sparsity, None))

    def gradients(self, step: int, split: str, by_layer: dict, through_time: dict) -> None:
        """Per-layer weight-gradient norms and, for RNNs, ||dL/dh_t|| per time step."""
        self.rows += [(step, split, "grad_norm", layer, v, None) for layer, v in by_layer.items()]
        for layer, norms in through_time.items():
            self.rows += [(step, split, "grad_norm_h", layer, v, t) for t, v in enumerate(norms)]


def save_checkpoint(path: Path, parts: dict, state: dict, config: Config) -> None:
    """Save everything a restarted job needs to continue exactly, atomically and behind its checksum. parts: the
    member's model, optimizer, scaler and batches state dicts (in the formats of torch's own optimizers and of a
    one-member harness.setup.batches.MemberBatches); state: a TrainState as a dict."""
    blob = {
        **parts,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "state": state,
        "config_hash": config_hash(config),
    }
    write_checkpoint_file(path, blob)


def load_checkpoint(
    path: Path, config: Config, batches_problem: Callable[[dict], str | None]
) -> tuple[dict, TrainState] | None:
    """A checkpoint written by save_checkpoint: (its parts, its TrainState) for the caller to restore; None when it
    was set aside (no checksum or a wrong one, damaged, another config, batches_problem(its batches) not None)."""
    blob = read_checkpoint(path, config_hash(config))
    if blob is None:
        return None
    problem = batches_problem(blob["batches"])
    if problem:  # checked before anything is restored: the job starts over from its fresh state
        set_aside_checkpoint(path, problem)
        return None
    known = {f.name for f in dataclasses.fields(TrainState)}
    state = TrainState(**{k: v for k, v in blob["state"].items() if k in known})
    if "train_cpu_time" not in blob["state"]:  # saved before the CPU clock was kept: its CPU time is unknown
        state.train_cpu_time = math.nan
    state.rows = [tuple(r) for r in state.rows if r[0] <= state.step]
    if state.warm_time is not None:
        warm_step, warm_train_time = state.warm_time  # a tuple again, whatever sequence the checkpoint held
        state.warm_time = (warm_step, warm_train_time)
    return blob, state


def restore_rng(blob: dict) -> None:
    """The random state a checkpoint was saved with (RReLU's noise draws from it)."""
    torch.set_rng_state(blob["rng"])
    if blob["cuda_rng"]:
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
