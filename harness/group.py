"""Many runs in one job: the members of a group (one configuration, different seed, lr, weight decay) train as one
stacked model (harness.stacked), and each writes its own run folder exactly as its one-job run would.

Each member is its one-job run's machinery (a Loop: its model built from its seed, its optimizer, its own batch
order, TrainState, Recorder and checkpoint); only the training step is shared. At boundaries each member's own
Loop probes and evaluates its own model, so those measurements are the one-job code by construction.
"""
from __future__ import annotations

import dataclasses
import json
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness import probes, stacked
from harness.config import Config, ConfigError, to_dict
from harness.data import load_dataset
from harness.loop import Loop
from harness.meters import Timer, WindowStats
from harness.recorder import save_checkpoint
from harness.resolve import resolve
from harness.results import new_summary, now, write_metrics, write_record
from harness.train import boundaries, build_job


@dataclass
class Member:
    """One run of the group: its Loop, its training window, and where it joined the group's clocks."""

    loop: Loop
    params: list[torch.nn.Parameter]  # its model's, listed once (module traversal per step costs more than a bmm)
    window: WindowStats
    first_step: int  # the step it continues from (its checkpoint's), 0 for a fresh run
    train_time: float  # its clocks at that point (a resumed run continues them)
    loop_time: float
    train_cpu_time: float = 0.0  # the training thread's CPU time at that point (the group shares the thread)
    summary: dict | None = None  # set when it leaves the group (finished or diverged)


class MemberStates(dict):
    """The members' optimizer states seen as one mapping: each parameter's state stays in its own member's
    optimizer (so each member's checkpoint is the one-job format), created there on first use."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        super().__init__()
        self.owner = {p: o.state for o in optimizers for g in o.param_groups for p in g["params"]}

    def __getitem__(self, p):
        return self.owner[p][p]


def merged_optimizer(optimizers: list[torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """One optimizer stepping every member: members with equal hyperparameters share one param group, stepped by
    torch's multi-tensor (foreach) kernels. The one-job run's per-tensor loop was 45% of a 16-MLP group's time;
    the arithmetic is the same up to rounding (float64 twins agree to 1e-9; float32 ones do not bit for bit).
    A member without gradients (frozen) is skipped, as torch skips any parameter whose grad is None."""
    groups = {}
    for o in optimizers:
        for g in o.param_groups:
            hyper = {k: v for k, v in g.items() if k != "params"} | {"foreach": True}
            key = repr(sorted(hyper.items()))
            groups.setdefault(key, {**hyper, "params": []})["params"] += g["params"]
    merged = type(optimizers[0])(list(groups.values()))
    merged.state = MemberStates(optimizers)
    return merged


def group_step(members: list[Member], xs: list, ys: list, logged: bool, optimizer) -> tuple:
    """One optimiser step of every member at once; (losses (K,), logits (K, B, C), per-member gradient norms)."""
    models = [m.loop.job.model for m in members]
    for m in members:
        for p in m.params:
            p.grad = None
    logits, states = stacked.forward(models, xs, record=logged)
    k, b, c = logits.shape
    losses = F.cross_entropy(logits.reshape(k * b, c), torch.cat(ys), reduction="none").view(k, b).mean(1)
    losses.sum().backward()  # members never mix, so each member's gradient is that of its own mean loss
    grads = None
    if logged:
        grads = [(probes.weight_grad_norms(model), probes.global_grad_norm(model),
                  stacked.hidden_grad_norms(states, i)) for i, model in enumerate(models)]
    clip = members[0].loop.job.config.trainer.grad_clip
    if clip:
        for m in members:
            torch.nn.utils.clip_grad_norm_(m.params, clip)
    optimizer.step()
    return losses.detach(), logits.detach(), grads


def train_group(members: list[Member]) -> None:
    """The loop of train.train for all members at once; sets each member's summary (its Loop.finish)."""
    job = members[0].loop.job
    t = job.config.trainer
    warmup = min(10, max(t.steps // 10, 1))
    timer, loop_timer = Timer(job.device), Timer(job.device)
    optimizer = merged_optimizer([m.loop.job.optimizer for m in members])
    for m in members:
        m.loop.job.model.train()
    bar = tqdm(total=t.steps, initial=min(m.first_step for m in members), disable=not t.progress,
               dynamic_ncols=True, leave=False, desc=f"{job.activation.name} {job.config.model.name} x{len(members)}")
    loop_timer.start()
    timer.start()
    for step in range(min(m.first_step for m in members) + 1, t.steps + 1):
        live = [m for m in members if m.summary is None and step > m.first_step]
        if not live:  # all diverged so far; a member resumed from a later step may still join
            continue
        xs, ys = zip(*(next(m.loop.batches) for m in live))
        log_now, eval_now, _ = boundaries(step, t, step)
        losses, logits, grads = group_step(live, list(xs), list(ys), log_now, optimizer)
        for i, m in enumerate(live):
            m.window.add(losses[i], logits[i], ys[i])
        bar.update()
        if step == warmup:
            elapsed = timer.stop()
            for m in live:
                m.loop.state.warm_time = (step, m.train_time + elapsed)
                m.loop.state.warm_cpu_time = m.train_cpu_time + timer.cpu_total
            timer.start()
        if not (log_now or eval_now):
            continue
        elapsed = timer.stop()  # a boundary: stop the clock, measure each member, resume
        for i, m in enumerate(live):
            m.loop.state.train_cpu_time = m.train_cpu_time + timer.cpu_total
            try:
                member_boundary(m, step, elapsed, grads[i] if grads else None, eval_now, loop_timer, bar)
            except Exception:  # its folder deleted or unwritable meanwhile: this member fails alone
                freeze(m)
                m.summary = {"status": "failed", "error": traceback.format_exc()}
        timer.start()
    bar.close()
    loop_elapsed = loop_timer.stop()  # the final probes are not in the loop's clock, as in train.train
    for m in members:
        if m.summary is None:
            m.summary = finish(m, loop_elapsed)


def member_boundary(m: Member, step: int, elapsed: float, grads, eval_now: bool, loop_timer: Timer, bar) -> None:
    """Train.train's boundary for one member: record, probe, evaluate; leave the group if diverged; checkpoint."""
    state, job = m.loop.state, m.loop.job
    save_now = boundaries(step, job.config.trainer, state.step)[2]
    state.train_time = m.train_time + elapsed
    if not m.loop.boundary(step, m.window, grads, eval_now, bar):
        freeze(m)
        m.summary = finish(m, loop_timer.stop())
        loop_timer.start()
        return
    if save_now:
        state.loop_time = m.loop_time + loop_timer.stop()
        loop_timer.start()
        save_checkpoint(m.loop.checkpoint, job.model, job.optimizer, m.loop.scaler, m.loop.batches,
                        dataclasses.asdict(state), job.config)
        write_metrics(m.loop.run_dir, state.rows)


def freeze(m: Member) -> None:
    """Out of the stacked step (it is no longer live) and of the optimizer (no gradients) from now on; the others'
    numbers do not change."""
    m.loop.job.model.zero_grad(set_to_none=True)


def finish(m: Member, loop_elapsed: float) -> dict:
    m.loop.state.loop_time = m.loop_time + loop_elapsed
    return m.loop.finish()


STACKED_MODELS = ("mlp", "cnn", "rnn", "transformer")  # those harness/stacked.py runs side by side
MEMBER_KEYS = (("seed",), ("trainer", "lr"), ("trainer", "weight_decay"))  # what may differ within a group


def group_key(config: Config) -> str:
    """Equal for configurations that may train in one group: everything but the MEMBER_KEYS."""
    d = to_dict(config)
    for *path, key in MEMBER_KEYS:
        node = d
        for part in path:
            node = node[part]
        del node[key]
    return json.dumps(d, sort_keys=True, default=str)


def why_not_grouped(resolved) -> str | None:
    """Why a run must train as a one-job run (one line), or None if it can be a group member."""
    t = resolved.config.trainer
    if t.init_trials or t.steps == 0:
        return "trainer.init_trials / trainer.steps=0 runs only probe the initialisation"
    if t.compile:
        return "trainer.compile compiles the one-job model"
    if t.precision == "fp16":
        return "fp16's loss scale cannot be per member"
    if resolved.config.model.name not in STACKED_MODELS:
        return f"model={resolved.config.model.name} has no stacked forward; it trains one job at a time"
    return stacked.why_not_stacked(resolved.activation())


def check_group(resolved: list) -> None:
    """ConfigError (one line) unless the members differ only in MEMBER_KEYS and each can be grouped."""
    keys = {group_key(r.config) for r in resolved}
    if len(keys) > 1:
        raise ConfigError("a group's members may differ only in seed, trainer.lr and trainer.weight_decay")
    reason = why_not_grouped(resolved[0])
    if reason:
        raise ConfigError(f"not grouped: {reason}")


def run_group(configs: list[Config], run_dirs: list[Path], overrides: list[list[str]], group_id: str,
              dtype: torch.dtype | None = None) -> list[dict]:
    """Train the members (configs equal but for seed, trainer.lr, trainer.weight_decay) as one group; each writes
    its own run folder and summary, with `group`: {id, size, index}. A member whose folder goes away or cannot be
    written fails alone; an error in the shared step fails the whole group.
    dtype: float inputs and parameters (the tests' float64 runs); None keeps float32."""
    resolved = [resolve(c) for c in configs]
    check_group(resolved)  # before any data is loaded
    d = configs[0].dataset
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, resolved[0].device)
    data = data.astype(dtype) if dtype else data
    summaries = [new_summary(r.config, Path(p), o, {"id": group_id, "size": len(configs), "index": i}, r)
                 for i, (r, p, o) in enumerate(zip(resolved, run_dirs, overrides))]
    try:
        members = [start_member(build_job(r, data), Path(p)) for r, p in zip(resolved, run_dirs)]
        train_group(members)
        for s, m in zip(summaries, members):
            s.update(m.summary)
    except Exception:  # recorded, not raised; every member failed, so that resume reruns the whole group
        error = traceback.format_exc()
        for s in summaries:
            s.update(status="failed", error=error)
    for s, p in zip(summaries, run_dirs):
        s["finished_at"] = now()
        keep_record(Path(p), s)
    return summaries


def keep_record(run_dir: Path, summary: dict) -> None:
    """A member's end (harness.results.write_record); one whose folder cannot be written fails alone."""
    try:
        write_record(run_dir, summary)
    except OSError as exc:
        summary.update(status="failed", error=f"its summary.json could not be written: {exc}")


def start_member(job, run_dir: Path) -> Member:
    run_dir.mkdir(parents=True, exist_ok=True)
    loop = Loop.start(job, run_dir)
    s = loop.state
    return Member(loop, list(job.model.parameters()), WindowStats(job.device), s.step, s.train_time, s.loop_time,
                  s.train_cpu_time)
