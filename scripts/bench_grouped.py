"""The grouped loop against its limits, measured side by side in one run (ratios hold on a busy machine).

    python scripts/bench_grouped.py                                   # CPU, one thread: every part, small sizes
    python scripts/bench_grouped.py --parts sweep --models mlp cnn rnn --seeds 16 --steps 2000
    python scripts/bench_grouped.py --parts limit --ks 1 16 64 --device cuda --steps 500        # the GPU check

Parts (--parts):
  sweep   K seeds one by one against one group of K, in process as a sweep's jobs run them (data load, probes,
          evaluation, records), plus one process start-up (measured here) on each side; the loop-only ratio (the
          members' training clocks) beside it. --one-job-runs N times N of the one-by-one runs and scales.
  limit   the harness's loop (its training clock, boundaries excluded) against scripts/plain_stacked.py, the same
          MLP as a plain stacked loop written without harness code, same K, device and steps, for each K in --ks;
          eager, and on CUDA captured too (trainer.capture=true against the plain loop's CUDA graph).
  width8  with negligible arithmetic (model.width=8), a group's time (--seeds members) against one run's.
Then the goals table (docs/grouped.md). --profile prints where a group's time goes (torch.profiler).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import run as _run  # noqa: F401  registers the config schema
from harness.setup.data import DATASETS
from harness.training.train import run, run_group
from scripts import plain_stacked

ROOT = Path(__file__).resolve().parents[1]
SWEEP_GOALS = {"mlp": 3.0, "cnn": 2.0, "rnn": 4.0, "transformer": None}  # 16 seeds, 2,000 steps, one CPU thread
PLAIN_GOAL = 0.8  # the harness's loop against the plain stacked loop of the same model, K and device
WIDTH8_GOAL = 2.5  # a 16-member group's time against one run's, at model.width=8 (at most)
GPU_GOALS = {"eager": 2e6, "captured": 10e6}  # samples/s in all of 64 default MLPs on one H200


def configs(model: str, seeds: int, steps: int, device: str, extra: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return [
            OmegaConf.to_object(
                compose(
                    config_name="config",
                    overrides=[
                        f"model={model}",
                        f"seed={s}",
                        f"trainer.steps={steps}",
                        "trainer.progress=false",
                        f"trainer.device={device}",
                        "trainer.threads=1",
                        *extra,
                    ],
                )
            )
            for s in range(seeds)
        ]


def start_up() -> float:
    """Seconds a process takes to start and import what a run imports: paid once per sweep on either side."""
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import run, harness.training.train"], cwd=ROOT, check=True)
    return time.perf_counter() - begin


def one_by_one(cfgs, out: Path) -> tuple[float, float]:
    """(wall seconds, the runs' training clocks summed)."""
    begin, loop = time.perf_counter(), 0.0
    for i, c in enumerate(cfgs):
        s = run(c, out / f"one{i}")
        assert s["status"] == "ok", s.get("error")
        loop += s["train_time_s"]
    return time.perf_counter() - begin, loop


def grouped(cfgs, out: Path) -> tuple[float, float, float]:
    """(wall seconds, the group's training clock, samples/s in all by that clock)."""
    begin = time.perf_counter()
    summaries = run_group(cfgs, [out / f"g{i}" for i in range(len(cfgs))], [[]] * len(cfgs), "g")
    assert all(s["status"] == "ok" for s in summaries), summaries[0].get("error")
    return time.perf_counter() - begin, summaries[0]["train_time_s"], sum(s["samples_per_s"] for s in summaries)


def sweep_part(args, tmp: Path) -> list[tuple]:
    """Per model: (model, one-by-one wall, grouped wall, one-by-one loop, grouped loop), start-up included."""
    rows, start = [], start_up()
    for model in args.models:
        cfgs = configs(model, args.seeds, args.steps, args.device, args.overrides)
        one_by_one(cfgs[:1], tmp / f"{model}-warm")  # data cached, first-call costs paid
        sample = cfgs[: args.one_job_runs or args.seeds]
        wall_one, loop_one = (seconds * len(cfgs) / len(sample) for seconds in one_by_one(sample, tmp / model))
        wall_group, loop_group, _ = grouped(cfgs, tmp / model)
        rows.append((model, start + wall_one, start + wall_group, loop_one, loop_group))
    return rows


def plain(cfg, k: int, steps: int, captured: bool = False) -> float:
    """The plain stacked loop's samples/s for this MLP at K: by CPU time at one CPU thread, else by wall time."""
    d, m, trainer = DATASETS[cfg.dataset.name], cfg.model, cfg.trainer
    shape = {
        "n": d.train,
        "features": math.prod(d.input_shape),
        "classes": d.num_classes,
        "width": m.width,
        "depth": m.depth,
        "batch": trainer.batch_size,
        "lr": trainer.lr,
        "device": trainer.device,
    }
    key = "cpu_samples_per_s" if trainer.device == "cpu" else "samples_per_s"
    return plain_stacked.train(k, steps, captured=captured, **shape)[key]


def limit_part(args, tmp: Path) -> list[tuple]:
    """(K, mode, harness samples/s, plain samples/s) for each K and mode (captured on CUDA only)."""
    modes = ["eager", "captured"] if args.device == "cuda" else ["eager"]
    rows = []
    for k in args.ks:
        for mode in modes:
            capture = f"trainer.capture={'true' if mode == 'captured' else 'false'}"
            cfgs = configs("mlp", k, args.steps, args.device, [*args.overrides, capture])
            harness = grouped(cfgs, tmp / f"limit{k}{mode}")[2]
            rows.append((k, mode, harness, plain(cfgs[0], k, args.steps, mode == "captured")))
    return rows


def width8_part(args, tmp: Path) -> tuple[float, float]:
    """(one run's training clock, a group's of --seeds members (the goal: 16)) at model.width=8."""
    cfgs = configs("mlp", args.seeds, args.steps, args.device, [*args.overrides, "model.width=8"])
    one_by_one(cfgs[:1], tmp / "w8-warm")
    return one_by_one(cfgs[:1], tmp / "w8")[1], grouped(cfgs, tmp / "w8")[1]


def profile(args, tmp: Path) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cfgs = configs(args.models[0], args.seeds, args.steps, args.device, args.overrides)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        grouped(cfgs, tmp / "profile")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def print_sweep(rows: list[tuple], args) -> list[tuple]:
    sampled = f" (one by one: {args.one_job_runs} timed, scaled)" if args.one_job_runs else ""
    print(
        f"\nsweep: {args.seeds} seeds, {args.steps} steps, one by one against one group{sampled}, "
        f"process start-up included, {args.device}, {torch.get_num_threads()} thread"
    )
    print(
        f"{'model':12} {'one by one':>10} {'grouped':>8} {'ratio':>7}   {'loop only':>10} {'grouped':>8} "
        f"{'ratio':>7}   (seconds)"
    )
    goals = []
    for model, wall_one, wall_group, loop_one, loop_group in rows:
        print(
            f"{model:12} {wall_one:10.2f} {wall_group:8.2f} {wall_one / wall_group:6.2f}x   {loop_one:10.2f} "
            f"{loop_group:8.2f} {loop_one / loop_group:6.2f}x"
        )
        if SWEEP_GOALS.get(model):
            goals.append(
                (f"sweep {model}, {args.seeds} seeds, {args.steps} steps", wall_one / wall_group, SWEEP_GOALS[model])
            )
    return goals


def print_limit(rows: list[tuple], args) -> list[tuple]:
    print(f"\nthe limit: the default MLP, {args.steps} steps, samples/s in all by the training clock, {args.device}")
    print(f"{'K':>4} {'mode':9} {'harness':>12} {'plain loop':>12} {'harness/plain':>14}")
    goals = []
    for k, mode, harness, limit in rows:
        print(f"{k:4} {mode:9} {harness:12,.0f} {limit:12,.0f} {harness / limit:13.2f}x")
        goals.append((f"harness/plain, K={k}, {mode}", harness / limit, PLAIN_GOAL))
        if args.device == "cuda" and k == 64:
            goals.append((f"64 MLPs {mode}, samples/s (H200 goal)", harness, GPU_GOALS[mode]))
    by_mode = {(k, mode): h for k, mode, h, _ in rows}
    if args.device == "cuda" and (1, "captured") in by_mode:
        goals.append(("one run captured / eager", by_mode[1, "captured"] / by_mode[1, "eager"], 4.0))
    return goals


def print_goals(goals: list[tuple]) -> None:
    """Each goal: (name, measured, target[, "<=" for an upper bound]); samples/s shown as counts, ratios as x."""
    print(f"\n{'goal':48} {'measured':>12} {'target':>12}  met")
    for name, measured, target, *bound in goals:
        at_most = bound == ["<="]
        big = target > 1000
        shown = f"{measured:,.0f}" if big else f"{measured:.2f}x"
        wanted = ("<= " if at_most else ">= ") + (f"{target:,.0f}" if big else f"{target}x")
        met = measured <= target if at_most else measured >= target
        print(f"{name:48} {shown:>12} {wanted:>12}  {'yes' if met else 'NO'}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["sweep", "limit", "width8"], choices=["sweep", "limit", "width8"])
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn", "rnn"], choices=list(SWEEP_GOALS))
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one-job-runs", type=int, default=0, help="time only this many one-by-one runs and scale")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("overrides", nargs="*", help="more config overrides, e.g. dataset.root=data")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    goals = []
    with tempfile.TemporaryDirectory() as tmp:
        if "sweep" in args.parts:
            goals += print_sweep(sweep_part(args, Path(tmp)), args)
        if "limit" in args.parts:
            goals += print_limit(limit_part(args, Path(tmp)), args)
        if "width8" in args.parts:
            one, group = width8_part(args, Path(tmp))
            print(
                f"\nmodel.width=8, {args.steps} steps: one run {one:.2f} s, {args.seeds} members {group:.2f} s "
                f"by the training clock: {group / one:.2f}x the time of one"
            )
            goals.append((f"{args.seeds} members' time / one run's, width 8", group / one, WIDTH8_GOAL, "<="))
        if args.profile:
            profile(args, Path(tmp))
    print_goals(goals)


if __name__ == "__main__":
    main()
