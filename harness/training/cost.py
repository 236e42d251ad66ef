"""The cost probe: each cost setting of a sweep timed alone, outside any group, in interleaved rounds.

A grouped run's own clock times its group, and a run alone on a shared machine times whatever else ran beside it;
neither is the cost of an activation. The probe job (run.py, a sweep's job in `<sweep>/.cost`) builds every setting
the sweeper lists (harness.records.cost.SETTINGS_FILE) as a run of one, with the harness's own step, then times
`steps_per_round` training steps and as many forward passes of each setting in turn, round after round: a drift of
the machine falls on every setting alike, and round r of two settings pairs. Its time is bounded: a setting gets at
most SETTING_LIMIT_S, and at most SWEEP_SHARE of what the sweep's own steps of that setting will take, but never fewer
than MIN_ROUNDS rounds of one step (the least that gives an interval). Memory: harness.training.cost_memory.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from harness.records.cost import SETTINGS_FILE, add_costs
from harness.setup.config import from_dict
from harness.setup.data import Dataset
from harness.setup.resolve import TORCH_THREADS
from harness.training.bench import device_name, time_blocks
from harness.training.cost_memory import fresh_processes_rss, load_data, step_memory
from harness.training.group import Group, build_group

MIN_ROUNDS, MAX_ROUNDS = 6, 30  # 6: the fewest whose median has a 95% distribution-free interval
SETTING_LIMIT_S = 30.0  # a setting's probe time, at most
SWEEP_SHARE = 0.05  # of the sweep's own training time of that setting, at most
ROUND_MIN_S = 0.02  # a round of one setting lasts at least this long where the budget allows (timer resolution)
WARMUP_STEPS = 5


@dataclass
class Setting:
    """One setting, built: a group of one on its device, and what its rounds time."""

    entry: dict  # {"cost_id", "config", "sweep_steps"} as the sweeper listed it
    group: Group
    threads: int
    x: torch.Tensor  # one batch, for the forward passes
    steps_per_round: int = 1
    step_s: list[float] = field(default_factory=list)
    forward_s: list[float] = field(default_factory=list)

    def train_step(self, _: object = None) -> None:
        x, y = self.group.batches.next(None)
        self.group.train_step(x, y, False)

    @torch.no_grad()
    def forward(self, _: object = None) -> None:
        with self.group.autocast():
            self.group.stack.forward(self.x, record=False)


def build_setting(entry: dict, run_dir: Path, cpu_threads: int | None, datasets: dict[str, Dataset]) -> Setting:
    """A setting's run of one, built as a sweep's job builds it (its device, threads and step)."""
    from harness.setup.resolve import resolve
    from harness.training.bench import resolved

    config = from_dict(entry["config"])
    r = resolve(config)
    assert r.device is not None  # resolve(device=True) sets it
    key = json.dumps([entry["config"]["dataset"], str(r.device)], sort_keys=True)
    if key not in datasets:
        datasets[key] = load_data(config, r.device)
    group = build_group([resolved(config, r.device)], datasets[key], [run_dir], cpu_threads)
    group.activate(1, 0.0, 0.0)
    group.stack.train()
    x, _ = group.batches.next(None)
    return Setting(entry, group, torch.get_num_threads(), x)


def timed(s: Setting, block: Callable[[object], None], n: int) -> float:
    """Mean seconds of one of n calls of block, on this setting's threads and the harness's clock for its device."""

    def calls(_: object) -> None:
        for _ in range(n):
            block(None)

    torch.set_num_threads(s.threads)
    return sum(time_blocks(calls, s.group.device, 1, warmup=0)) / n


def wall(s: Setting, block: Callable[[object], None], n: int) -> float:
    """Mean wall seconds of one of n calls: the budget is the sweep's wall time, whatever clock the rounds read
    (a step that waits, on I/O or a sleep, costs the sweep its wait but no thread CPU time)."""
    began = time.perf_counter()
    timed(s, block, n)
    return (time.perf_counter() - began) / n


def size_rounds(settings: list[Setting]) -> int:
    """Warm every setting up, set its steps per round, and return the number of rounds the budget allows."""
    rounds = MAX_ROUNDS
    for s in settings:
        timed(s, s.train_step, WARMUP_STEPS)  # first steps: allocation, a captured graph's capture
        timed(s, s.forward, 2)
        step = max(wall(s, s.train_step, WARMUP_STEPS), 1e-7)
        per_round = step + wall(s, s.forward, 2)
        budget = min(SETTING_LIMIT_S, SWEEP_SHARE * s.entry["sweep_steps"] * step)
        s.steps_per_round = max(1, min(math.ceil(ROUND_MIN_S / per_round), int(budget / (MIN_ROUNDS * per_round))))
        rounds = min(rounds, max(MIN_ROUNDS, int(budget / (s.steps_per_round * per_round))))
    return rounds


def run_rounds(settings: list[Setting], rounds: int) -> None:
    """Each round times every setting in turn: its training steps, then as many forward passes."""
    for _ in range(rounds):
        for s in settings:
            s.step_s.append(timed(s, s.train_step, s.steps_per_round))
            s.forward_s.append(timed(s, s.forward, s.steps_per_round))


def measure(entries: list[dict], cpu_threads: int | None, probe: str) -> list[dict]:
    """Every listed setting timed in interleaved rounds, its memory measured; one record each (the cost.json
    format of harness.records.cost)."""
    datasets: dict[str, Dataset] = {}
    with tempfile.TemporaryDirectory(prefix="cost-probe-") as tmp:
        settings = [build_setting(e, Path(tmp) / e["cost_id"], cpu_threads, datasets) for e in entries]
        run_rounds(settings, size_rounds(settings))
        on_cpu = [(s.entry["config"], s.threads) if s.group.device.type == "cpu" else None for s in settings]
        fresh = iter(fresh_processes_rss([c for c in on_cpu if c], cpu_threads or TORCH_THREADS))
        rss = [next(fresh) if c else (None, None) for c in on_cpu]
        return [record(s, probe, step_memory(s.group, s.entry["config"], s.threads, r)) for s, r in zip(settings, rss)]


def record(s: Setting, probe: str, memory: dict) -> dict:
    device = s.group.device
    return {
        "cost_id": s.entry["cost_id"],
        "probe": probe,
        "config": s.entry["config"],
        "device": device.type,
        "device_name": device_name(device),
        "threads": s.threads,
        "hostname": socket.gethostname(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_params": sum(p.numel() for p in s.group.stack.params),
        "steps_per_round": s.steps_per_round,
        "step_s": s.step_s,
        "forward_s": s.forward_s,
        "memory": memory,
    }


def run_probe(cost_dir: Path, cpu_threads: int | None) -> int:
    """Measure what the sweeper listed in cost_dir and add it to the sweep's cost.json. Returns the number of
    settings measured."""
    listed = json.loads((cost_dir / SETTINGS_FILE).read_text())
    records = measure(listed["settings"], cpu_threads, listed["probe"])
    add_costs(cost_dir.parent, records)
    return len(records)


def spawn_probe(cost_dir: Path, cpu_threads: int | None) -> subprocess.CompletedProcess:
    """run_probe in a child process on this machine: a setting that aborts, exits or raises Ctrl-C in its step (a
    custom activation may) ends the child, never the probe job, which may be the sweep's own process."""
    command = [sys.executable, "-m", "harness.training.cost", str(cost_dir), str(cpu_threads or 0)]
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def probe_job(job_dir: Path, cpu_threads: int | None) -> str | None:
    """The sweep's probe job (<sweep>/.cost/probe): None when every listed setting was measured, else one line
    why not (the child's output, its traceback included, in job_dir/error.txt)."""
    done = spawn_probe(job_dir.parent, cpu_threads)
    if done.returncode == 0:
        return None
    (job_dir / "error.txt").write_text(done.stdout + done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    why = lines[-1] if lines and done.returncode > 0 else f"its process ended with status {done.returncode}"
    return f"{why} (its output in {job_dir / 'error.txt'})"


if __name__ == "__main__":
    run_probe(Path(sys.argv[1]), int(sys.argv[2]) or None)
