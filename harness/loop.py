"""The machinery the training loop drives: one training step, the boundary measurements, and the final summary."""
from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from harness import flow, probes
from harness.data import BatchIterator
from harness.meters import evaluate
from harness.recorder import CHECKPOINT, Recorder, TrainState, load_checkpoint
from harness.resolve import Job
from harness.results import git_state, package_versions, write_metrics

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Loop:
    """One run's training machinery, built once by Loop.start: what every step and boundary uses."""

    job: Job
    run_dir: Path
    state: TrainState
    rec: Recorder
    scaler: torch.amp.GradScaler
    batches: BatchIterator
    forward: Callable  # the compiled model, or the model itself
    amp: torch.dtype | None
    probe_x: torch.Tensor
    probe_y: torch.Tensor
    layer_names: list[str]

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    @classmethod
    def start(cls, job: Job, run_dir: Path) -> Loop:
        """Build the machinery; continue from run_dir's checkpoint if there is one, else probe the initial network."""
        t, model, data = job.config.trainer, job.model, job.data
        scaler = torch.amp.GradScaler(job.device.type, enabled=t.precision == "fp16")
        batches = BatchIterator(data.x_train, data.y_train, t.batch_size, job.config.seed)
        layer_names = list(probes.layer_weights(model))
        forward = torch.compile(model) if t.compile else model
        if job.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(job.device)
        state = TrainState(grad_sum=torch.zeros(len(layer_names)))
        if (run_dir / CHECKPOINT).exists():  # a damaged one is set aside (None) and the run starts over
            state = load_checkpoint(run_dir / CHECKPOINT, model, job.optimizer, scaler, batches, job.config) or state
        loop = cls(job, run_dir, state, Recorder(state), scaler, batches, forward, AMP_DTYPES[t.precision],
                   data.x_train[: probes.PROBE_SIZE], data.y_train[: probes.PROBE_SIZE], layer_names)
        if state.step == 0:  # the network at initialisation
            units = loop.probe_units()
            loop.rec.units(0, units)
            state.alive_init_by_layer = {k: s.alive.cpu() for k, s in units.items()}  # to tell lost from born dead
            state.grad_norm_init_by_layer, through_time = probes.probe_gradients(model, loop.probe_x, loop.probe_y)
            loop.rec.gradients(0, "probe", state.grad_norm_init_by_layer, through_time)
        return loop

    def autocast(self):
        return torch.autocast(self.job.device.type, dtype=self.amp) if self.amp else nullcontext()

    def probe_units(self) -> dict:
        return probes.probe_units(self.job.model, self.probe_x, self.job.activation.max_slope)

    def step(self, x: torch.Tensor, y: torch.Tensor, logged: bool) -> tuple:
        """One optimiser step; on a logged step also the gradient norms, (per layer, global, through time)."""
        model, optimizer, t = self.job.model, self.job.optimizer, self.job.config.trainer
        if logged:
            probes.record_through_time(model, True)
        with self.autocast():
            logits = (model if logged else self.forward)(x)  # logged steps stay eager: hooks and h_t need it
            loss = F.cross_entropy(logits.float() if self.amp else logits, y)
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if logged or t.grad_clip:
            self.scaler.unscale_(optimizer)
        grads = None
        if logged:
            grads = probes.weight_grad_norms(model), probes.global_grad_norm(model), probes.hidden_grad_norms(model)
            probes.record_through_time(model, False)
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        return loss, logits, grads

    def boundary(self, step: int, window, grads: tuple | None, eval_now: bool, bar) -> bool:
        """Record the window, the gradients (logged steps), the units and the evaluation; False once diverged."""
        state, rec = self.state, self.rec
        window_start = step - window.batches + 1
        train_loss, train_acc, bad = window.read()  # means over the window
        rec.scalar(step, "train", "loss", train_loss)
        rec.scalar(step, "train", "acc", train_acc)
        state.step = step
        if bad is not None:
            state.diverged_at_step = window_start + bad
            return False
        if grads is not None:
            self.record_gradients(step, *grads)
        rec.units(step, self.probe_units())
        if eval_now:
            val_acc = self.evaluate_splits(step)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
        return True

    def record_gradients(self, step: int, by_layer: torch.Tensor, global_norm: torch.Tensor, through_time) -> None:
        *norms, total = torch.cat([by_layer, global_norm[None]]).tolist()
        self.state.grad_sum += torch.tensor(norms)
        self.state.grad_global_sum += total
        self.state.grad_count += 1
        self.rec.gradients(step, "train", dict(zip(self.layer_names, norms)),
                           {k: v.tolist() for k, v in through_time.items()})
        self.rec.scalar(step, "train", "grad_norm_global", total)

    def evaluate_splits(self, step: int) -> float:
        """Validation and test loss and accuracy, recorded; the best validation accuracy so far kept. val_acc."""
        data, state = self.job.data, self.state
        val_loss, val_acc = evaluate(self.job.model, data.x_val, data.y_val, self.autocast)
        test_loss, test_acc = evaluate(self.job.model, data.x_test, data.y_test, self.autocast)
        for split, metric, value in [("val", "loss", val_loss), ("val", "acc", val_acc), ("test", "loss", test_loss),
                                     ("test", "acc", test_acc)]:
            self.rec.scalar(step, split, metric, value)
        if val_acc > state.best_val_acc:
            state.best_val_acc, state.test_acc_at_best_val = val_acc, test_acc
        return val_acc

    def outcome(self) -> dict:
        """Final losses and accuracies: the last evaluation's, or, if none was made (no steps, or diverged), now."""
        state, rec, data, model = self.state, self.rec, self.job.data, self.job.model
        if self.job.config.trainer.steps and state.diverged_at_step is None:
            return {"train_loss": rec.last("train", "loss"), "train_acc": rec.last("train", "acc"),
                    "val_acc": rec.last("val", "acc"), "test_loss": rec.last("test", "loss"),
                    "test_acc": rec.last("test", "acc")}
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, self.autocast)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, self.autocast)
        train_loss, train_acc = evaluate(model, data.x_train, data.y_train, self.autocast)
        rec.scalar(state.step, "val", "acc", val_acc)
        rec.scalar(state.step, "test", "acc", test_acc)
        return {"train_loss": train_loss, "train_acc": train_acc, "val_acc": val_acc, "test_loss": test_loss,
                "test_acc": test_acc}

    def finish(self) -> dict:
        """Final measurements, metrics.csv, and the summary's outcome, speed, probe and provenance keys."""
        state, t = self.state, self.job.config.trainer
        out = self.outcome()
        diverged = state.diverged_at_step is not None
        units = {} if diverged else self.probe_units()
        final_grads = {} if diverged else state.grad_norm_init_by_layer
        if t.steps and not diverged:
            final_grads, through_time = probes.probe_gradients(self.job.model, self.probe_x, self.probe_y)
            self.rec.gradients(state.step, "probe", final_grads, through_time)
        write_metrics(self.run_dir, state.rows)
        dead, saturated = probes.overall_fractions(units) if units else (None, None)
        count = max(state.grad_count, 1)
        grad_mean = dict(zip(self.layer_names, (state.grad_sum / count).tolist())) if state.grad_count else {}
        return {
            "status": "diverged" if diverged else "ok",
            "train_loss": out["train_loss"], "train_acc": out["train_acc"], "val_acc": out["val_acc"],
            "best_val_acc": state.best_val_acc if state.best_val_acc >= 0 else out["val_acc"],
            "test_acc": out["test_acc"], "test_loss": out["test_loss"],
            "test_acc_at_best_val": out["test_acc"] if state.test_acc_at_best_val is None
            else state.test_acc_at_best_val,
            "steps": state.step, "diverged_at_step": state.diverged_at_step,
            "train_time_s": state.train_time, "loop_time_s": state.loop_time, **self.speed(),
            "dead_fraction": dead, "saturated_fraction": saturated,
            "dead_fraction_by_layer": {k: s.dead_fraction for k, s in units.items()},
            "saturated_fraction_by_layer": {k: s.saturated_fraction for k, s in units.items()},
            "act_mean_by_layer": {k: s.mean for k, s in units.items()},
            "act_std_by_layer": {k: s.std for k, s in units.items()},
            "grad_norm_init_by_layer": state.grad_norm_init_by_layer,
            "grad_norm_by_layer": grad_mean,
            "grad_norm_final_by_layer": final_grads,
            "grad_norm_global": state.grad_global_sum / count if state.grad_count else None,
            **self.course(units, grad_mean),
            **provenance(self.job),
        }

    def course(self, units: dict, grad_mean: dict) -> dict:
        """Dead at init vs lost in training, gradient flow and drawdown (harness/flow.py), the test-set size."""
        state = self.state
        return {
            "dead_fraction_init_by_layer": flow.dead_fractions(state.alive_init_by_layer),
            "lost_fraction_by_layer": flow.lost_fractions(state.alive_init_by_layer,
                                                          {k: s.alive for k, s in units.items()}),
            "grad_flow_ratio_init": flow.grad_flow_ratio(state.grad_norm_init_by_layer),
            "grad_flow_ratio": flow.grad_flow_ratio(grad_mean),
            "val_drawdown_max": flow.drawdown(flow.val_accuracies(state.rows)),
            "n_test": len(self.job.data.x_test),
        }

    def speed(self) -> dict:
        """Samples per second after the warm-up steps by wall time and by the run's speed_clock; peak device memory.

        speed_clock: 'cuda_events' on a GPU (the wall Timer's own), 'thread_cpu' on one CPU thread (its CPU time
        over the same segments: what other processes do not move), 'wall' otherwise (several threads, MPS).
        """
        state, device = self.state, self.job.device
        steps, wall, cpu = state.step, state.train_time, state.train_cpu_time
        if state.warm_time and state.step > state.warm_time[0]:  # leave the warm-up steps out of the speed
            steps, wall, cpu = steps - state.warm_time[0], wall - state.warm_time[1], cpu - state.warm_cpu_time
        samples = steps * min(self.job.config.trainer.batch_size, len(self.job.data.x_train))
        clock = speed_clock(device, state.train_cpu_time)
        on_cpu = clock == "thread_cpu"
        return {"samples_per_s": rate(samples, wall), "speed_clock": clock,
                "train_cpu_time_s": state.train_cpu_time if on_cpu else None,
                "clock_samples_per_s": rate(samples, cpu if on_cpu else wall),
                "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


def rate(samples: int, seconds: float) -> float | None:
    return samples / seconds if seconds > 0 else None


def speed_clock(device: torch.device, cpu_time: float) -> str:
    """The clock a run's speed is read by (see Loop.speed); a run whose CPU time was not kept throughout is 'wall'."""
    if device.type == "cuda":
        return "cuda_events"
    return "thread_cpu" if device.type == "cpu" and torch.get_num_threads() == 1 and math.isfinite(cpu_time) else "wall"


def provenance(job: Job) -> dict:
    """Where and with what a run ran: device, threads, precision, sizes, versions, git, data, host."""
    device, t = job.device, job.config.trainer
    sha, dirty = git_state()
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "num_threads": torch.get_num_threads(), "precision": t.precision, "compile": t.compile,
        "n_params": sum(p.numel() for p in job.model.parameters()),
        "width_used": getattr(job.model, "width_used", job.config.model.width),  # model.match_params may change it
        "torch_version": torch.__version__,
        "package_versions": dict(package_versions()), "git_sha": sha, "git_dirty": dirty,
        "dataset_checksum": job.data.checksum, "hostname": platform.node(), "pid": os.getpid(),
    }
