"""`python -m harness.sweeps.status DIR`: running, pending, finished and failed jobs, and the time left, from job
folders written here by hand (a live lock, a stale lock, a summary, nothing)."""

from __future__ import annotations

import json
import os
import socket
import time

from harness.records.results import write_summary
from harness.sweeps import status
from harness.sweeps.joblock import LOCK, STALE_S
from harness.sweeps.status import status_report, time_left

JOBS = ["done_a", "done_b", "failed", "live", "live_elsewhere", "stale", "crashed", "never"]


def finished(folder, seconds: int, status: str = "ok") -> None:
    folder.mkdir(parents=True)
    write_summary(
        folder,
        {
            "schema_version": 1,
            "status": status,
            "config_hash": "abc",
            "test_acc": 0.9,
            "train_time_s": seconds - 1,
            "started_at": "2026-12-01T10:00:00+00:00",
            "finished_at": f"2026-12-01T10:{seconds // 60:02d}:{seconds % 60:02d}+00:00",
        },
    )


def lock(folder, host: str, pid: int, age_s: float = 0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps({"host": host, "pid": pid, "token": "t"}))
    then = time.time() - age_s
    os.utime(folder / LOCK, (then, then))


def make_sweep(root):
    (root).mkdir()
    (root / "sweep.json").write_text(json.dumps({"command": "run.py -m", "jobs": [{"dir": d} for d in JOBS]}))
    finished(root / "done_a", 60)
    finished(root / "done_b", 180, "diverged")  # diverged: a result, it counts as finished
    (root / "failed").mkdir()
    write_summary(
        root / "failed",
        {"schema_version": 1, "status": "failed", "error": "Traceback\nRuntimeError: boom", "config_hash": "x"},
    )
    lock(root / "live", socket.gethostname(), os.getpid())  # this process: alive
    lock(root / "live_elsewhere", "node-17", 12345, age_s=5)  # another node, heartbeat fresh
    lock(root / "stale", "node-18", 12345, age_s=STALE_S + 60)  # another node, heartbeat stopped
    (root / "crashed").mkdir()
    (root / "crashed" / "fault.log").write_text("Fatal Python error: Segmentation fault\n")
    return root


def test_status_tells_running_pending_finished_and_failed_apart(tmp_path):
    report = status_report(make_sweep(tmp_path / "sweep")).splitlines()
    by_job = {line.split()[3]: line for line in report[5:-1]}
    assert {job: line.split()[0] for job, line in by_job.items()} == {
        "done_a": "ok",
        "done_b": "diverged",
        "failed": "failed",
        "live": "running",
        "live_elsewhere": "running",
        "stale": "pending",
        "crashed": "pending",
        "never": "pending",
    }
    assert "stale job.lock: its holder (pid 12345 on node-18) stopped" in by_job["stale"]
    assert "Segmentation fault" in by_job["crashed"] and by_job["never"].endswith("not started")
    # mean of 60 s and 180 s = 120 s; 3 pending + 2 running at half = 4 jobs of 120 s, 2 at a time: 240 s
    assert report[:4] == [
        f"sweep: {tmp_path / 'sweep'}",
        "8 jobs (8 runs alone): 2 finished, 2 running, 3 pending, 1 failed",
        "8 runs: 2 finished, 2 running, 3 pending, 1 failed",
        "time left: about 4 min; a job 2 min (mean of 2 finished), 2 at a time",
    ]


def test_time_left_without_a_running_job_or_a_finished_one():
    assert (
        time_left(["pending"] * 3, [100.0], [])
        == "about 5 min; a job 100 s (mean of 1 finished), one at a time, as none is running now"
    )
    assert time_left(["pending", "running"], [], []) == (
        "none yet: no job has finished and no running job has logged a step"
    )


def test_the_command_prints_the_status_and_refuses_a_folder_without_a_manifest(tmp_path, capsys):
    root = make_sweep(tmp_path / "sweep")
    assert status.main([str(root)]) == 0
    assert "8 runs: 2 finished, 2 running" in capsys.readouterr().out
    assert status.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("usage: python -m harness.sweeps.status SWEEP_DIR")
