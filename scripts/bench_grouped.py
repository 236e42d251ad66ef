"""Whole-sweep wall time of K seeds of one configuration: one job per run against one grouped job (harness.group).

    python scripts/bench_grouped.py                      # 16 seeds of the default MLP, CNN and RNN, 500 steps
    python scripts/bench_grouped.py --models mlp --seeds 8 --steps 300 --profile
    python scripts/bench_grouped.py --models transformer --seeds 8 --steps 300
    python scripts/bench_grouped.py --device cuda --seeds 64 --one-job-runs 8 --steps 200   # the GPU check's

Both sides do everything a sweep's jobs do (data load, probes, evaluation, records), at one thread, measured side
by side in one run, so the ratios hold on a busy machine; state the load (`uptime`) with the figures. --profile
prints where the grouped job's time goes (torch.profiler, top operators), for when a goal is missed.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import run as _run  # noqa: F401  registers the config schema
from harness.group import run_group
from harness.train import run

ROOT = Path(__file__).resolve().parents[1]

GOALS = {"mlp": 3.0, "cnn": 1.5, "rnn": 4.0, "transformer": None}  # issue 11's goals, 16 seeds, one thread


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


def grouped(cfgs, out: Path, group_size: int) -> tuple[float, float]:
    start = clocks()
    for g in range(0, len(cfgs), group_size):
        part = cfgs[g : g + group_size]
        summaries = run_group(part, [out / f"g{g + i}" for i in range(len(part))], [[]] * len(part), f"g{g}")
        assert all(s["status"] == "ok" for s in summaries), summaries[0].get("error")
    return tuple(b - a for a, b in zip(start, clocks()))


def profile(cfgs, out: Path) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run_group(cfgs, [out / f"p{i}" for i in range(len(cfgs))], [[]] * len(cfgs), "p")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def goal(model: str) -> str:
    return "-" if GOALS[model] is None else f"{GOALS[model]:.1f}x"


def main() -> None:
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
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            cfgs = configs(model, args.seeds, args.steps, args.device, args.overrides)
            one_by_one(cfgs[:1], Path(tmp) / f"{model}-warm")  # data cached, first-call costs paid
            size = args.group_size or args.seeds
            t_one, t_group = [0.0, 0.0], [0.0, 0.0]
            sample = cfgs[: args.one_job_runs or args.seeds]
            scale = len(cfgs) / len(sample)
            for r in range(args.repeats):  # alternated, so that a change of machine load hits both sides
                t_one = [a + b * scale for a, b in zip(t_one, one_by_one(sample, Path(tmp) / f"{model}{r}"))]
                t_group = [a + b for a, b in zip(t_group, grouped(cfgs, Path(tmp) / f"{model}{r}", size))]
            rows.append((model, *t_one, *t_group))
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


if __name__ == "__main__":
    main()
