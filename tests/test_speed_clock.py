"""The speed a run records: trainer.threads=auto, and a clock that time spent elsewhere does not move."""

from __future__ import annotations

import time

import pytest
import torch

from harness import run
from harness.records.results import load_checkpoint_file, write_checkpoint_file
from harness.report import build_report
from harness.setup.resolve import ONE_THREAD_BELOW, resolve_threads
from harness.training.group import Group
from harness.training.meters import Timer

pytestmark = pytest.mark.serial  # they change torch's threads and read clocks: never beside another test

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SLEEP = 0.004  # seconds per training step: waiting, as a process does while another one has the core


@pytest.fixture
def restore_threads():
    yield
    torch.set_num_threads(1)  # the session's one thread (conftest)


def sleepy_steps(monkeypatch) -> None:
    """Every training step also sleeps: wall time grows, the thread's CPU time does not."""
    step = Group.step
    monkeypatch.setattr(Group, "step", lambda self, x, y, logged: (time.sleep(SLEEP), step(self, x, y, logged))[1])


def test_a_sleep_inside_a_segment_moves_wall_time_but_not_thread_cpu_time():
    timer = Timer(CPU)
    timer.start()
    time.sleep(0.05)
    assert timer.stop() >= 0.05
    assert timer.cpu_total < 0.01


def test_a_one_thread_run_reads_its_speed_by_thread_cpu_time(tiny, tmp_path, monkeypatch):
    sleepy_steps(monkeypatch)
    s = run(tiny("trainer.steps=20"), tmp_path / "r")
    assert s["status"] == "ok" and s["speed_clock"] == "thread_cpu" and s["num_threads"] == 1
    assert s["train_time_s"] - s["train_cpu_time_s"] >= 0.8 * 20 * SLEEP  # the sleeps are in wall time only
    timed = 18 * 100  # 20 steps less 2 warm-up steps, batch 100
    assert s["samples_per_s"] <= timed / (18 * SLEEP)
    assert s["clock_samples_per_s"] > 1.5 * s["samples_per_s"]


def test_a_run_on_several_threads_reads_wall_time(tiny, tmp_path, restore_threads):
    s = run(tiny("trainer.threads=2"), tmp_path / "r")
    assert s["status"] == "ok" and s["num_threads"] == 2
    assert s["speed_clock"] == "wall" and s["train_cpu_time_s"] is None
    assert s["clock_samples_per_s"] == s["samples_per_s"]


@pytest.mark.parametrize(
    "setting, n_params, device, cap, threads",
    [
        ("auto", 15_000, CPU, 4, 1),  # the default MLP: one thread
        ("auto", ONE_THREAD_BELOW // 100, CPU, 4, 4),  # x batch 100 at the crossover: the cap
        ("auto", 15_000, CUDA, 4, 4),  # on a GPU the host's threads are the cap, as before
        (None, 15_000, CPU, 3, 3),  # torch's default, or the launcher's share
        (2, 15_000, CPU, 1, 2),  # an explicit count wins over a launcher's share
    ],
)
def test_auto_threads_follow_the_measured_crossover(setting, n_params, device, cap, threads):
    assert resolve_threads(setting, n_params, 100, device, cap) == threads


def test_the_default_run_trains_on_one_thread_whatever_the_cap(tiny, tmp_path, restore_threads):
    torch.set_num_threads(3)
    s = run(tiny("trainer.threads=auto"), tmp_path / "r", cpu_threads=4)
    assert s["num_threads"] == 1 and s["speed_clock"] == "thread_cpu"


def test_the_report_compares_speed_by_the_clock_nobody_else_moves(tiny, tmp_path, monkeypatch, restore_threads):
    # relu's steps sleep: its wall-time speed falls, its thread CPU time does not; tanh runs undisturbed.
    with monkeypatch.context() as patch:
        sleepy_steps(patch)
        relu = run(tiny("trainer.steps=40", "activation=relu"), tmp_path / "runs" / "relu")
    tanh = run(tiny("trainer.steps=40", "activation=tanh"), tmp_path / "runs" / "tanh")
    report = build_report([tmp_path / "runs"], out=tmp_path / "report", figures=False)
    cost = cost_line(report)
    assert "thread CPU time" in cost and "thread_cpu, cpu, 1 thread(s)" in cost
    assert f"({tanh['clock_samples_per_s'] / relu['clock_samples_per_s']:.2f}× relu)" in cost
    wall_ratio = tanh["samples_per_s"] / relu["samples_per_s"]
    assert f"({wall_ratio:.2f}× relu)" not in cost

    run(tiny("trainer.steps=40", "activation=tanh", "seed=1", "trainer.threads=2"), tmp_path / "runs" / "tanh2")
    cost = cost_line(build_report([tmp_path / "runs"], out=tmp_path / "report", figures=False))
    assert "not compared with relu: measured differently" in cost and "wall, cpu, 2 thread(s)" in cost


def cost_line(report) -> str:
    md = (report / "report.md").read_text(encoding="utf-8")
    return next(line for line in md.splitlines() if "samples/s" in line and "measured by" in line)


def test_the_speed_figure_draws_only_tasks_timed_alike(tmp_path):
    import pandas as pd

    from harness.report.summary_figures import relative_speed

    alike = ["thread_cpu, cpu, 1 thread(s)"] * 2
    runs = pd.DataFrame(
        {
            "task": ["a", "a", "b", "b"],
            "act": ["relu", "tanh"] * 2,
            "speed": [2.0, 1.0, 2.0, 1.0],
            "measured_as": alike + ["thread_cpu, cpu, 1 thread(s)", "wall, cpu, 2 thread(s)"],
        }
    )
    colours = {"relu": "C0", "tanh": "C1"}
    assert relative_speed(runs, "relu", colours, tmp_path / "one.png").exists()
    with pytest.raises(ValueError, match="timed alike"):
        relative_speed(runs[runs["task"] == "b"], "relu", colours, tmp_path / "none.png")


def test_a_run_resumed_from_a_checkpoint_without_cpu_time_reads_wall_time(tiny, tmp_path, monkeypatch):
    import harness.training.group as group

    class Killed(BaseException):  # stands for SIGKILL: harness.run neither records it nor removes the checkpoint
        pass

    real_save = group.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Killed

    config = tiny("trainer.checkpoint_every=5", "trainer.log_every=5")
    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(group, "save_checkpoint", save_then_die)
        run(config, tmp_path / "r")
    checkpoint = tmp_path / "r" / "checkpoint.pt"
    blob = load_checkpoint_file(checkpoint)
    del blob["state"]["train_cpu_time"]  # written before the CPU clock was kept
    write_checkpoint_file(checkpoint, blob)
    s = run(config, tmp_path / "r")
    assert s["status"] == "ok" and s["speed_clock"] == "wall" and s["train_cpu_time_s"] is None
    assert s["clock_samples_per_s"] == s["samples_per_s"]
