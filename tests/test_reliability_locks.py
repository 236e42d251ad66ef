"""Locks that expire: a lock whose pid now names another process (a reused pid) is stale, a lock file that cannot be
read (0 bytes, left by a full disk) is stale rather than blocking, and making a lock never leaves an empty one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.sweeps import joblock, status, sweep
from harness.sweeps.joblock import LOCK, JobLock, lock_state, process_start
from tests.test_reliability_sweeps import TINY, folder, states, sweep_here

ROOT = Path(__file__).resolve().parents[1]

THREE_HOURS = 3 * 3600


def write_lock(job: Path, holder: dict, age_s: float = 0.0) -> None:
    (job / LOCK).write_text(json.dumps(holder))
    then = time.time() - age_s
    os.utime(job / LOCK, (then, then))


@pytest.fixture
def unrelated(tmp_path):
    """A live process that holds no lock: a `sleep` started now, under a name with spaces and parentheses (its
    /proc/PID/stat name field then splits into several words)."""
    program = tmp_path / "a) b (c"
    shutil.copy(shutil.which("sleep"), program)
    proc = subprocess.Popen([str(program), "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_process_start_time_is_read_after_the_last_parenthesis(unrelated):
    later = subprocess.Popen(["sleep", "300"])
    try:
        started = process_start(unrelated.pid)
        assert process_start(os.getpid()) <= started <= process_start(later.pid)  # in the order they started
    finally:
        later.kill()
        later.wait()
    assert process_start(unrelated.pid) == started  # the same process, the same start
    assert process_start(2**22 + 1) is None  # no such process (above Linux's largest pid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_lock_whose_pid_names_another_process_is_stale_and_a_resume_runs_the_job(
    capsys, tmp_path, unrelated, monkeypatch
):
    out = tmp_path / "sweep"
    assert sweep_here(capsys, "seed=0,1", *TINY, f"hydra.sweep.dir={out}")[0] == 0
    job = folder(out, 1)
    (job / "summary.json").unlink()
    # Its holder died hours ago and the pid went to an unrelated process, which started later than the holder did.
    holder = {
        "host": socket.gethostname(),
        "pid": unrelated.pid,
        "start": process_start(unrelated.pid) - 100,
        "token": "t",
    }
    write_lock(job, holder, age_s=THREE_HOURS)
    assert lock_state(job) == "stale"
    write_lock(job, {**holder, "start": process_start(unrelated.pid)}, age_s=THREE_HOURS)
    assert lock_state(job) == "running"  # the holder itself, alive: today's rule
    write_lock(job, {k: v for k, v in holder.items() if k != "start"}, age_s=THREE_HOURS)
    assert lock_state(job) == "running"  # written before start times were recorded: today's rule
    with monkeypatch.context() as no_proc:  # macOS: no /proc, today's rule
        no_proc.setattr(joblock, "process_start", lambda pid: None)
        write_lock(job, holder, age_s=THREE_HOURS)
        assert lock_state(job) == "running"

    write_lock(job, holder, age_s=THREE_HOURS)
    code, text = sweep_here(capsys, "seed=0,1", *TINY, "resume=true", f"hydra.sweep.dir={out}")
    assert code == 0, text[-2000:]
    assert "1 finished earlier (skipped), 1 to run" in text and states(out)[job.name] == "ok"
    assert not (job / LOCK).exists()


def test_an_empty_or_garbled_lock_file_is_stale_and_a_resume_runs_the_job(capsys, tmp_path):
    out = tmp_path / "sweep"
    assert sweep_here(capsys, "seed=0,1", *TINY, f"hydra.sweep.dir={out}")[0] == 0
    job = folder(out, 1)
    (job / "summary.json").unlink()
    for content in (b"\xff\xfe{not json", b""):  # garbage, then what a full disk left; heartbeats fresh
        (job / LOCK).write_bytes(content)
        assert joblock.read_lock(job) == {} and lock_state(job) == "stale"
    code, text = sweep_here(capsys, "seed=0,1", *TINY, "resume=true", f"hydra.sweep.dir={out}")
    assert code == 0, text[-2000:]
    assert states(out)[job.name] == "ok" and not (job / LOCK).exists()


def test_a_lock_whose_write_fails_is_not_left_behind(tmp_path, monkeypatch):
    job = tmp_path / "job"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(joblock.json, "dump", disk_full)
    with pytest.raises(OSError, match="No space left"):
        JobLock(job).__enter__()
    assert list(job.iterdir()) == []  # neither an empty job.lock nor the file it was written to
    monkeypatch.undo()
    with JobLock(job):  # the folder is free: the next attempt takes it
        assert joblock.read_lock(job)["pid"] == os.getpid()
        assert joblock.read_lock(job)["start"] == process_start(os.getpid())
    assert list(job.iterdir()) == []


def test_a_lock_is_put_in_place_whole(tmp_path, monkeypatch):
    """Another process reading job.lock while it is made sees nothing or all of it, never an empty file."""
    job = tmp_path / "job"
    seen = []
    real_dump = json.dump

    def dump_and_look(obj, f, **kwargs):
        real_dump(obj, f, **kwargs)
        f.flush()
        seen.append(joblock.read_lock(job))  # what a reader sees between the write and the lock being in place

    monkeypatch.setattr(joblock.json, "dump", dump_and_look)
    with JobLock(job) as lock:
        assert seen == [None] and joblock.read_lock(job) == lock.holder


def test_the_status_of_a_sweep_with_an_empty_lock_says_stale(tmp_path, capsys):
    job = tmp_path / "sweep" / "job"
    job.mkdir(parents=True)
    sweep.write_manifest(tmp_path / "sweep", [{"dir": "job", "overrides": [], "config_hash": "x"}], "run.py -m")
    (job / LOCK).write_bytes(b"")
    assert status.main([str(tmp_path / "sweep")]) == 0
    assert "stale job.lock: its holder (pid ? on ?) stopped; resume reruns it" in capsys.readouterr().out


WORKER = """
import os, sys, time
from harness.sweeps import joblock
joblock.sweep_process()  # as a pool's worker does at its first job
print(os.getpid(), flush=True)
time.sleep(60)  # idle between jobs, as loky keeps it
"""


def test_an_idle_pool_worker_ends_soon_after_its_sweep_is_gone(tmp_path):
    """loky keeps an idle worker alive after its parent (the sweep) died, and hands it the jobs it had queued: the
    worker's watcher ends it within a heartbeat or two, holding no lock."""
    sweep = subprocess.Popen(  # the sweep: it starts the worker, prints its pid and waits
        [sys.executable, "-c", f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {WORKER!r}]); "
         "import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    worker = int(sweep.stdout.readline())
    sweep.kill()
    sweep.wait()
    deadline = time.time() + 4 * joblock.BEAT_S
    while joblock.pid_alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    assert not joblock.pid_alive(worker)
