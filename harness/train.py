"""The training loop: one activation x model x dataset run, instrumented, readable top to bottom."""
from __future__ import annotations

import datetime
import math
import os
import platform
import random
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness import probes
from harness.activations import activation_factory
from harness.born_dead import born_dead_trials
from harness.config import Config, ConfigError, activation_params, config_hash, to_dict, validate
from harness.data import BatchIterator, check_pair, load_dataset
from harness.models import build_model, check_fits, init_gain
from harness.results import SCHEMA_VERSION, git_state, package_versions, write_metrics, write_summary

CHECKPOINT = "checkpoint.pt"
EVAL_CHUNK = 1000  # evaluation batch: bounds memory on the larger datasets


def resolve_device(requested: str) -> torch.device:
    """auto picks CUDA, then MPS, then CPU; an explicit device that is not there is a ConfigError."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA GPU is available; use trainer.device=auto or cpu")
    if requested == "mps" and not mps:
        raise ConfigError("trainer.device=mps but MPS is not available; use trainer.device=auto or cpu")
    return torch.device(requested)


def check(config: Config) -> torch.device:
    """Every check that needs no data: values, activation parameters, the model x dataset pair, the device."""
    validate(config)
    name, params = activation_params(config)
    check_fits(config.model.name, name, activation_factory(name, **params))
    check_pair(config.model.name, config.dataset.name)
    return resolve_device(config.trainer.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, t) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


class Timer:
    """Wall time of training segments only; on CUDA, CUDA events synchronised at the end of each segment."""

    clock = staticmethod(time.perf_counter)  # on the CPU; the overhead benchmark swaps in a CPU-time clock

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.total = 0.0

    def start(self) -> None:
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.begin = self.clock()

    def stop(self) -> float:
        """End the segment (synchronising the device) and return the running total in seconds."""
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            self.total += self.begin.elapsed_time(end) / 1000
        else:
            self.total += self.clock() - self.begin
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


def unit_rows(step: int, stats: dict) -> list[tuple]:
    """metrics.csv rows for one unit probe."""
    rows = []
    for layer, s in stats.items():
        rows += [(step, "probe", "dead_fraction", layer, s.dead_fraction, None),
                 (step, "probe", "saturated_fraction", layer, s.saturated_fraction, None),
                 (step, "probe", "act_mean", layer, s.mean, None),
                 (step, "probe", "act_std", layer, s.std, None)]
    return rows


def gradient_rows(step: int, split: str, by_layer: dict, through_time: dict) -> list[tuple]:
    """metrics.csv rows for per-layer gradient norms and, for RNNs, ||dL/dh_t|| per time step."""
    rows = [(step, split, "grad_norm", layer, v, None) for layer, v in by_layer.items()]
    for layer, norms in through_time.items():
        rows += [(step, split, "grad_norm_h", layer, v, t) for t, v in enumerate(norms)]
    return rows


def run(config: Config, run_dir: Path, overrides: list[str] | tuple = ()) -> dict:
    """Train one combination in run_dir and write its records; return the summary.

    Raises ConfigError, ActivationError or DataError (one clear line) before any training starts.
    An exception during training is recorded as status 'failed' and does not propagate.
    """
    device = check(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    d = config.dataset
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, device)  # DataError: no training
    summary = {
        "schema_version": SCHEMA_VERSION, "status": "failed",
        "activation": activation_params(config)[0], "model": config.model.name, "dataset": d.name,
        "seed": config.seed, "config_hash": config_hash(config), "overrides": list(overrides),
        "config": to_dict(config), "run_dir": str(run_dir),
        "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        summary.update(train(config, data, device, run_dir))
        if config.trainer.init_trials:  # probe only: many fresh initialisations in this one job
            probe_x = data.x_train[: probes.PROBE_SIZE]
            summary.update(born_dead_trials(config, data.input_shape, data.num_classes, probe_x,
                                            config.trainer.init_trials, config.seed))
    except Exception:  # recorded, not raised: one failed run must not take a sweep down
        summary["error"] = traceback.format_exc()
    summary["finished_at"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    write_summary(run_dir, summary)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return summary


def train(config: Config, data, device: torch.device, run_dir: Path) -> dict:
    """The loop. Returns the summary's outcome, speed, probe and provenance keys."""
    t = config.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    seed_everything(config.seed)
    name, params = activation_params(config)
    model = build_model(config.model, activation_factory(name, **params), data.input_shape, data.num_classes,
                        init_gain(name, params)).to(device)
    optimizer = make_optimizer(model, t)
    forward = torch.compile(model) if t.compile else model
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.precision]

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
    batches = BatchIterator(data.x_train, data.y_train, t.batch_size, config.seed)
    probe_x, probe_y = data.x_train[: probes.PROBE_SIZE], data.y_train[: probes.PROBE_SIZE]
    layer_names = list(probes.layer_weights(model))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # State that a checkpoint carries.
    state = {"step": 0, "rows": [], "train_time": 0.0, "warm_time": None, "best_val_acc": -1.0,
             "test_acc_at_best_val": None, "grad_sum": torch.zeros(len(layer_names)), "grad_global_sum": 0.0,
             "grad_count": 0, "diverged_at_step": None}
    checkpoint_path = run_dir / CHECKPOINT
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, model, optimizer, scaler, batches, config)
    rows = state["rows"]

    if state["step"] == 0:  # the network at initialisation
        init_units = probes.probe_units(model, probe_x)
        init_grads, init_time = probes.probe_gradients(model, probe_x, probe_y)
        rows += unit_rows(0, init_units) + gradient_rows(0, "probe", init_grads, init_time)
        state["grad_norm_init_by_layer"] = init_grads

    window = WindowStats(device)  # read only at boundaries: the hot loop never waits for the device
    warmup = min(10, max(t.steps // 10, 1))
    timer = Timer(device)
    timer.total = state["train_time"]
    loop_timer = Timer(device)  # the whole loop, evaluation and probes included: what the instrumentation costs
    loop_timer.total = state.get("loop_time", 0.0)
    model.train()
    bar = tqdm(total=t.steps, initial=state["step"], disable=not t.progress, desc=f"{name} {config.model.name}",
               dynamic_ncols=True, leave=False)
    loop_timer.start()
    timer.start()
    for step in range(state["step"] + 1, t.steps + 1):
        x, y = next(batches)
        log_now = step % t.log_every == 0 or step == t.steps
        eval_now = step % t.eval_every == 0 or step == t.steps
        # Checkpoint at the first log or eval step after each multiple of checkpoint_every (state["step"] is the
        # previous one): the running train window is empty there, so a resumed run logs exactly what an
        # uninterrupted one does.
        save_now = (t.checkpoint_every > 0 and (log_now or eval_now) and step < t.steps
                    and step // t.checkpoint_every > state["step"] // t.checkpoint_every)
        if log_now:
            probes.record_through_time(model, True)
        with autocast():
            logits = (model if log_now else forward)(x)  # logged steps stay eager: hooks and h_t need it
            loss = F.cross_entropy(logits.float() if amp_dtype else logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if log_now or t.grad_clip:
            scaler.unscale_(optimizer)
        if log_now:
            grad_layers, grad_global = probes.weight_grad_norms(model), probes.global_grad_norm(model)
            through_time = probes.hidden_grad_norms(model)
            probes.record_through_time(model, False)
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        window.add(loss, logits, y)
        bar.update()
        if step == warmup:
            state["warm_time"] = (step, timer.stop())
            timer.start()
        if not (log_now or eval_now or save_now):
            continue

        # ---- a boundary: stop the clock, read the device once, measure, then resume
        state["train_time"] = timer.stop()
        window_start = step - window.batches + 1
        train_loss, train_acc, bad = window.read()  # means over the window
        rows += [(step, "train", "loss", None, train_loss, None), (step, "train", "acc", None, train_acc, None)]
        if bad is not None:
            state["diverged_at_step"] = window_start + bad
            state["step"] = step
            break
        if log_now:
            *norms, global_norm = torch.cat([grad_layers, grad_global[None]]).tolist()
            state["grad_sum"] += torch.tensor(norms)
            state["grad_global_sum"] += global_norm
            state["grad_count"] += 1
            rows += gradient_rows(step, "train", dict(zip(layer_names, norms)),
                                  {k: v.tolist() for k, v in through_time.items()})
            rows.append((step, "train", "grad_norm_global", None, global_norm, None))
        if log_now or eval_now:
            rows += unit_rows(step, probes.probe_units(model, probe_x))
        if eval_now:
            val_loss, val_acc = evaluate(model, data.x_val, data.y_val, autocast)
            test_loss, test_acc = evaluate(model, data.x_test, data.y_test, autocast)
            rows += [(step, "val", "loss", None, val_loss, None), (step, "val", "acc", None, val_acc, None),
                     (step, "test", "loss", None, test_loss, None), (step, "test", "acc", None, test_acc, None)]
            if val_acc > state["best_val_acc"]:
                state["best_val_acc"], state["test_acc_at_best_val"] = val_acc, test_acc
            bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
        state["step"] = step
        if save_now:
            state["loop_time"] = loop_timer.stop()  # a restarted job continues both clocks
            loop_timer.start()
            save_checkpoint(checkpoint_path, model, optimizer, scaler, batches, state, config)
            write_metrics(run_dir, rows)
        timer.start()
    bar.close()
    state["loop_time"] = loop_timer.stop()
    return finish(config, model, data, device, state, autocast, probe_x, probe_y, run_dir)


def finish(config, model, data, device, state, autocast, probe_x, probe_y, run_dir) -> dict:
    """Final measurements, metrics.csv, and the summary keys."""
    t, rows, step = config.trainer, state["rows"], state["step"]
    diverged = state["diverged_at_step"] is not None
    if t.steps == 0 or diverged:  # no training step was evaluated: measure the network as it is now
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, autocast)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, autocast)
        train_loss, train_acc = evaluate(model, data.x_train, data.y_train, autocast)
        rows += [(step, "val", "acc", None, val_acc, None), (step, "test", "acc", None, test_acc, None)]
    else:
        train_loss, train_acc, val_acc, test_loss, test_acc = last_values(rows)
    units = {} if diverged else probes.probe_units(model, probe_x)
    final_grads, final_time = ({}, {}) if diverged else probes.probe_gradients(model, probe_x, probe_y)
    if t.steps == 0:
        final_grads = state["grad_norm_init_by_layer"]
    else:
        rows += gradient_rows(step, "probe", final_grads, final_time)
    write_metrics(run_dir, rows)
    dead, saturated = probes.overall_fractions(units) if units else (None, None)
    count = max(state["grad_count"], 1)
    layer_names = list(probes.layer_weights(model))
    timed_steps, timed_time = step, state["train_time"]
    if state["warm_time"] and step > state["warm_time"][0]:  # leave the warm-up steps out of the speed
        timed_steps, timed_time = step - state["warm_time"][0], state["train_time"] - state["warm_time"][1]
    sha, dirty = git_state()
    best_val = state["best_val_acc"] if state["best_val_acc"] >= 0 else val_acc
    return {
        "status": "diverged" if diverged else "ok",
        "train_loss": train_loss, "train_acc": train_acc, "val_acc": val_acc, "best_val_acc": best_val,
        "test_acc": test_acc, "test_loss": test_loss,
        "test_acc_at_best_val": state["test_acc_at_best_val"] if state["test_acc_at_best_val"] is not None
        else test_acc,
        "steps": step, "diverged_at_step": state["diverged_at_step"],
        "train_time_s": state["train_time"], "loop_time_s": state.get("loop_time"),
        "samples_per_s": timed_steps * min(t.batch_size, len(data.x_train)) / timed_time if timed_time > 0 else None,
        "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "dead_fraction": dead, "saturated_fraction": saturated,
        "dead_fraction_by_layer": {k: s.dead_fraction for k, s in units.items()},
        "saturated_fraction_by_layer": {k: s.saturated_fraction for k, s in units.items()},
        "act_mean_by_layer": {k: s.mean for k, s in units.items()},
        "act_std_by_layer": {k: s.std for k, s in units.items()},
        "grad_norm_init_by_layer": state["grad_norm_init_by_layer"],
        "grad_norm_by_layer": dict(zip(layer_names, (state["grad_sum"] / count).tolist()))
        if state["grad_count"] else {},
        "grad_norm_final_by_layer": final_grads,
        "grad_norm_global": state["grad_global_sum"] / count if state["grad_count"] else None,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "num_threads": torch.get_num_threads(), "precision": t.precision, "compile": t.compile,
        "n_params": sum(p.numel() for p in model.parameters()), "width_used": model.width_used,
        "torch_version": torch.__version__,
        "package_versions": package_versions(), "git_sha": sha, "git_dirty": dirty,
        "dataset_checksum": data.checksum, "hostname": platform.node(), "pid": os.getpid(),
    }


def last_values(rows: list[tuple]) -> tuple[float, ...]:
    """The last logged train loss/acc, val acc, test loss/acc."""
    latest = {}
    for _, split, metric, layer, value, _ in rows:
        if layer is None:
            latest[(split, metric)] = value
    return tuple(latest.get(k, math.nan) for k in
                 [("train", "loss"), ("train", "acc"), ("val", "acc"), ("test", "loss"), ("test", "acc")])


def save_checkpoint(path: Path, model, optimizer, scaler, batches, state: dict, config: Config) -> None:
    """Save everything a restarted job needs to continue exactly, atomically."""
    blob = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "batches": batches.state_dict(), "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "state": state, "config_hash": config_hash(config)}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:  # on disk before the rename: a kill or power cut leaves the old or the new one
        torch.save(blob, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, optimizer, scaler, batches, config: Config) -> dict:
    """Restore a checkpoint written by save_checkpoint (weights_only: no code runs on load)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob["config_hash"] != config_hash(config):
        raise RuntimeError(f"{path} belongs to another configuration; remove it to start afresh")
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    scaler.load_state_dict(blob["scaler"])
    batches.load_state_dict(blob["batches"])
    torch.set_rng_state(blob["rng"])
    if blob["cuda_rng"]:
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    state = blob["state"]
    state["rows"] = [tuple(r) for r in state["rows"] if r[0] <= state["step"]]
    return state
