"""The limit a grouped run is measured against: K MLPs trained as one stacked model, written without harness code.

Each layer's weights are one (K, in, out) tensor and its biases one (K, 1, out) tensor; a layer is one baddbmm; one
Adam steps all of them (six tensors for the default MLP, whatever K is); each step's batch indices are drawn on the
training device, so that the host never touches the data. The data are random numbers of the dataset's shape: the
speed does not depend on their values. scripts/bench_grouped.py prints this loop's samples/s beside the harness's.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

WARMUP = 10  # steps before the clock starts: first-call allocations and kernel choices


def stacked_mlp(k: int, sizes: list[int], device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """Weights (K, in, out) with Kaiming-uniform scale and zero biases (K, 1, out), alternating, as leaves."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        bound = (6 / fan_in) ** 0.5
        params.append(((torch.rand(k, fan_in, fan_out, generator=g) * 2 - 1) * bound).to(device).requires_grad_())
        params.append(torch.zeros(k, 1, fan_out, device=device, requires_grad=True))
    return params


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(K, B, in) -> (K, B, classes): ReLU between the layers."""
    layers = list(zip(params[::2], params[1::2]))
    for i, (w, b) in enumerate(layers):
        x = torch.baddbmm(b, x, w)
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


def train(
    k: int,
    steps: int,
    device: str = "cpu",
    n: int = 4000,
    features: int = 40,
    classes: int = 10,
    width: int = 100,
    depth: int = 2,
    batch: int = 100,
    lr: float = 1e-2,
    captured: bool = False,
) -> dict:
    """Train K stacked MLPs for `steps` timed steps (after WARMUP); their samples/s in all, by the wall clock and
    by this process's CPU time, and the last step's mean loss (a check that it trains). captured (CUDA only): the
    step replayed from a CUDA graph, with torch's capturable Adam."""
    device = torch.device(device)
    x = torch.randn(n, features, device=device)
    y = torch.randint(classes, (n,), device=device)
    params = stacked_mlp(k, [features] + [width] * depth + [classes], device)
    optimizer = torch.optim.Adam(params, lr=lr, foreach=True, capturable=captured)

    def step() -> torch.Tensor:
        idx = torch.randint(n, (k, batch), device=device)
        logits = forward(params, x[idx])
        # the sum of the members' mean losses: each member's gradient is that of its own loss
        loss = F.cross_entropy(logits.reshape(k * batch, classes), y[idx].reshape(-1)) * k
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(WARMUP):
        step()
    if captured:
        step = graphed(step)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = step()
    sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    samples = k * batch * steps
    return {
        "k": k,
        "samples_per_s": samples / wall,
        "cpu_samples_per_s": samples / max(cpu, 1e-9),
        "loss": loss.item() / k,
    }


def graphed(step):
    """The step recorded once as a CUDA graph; each call replays it (its random indices are drawn in the graph)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step()

    def replay() -> torch.Tensor:
        graph.replay()
        return loss

    return replay
