"""One run: resolve the Config once, build what it names, train it with the loop below (top to bottom), record it."""
from __future__ import annotations

import dataclasses
import random
import traceback
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harness import probes
from harness.born_dead import born_dead_trials
from harness.config import Config
from harness.data import Dataset, load_dataset
from harness.loop import Loop
from harness.meters import Timer, WindowStats
from harness.models import build_model
from harness.optimizers import make_optimizer
from harness.recorder import CHECKPOINT, save_checkpoint
from harness.resolve import Job, Resolved, resolve, resolve_threads
from harness.results import new_summary, now, write_metrics, write_summary


def check(config: Config) -> torch.device:
    """Every check that needs no data (see harness.resolve); the device the run would use."""
    return resolve(config).device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_job(resolved: Resolved, data: Dataset, cpu_threads: int | None = None) -> Job:
    """Seed, then build the model and its optimizer: the model's draws are the first from the seeded generators.

    Then set torch's threads (trainer.threads; auto needs the model's size); cpu_threads caps them (a launcher's
    share of the cores)."""
    config, spec, device = resolved.config, resolved.activation, resolved.device
    seed_everything(config.seed)
    model_cfg = dataclasses.replace(config.model, init=resolved.init)  # model.init=auto resolved
    model = build_model(model_cfg, spec, data.input_shape, data.num_classes, spec.gain)
    model = model.to(device, data.x_train.dtype)  # float32, or the tests' float64 (the same draws, cast)
    n_params = sum(p.numel() for p in model.parameters())
    batch = min(config.trainer.batch_size, len(data.x_train))
    torch.set_num_threads(resolve_threads(config.trainer.threads, n_params, batch, device, cpu_threads))
    return Job(config, spec, device, data, model, make_optimizer(model, config.trainer))


def run(config: Config, run_dir: Path, overrides: list[str] | tuple = (), dtype: torch.dtype | None = None,
        cpu_threads: int | None = None) -> dict:
    """Train one combination in run_dir and write its records; return the summary. dtype: the float inputs' and
    parameters' (the tests' float64 runs); None keeps float32. cpu_threads: see build_job.

    Raises ConfigError, ActivationError or DataError (one clear line) before any data is loaded or training starts.
    An exception during training is recorded as status 'failed' and does not propagate.
    """
    resolved = resolve(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    d, t = config.dataset, config.trainer
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, resolved.device)  # DataError
    data = data.astype(dtype) if dtype else data
    summary = new_summary(config, run_dir, overrides, resolved=resolved)  # a group's members: harness.group
    try:
        job = build_job(resolved, data, cpu_threads)
        summary.update(train(job, run_dir))
        if t.init_trials:  # probe only: many fresh initialisations in this one job
            summary.update(born_dead_trials(job.model, job.activation, resolved.init,
                                            data.x_train[: probes.PROBE_SIZE], t.init_trials, config.seed))
    except Exception:  # recorded, not raised: one failed run must not take a sweep down
        summary["error"] = traceback.format_exc()
    summary["finished_at"] = now()
    write_summary(run_dir, summary)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return summary


def train(job: Job, run_dir: Path) -> dict:
    """The loop. Returns the summary's outcome, speed, probe and provenance keys."""
    t = job.config.trainer
    loop = Loop.start(job, run_dir)
    state = loop.state
    window = WindowStats(job.device)  # read only at boundaries: the hot loop never waits for the device
    warmup = min(10, max(t.steps // 10, 1))
    timer, loop_timer = Timer(job.device, state.train_time, state.train_cpu_time), Timer(job.device, state.loop_time)
    job.model.train()
    bar = tqdm(total=t.steps, initial=state.step, disable=not t.progress, dynamic_ncols=True, leave=False,
               desc=f"{job.activation.name} {job.config.model.name}")
    loop_timer.start()
    timer.start()
    for step in range(state.step + 1, t.steps + 1):
        x, y = next(loop.batches)
        log_now, eval_now, save_now = boundaries(step, t, state.step)
        loss, logits, grads = loop.step(x, y, log_now)
        window.add(loss, logits, y)
        bar.update()
        if step == warmup:
            state.warm_time = (step, timer.stop())
            state.warm_cpu_time = timer.cpu_total
            timer.start()
        if not (log_now or eval_now or save_now):
            continue
        state.train_time = timer.stop()  # a boundary: stop the clock, read the device once, measure, resume
        state.train_cpu_time = timer.cpu_total
        if not loop.boundary(step, window, grads, eval_now, bar):
            break
        if save_now:
            state.loop_time = loop_timer.stop()  # a restarted job continues both clocks
            loop_timer.start()
            save_checkpoint(loop.checkpoint, job.model, job.optimizer, loop.scaler, loop.batches,
                            dataclasses.asdict(state), job.config)
            write_metrics(run_dir, state.rows)
        timer.start()
    bar.close()
    state.loop_time = loop_timer.stop()
    return loop.finish()


def boundaries(step: int, t, last_boundary: int) -> tuple[bool, bool, bool]:
    """(log, evaluate, checkpoint) at this step.

    Checkpoint at the first log or eval step after each multiple of checkpoint_every: the running train window is
    empty there, so a resumed run logs exactly what an uninterrupted one does.
    """
    log_now = step % t.log_every == 0 or step == t.steps
    eval_now = step % t.eval_every == 0 or step == t.steps
    save_now = (t.checkpoint_every > 0 and (log_now or eval_now) and step < t.steps
                and step // t.checkpoint_every > last_boundary // t.checkpoint_every)
    return log_now, eval_now, save_now
