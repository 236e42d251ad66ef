"""The speed a run records: trainer.threads=auto, and a clock that time spent elsewhere does not move."""

from __future__ import annotations

import time

import pytest
import torch

from harness import run
from harness.records.results import load_checkpoint_file, write_checkpoint_file
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


def test_the_cost_probe_times_a_step_by_the_clock_nobody_else_moves(tmp_path, restore_threads):
    """The report's speeds come from the cost probe alone (docs/cost.md). On one CPU thread its rounds read the
    thread's CPU time: a setting whose steps also sleep (as a process does while another holds the core) times as
    its twin does, while its wall time grows by the sleep."""
    from harness.training import cost
    from tests.test_cost_probe import SMALL, entry

    settings = [cost.build_setting(entry(SMALL), tmp_path / name, 1, {}) for name in ("calm", "sleepy")]
    calm, sleepy = settings
    awake = sleepy.train_step
    sleepy.train_step = lambda _=None: (time.sleep(SLEEP), awake())[1]  # type: ignore[method-assign]
    sleepy.train_step.__name__ = "train_step"
    began = time.perf_counter()
    cost.run_rounds(settings, 3)
    assert time.perf_counter() - began > 3 * sleepy.steps_per_round * SLEEP  # the sleeps happened
    calm_s, sleepy_s = sorted(calm.step_s)[1], sorted(sleepy.step_s)[1]
    assert sleepy_s < calm_s + SLEEP / 2  # not moved by the sleep (4 ms a step, several times a step's cost)


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
