"""Sweep bookkeeping without Hydra: which jobs are finished, the sweep manifest, progress, and the end table."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import IO

from harness.common.outputs import refuse_symlink
from harness.records.results import (
    METRICS,
    SUMMARY,
    atomic_write,
    damaged_file,
    new_summary,
    read_summary,
    set_aside_file,
    write_record,
)
from harness.records.schema import read_manifest_file
from harness.setup.config import Config, config_hash
from harness.sweeps.joblock import JobBusy, JobLock, lock_state
from harness.sweeps.jobtable import format_table  # noqa: F401  the end-of-sweep table, long imported from here

MANIFEST = "sweep.json"
FAULT_LOG = "fault.log"  # Python's last words when a job's process dies of a signal (os.abort, a segfault)
FINISHED = ("ok", "diverged")  # diverged runs are results: resume keeps them


def check_job(config: Config) -> None:
    """Every check a job would fail before training (harness.run's own), minus the device (a login node may lack
    the GPU)."""
    from harness.setup.resolve import resolve  # torch loads here, not at import time

    resolve(config, device=False)


def job_state(job_dir: Path) -> tuple[str, dict | None]:
    """(state, summary) of a job folder; state is ok, diverged, failed, corrupt, running or unfinished."""
    path = Path(job_dir) / SUMMARY
    if not path.exists():
        return ("running" if lock_state(job_dir) == "running" else "unfinished"), None
    try:
        summary = read_summary(job_dir)
    except ValueError as exc:  # truncated, half-written or hand-edited (harness.records.schema): the job did not finish
        return "corrupt", {"note": f"unreadable {SUMMARY}: {exc}"}
    status = summary["status"]
    damage = damaged_file(job_dir, summary) if status in FINISHED else None
    if damage:  # a finished run whose metrics were truncated or overwritten afterwards is not finished any more
        return "corrupt", {"note": f"{damage[0]} damaged ({damage[1]})"}
    return status, summary


def finished_runs(sweep_dir: Path) -> dict[str, Path]:
    """config_hash -> folder of every finished (ok or diverged) run under sweep_dir."""
    found: dict[str, Path] = {}
    for path in sorted(Path(sweep_dir).rglob(SUMMARY)):
        if any(part.startswith(".") for part in path.relative_to(sweep_dir).parts):
            continue  # .submitit and other tool folders
        state, summary = job_state(path.parent)
        if state in FINISHED and summary is not None:  # a finished state always comes with its summary
            found.setdefault(summary["config_hash"], path.parent)
    return found


def set_aside(job_dir: Path) -> Path | None:
    """Move a damaged run's summary.json and metrics.csv out of the way (kept, not deleted): the job reruns.

    Returns the summary's new path; None when it is gone already (another sweep of the folder set it aside first).
    """
    try:
        target = set_aside_file(Path(job_dir) / SUMMARY)
    except FileNotFoundError:
        return None
    if (Path(job_dir) / METRICS).exists():
        set_aside_file(Path(job_dir) / METRICS)
    return target


@contextmanager
def fault_log(job_dir: Path) -> Iterator[None]:
    """Have Python write its traceback to fault.log if the process dies of a signal; remove it if nothing did."""
    path = Path(job_dir) / FAULT_LOG
    refuse_symlink(path)  # open() would write through it
    was_enabled = faulthandler.is_enabled()
    with open(path, "w") as f:
        faulthandler.enable(file=f)
        try:
            yield
        finally:
            faulthandler.disable()
            if was_enabled:
                faulthandler.enable(file=sys.stderr)
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except FileNotFoundError:  # its job's folder was deleted meanwhile (a group's member fails alone)
        pass


def crash_note(job_dir: Path) -> str | None:
    """How the process of an unfinished, unlocked job died, from its fault.log; None if it was not a crash."""
    job_dir = Path(job_dir)
    if (job_dir / SUMMARY).exists() or lock_state(job_dir) == "running":
        return None
    try:
        lines = [line.strip() for line in (job_dir / FAULT_LOG).read_text(errors="replace").splitlines()]
    except OSError:
        return None
    return next((line for line in lines if line), None)


def run_locked(
    config: Config, run_dir: Path, overrides: list[str], watch_parent: bool = False, cpu_threads: int | None = None
) -> dict:
    """Run one job as the only writer of its folder (JobBusy if a live process holds it); cpu_threads: the
    launcher's share of the cores (harness.training.group.build_group).

    A job whose code raises anything (SystemExit and KeyboardInterrupt too) is a failed job: the sweep goes on; a
    Ctrl-C sent to the sweep stops it (guarded).
    """
    run_dir = Path(run_dir)
    with JobLock(run_dir, watch_parent), fault_log(run_dir):
        return finished_meanwhile(config, run_dir) or guarded(run_one, [config], [run_dir], [overrides], cpu_threads)[0]


def finished_meanwhile(config: Config, run_dir: Path) -> dict | None:
    """Under the job's lock: clear a killed attempt's leftovers; the summary if another sweep of this folder
    finished this configuration after ours planned."""
    remove_leftovers(run_dir)  # under the lock: no live writer owns them
    state, summary = job_state(run_dir)
    if state in FINISHED and summary is not None and summary["config_hash"] == config_hash(config):
        return summary  # a finished state always comes with its summary
    return None


def run_one(
    configs: list[Config], run_dirs: list[Path], overrides: list[list[str]], cpu_threads: int | None = None
) -> list[dict]:
    from harness.training.train import run  # torch loads here, not at import time

    return [run(configs[0], run_dirs[0], overrides[0], cpu_threads=cpu_threads)]


def guarded(
    train: Callable[..., list[dict]],
    configs: list[Config],
    run_dirs: list[Path],
    overrides: list[list[str]],
    *args: object,
) -> list[dict]:
    """train(...) of one run or a group; anything it raises is recorded as each of its runs failed (the job's own
    sys.exit and KeyboardInterrupt too), except a Ctrl-C sent to this process, which stops the sweep, and
    submitit's requeue exit."""
    with ctrl_c_noted() as ctrl_c:
        try:
            return train(configs, run_dirs, overrides, *args)
        except BaseException as exc:  # data found missing only now, a bug outside the loop, a job's sys.exit
            if ctrl_c and not isinstance(exc, KeyboardInterrupt):
                raise KeyboardInterrupt from exc  # the user's Ctrl-C, whatever the job's code made of it
            if ctrl_c or requeue_exit(exc):
                raise
            return [failed_summary(c, d, o, traceback.format_exc()) for c, d, o in zip(configs, run_dirs, overrides)]


@contextmanager
def ctrl_c_noted() -> Iterator[list[int]]:
    """Note each Ctrl-C (SIGINT) received in the block in the list it yields, then raise KeyboardInterrupt as Python
    does: one with nothing noted came from the job's own code. Nothing is installed off the main thread (signals
    reach only it) or where SIGINT is not Python's (ignored, or it kills)."""
    noted: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def run_group_locked(
    configs: list[Config],
    run_dirs: list[Path],
    overrides: list[list[str]],
    gid: str,
    hydra_files: list[dict],
    watch_parent: bool = False,
    cpu_threads: int | None = None,
) -> list[dict]:
    """Run a group job's members (harness.training.train.run_group), each under its own job lock as a single run is;
    cpu_threads: the launcher's share of the cores, as for run_locked.

    A member held by a live process is left alone and one finished meanwhile is kept; the others train, as one
    group, or as a single run when one is left. Each member gets its .hydra files as Hydra writes a job's.
    """
    with ExitStack() as stack:
        todo, done = [], []
        for config, run_dir, over, files in zip(configs, map(Path, run_dirs), overrides, hydra_files):
            try:
                stack.enter_context(JobLock(run_dir, watch_parent))
            except JobBusy:
                continue
            kept = finished_meanwhile(config, run_dir)
            if kept:
                done.append(kept)
                continue
            write_hydra_files(run_dir, files)
            todo.append((config, run_dir, over))
        if not todo:
            return done
        stack.enter_context(fault_logs([d for _, d, _ in todo]))
        configs, dirs, overrides = map(list, zip(*todo))
        if len(todo) == 1:  # one left: a single run (its summary names no group)
            return done + guarded(run_one, configs, dirs, overrides, cpu_threads)
        return done + guarded(run_members, configs, dirs, overrides, gid, cpu_threads)


def run_members(
    configs: list[Config], run_dirs: list[Path], overrides: list[list[str]], gid: str, cpu_threads: int | None
) -> list[dict]:
    from harness.training.train import run_group

    return run_group(configs, run_dirs, overrides, gid, cpu_threads=cpu_threads)


def write_hydra_files(run_dir: Path, files: dict[str, str]) -> None:
    """The member's .hydra/config.yaml and overrides.yaml: the texts Hydra writes for its one-job twin."""
    folder = Path(run_dir) / ".hydra"
    refuse_symlink(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write(folder / name, writing(text))


def writing(text: str) -> Callable[[IO[str]], int]:
    """atomic_write's write(f) that puts text in f."""
    return lambda f: f.write(text)


@contextmanager
def fault_logs(job_dirs: list[Path]) -> Iterator[None]:
    """fault_log for several job folders of one process: one file, hard-linked into each, so a crash is recorded
    in every member's folder (crash_note), and nothing is left when none happened."""
    first, rest = job_dirs[0], job_dirs[1:]
    with fault_log(first):
        for d in rest:
            (d / FAULT_LOG).unlink(missing_ok=True)
            os.link(first / FAULT_LOG, d / FAULT_LOG)
        try:
            yield
        finally:
            if (first / FAULT_LOG).stat().st_size == 0:
                for d in rest:
                    (d / FAULT_LOG).unlink(missing_ok=True)


def requeue_exit(exc: BaseException) -> bool:
    """submitit ends a job it has just requeued (time limit, preemption) with sys.exit from its signal handler:
    that job is not over, and must not be recorded as failed."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return isinstance(exc, SystemExit) and tb is not None and "submitit" in Path(tb.tb_frame.f_code.co_filename).parts


def remove_leftovers(job_dir: Path) -> list[Path]:
    """Delete the temporary files a killed attempt left half-written (the files they were to replace are whole)."""
    leftovers = list(Path(job_dir).glob(".*.tmp")) + list(Path(job_dir).glob("checkpoint.tmp"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def failed_summary(config: Config, run_dir: Path, overrides: list[str], error: str) -> dict:
    """Record a job that failed outside the training loop (data missing, a bug) like any failed run."""
    summary = new_summary(config, run_dir, overrides) | {"error": error}
    summary["finished_at"] = summary["started_at"]
    write_record(run_dir, summary)
    return summary


def write_manifest(sweep_dir: Path, jobs: list[dict], command: str) -> None:
    """sweep.json: every job's folder and overrides, so that running jobs can report progress."""
    text = json.dumps({"command": command, "jobs": jobs}, indent=2)
    atomic_write(Path(sweep_dir) / MANIFEST, lambda f: f.write(text + "\n"))


def read_manifest(sweep_dir: Path) -> dict:
    """The sweep's sweep.json, checked by the validated reader; harness.records.schema.Unreadable (one line)
    otherwise."""
    return read_manifest_file(Path(sweep_dir) / MANIFEST)


def extend_manifest(sweep_dir: Path, jobs: list[dict], command: str) -> None:
    """Write sweep.json with these jobs added to those it lists already (a resume with more seeds adds them).

    An unreadable sweep.json is replaced by this sweep's jobs (their folders, and the others', stay on disk)."""
    try:
        earlier = read_manifest(sweep_dir)["jobs"]
    except ValueError:
        earlier = []
    dirs = {job["dir"] for job in jobs}
    write_manifest(sweep_dir, [job for job in earlier if job["dir"] not in dirs] + jobs, command)


def progress(sweep_dir: Path) -> tuple[int, int]:
    """(jobs with a summary.json, jobs in the sweep), from the manifest; (0, 0) without a readable one."""
    try:
        jobs = read_manifest(sweep_dir)["jobs"]
    except ValueError:
        return 0, 0
    done = sum((Path(sweep_dir) / job["dir"] / SUMMARY).exists() for job in jobs)
    return done, len(jobs)
