"""Where a sweep stands, for `harness-status DIR` (`python -m harness.sweeps.status DIR`): its jobs (what the launcher
runs: a group of runs is one job) and its runs, running, pending, finished or failed, and an estimate of the time
left from the running jobs' logged steps and the finished jobs' times (docs/sweep_status.md)."""

from __future__ import annotations

import datetime
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.common.text import PATH_LIMIT, SCREEN_LIMIT, clean
from harness.records.results import CHECKPOINT, checkpoint_problem
from harness.sweeps.grouping import GROUPS, MEMBERS, read_members
from harness.sweeps.joblock import describe, lock_state, read_lock
from harness.sweeps.jobtable import format_table
from harness.sweeps.sweep import MANIFEST, crash_note, job_state, read_manifest
from harness.training.console import PROGRESS_RE

# job_state's states, by what is left to do: a corrupt run is redone by the next resume, like one never started
PHASES = {
    "ok": "finished",
    "diverged": "finished",
    "failed": "failed",
    "running": "running",
    "unfinished": "pending",
    "corrupt": "pending",
}


def pending_note(job_dir: Path) -> str:
    """Why a job without summary.json and without a live lock is not running, and what a resume does."""
    job_dir, crash = Path(job_dir), crash_note(job_dir)
    if lock_state(job_dir) == "stale":
        note = f"stale job.lock: its holder ({describe(read_lock(job_dir))}) stopped; resume reruns it"
    elif (job_dir / CHECKPOINT).exists():
        problem = checkpoint_problem(job_dir / CHECKPOINT)
        note = (
            f"stopped; its {CHECKPOINT} {problem}: resume sets it aside and starts over"
            if problem
            else "stopped; resume continues from its checkpoint"
        )
    else:
        note = "not started" if not crash else "stopped"
    return "; ".join(n for n in (note, crash, set_aside_note(job_dir)) if n)


def set_aside_note(job_dir: Path) -> str | None:
    """The checkpoints an attempt of this job set aside (damaged, or of another configuration), kept for a look."""
    kept = sorted(p.name for p in job_dir.glob(f"{CHECKPOINT}.corrupt-*"))
    if not kept:
        return None
    earlier = f" (and {len(kept) - 1} earlier)" if len(kept) > 1 else ""
    return f"{kept[-1]}{earlier} set aside: that attempt started over (its log says why)"


@dataclass
class Job:
    """One job of the launcher: a group (hydra.sweeper.group_size) of runs, or a run alone."""

    runs: list[str]  # its members' folders, as the manifest names them
    folder: Path  # where its log file is: .groups/<id>, or the run's own folder
    group: str | None = None


@dataclass
class Progress:
    """A running job's last progress line (harness.training.console.PROGRESS) in its log file."""

    step: int
    steps: int
    rate: float  # steps per second of this attempt, evaluations included
    age_s: float  # how long ago the line was written (the log file's mtime)

    def left_s(self) -> float:
        left = (self.steps - self.step) / self.rate
        return left - self.age_s if self.age_s < left else left  # a stale line (an earlier attempt): its rest


def job_rows(sweep_dir: Path) -> list[tuple[str, str, dict | None]]:
    """(state, job folder, summary) of every job in the manifest; a job not finished and not running is pending."""
    rows = []
    for job in read_manifest(sweep_dir)["jobs"]:  # harness.records.schema.Unreadable if sweep.json is not the harness's
        job_dir = Path(sweep_dir) / job["dir"]
        state, summary = job_state(job_dir)
        if state == "unfinished":
            state, summary = "pending", {"note": pending_note(job_dir)}
        rows.append((state, job["dir"], summary))
    return rows


def launcher_jobs(sweep_dir: Path, runs: list[str]) -> list[Job]:
    """The runs as the launcher's jobs: the members of each group the sweeper wrote (<sweep>/.groups/<id>/
    group.json; a run listed by several, after a resume regrouped it, is the newest group's), the rest alone."""
    owner: dict[str, Path] = {}
    for path in sorted(Path(sweep_dir).glob(f"{GROUPS}/*/{MEMBERS}"), key=modified):
        try:
            names = [m["name"] for m in read_members(path.parent)["members"]]
        except (OSError, ValueError, KeyError, TypeError):  # half-written or hand-edited: its runs count alone
            continue
        owner |= {name: path.parent for name in names}
    jobs: dict[str, Job] = {}
    for run in runs:
        folder = owner.get(run)
        if folder is None:
            jobs[run] = Job([run], Path(sweep_dir) / run)
        else:
            jobs.setdefault(str(folder), Job([], folder, folder.name)).runs.append(run)
    return list(jobs.values())


def modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def read_progress(folder: Path) -> Progress | None:
    """The last progress line in the newest log file of a job's folder (Hydra's job log, run.log); None without
    one (no step logged yet, or hydra/job_logging writes no file)."""
    logs = sorted(Path(folder).glob("*.log"), key=modified)
    if not logs:
        return None
    try:
        with open(logs[-1], "rb") as f:
            f.seek(max(f.seek(0, 2) - 65536, 0))  # the tail is enough: one line per log step
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    found = PROGRESS_RE.findall(tail)
    if not found:
        return None
    step, steps, seconds, first = int(found[-1][0]), int(found[-1][1]), float(found[-1][2]), int(found[-1][3])
    if step <= first or seconds <= 0:
        return None
    return Progress(step, steps, (step - first) / seconds, max(time.time() - modified(logs[-1]), 0.0))


def job_seconds(summary: dict) -> float | None:
    """A finished job's wall time, started_at to finished_at (data loading and probes included)."""
    try:
        start, end = (datetime.datetime.fromisoformat(summary[k]) for k in ("started_at", "finished_at"))
    except (KeyError, TypeError, ValueError):
        return summary.get("loop_time_s")
    seconds = (end - start).total_seconds()
    return seconds if seconds >= 0 else None  # a clock set back, or a hand-edited record: no estimate from it


def job_phase(phases: list[str]) -> str:
    """A group job's phase from its members': running while any runs, pending while any is left to do (a resume
    runs them), failed if any failed, else finished."""
    for phase in ("running", "pending", "failed"):
        if phase in phases:
            return phase
    return "finished"


def time_left(phases: list[str], finished_s: list[float], progress: list[Progress]) -> str:
    """Estimate the time left from the finished jobs' wall times and the running jobs' step rates.

    A job's time is the mean over the finished jobs' (started_at to finished_at) and the running jobs' projected
    times (all their steps at the rate of their last progress line); a running job has left its steps to go at its
    rate (or half a job's time, before its first logged step); each pending job takes a job's time; the jobs
    running now are the parallelism (one at a time if none is). phases: one per launcher job."""
    projected = [p.steps / p.rate for p in progress]
    if "running" not in phases and "pending" not in phases:
        return "none: every job has ended"
    if not finished_s and not projected:
        return "none yet: no job has finished and no running job has logged a step"
    mean = (sum(finished_s) + sum(projected)) / (len(finished_s) + len(projected))
    running, pending = phases.count("running"), phases.count("pending")
    work = sum(p.left_s() for p in progress) + (running - len(progress)) * mean / 2 + pending * mean
    how = f"{running} at a time" if running else "one at a time, as none is running now"
    source = []
    if progress:
        rate = sum(p.rate for p in progress) / len(progress)
        source.append(f"{len(progress)} running from their steps ({rate:,.1f} steps/s)")
    if finished_s:
        source.append(f"{len(finished_s)} finished")
    return (
        f"about {format_duration(work / max(running, 1))}; a job {format_duration(mean)} "
        f"(mean of {' and '.join(source)}), {how}"
    )


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def counted(phases: list[str]) -> str:
    return ", ".join(f"{phases.count(p)} {p}" for p in ("finished", "running", "pending", "failed"))


def group_sizes(jobs: list[Job]) -> str:
    """'3 groups of 4 members, 2 runs alone' (sizes as a range when they differ)."""
    sizes = sorted(len(j.runs) for j in jobs if j.group is not None)
    alone = sum(j.group is None for j in jobs)
    if not sizes:
        return f"{alone} run{'s' * (alone != 1)} alone"
    of = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]} to {sizes[-1]}"
    return f"{len(sizes)} group{'s' * (len(sizes) != 1)} of {of} members, {alone} run{'s' * (alone != 1)} alone"


def status_report(sweep_dir: Path) -> str:
    """The header (the sweep, its jobs and its runs counted by phase, the time left) and the table of every run."""
    rows = job_rows(sweep_dir)
    by_run = {name: (state, summary) for state, name, summary in rows}
    jobs = launcher_jobs(sweep_dir, list(by_run))
    job_phases, finished_s, progress = [], [], []
    for job in jobs:
        phase = job_phase([PHASES.get(by_run[r][0], by_run[r][0]) for r in job.runs])
        job_phases.append(phase)
        states = [by_run[r] for r in job.runs]
        if phase == "finished" and (t := job_seconds(states[0][1] or {})) is not None:  # a group's runs: one time
            finished_s.append(t)
        if phase == "running" and (p := read_progress(job.folder)) is not None:
            progress.append(p)
            for r in job.runs:
                if by_run[r][0] == "running":
                    by_run[r] = ("running", {"note": f"step {p.step:,} of {p.steps:,} (its job.lock is live)"})
    run_phases = [PHASES.get(state, state) for state, _, _ in rows]
    lines = [
        f"sweep: {clean(sweep_dir, PATH_LIMIT)}",  # a path to copy: whole
        f"{len(jobs)} jobs ({group_sizes(jobs)}): {counted(job_phases)}",
        f"{len(rows)} runs: {counted(run_phases)}",
        f"time left: {time_left(job_phases, finished_s, progress)}",
    ]
    table = format_table([(by_run[name][0], name, by_run[name][1]) for _, name, _ in rows], wrap=True)
    return "\n".join([clean(line, SCREEN_LIMIT) if i else line for i, line in enumerate(lines)] + [table])


def main(argv: list[str] | None = None) -> int:
    """`harness-status DIR` (or `python -m harness.sweeps.status DIR`): where a running or stopped sweep stands, e.g. on
    a cluster's login node."""
    args = sys.argv[1:] if argv is None else argv
    name = Path(sys.argv[0]).name
    usage = f"usage: {name if name.startswith('harness-') else 'python -m harness.sweeps.status'} SWEEP_DIR"
    if args in (["-h"], ["--help"]):
        print(
            f"{usage}\n\nWhere a sweep stands: each job running, pending, finished or failed, and the time left."
            "\nSWEEP_DIR is the sweep's folder (it holds sweep.json)."
        )
        return 0
    if len(args) != 1 or not (Path(args[0]) / MANIFEST).exists():
        print(f"{usage}  (a folder with a sweep.json)", file=sys.stderr)
        return 2
    try:
        print(status_report(Path(args[0])))
    except ValueError as exc:  # an unreadable sweep.json (harness.records.schema.Unreadable): one line
        print(f"error: {clean(Path(args[0]) / MANIFEST, PATH_LIMIT)} is unreadable: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
