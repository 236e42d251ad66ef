"""Harness-overhead benchmark: the harness's training loop against a plain PyTorch loop, alternating in one process.

    python scripts/bench_overhead.py [--models mlp,cnn,rnn] [--steps 500] [--repeats 3] [--device auto|cpu|cuda]
                                     [--threads 1] [--clock cpu|wall] [--out DIR] [HYDRA_OVERRIDE ...]

By default it is robust to a busy machine: one torch thread, CPU runs timed by that thread's CPU time (other
processes do not move it), and it finishes in a few minutes on a 2-core CPU (3 repeats).

For each model and repeat it runs the plain loop and the harness with probes off (log and evaluate only at the
last step), then the plain loop and the harness fully instrumented at the default trainer.log_every and
eval_every. Both loops measure validation and test accuracy on the same schedule (a loop that reports accuracy
must), so what differs is the harness's instrumentation and bookkeeping. Each harness run is compared with the
plain run beside it, and every other repeat runs the harness first, so that neither a machine whose speed drifts
(a shared CPU) nor the order favours one side. Two ratios, harness / plain throughput (1.0 = no overhead):
  step: the harness's own samples_per_s (warm-up, evaluation and probes excluded) over the plain loop's
  wall: whole-loop wall time, evaluation, probes and every logged step included (what a user waits for)
"""

from __future__ import annotations

import argparse
import csv
import datetime
import statistics
import sys
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Targets for harness / plain throughput: probes off, on the steady-state step ratio (the one probe of the final
# step is not per-step work); everything on, on the wall ratio (probes and logged steps included).
TARGETS = {"off": 0.98, "on": 0.95}
MODELS = ("mlp", "cnn", "rnn")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from harness.training.bench import OneLineParser

    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: mlp,cnn,rnn")
    parser.add_argument("--steps", type=int, default=500, help="training steps per run (default 500)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per model (default 3)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--clock",
        default=None,
        choices=("wall", "cpu"),
        help="CPU runs: CPU time of the one thread (the default on one thread: robust to other "
        "processes on a shared machine), or wall time (the default on several threads)",
    )
    parser.add_argument("--out", default=None, help="folder for overhead.csv")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both loops, e.g. activation=gelu")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    bad = [m for m in models if m not in MODELS]
    if bad:
        parser.error(f"unknown model {bad[0]!r}; valid: {', '.join(MODELS)}")
    if args.device not in ("auto", "cpu", "cuda"):
        parser.error(f"--device must be auto, cpu or cuda, got {args.device!r}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu counts one thread's CPU time: it needs --threads 1")
    args.clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    if args.steps < 20 or args.repeats < 1:
        parser.error("--steps must be >= 20 and --repeats >= 1")
    args.models = models
    return args


def compose(model: str, args: argparse.Namespace):
    """The Config that `python run.py model=MODEL ...` would train, composed in process."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    import run  # noqa: F401  registers the structured-config schema

    overrides = [
        f"model={model}",
        f"trainer.steps={args.steps}",
        f"trainer.device={args.device}",
        "trainer.progress=false",
        f"trainer.threads={args.threads}",
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=overrides))


def measure(args: argparse.Namespace) -> tuple[list, object, object]:
    """Every (plain, harness) pair of every model; returns (results, device, last config)."""
    from harness.setup.data import load_dataset
    from harness.training.bench import overhead_pair
    from harness.training.train import check

    results = []
    for model in args.models:
        config = compose(model, args)
        device = check(config)
        d = config.dataset
        data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, device)
        overhead_pair(config, data, device, "off")  # warms the caches, the allocator and the kernels: discarded
        for i in range(args.repeats):
            for probes in ("off", "on"):
                results.append(overhead_pair(config, data, device, probes, plain_first=i % 2 == 0))
                r = results[-1]
                print(
                    f"  {model} probes {probes}: step ratio {r.step_ratio:.3f}, wall ratio {r.wall_ratio:.3f}",
                    file=sys.stderr,
                )
    return results, device, config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from harness import ConfigError
    from harness.training.bench import cpu_clock

    torch.set_num_threads(args.threads)
    try:
        with cpu_clock() if args.clock == "cpu" else nullcontext():
            results, device, config = measure(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.clock == "cpu" and device.type != "cpu":
        print("note: --clock cpu applies to CPU runs only; CUDA runs are timed with CUDA events", file=sys.stderr)
    print(header(device, config, args.clock))
    print(table(results, args))
    if args.out:
        write_csv(Path(args.out), results, device, config, args.clock)
    return 0


def header(device, config, clock: str) -> str:
    import torch

    from harness.training.bench import device_name

    name = device_name(device)
    threads = f", {torch.get_num_threads()} threads, {clock} clock" if device.type == "cpu" else ", CUDA events"
    return (
        f"# harness overhead, {datetime.date.today()}, {device.type} ({name}{threads}), torch {torch.__version__}, "
        f"{config.dataset.name}, {config.trainer.steps} steps, batch {config.trainer.batch_size}, "
        f"{config.trainer.optimizer}; 'on' = log_every {config.trainer.log_every}, "
        f"eval_every {config.trainer.eval_every}"
    )


def table(results: list, args: argparse.Namespace) -> str:
    """One Markdown row per model and probe setting: medians over the repeats, with the min-max range."""
    lines = [
        "| model | probes | plain samples/s | harness samples/s | step ratio | wall ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in args.models:
        for probes in ("off", "on"):
            rows = [r for r in results if r.model == model and r.probes == probes]
            step = [r.step_ratio for r in rows]
            wall = [r.wall_ratio for r in rows]
            judged = statistics.median(step if probes == "off" else wall)
            met = judged >= TARGETS[probes]
            lines.append(
                f"| {model} | {probes} | {statistics.median(r.plain_samples_per_s for r in rows):,.0f} "
                f"| {statistics.median(r.harness_samples_per_s for r in rows):,.0f} "
                f"| {statistics.median(step):.3f} ({min(step):.3f}-{max(step):.3f}) "
                f"| {statistics.median(wall):.3f} ({min(wall):.3f}-{max(wall):.3f}) "
                f"| {'step' if probes == 'off' else 'wall'} >= {TARGETS[probes]} | {'yes' if met else 'NO'} |"
            )
    return "\n".join(lines)


def write_csv(out: Path, results: list, device, config, clock: str) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "overhead.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [*asdict(results[0]), "step_ratio", "wall_ratio", "device", "threads", "clock", "steps", "date"]
        )
        for r in results:
            writer.writerow(
                [
                    *asdict(r).values(),
                    r.step_ratio,
                    r.wall_ratio,
                    device.type,
                    torch.get_num_threads(),
                    clock,
                    config.trainer.steps,
                    datetime.date.today(),
                ]
            )


if __name__ == "__main__":
    sys.exit(main())
