"""Whole-sweep wall time of K seeds of one configuration: one job per run against one grouped job (harness.group).

    python scripts/bench_grouped.py                      # 16 seeds of the default MLP, CNN and RNN, 500 steps
    python scripts/bench_grouped.py --models mlp --seeds 8 --steps 300 --profile
    python scripts/bench_grouped.py --models transformer --seeds 8 --steps 300
    python scripts/bench_grouped.py --device cuda --models mlp --seeds 64 --one-job-runs 4 --steps 500  # GPU check

For the MLP it then prints the limit: the group's training loop against scripts/plain_stacked.py, the same MLP as a
plain stacked loop written without harness code, same K, device and steps (and that loop at K=1).

Both sides do everything a sweep's jobs do (data load, probes, evaluation, records), at one thread, measured side
by side in one run, so the ratios hold on a busy machine; state the load (`uptime`) with the figures. --profile
prints where the grouped job's time goes (torch.profiler, top operators), for when a goal is missed.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import run as _run  # noqa: F401  registers the config schema
from harness.data import DATASETS
from harness.train import run, run_group
from scripts import plain_stacked

ROOT = Path(__file__).resolve().parents[1]

GOALS = {"mlp": 3.0, "cnn": 1.5, "rnn": 4.0, "transformer": None}  # issue 11's goals, 16 seeds, one thread
PLAIN_GOAL = 0.8  # the harness's loop against the plain stacked loop of the same model, K and device


def configs(model: str, seeds: int, steps: int, device: str, extra: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return [OmegaConf.to_object(compose(config_name="config", overrides=[
            f"model={model}", f"seed={s}", f"trainer.steps={steps}", "trainer.progress=false",
            f"trainer.device={device}", "trainer.threads=1", *extra])) for s in range(seeds)]


def clocks() -> tuple[float, float]:
    """(wall, this process's CPU time): on a shared machine the CPU time is the steadier of the two."""
    return time.perf_counter(), time.process_time()


def one_by_one(cfgs, out: Path) -> tuple[float, float]:
    start = clocks()
    for i, c in enumerate(cfgs):
        assert run(c, out / f"one{i}")["status"] == "ok"
    return tuple(b - a for a, b in zip(start, clocks()))


def grouped(cfgs, out: Path, group_size: int) -> tuple[float, float, float]:
    """(wall, CPU time, the first group's samples/s in all by its training clock: the loop without boundaries)."""
    start, rates = clocks(), []
    for g in range(0, len(cfgs), group_size):
        part = cfgs[g : g + group_size]
        summaries = run_group(part, [out / f"g{g + i}" for i in range(len(part))], [[]] * len(part), f"g{g}")
        assert all(s["status"] == "ok" for s in summaries), summaries[0].get("error")
        rates.append(sum(s["samples_per_s"] for s in summaries))
    return *(b - a for a, b in zip(start, clocks())), rates[0]


def plain_limit(cfg, k: int, steps: int) -> tuple[float, float]:
    """The plain stacked loop's samples/s (scripts/plain_stacked.py) for this MLP at K and at 1, by the CPU clock
    at one thread (the harness's training clock there), else by the wall clock."""
    d, m, t = DATASETS[cfg.dataset.name], cfg.model, cfg.trainer
    shape = {"n": d.train, "features": math.prod(d.input_shape), "classes": d.num_classes, "width": m.width,
             "depth": m.depth, "batch": t.batch_size, "lr": t.lr, "device": t.device}
    key = "cpu_samples_per_s" if t.device == "cpu" else "samples_per_s"
    return plain_stacked.train(k, steps, **shape)[key], plain_stacked.train(1, steps, **shape)[key]


def profile(cfgs, out: Path) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run_group(cfgs, [out / f"p{i}" for i in range(len(cfgs))], [[]] * len(cfgs), "p")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def goal(model: str) -> str:
    return "-" if GOALS[model] is None else f"{GOALS[model]:.1f}x"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn", "rnn"], choices=list(GOALS))
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=0, help="members per group (0: all seeds in one)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one-job-runs", type=int, default=0,
                    help="time only this many one-job runs and scale to --seeds (0: all; the GPU check: 8 of 64)")
    ap.add_argument("--repeats", type=int, default=1, help="alternate the two sides this many times")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("overrides", nargs="*", help="more config overrides, e.g. dataset.root=data")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows, limits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            cfgs = configs(model, args.seeds, args.steps, args.device, args.overrides)
            one_by_one(cfgs[:1], Path(tmp) / f"{model}-warm")  # data cached, first-call costs paid
            size = args.group_size or args.seeds
            t_one, t_group, rate = [0.0, 0.0], [0.0, 0.0], 0.0
            sample = cfgs[: args.one_job_runs or args.seeds]
            scale = len(cfgs) / len(sample)
            for r in range(args.repeats):  # alternated, so that a change of machine load hits both sides
                t_one = [a + b * scale for a, b in zip(t_one, one_by_one(sample, Path(tmp) / f"{model}{r}"))]
                *timed, rate = grouped(cfgs, Path(tmp) / f"{model}{r}", size)
                t_group = [a + b for a, b in zip(t_group, timed)]
            rows.append((model, *t_one, *t_group))
            if model == "mlp":  # the limit: the same MLP as a plain stacked loop, K = the group size, and K = 1
                limits.append((rate, *plain_limit(cfgs[0], size, args.steps)))
            if args.profile:
                profile(cfgs[: args.group_size or args.seeds], Path(tmp) / f"{model}-prof")
    sampled = f" (one job per run: {args.one_job_runs} timed, scaled)" if args.one_job_runs else ""
    print(f"{args.seeds} seeds in groups of {args.group_size or args.seeds}{sampled}, {args.steps} steps, probes "
          f"and evaluation at the default cadence, {torch.get_num_threads()} thread, {args.device}")
    print(f"{'model':6} {'one job per run':>16} {'grouped':>9} {'ratio':>7} {'CPU: one':>9} {'grouped':>8} "
          f"{'ratio':>7} {'goal':>5}   (seconds)")
    for model, wall_one, cpu_one, wall_group, cpu_group in rows:
        print(f"{model:6} {wall_one:16.2f} {wall_group:9.2f} {wall_one / wall_group:6.2f}x {cpu_one:9.2f} "
              f"{cpu_group:8.2f} {cpu_one / cpu_group:6.2f}x {goal(model):>5}")
    for harness, plain, plain_one in limits:
        size = args.group_size or args.seeds
        print(f"\nthe limit, mlp, K={size}: samples/s in all of the training loop (boundaries excluded)")
        print(f"  harness group {harness:,.0f}   plain stacked loop {plain:,.0f}   "
              f"harness/plain {harness / plain:.2f}x (goal {PLAIN_GOAL}x)")
        print(f"  plain stacked loop K=1 {plain_one:,.0f}: stacking {size} gives it {plain / plain_one:.2f}x")


if __name__ == "__main__":
    main()
