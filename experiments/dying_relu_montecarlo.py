"""Direct Monte Carlo estimate of the born-dead probability of a deep narrow ReLU MLP, in plain torch (no harness).

A check of harness/training/born_dead.py that shares none of its code: T networks at once as batched matrices, inputs
drawn from a symmetric distribution (standard normal, as in Lu et al., 2019), every unit's pre-activation
checked on every input. A network is born dead when some hidden layer has z <= 0 (ReLU's derivative 0) for all
of its units and all inputs. Also prints the single-input heuristic 1 - (1 - 2^-N)^L (zero biases: each unit is
off with probability 1/2 independently per layer for one fixed input), an upper bound for many inputs.

    python experiments/dying_relu_montecarlo.py [--trials 1000] [--inputs 1024] [--out results/dying_relu]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

DEPTHS = (2, 3, 5, 10, 20, 35, 50)
WIDTHS = (2, 3, 4, 5, 10)
IN_FEATURES = 40  # MNIST-1D's sequence length, so that the first layer matches the harness study


def born_dead(depth: int, width: int, trials: int, inputs: int, init: str, gen: torch.Generator) -> torch.Tensor:
    """(trials,) bool: which of `trials` random networks have a hidden layer dead for every input."""
    x = torch.randn(inputs, IN_FEATURES, generator=gen)  # (M, D), symmetric around 0
    h = x.expand(trials, inputs, IN_FEATURES)  # (T, M, D)
    dead = torch.zeros(trials, dtype=torch.bool)
    fan_in = IN_FEATURES
    for _ in range(depth):
        if init == "kaiming":  # He normal, zero biases (the harness's model.init=kaiming)
            w = torch.randn(trials, width, fan_in, generator=gen) * math.sqrt(2.0 / fan_in)
            b = torch.zeros(trials, 1, width)
        else:  # PyTorch's nn.Linear default: weights and biases uniform in +-1/sqrt(fan_in)
            bound = 1 / math.sqrt(fan_in)
            w = (torch.rand(trials, width, fan_in, generator=gen) * 2 - 1) * bound
            b = (torch.rand(trials, 1, width, generator=gen) * 2 - 1) * bound
        z = torch.baddbmm(b, h, w.transpose(1, 2))  # (T, M, N)
        alive = (z > 0).any(dim=1)  # (T, N): a unit lives if some input switches it on
        dead |= ~alive.any(dim=1)
        h = z.clamp_min(0)
        fan_in = width
    return dead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--inputs", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/dying_relu"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = ["init,width,depth,trials,inputs,born_dead_fraction,born_dead_se,single_input_heuristic"]
    start = time.perf_counter()
    for init in ("default", "kaiming"):
        for width in WIDTHS:
            for depth in DEPTHS:
                p = born_dead(depth, width, args.trials, args.inputs, init, gen).float().mean().item()
                se = math.sqrt(p * (1 - p) / args.trials)
                heuristic = 1 - (1 - 2.0**-width) ** depth
                rows.append(f"{init},{width},{depth},{args.trials},{args.inputs},{p:.4f},{se:.4f},{heuristic:.4f}")
                print(rows[-1], flush=True)
    (args.out / "montecarlo.csv").write_text("\n".join(rows) + "\n")
    print(f"{time.perf_counter() - start:.0f} s -> {args.out / 'montecarlo.csv'}")


if __name__ == "__main__":
    main()
