"""Micro-benchmark of the reference article's seven activations: forward and forward+backward time per element.

    python experiments/activation_speed.py [--size 1048576] [--out results/article_claims/activation_speed.csv]

One CPU thread, torch.utils.benchmark (warm-up, then adaptive repeats); the activations as the harness builds them
(harness.activations.make_activation with their conf/activation defaults). Rounds are interleaved, so that load
from other processes on a shared machine falls on every activation alike; the median over rounds is reported.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.activations import make_activation  # noqa: E402

ACTIVATIONS = {"relu": {}, "leaky_relu": {"negative_slope": 0.01}, "sigmoid": {}, "tanh": {}, "softmax": {"dim": 1},
               "rrelu": {}, "relu6": {}, "identity": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/article_claims/activation_speed.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(args.size // 100, 100)  # (B, units): softmax normalises over 100 units
    times = {name: {"forward": [], "forward+backward": []} for name in ACTIVATIONS}
    for _ in range(args.rounds):
        for name, params in ACTIVATIONS.items():
            act = make_activation(name, **params).train()  # RReLU draws its random slopes in training mode
            xg = x.clone().requires_grad_(True)
            fwd = benchmark.Timer("act(x)", globals={"act": act, "x": x}, num_threads=1)
            bwd = benchmark.Timer("act(x).backward(g)", globals={"act": act, "x": xg, "g": torch.ones_like(x)},
                                  num_threads=1)
            times[name]["forward"].append(fwd.blocked_autorange(min_run_time=0.3).median)
            times[name]["forward+backward"].append(bwd.blocked_autorange(min_run_time=0.3).median)
    relu = {k: torch.tensor(v).median().item() for k, v in times["relu"].items()}
    lines = ["activation,forward_ns_per_element,forward_backward_ns_per_element,forward_vs_relu,"
             "forward_backward_vs_relu"]
    for name, t in times.items():
        f, fb = torch.tensor(t["forward"]).median().item(), torch.tensor(t["forward+backward"]).median().item()
        lines.append(f"{name},{f / x.numel() * 1e9:.3f},{fb / x.numel() * 1e9:.3f},{f / relu['forward']:.2f},"
                     f"{fb / relu['forward+backward']:.2f}")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
