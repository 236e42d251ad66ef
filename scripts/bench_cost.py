"""The cost probe against the runs' own clocks: the same sweep grouped and one job per run, side by side.

    harness-bench-cost [--activations relu,gelu,silu,tanh,swiglu] [--seeds 4] [--steps 1000]

Runs `python run.py -m` twice on one thread (hydra.sweeper.group_size=SEEDS, then 1) and prints, per activation: the
probe's median time per training step in each sweep and their ratio, and the members' own samples/s in each sweep
(mean and spread over seeds) and their ratio. The probe times each setting alone, so its figure should not depend on
the grouping; a member's own clock times its group. Then each sweep's wall time, counting a group once.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.records.cost import read_costs
from harness.training.bench import OneLineParser, device_name

ROOT = Path(__file__).resolve().parents[1]


def sweep(out: Path, activations: str, seeds: int, steps: int, group_size: int, device: str) -> float:
    """Seconds the whole sweep took through the command line, start-up included."""
    command = [
        sys.executable, "run.py", "-m", f"activation={activations}", f"seed=range(0,{seeds})",
        f"trainer.steps={steps}", f"trainer.device={device}", "trainer.threads=1", "trainer.progress=false",
        f"hydra.sweeper.group_size={group_size}", f"hydra.sweep.dir={out}",
    ]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def probe_step_ms(out: Path) -> dict[str, float]:
    """Activation -> the probe's median time of a training step, in ms."""
    return {r["config"]["activation"]["name"]: 1e3 * statistics.median(r["step_s"]) for r in read_costs(out)}


def own_speeds(out: Path) -> dict[str, list[float]]:
    """Activation -> each run's own samples/s, as its summary records it."""
    speeds: dict[str, list[float]] = {}
    for path in sorted(out.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        speeds.setdefault(summary["activation"], []).append(summary["samples_per_s"])
    return speeds


def wall_of_groups(out: Path) -> float:
    """The sweep's training wall time: each group's loop time counted once (its members all report it)."""
    groups: dict[str, float] = {}
    for path in out.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        groups[summary["group"]["id"]] = summary["loop_time_s"]
    return sum(groups.values())


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:>9,.0f} ± {100 * sd / mean:3.0f}%"


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activations", default="relu,gelu,silu,tanh,swiglu")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    import torch

    print(f"# {device_name(torch.device(args.device))}, one thread, {args.seeds} seeds, {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        outs = {size: Path(tmp) / f"groups_of_{size}" for size in (args.seeds, 1)}
        took = {
            size: sweep(out, args.activations, args.seeds, args.steps, size, args.device) for size, out in outs.items()
        }
        probes = {size: probe_step_ms(out) for size, out in outs.items()}
        own = {size: own_speeds(out) for size, out in outs.items()}
        grouped, alone = args.seeds, 1
        print(f"{'activation':<12} {'probe ms, grouped':>18} {'alone':>8} {'ratio':>6}   "
              f"{'own samples/s, grouped':>24} {'alone':>17} {'ratio':>6}")  # fmt: skip
        for act in args.activations.split(","):
            p, o = (probes[grouped][act], probes[alone][act]), (own[grouped][act], own[alone][act])
            ratio = statistics.fmean(o[0]) / statistics.fmean(o[1])
            print(f"{act:<12} {p[0]:>18.3f} {p[1]:>8.3f} {p[0] / p[1]:>6.2f}   {spread(o[0]):>24} {spread(o[1]):>17} "
                  f"{ratio:>6.2f}")  # fmt: skip
        for size, out in outs.items():
            print(f"group_size={size}: the sweep took {took[size]:.0f} s, its training {wall_of_groups(out):.1f} s "
                  "(each group once)")  # fmt: skip


if __name__ == "__main__":
    main()
