"""Where a sweep stands, for `harness-status DIR` (`python -m harness.sweeps.status DIR`): running, pending, finished
and failed jobs, and an estimate of the time left from the jobs that finished (docs/sweep_status.md)."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from harness.common.text import PATH_LIMIT, clean
from harness.records.results import CHECKPOINT, checkpoint_problem
from harness.sweeps.joblock import describe, lock_state, read_lock
from harness.sweeps.jobtable import format_table
from harness.sweeps.sweep import FINISHED, MANIFEST, crash_note, job_state, read_manifest

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


def job_seconds(summary: dict) -> float | None:
    """A finished job's wall time, started_at to finished_at (data loading and probes included)."""
    try:
        start, end = (datetime.datetime.fromisoformat(summary[k]) for k in ("started_at", "finished_at"))
    except (KeyError, TypeError, ValueError):
        return summary.get("loop_time_s")
    seconds = (end - start).total_seconds()
    return seconds if seconds >= 0 else None  # a clock set back, or a hand-edited record: no estimate from it


def time_left(phases: list[str], seconds: list[float]) -> str:
    """Estimate: each pending job takes the mean of the finished jobs' times, each running one half of it (on
    average it is half done); the jobs running now are the parallelism (one at a time if none is)."""
    if not seconds:
        return "no finished job yet to estimate the time left from"
    mean = sum(seconds) / len(seconds)
    running, pending = phases.count("running"), phases.count("pending")
    left = (pending + running / 2) * mean / max(running, 1)
    how = f"{running} at a time" if running else "one at a time, as none is running now"
    return (
        f"about {format_duration(left)} left (mean {format_duration(mean)} per job over {len(seconds)} finished, {how})"
    )


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def status_report(sweep_dir: Path) -> str:
    """The header (counts by phase, time left) and the table of every job."""
    rows = job_rows(sweep_dir)
    phases = [PHASES.get(state, state) for state, _, _ in rows]
    counts = ", ".join(f"{phases.count(p)} {p}" for p in ("running", "pending", "failed"))
    seconds = [t for (state, _, s) in rows if state in FINISHED and s is not None and (t := job_seconds(s)) is not None]
    header = (
        f"{clean(sweep_dir, PATH_LIMIT)}: {phases.count('finished')}/{len(rows)} jobs finished, {counts}; "
        f"{time_left(phases, seconds)}"
    )
    return f"{header}\n{format_table(rows)}"


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
