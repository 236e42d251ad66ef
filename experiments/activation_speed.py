"""Micro-benchmark of the reference article's seven activations: forward and forward+backward time per element.

    python experiments/activation_speed.py [--size 262144] [--repeats 200] [--rounds 5]

One CPU thread; the activations as the harness builds them (harness.networks.activations.make_activation with their
conf/activation defaults, in training mode, so that RReLU draws its random slopes). Each call is timed alone and
the *minimum* over all calls is reported: on a shared CPU other processes only ever add time, so the minimum is
the least disturbed estimate. Rounds are interleaved, so that a burst of load falls on every activation alike.
The input (1 MiB of fp32) stays in cache: this times the arithmetic, not memory bandwidth, nor the allocator
(keep_freed_memory).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import time
from pathlib import Path

import torch

from harness.networks.activations import make_activation

ACTIVATIONS = {
    "relu": {},
    "leaky_relu": {"negative_slope": 0.01},
    "sigmoid": {},
    "tanh": {},
    "softmax": {"dim": 1},
    "rrelu": {},
    "relu6": {},
    "identity": {},
}


def keep_freed_memory() -> None:
    """Stop glibc handing freed 1 MiB blocks back to the OS. By default it unmaps them, and the next call's
    output page-faults in afresh: on a 2-vCPU AMD EPYC VM that cost 2.7 ns per element, four times ReLU's
    forward+backward. Raising the mmap and trim thresholds makes the benchmark time the activation. No-op on
    another libc."""
    libc = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc), "mallopt", None) if libc else None
    if mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        mallopt(m_trim_threshold, 256 << 20)
        mallopt(m_mmap_threshold, 64 << 20)


def fastest(fn, repeats: int) -> float:
    """Minimum wall time of one call over `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 18)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/article_claims/activation_speed.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    x = torch.randn(args.size // 100, 100)  # (B, units): softmax normalises over 100 units
    xg = x.clone().requires_grad_(True)
    g = torch.ones_like(x)
    best = {name: [float("inf"), float("inf")] for name in ACTIVATIONS}
    for _ in range(args.rounds):
        for name, params in ACTIVATIONS.items():
            act = make_activation(name, **params).train()
            forward, both = (lambda act=act: act(x)), (lambda act=act: torch.autograd.grad(act(xg), xg, g))
            best[name][0] = min(best[name][0], fastest(forward, args.repeats))
            best[name][1] = min(best[name][1], fastest(both, args.repeats))
    relu_f, relu_fb = best["relu"]
    lines = [
        "activation,forward_ns_per_element,forward_backward_ns_per_element,forward_vs_relu,forward_backward_vs_relu"
    ]
    for name, (f, fb) in best.items():
        lines.append(f"{name},{f / x.numel() * 1e9:.3f},{fb / x.numel() * 1e9:.3f},{f / relu_f:.2f},{fb / relu_fb:.2f}")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
