"""The cost probe's memory of a training step (harness.training.cost), on every device the same counted figures
and, measured, the CUDA allocator's peak or a fresh CPU process's peak resident memory.

Counted: the bytes autograd saves for backward (saved-tensor hooks, each distinct tensor once), the parameters,
their gradients and the optimizer's state. Measured on CUDA: the allocator's peak during one step above what was
allocated before it (the resident dataset, the batch table), plus the model's state (parameters, gradients,
optimizer state). Measured on the CPU, where torch keeps no allocator peak: a fresh Python process
(`python -m harness.training.cost_memory CONFIG_JSON`) builds the setting and takes a few steps; its peak resident
memory, and its resident memory once its imports were done, before the data and the model.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from harness.setup.config import Config, from_dict
from harness.setup.data import Dataset, load_dataset
from harness.training.bench import training_saved_bytes
from harness.training.group import Group, build_group

FRESH_STEPS = 3  # steps the fresh process takes: the optimizer's state exists after the first
FRESH_TIMEOUT_S = 300


def load_data(config: Config, device: torch.device) -> Dataset:
    d = config.dataset
    return load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, device)


def tensor_bytes(tensors: object) -> int:
    """Bytes of every distinct tensor in a (nested) dict or list of them."""
    seen: dict[int, int] = {}
    stack = [tensors]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            seen[id(item)] = item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack += list(item.values())
        elif isinstance(item, (list, tuple)):
            stack += list(item)
    return sum(seen.values())


def step_memory(group: Group, config: dict, threads: int, rss: tuple[int | None, int | None]) -> dict:
    """The memory record of one setting (harness.records.cost.Memory) after its timed rounds; rss: its fresh
    process's figures (fresh_processes_rss), used on the CPU."""
    x, y = group.batches.next(None)
    with group.autocast():
        saved, _ = training_saved_bytes(group.members[0].model, x[0], y[0])  # (K, B, ...): the one member
    params = group.stack.params
    state = {
        "param_bytes": tensor_bytes(list(params)),
        "grad_bytes": tensor_bytes([p.grad for p in params if p.grad is not None]),
        "optimizer_bytes": tensor_bytes(list(group.optimizer.state.values())),
    }
    memory = {"saved_bytes": saved, **state, "peak_alloc_bytes": None, "peak_rss_bytes": None}
    memory["import_rss_bytes"] = None
    if group.device.type == "cuda":
        memory["peak_alloc_bytes"] = cuda_step_peak(group) + sum(state.values())
    elif group.device.type == "cpu":
        memory["import_rss_bytes"], memory["peak_rss_bytes"] = rss
    return memory


def cuda_step_peak(group: Group) -> int:
    """The allocator's peak during one training step, above what was allocated before it."""
    device = group.device
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    x, y = group.batches.next(None)
    group.train_step(x, y, False)
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - before)


def fresh_processes_rss(settings: list[tuple[dict, int]], at_once: int) -> list[tuple[int | None, int | None]]:
    """fresh_process_rss of each (config, threads), `at_once` processes at a time: memory is not a clock, so they
    may share the cores (after the timed rounds, never beside them)."""
    with ThreadPoolExecutor(max_workers=max(1, at_once)) as pool:
        return list(pool.map(lambda setting: fresh_process_rss(*setting), settings))


def fresh_process_rss(config: dict, threads: int) -> tuple[int | None, int | None]:
    """(resident bytes once imported, peak resident bytes) of a fresh process training the setting; (None, None)
    when that process fails (its error is not the sweep's)."""
    command = [sys.executable, "-m", "harness.training.cost_memory", json.dumps(config), str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=FRESH_TIMEOUT_S, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return int(figures["import_rss_bytes"]), int(figures["peak_rss_bytes"])
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError):
        return None, None


def max_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def fresh_main(config_json: str, threads: str) -> None:
    """The fresh process: its resident memory after the imports, then its peak after FRESH_STEPS steps."""
    imported = max_rss_bytes()
    config = from_dict(json.loads(config_json))
    device = torch.device("cpu")
    data = load_data(config, device)
    with tempfile.TemporaryDirectory(prefix="cost-rss-") as tmp:
        from harness.training.bench import resolved

        group = build_group([resolved(config, device)], data, [Path(tmp)], int(threads))
        group.activate(1, 0.0, 0.0)
        group.stack.train()
        for _ in range(FRESH_STEPS):
            x, y = group.batches.next(None)
            group.train_step(x, y, False)
    print(json.dumps({"import_rss_bytes": imported, "peak_rss_bytes": max_rss_bytes()}))


if __name__ == "__main__":
    fresh_main(*sys.argv[1:3])
