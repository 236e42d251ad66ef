"""Sweep bookkeeping without Hydra: which jobs are finished, the sweep manifest, progress, and the end table."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from harness.config import Config, config_hash, to_dict
from harness.console import fmt
from harness.results import SCHEMA_VERSION, SUMMARY, atomic_write, read_summary, write_summary

MANIFEST = "sweep.json"
FINISHED = ("ok", "diverged")  # diverged runs are results: resume keeps them


def check_job(config: Config) -> None:
    """Every check a job would fail before training (harness.run's own), minus the device (a login node may lack
    the GPU)."""
    from harness.resolve import resolve  # torch loads here, not at import time

    resolve(config, device=False)


def job_state(job_dir: Path) -> tuple[str, dict | None]:
    """(state, summary) of a job folder; state is ok, diverged, failed, corrupt or unfinished."""
    path = Path(job_dir) / SUMMARY
    if not path.exists():
        return "unfinished", None
    try:
        summary = read_summary(job_dir)
    except (OSError, ValueError):  # truncated, half-written or hand-edited: the job did not finish
        return "corrupt", None
    status = summary.get("status")
    if status not in ("ok", "diverged", "failed") or (status in FINISHED and not summary.get("config_hash")):
        return "corrupt", None
    return status, summary


def finished_runs(sweep_dir: Path) -> dict[str, Path]:
    """config_hash -> folder of every finished (ok or diverged) run under sweep_dir."""
    found = {}
    for path in sorted(Path(sweep_dir).rglob(SUMMARY)):
        if any(part.startswith(".") for part in path.relative_to(sweep_dir).parts):
            continue  # .submitit and other tool folders
        state, summary = job_state(path.parent)
        if state in FINISHED:
            found.setdefault(summary["config_hash"], path.parent)
    return found


def set_aside(job_dir: Path) -> Path:
    """Move a corrupt summary.json out of the way (kept, not deleted) so the job counts as unfinished."""
    path = Path(job_dir) / SUMMARY
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = path.with_name(f"{SUMMARY}.corrupt-{stamp}")
    os.replace(path, target)
    return target


def remove_leftovers(job_dir: Path) -> list[Path]:
    """Delete the temporary files a killed attempt left half-written (the files they were to replace are whole)."""
    leftovers = list(Path(job_dir).glob(".*.tmp")) + list(Path(job_dir).glob("checkpoint.tmp"))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def failed_summary(config: Config, run_dir: Path, overrides: list[str], error: str) -> dict:
    """Record a job that failed outside the training loop (data missing, a bug) like any failed run."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    summary = {
        "schema_version": SCHEMA_VERSION, "status": "failed",
        "activation": config.activation["name"], "model": config.model.name, "dataset": config.dataset.name,
        "seed": config.seed, "config_hash": config_hash(config), "overrides": list(overrides),
        "config": to_dict(config), "run_dir": str(run_dir), "error": error, "started_at": now, "finished_at": now,
    }
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_summary(run_dir, summary)
    return summary


def write_manifest(sweep_dir: Path, jobs: list[dict], command: str) -> None:
    """sweep.json: every job's folder and overrides, so that running jobs can report progress."""
    text = json.dumps({"command": command, "jobs": jobs}, indent=2)
    atomic_write(Path(sweep_dir) / MANIFEST, lambda f: f.write(text + "\n"))


def progress(sweep_dir: Path) -> tuple[int, int]:
    """(jobs with a summary.json, jobs in the sweep), from the manifest; (0, 0) without one."""
    try:
        jobs = json.loads((Path(sweep_dir) / MANIFEST).read_text())["jobs"]
    except (OSError, ValueError, KeyError):
        return 0, 0
    done = sum((Path(sweep_dir) / job["dir"] / SUMMARY).exists() for job in jobs)
    return done, len(jobs)


def threads_per_job(n_jobs: int, cpus: int | None = None) -> int:
    """Torch threads for each of n_jobs parallel jobs (joblib's convention: -1 all cores, -2 all but one, ...)."""
    cpus = cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    parallel = n_jobs if n_jobs > 0 else cpus + 1 + n_jobs
    return max(1, cpus // max(1, parallel))


def job_line(state: str, summary: dict | None) -> tuple[str, str, str]:
    """(test accuracy, train time, note) columns of one job."""
    s = summary or {}
    note = ""
    if state == "diverged":
        note = f"diverged at step {s.get('diverged_at_step')}"
    elif state == "failed" and s.get("error"):
        note = s["error"].strip().splitlines()[-1]
    elif state in ("unfinished", "corrupt"):
        note = "no summary.json" if state == "unfinished" else "corrupt summary.json"
    return fmt(s.get("test_acc"), ".4f"), fmt(s.get("train_time_s"), ".1f"), note


def format_table(rows: list[tuple[str, str, dict | None]]) -> str:
    """The end-of-sweep table: one line per job (state, job name, summary), then the counts."""
    width = max([len(name) for _, name, _ in rows] + [3])
    lines = [f"{'status':<10} {'test_acc':>8} {'time_s':>7}  {'job':<{width}}  note"]
    for state, name, summary in rows:
        acc, secs, note = job_line(state, summary)
        lines.append(f"{state:<10} {acc:>8} {secs:>7}  {name:<{width}}  {note}".rstrip())
    counts = {}
    for state, _, _ in rows:
        counts[state] = counts.get(state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()) + f" of {len(rows)} jobs")
    return "\n".join(lines)


def sweep_table(sweep_dir: Path) -> tuple[str, int, int]:
    """(table, finished jobs, all jobs) of a sweep folder as it stands now, from its manifest."""
    jobs = json.loads((Path(sweep_dir) / MANIFEST).read_text())["jobs"]
    rows = [(*job_state(Path(sweep_dir) / job["dir"]), job["dir"]) for job in jobs]
    table = format_table([(state, name, summary) for state, summary, name in rows])
    return table, sum(state in FINISHED for state, _, _ in rows), len(rows)


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.sweep DIR`: where a running or stopped sweep stands, e.g. on a cluster's login node."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / MANIFEST).exists():
        print("usage: python -m harness.sweep SWEEP_DIR  (a folder with a sweep.json)", file=sys.stderr)
        return 2
    table, done, total = sweep_table(Path(args[0]))
    print(f"{args[0]}: {done}/{total} jobs finished\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
