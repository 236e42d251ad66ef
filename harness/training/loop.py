"""One run's part in the loop (harness.training.train): where it stands, what it records, and its summary.

A Member is one of the loop's K runs. Its parameters live in the group's stacked state (its model's tensors are
views into it); what is its own is its configuration, folder, TrainState, metric rows and clocks.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.common import flow
from harness.networks import learnt, probes
from harness.records.recorder import CHECKPOINT, Recorder, TrainState
from harness.records.results import git_state, package_versions, write_metrics
from harness.setup.config import Config, TrainerConfig


@dataclass
class Member:
    """One run of the loop: its own configuration, folder, state and records."""

    config: Config
    run_dir: Path
    model: torch.nn.Module  # its modules; their tensors are views into the group's stacked state
    max_slope: float | None  # its activation's max|f'| where fixed (probes)
    state: TrainState
    first_step: int = 0  # the step it continues from (its checkpoint's), 0 for a fresh run
    joined_at: float = 0.0  # the group's training clock when it joined (it trains from then on)
    joined_at_cpu: float = 0.0
    summary: dict | None = None  # set when it leaves the loop (finished, diverged or failed)

    def __post_init__(self) -> None:
        self.rec = Recorder(self.state)
        self.layer_names = list(probes.layer_weights(self.model))
        self.base_time, self.base_loop_time = self.state.train_time, self.state.loop_time
        self.base_cpu_time = self.state.train_cpu_time

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    def clocks(self, train: float, train_cpu: float, loop: float | None = None) -> None:
        """Its clocks from the group's: its own at its start, plus the group's since it joined."""
        self.state.train_time = self.base_time + train - self.joined_at
        self.state.train_cpu_time = self.base_cpu_time + train_cpu - self.joined_at_cpu
        if loop is not None:
            self.state.loop_time = self.base_loop_time + loop

    def probe_init(self, units: dict, probe_x: torch.Tensor, probe_y: torch.Tensor) -> None:
        """The network at initialisation: its units (probed with the group's) to tell lost from born dead later,
        and its gradients."""
        self.rec.units(0, units)
        self.state.alive_init_by_layer = {k: s.alive.cpu() for k, s in units.items()}
        self.state.grad_norm_init_by_layer, through_time = probes.probe_gradients(self.model, probe_x, probe_y)
        self.rec.gradients(0, "probe", self.state.grad_norm_init_by_layer, through_time)
        self.state.activation_params_init = learnt.activation_parameters(self.model)  # the learnt shape's start

    def record_window(self, step: int, batches: int, loss: float, acc: float, bad: int | None) -> bool:
        """The training window's mean loss and accuracy; False if it diverged in it."""
        self.rec.scalar(step, "train", "loss", loss)
        self.rec.scalar(step, "train", "acc", acc)
        self.state.step = step
        if bad is not None:
            self.state.diverged_at_step = step - batches + 1 + bad
            return False
        return True

    def record_gradients(self, step: int, norms: list[float], total: float, through_time: dict) -> None:
        assert self.state.grad_sum is not None  # every member's TrainState has one (group.start_member)
        self.state.grad_sum += torch.tensor(norms, dtype=self.state.grad_sum.dtype)
        self.state.grad_global_sum += total
        self.state.grad_count += 1
        self.rec.gradients(step, "train", dict(zip(self.layer_names, norms)), through_time)
        self.rec.scalar(step, "train", "grad_norm_global", total)

    def record_evaluation(self, step: int, val: tuple[float, float], test: tuple[float, float]) -> None:
        """Validation and test loss and accuracy; the best validation accuracy so far kept."""
        for split, (loss, acc) in (("val", val), ("test", test)):
            self.rec.scalar(step, split, "loss", loss)
            self.rec.scalar(step, split, "acc", acc)
        if val[1] > self.state.best_val_acc:
            self.state.best_val_acc, self.state.test_acc_at_best_val = val[1], test[1]

    def outcome(self, evaluate_now: Callable[[str], tuple[float, float]]) -> dict:
        """Final losses and accuracies: the last evaluation's, or, if none was made (no steps, or diverged), now
        (evaluate_now: split -> (loss, acc), this member's)."""
        state, rec = self.state, self.rec
        if self.config.trainer.steps and state.diverged_at_step is None:
            return {
                "train_loss": rec.last("train", "loss"),
                "train_acc": rec.last("train", "acc"),
                "val_acc": rec.last("val", "acc"),
                "test_loss": rec.last("test", "loss"),
                "test_acc": rec.last("test", "acc"),
            }
        (_, val_acc), (test_loss, test_acc) = evaluate_now("val"), evaluate_now("test")
        train_loss, train_acc = evaluate_now("train")
        rec.scalar(state.step, "val", "acc", val_acc)
        rec.scalar(state.step, "test", "acc", test_acc)
        return {
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
        }

    def finish(
        self, out: dict, units: dict, probe_x: torch.Tensor, probe_y: torch.Tensor, device: torch.device, shared: dict
    ) -> dict:
        """Final gradient probe, metrics.csv, and the summary's outcome, speed, probe and provenance keys (units:
        its final unit probe, made with the group's; shared: what is the same for every member, made once per
        group: harness.training.loop.provenance)."""
        state, trainer = self.state, self.config.trainer
        diverged = state.diverged_at_step is not None
        units = {} if diverged else units
        final_grads = {} if diverged else state.grad_norm_init_by_layer
        if trainer.steps and not diverged:
            final_grads, through_time = probes.probe_gradients(self.model, probe_x, probe_y)
            self.rec.gradients(state.step, "probe", final_grads, through_time)
        write_metrics(self.run_dir, state.rows)
        dead, saturated = probes.overall_fractions(units) if units else (None, None)
        count = max(state.grad_count, 1)
        grad_mean: dict[str, float] = {}
        if state.grad_count:
            assert state.grad_sum is not None  # every member's TrainState has one (group.start_member)
            grad_mean = dict(zip(self.layer_names, (state.grad_sum / count).tolist()))
        return {
            "status": "diverged" if diverged else "ok",
            "train_loss": out["train_loss"],
            "train_acc": out["train_acc"],
            "val_acc": out["val_acc"],
            "best_val_acc": state.best_val_acc if state.best_val_acc >= 0 else out["val_acc"],
            "test_acc": out["test_acc"],
            "test_loss": out["test_loss"],
            "test_acc_at_best_val": out["test_acc"]
            if state.test_acc_at_best_val is None
            else state.test_acc_at_best_val,
            "steps": state.step,
            "diverged_at_step": state.diverged_at_step,
            "train_time_s": state.train_time,
            "loop_time_s": state.loop_time,
            **self.speed(device),
            "dead_fraction": dead,
            "saturated_fraction": saturated,
            "dead_fraction_by_layer": {k: s.dead_fraction for k, s in units.items()},
            "saturated_fraction_by_layer": {k: s.saturated_fraction for k, s in units.items()},
            **self.sparsity(units),
            "act_mean_by_layer": {k: s.mean for k, s in units.items()},
            "act_std_by_layer": {k: s.std for k, s in units.items()},
            "grad_norm_init_by_layer": state.grad_norm_init_by_layer,
            "grad_norm_by_layer": grad_mean,
            "grad_norm_final_by_layer": final_grads,
            "grad_norm_global": state.grad_global_sum / count if state.grad_count else None,
            **self.course(units, grad_mean, shared["n_test"]),
            **{k: dict(v) if isinstance(v, dict) else v for k, v in shared.items() if k != "n_test"},  # its own copy
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "width_used": getattr(self.model, "width_used", self.config.model.width),  # model.match_params
            "activation_params_init": state.activation_params_init,
            "activation_params_final": learnt.activation_parameters(self.model),  # its own values (views of the stack)
        }

    @staticmethod
    def sparsity(units: dict) -> dict:
        """The final probe's activation sparsity, overall and by layer (null after a divergence: no probe)."""
        overall = probes.overall_sparsity(units) if units else dict.fromkeys(probes.SPARSITY_KEYS)
        by_layer = {f"{key}_by_layer": {k: getattr(s, key) for k, s in units.items()} for key in probes.SPARSITY_KEYS}
        return {**overall, **by_layer}

    def course(self, units: dict, grad_mean: dict, n_test: int) -> dict:
        """Dead at init vs lost in training, gradient flow and drawdown (harness/common/flow.py), the test-set size."""
        state = self.state
        return {
            "dead_fraction_init_by_layer": flow.dead_fractions(state.alive_init_by_layer),
            "lost_fraction_by_layer": flow.lost_fractions(
                state.alive_init_by_layer, {k: s.alive for k, s in units.items()}
            ),
            "grad_flow_ratio_init": flow.grad_flow_ratio(state.grad_norm_init_by_layer),
            "grad_flow_ratio": flow.grad_flow_ratio(grad_mean),
            "val_drawdown_max": flow.drawdown(flow.val_accuracies(state.rows)),
            "n_test": n_test,
        }

    def speed(self, device: torch.device) -> dict:
        """Samples per second after the warm-up steps by wall time and by the run's speed_clock; peak device memory.

        speed_clock: 'cuda_events' on a GPU (the wall Timer's own), 'thread_cpu' on one CPU thread (its CPU time
        over the same segments: what other processes do not move), 'wall' otherwise (several threads, MPS). In a
        group every member reports the group's clocks (the time of all K together).
        """
        state = self.state
        steps, wall, cpu = state.step, state.train_time, state.train_cpu_time
        if state.warm_time and state.step > state.warm_time[0]:  # leave the warm-up steps out of the speed
            steps, wall, cpu = steps - state.warm_time[0], wall - state.warm_time[1], cpu - state.warm_cpu_time
        samples = steps * self.config.trainer.batch_size  # harness.setup.data.check_fits: never above the split
        clock = speed_clock(device, state.train_cpu_time)
        on_cpu = clock == "thread_cpu"
        return {
            "samples_per_s": rate(samples, wall),
            "speed_clock": clock,
            "train_cpu_time_s": state.train_cpu_time if on_cpu else None,
            "clock_samples_per_s": rate(samples, cpu if on_cpu else wall),
            "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        }


def rate(samples: int, seconds: float) -> float | None:
    return samples / seconds if seconds > 0 else None


def speed_clock(device: torch.device, cpu_time: float) -> str:
    """The clock a run's speed is read by (see Member.speed); a run whose CPU time was not kept throughout is 'wall'."""
    if device.type == "cuda":
        return "cuda_events"
    return "thread_cpu" if device.type == "cpu" and torch.get_num_threads() == 1 and math.isfinite(cpu_time) else "wall"


def provenance(device: torch.device, trainer: TrainerConfig, dataset_checksum: str) -> dict:
    """Where and with what the runs ran, the same for every member of a group: made once per group."""
    sha, dirty = git_state()
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "num_threads": torch.get_num_threads(),
        "precision": trainer.precision,
        "compile": trainer.compile,
        "torch_version": torch.__version__,
        "package_versions": dict(package_versions()),
        "git_sha": sha,
        "git_dirty": dirty,
        "dataset_checksum": dataset_checksum,
        "hostname": platform.node(),
        "pid": os.getpid(),
    }
