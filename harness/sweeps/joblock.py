"""One writer per job folder: a lock file that names its holder (host, pid, the pid's start time) and a heartbeat
(its mtime).

A lock is stale when its holder is a dead process on this host, or a live process that started at another time than
the holder did (its pid was reused), or when its heartbeat stopped STALE_S ago (a holder on another node that died
with its node). A lock file that cannot be read is stale too: locks are only ever put in place whole. A stale lock
is taken over; a live one means the job runs elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

LOCK = "job.lock"
BEAT_S = 2.0  # how often the holder refreshes the heartbeat and checks that its sweep is still there
STALE_S = 120.0  # generous: clocks of cluster nodes and file servers drift apart


class JobBusy(Exception):
    """The job folder is held by a live process; the message names it."""


def read_lock(job_dir: Path) -> dict | None:
    """The holder named in a job folder's lock, {} when it cannot be read (empty, garbage), None without a lock."""
    return read_holder(Path(job_dir) / LOCK)


def read_holder(path: Path) -> dict | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(data)
    except ValueError:  # not JSON, not UTF-8, or empty (a disk that filled up under an older writer)
        return {}
    return holder if isinstance(holder, dict) else {}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def process_start(pid: int) -> int | None:
    """When a process started (field 22 of /proc/PID/stat, in clock ticks since boot); None without /proc (macOS)
    or when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    after_name = stat.rpartition(")")[2].split()  # field 2, the name, may hold spaces and ')': fields 3.. follow it
    try:
        return int(after_name[22 - 3])
    except (IndexError, ValueError):
        return None


def holder_alive(holder: dict) -> bool:
    """Whether the holder, a process on this host, still runs: its pid is alive and, where the lock recorded its
    start time and /proc can tell, started at that time (not a later process that got the same pid)."""
    pid, started = holder["pid"], holder.get("start")
    if not pid_alive(pid):
        return False
    now = process_start(pid) if isinstance(started, int) else None
    return now is None or now == started


def lock_state(job_dir: Path) -> str | None:
    """'running' (a live holder), 'stale' (a dead or unreadable one) or None (no lock) for a job folder."""
    path = Path(job_dir) / LOCK
    holder = read_lock(job_dir)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    if holder is None:
        return None
    if not holder or earlier_attempt(holder):  # unreadable: a whole lock is linked into place, never written there
        return "stale"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return "running" if holder_alive(holder) else "stale"
    return "stale" if age > STALE_S else "running"


def earlier_attempt(holder: dict) -> bool:
    """The holder is this SLURM job before SLURM requeued it (same job id, another process, maybe another node):
    it was killed, and its lock is ours to take without waiting for its heartbeat to age."""
    job = os.environ.get("SLURM_JOB_ID")
    same_process = holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()
    return bool(job) and holder.get("slurm_job") == job and not same_process


def describe(holder: dict | None) -> str:
    holder = holder or {}
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"


_SWEEP: dict = {}  # in a pool's worker: "pid", its sweep's process; "held", the JobLocks it holds now


def sweep_process() -> int:
    """The process of this worker's sweep: its parent when it took its first job. From then on a watcher ends the
    worker when that process is gone, between jobs too: a pool (joblib's loky) keeps an idle worker alive, and hands
    it the jobs it queued before the sweep died. While a job runs, its lock's heartbeat ends it (and frees the lock)."""
    if "pid" not in _SWEEP:
        _SWEEP.update(pid=os.getppid(), held=set())
        threading.Thread(target=end_with_sweep, name="sweep-watch", daemon=True).start()
    return int(_SWEEP["pid"])


def end_with_sweep() -> None:
    while True:
        time.sleep(BEAT_S)
        if os.getppid() != _SWEEP["pid"] and not _SWEEP["held"]:  # a held lock's heartbeat frees it, then ends us
            os._exit(1)


class JobLock:
    """Hold a job folder while its job runs: `with JobLock(folder):`. Raises JobBusy if a live process holds it.

    watch_parent: the holder is a worker that must not outlive its sweep (joblib's): when its parent process dies,
    the heartbeat releases the lock and ends the worker at once; the job's last checkpoint stays for the resume.
    """

    def __init__(self, job_dir: Path, watch_parent: bool = False) -> None:
        self.path = Path(job_dir) / LOCK
        self.holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": process_start(os.getpid()),
            "token": uuid.uuid4().hex,
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
        }
        self.parent = sweep_process() if watch_parent else None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> JobLock:
        if self.parent is not None and os.getppid() != self.parent:  # a job queued before its sweep died: not run
            os._exit(1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.create():
            self.take_over()
        if self.parent is not None:
            _SWEEP["held"].add(self.path)
        self.thread = threading.Thread(target=self.beat, name="job-lock-heartbeat", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        self.release()
        _SWEEP.get("held", set()).discard(self.path)

    def create(self) -> bool:
        """Put the lock file with our name in it in place; False when one exists.

        Written to a file of our own first, then hard-linked into place (which fails if a lock exists): job.lock is
        whole or absent, never empty, even when the disk is full. Not .tmp: remove_leftovers must not take it.
        """
        mine = self.path.with_name(f".{LOCK}.{self.holder['token']}.new")
        try:
            with open(mine, "w") as f:
                json.dump(self.holder, f)
            os.link(mine, self.path)
        except FileExistsError:
            return False
        finally:
            mine.unlink(missing_ok=True)
        return True

    def take_over(self) -> None:
        """Replace a stale lock; raise JobBusy for a live one (or when another process took the stale one first)."""
        seen = read_lock(self.path.parent)
        if lock_state(self.path.parent) == "running":
            raise JobBusy(f"{self.path.parent.name} is running ({describe(seen)} holds {LOCK})")
        aside = self.path.with_name(f".{LOCK}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, aside)  # only one of several takers can move a given file
        except FileNotFoundError:
            pass
        else:
            if read_holder(aside) != seen:  # we moved a fresh lock that a faster taker had just made: put it back
                os.rename(aside, self.path)
                raise JobBusy(f"{self.path.parent.name} was just taken by {describe(read_lock(self.path.parent))}")
            aside.unlink(missing_ok=True)
        if not self.create():
            raise JobBusy(f"{self.path.parent.name} was just taken by {describe(read_lock(self.path.parent))}")

    def ours(self) -> bool:
        return read_lock(self.path.parent) == self.holder

    def release(self) -> None:
        if self.ours():
            self.path.unlink(missing_ok=True)

    def beat(self) -> None:
        while not self.stop.wait(BEAT_S):
            if self.parent is not None and os.getppid() != self.parent:  # the sweep is gone: so is this worker
                self.release()
                os._exit(1)
            try:
                os.utime(self.path)
            except OSError:  # the folder went away or is read-only for a moment: the next beat tries again
                pass
