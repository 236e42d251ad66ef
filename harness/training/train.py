"""The training loop, for one run or many: resolve once, build the group (harness.training.group: a single run is a
group of one), train it with the loop below (top to bottom), record each member."""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.common.text import FILE_ONLY
from harness.networks import probes
from harness.records.results import new_summary, now, write_metrics, write_record
from harness.setup.config import Config, TrainerConfig
from harness.setup.data import load_dataset
from harness.setup.resolve import resolve
from harness.trackers.live import Trackers
from harness.training.born_dead import born_dead_trials
from harness.training.capture import GradNorms
from harness.training.console import PROGRESS
from harness.training.group import Group, build_group, check_group
from harness.training.meters import Timer, WindowStats

log = logging.getLogger(__name__)


def check(config: Config) -> torch.device:
    """Every check that needs no data (see harness.setup.resolve); the device the run would use."""
    device = resolve(config).device
    assert device is not None  # resolve looks the device up unless told not to
    return device


def run(
    config: Config,
    run_dir: Path,
    overrides: list[str] | tuple = (),
    dtype: torch.dtype | None = None,
    cpu_threads: int | None = None,
) -> dict:
    """Train one combination in run_dir and write its records; return the summary. dtype: the float inputs' and
    parameters' (the tests' float64 runs); None keeps float32. cpu_threads: a launcher's share of the cores.

    Raises ConfigError, ActivationError or DataError (one clear line) before any data is loaded or training starts.
    An exception during training is recorded as status 'failed' and does not propagate.
    """
    return run_group([config], [run_dir], [overrides], None, dtype, cpu_threads)[0]


def run_group(
    configs: list[Config],
    run_dirs: list[Path],
    overrides: list,
    group_id: str | None,
    dtype: torch.dtype | None = None,
    cpu_threads: int | None = None,
) -> list[dict]:
    """Train the members (configs equal but for seed, trainer.lr, trainer.weight_decay) in one loop; each writes
    its own run folder and summary (a group's with `group`: {id, size, index}; group_id None: a single run). A
    member whose folder goes away or cannot be written fails alone; an error in the shared step fails them all."""
    resolved = [resolve(c) for c in configs]
    if len(configs) > 1:
        check_group(resolved)  # before any data is loaded
    d, device = configs[0].dataset, resolved[0].device
    assert device is not None  # resolve looks the device up unless told not to
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, device)  # DataError
    data = data.astype(dtype) if dtype else data
    summaries = [
        new_summary(
            r.config, Path(p), o, None if group_id is None else {"id": group_id, "size": len(configs), "index": i}, r
        )
        for i, (r, p, o) in enumerate(zip(resolved, run_dirs, overrides))
    ]
    trackers = Trackers(configs, summaries)  # logger=: TensorBoard, MLflow; none holds nothing (harness/trackers/)
    try:
        group = build_group(resolved, data, run_dirs, cpu_threads)
        train(group, trackers)
        for s, m in zip(summaries, group.members):
            assert m.summary is not None  # train sets every member's
            s.update(m.summary)
        trainer = configs[0].trainer
        if trainer.init_trials:  # probe only: many fresh initialisations in this one job
            m = group.members[0]
            summaries[0].update(
                born_dead_trials(
                    m.model,
                    resolved[0].activation,
                    resolved[0].init,
                    data.x_train[: probes.PROBE_SIZE],
                    trainer.init_trials,
                    m.config.seed,
                )
            )
    except Exception:  # recorded, not raised: every member failed, so that resume reruns the whole group
        error = traceback.format_exc()
        for s in summaries:
            s.update(status="failed", error=error)
    record = write_record if len(configs) == 1 else keep_record  # a single run's OSError is the command's
    for s, p in zip(summaries, run_dirs):
        s["finished_at"] = now()
        record(Path(p), s)
    trackers.finish(summaries)  # after the records: what they hold goes to the trackers, never the other way
    return summaries


def keep_record(run_dir: Path, summary: dict) -> None:
    """A member's end (harness.records.results.write_record); one whose folder cannot be written fails alone."""
    try:
        write_record(run_dir, summary)
    except OSError as exc:
        summary.update(status="failed", error=f"its summary.json could not be written: {exc}")


def train(group: Group, trackers: Trackers | None = None) -> None:
    """The loop: every member trains from its own step to trainer.steps; sets each member's summary. trackers:
    sent each member's new rows at boundaries (harness.trackers.live.Trackers.live), never within a step."""
    trainer, members = group.trainer, group.members
    first = min(m.first_step for m in members)
    window = WindowStats(group.device, len(members))  # read only at boundaries: the loop never waits for the device
    warmup = min(10, max(trainer.steps // 10, 1))
    timer, loop_timer = Timer(group.device), Timer(group.device)
    group.activate(first + 1, 0.0, 0.0)
    group.stack.train()
    bar = tqdm(
        total=trainer.steps,
        initial=first,
        disable=not trainer.progress,
        dynamic_ncols=True,
        leave=False,
        desc=describe(group),
    )
    loop_timer.start()
    timer.start()
    began = time.monotonic()  # the progress line's clock (harness-status's rate), evaluations included
    for step in range(first + 1, trainer.steps + 1):
        x, y = group.batches.next(group.waiting)
        log_now, eval_now, _ = boundaries(step, trainer, step)
        losses, logits, grads = group.train_step(x, y, log_now)
        window.add(losses, logits, y)
        bar.update()
        if step == warmup:
            elapsed = timer.stop()
            for _, m in group.live():
                m.clocks(elapsed, timer.cpu_total)
                m.state.warm_time, m.state.warm_cpu_time = (step, m.state.train_time), m.state.train_cpu_time
            timer.start()
        if not (log_now or eval_now):
            continue
        timer.stop()  # a boundary: stop the clock, read the device once, measure every member, resume
        boundary(group, step, window, grads, eval_now, timer, loop_timer, bar)
        if trackers is not None:  # with its clock stopped, as the boundary's own work
            trackers.live(group.members)
        progress = PROGRESS.format(step=step, steps=trainer.steps, seconds=time.monotonic() - began, first=first)
        log.info(progress, extra=FILE_ONLY)  # the job's log file only
        if all(m.summary is not None for m in members):
            break  # every member has left the loop (diverged or failed)
        timer.start()
    bar.close()
    loop_elapsed = loop_timer.stop()  # the final probes are not in the loop's clock
    left = [i for i, m in enumerate(members) if m.summary is None]
    units = group.probe_units() if left else []
    for i in left:
        members[i].clocks(timer.total, timer.cpu_total, loop_elapsed)
        finish(group, i, units[i])


def boundary(
    group: Group,
    step: int,
    window: WindowStats,
    grads: GradNorms | None,
    eval_now: bool,
    timer: Timer,
    loop_timer: Timer,
    bar: tqdm,
) -> None:
    """Record each live member's window, gradients, units and evaluation; a diverged member leaves the loop (its
    tensors stay as they are: the others' numbers do not change); checkpoint those due."""
    batches, reads = window.batches, window.read()
    if grads is not None:
        by_layer, total, through_time = grads[0].tolist(), grads[1].tolist(), grads[2]  # (K, L), (K,), per member
    evals = (group.evaluate("val"), group.evaluate("test")) if eval_now else None
    units = group.probe_units()
    for i, m in group.live():
        last = m.state.step
        m.clocks(timer.total, timer.cpu_total)
        try:
            if not m.record_window(step, batches, *reads[i]):
                m.clocks(timer.total, timer.cpu_total, loop_timer.stop())
                loop_timer.start()
                finish(group, i, {})  # diverged: no final probes
                continue
            if grads is not None:
                m.record_gradients(step, by_layer[i], total[i], {k: v.tolist() for k, v in through_time[i].items()})
            m.rec.units(step, units[i])
            if evals:
                m.record_evaluation(step, evals[0][i], evals[1][i])
            if boundaries(step, group.trainer, last)[2]:
                m.clocks(timer.total, timer.cpu_total, loop_timer.stop())  # a restarted job continues both clocks
                loop_timer.start()
                group.save(i)
                write_metrics(m.run_dir, m.state.rows)
        except Exception:  # its folder deleted or unwritable meanwhile: this member fails alone
            m.summary = {"status": "failed", "error": traceback.format_exc()}
    if evals and group.trainer.progress:
        bar.set_postfix(loss=f"{reads[0][0]:.3f}", val_acc=f"{evals[0][0][1]:.3f}")
    group.activate(step + 1, timer.total, timer.cpu_total)


def finish(group: Group, i: int, units: dict) -> None:
    """Member i's summary: its outcome, final probes (units: its final unit probe, from the group's) and records;
    what every member shares made once."""
    m = group.members[i]
    cache = {}

    def evaluate_now(split: str) -> tuple[float, float]:
        if split not in cache:  # each split once (setdefault would evaluate it on every call)
            cache[split] = group.evaluate(split)
        return cache[split][i]

    m.summary = m.finish(m.outcome(evaluate_now), units, group.probe_x, group.probe_y, group.device, group.shared)


def describe(group: Group) -> str:
    m = group.members[0]
    k = len(group.members)
    return f"{m.config.activation['name']} {m.config.model.name}" + (f" x{k}" if k > 1 else "")


def boundaries(step: int, trainer: TrainerConfig, last_boundary: int) -> tuple[bool, bool, bool]:
    """(log, evaluate, checkpoint) at this step.

    Checkpoint at the first log or eval step after each multiple of checkpoint_every: the running train window is
    empty there, so a resumed run logs exactly what an uninterrupted one does.
    """
    log_now = step % trainer.log_every == 0 or step == trainer.steps
    eval_now = step % trainer.eval_every == 0 or step == trainer.steps
    save_now = (
        trainer.checkpoint_every > 0
        and (log_now or eval_now)
        and step < trainer.steps
        and step // trainer.checkpoint_every > last_boundary // trainer.checkpoint_every
    )
    return log_now, eval_now, save_now
