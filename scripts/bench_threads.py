"""Where do more torch threads pay? One thread against N on the CPU, by model size and batch, side by side.

    python scripts/bench_threads.py [--threads 2] [--seconds 0.5] [--repeats 3] [--out DIR]

For each model (the default MLP, CNN and RNN and wider ones) and batch size (100, 1000) it trains the harness's
model with its optimiser on MNIST-1D for about --seconds, alternating one thread and --threads threads, --repeats
times, and prints, per configuration: parameters x batch (the quantity trainer.threads=auto decides on), the median
wall-time samples/s at each thread count and their ratio, and the CPU seconds per 1,000 samples at each (all
threads together: what the extra threads cost the machine). Load average before and after is printed beside it:
a wall-time ratio means something only on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (model, overrides): the defaults and wider variants
MODELS = [
    ("mlp", ["model=mlp"]),
    ("mlp w1000", ["model=mlp", "model.width=1000"]),
    ("cnn", ["model=cnn"]),
    ("cnn w100", ["model=cnn", "model.width=100"]),
    ("rnn", ["model=rnn"]),
    ("rnn w128", ["model=rnn", "model.width=128"]),
]
BATCHES = (100, 1000)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    import run  # noqa: F401  registers the structured-config schema

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=overrides))


def time_steps(job, batch: int, threads: int, seconds: float) -> tuple[float, float]:
    """(samples/s by wall time, CPU ms per 1,000 samples, all threads) of plain training steps on `threads`."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    x, y, model, optimizer = job.data.x_train, job.data.y_train, job.model, job.optimizer
    generator = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(len(x), (batch,), generator=generator)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    steps, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        step()
        steps += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return steps * batch / wall, 1e6 * cpu / (steps * batch)


def main(argv: list[str] | None = None) -> int:
    from harness.setup.data import load_dataset
    from harness.training.bench import OneLineParser, build

    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="the thread count set against one (default 2)")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds per measurement (default 0.5)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (default 3)")
    parser.add_argument("--out", default=None, help="folder for threads.md")
    args = parser.parse_args(argv)
    if args.threads < 2 or args.repeats < 1 or args.seconds <= 0:
        parser.error("--threads must be >= 2, --repeats >= 1 and --seconds > 0")
    import torch

    n = args.threads
    lines = [
        f"# 1 vs {n} torch threads, {torch.__version__}, {os.cpu_count()} CPUs, load before {os.getloadavg()[0]:.2f}",
        "",
        f"| model | batch | params x batch | samples/s 1 thr | samples/s {n} thr | {n} thr / 1 thr "
        f"| CPU ms/1k samples 1 thr | CPU ms/1k samples {n} thr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    data = None
    for name, overrides in MODELS:
        for batch in BATCHES:
            config = compose([*overrides, f"trainer.batch_size={batch}", "trainer.device=cpu"])
            if data is None:
                d = config.dataset
                data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, torch.device("cpu"))
            job = build(config, data, torch.device("cpu"))
            one, many = [], []
            for i in range(args.repeats):
                for threads, into in ((1, one), (n, many)) if i % 2 == 0 else ((n, many), (1, one)):
                    into.append(time_steps(job, batch, threads, args.seconds))
            params = sum(p.numel() for p in job.model.parameters())
            s1, sn = statistics.median(r[0] for r in one), statistics.median(r[0] for r in many)
            c1, cn = statistics.median(r[1] for r in one), statistics.median(r[1] for r in many)
            lines.append(
                f"| {name} | {batch} | {params * batch:.2g} | {s1:,.0f} | {sn:,.0f} | {sn / s1:.2f} "
                f"| {c1:.1f} | {cn:.1f} |"
            )
            print(lines[-1], file=sys.stderr)
    lines.append(f"\nload after {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "threads.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
