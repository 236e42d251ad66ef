"""After the fact: any folder of runs (a run, a sweep, a study, results/) into TensorBoard or MLflow, laid out as
live logging lays it out (a sweep's runs nested under its parent run), from each run's metrics.csv and
summary.json. What a run folder's tracker.json says a tracker already holds is not sent again: exporting twice, or
exporting runs logged live, adds nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.records.results import SUMMARY, find_run_dirs
from harness.records.schema import read_summary_file
from harness.setup.config import LoggerConfig
from harness.trackers.live import WatchedRun, check, close_sweep, open_sweep
from harness.trackers.records import read_rows

SWEEP_MANIFEST = "sweep.json"  # harness.sweeps.sweep.MANIFEST (a layer above): a folder with it is a sweep


@dataclass
class Exported:
    sent: int = 0  # runs that a tracker took something of
    there: int = 0  # runs every tracker already held whole
    skipped: int = 0  # folders without a readable summary.json (unfinished or damaged)


def export(folders: list[Path], logger: LoggerConfig) -> Exported:
    """Every run under folders into logger's trackers; TrackerError (one line) before anything is sent when one
    is missing or cannot be reached."""
    check(logger)
    done, failed = Exported(), set[str]()
    sweeps: dict[Path, bool] = {}  # sweep folder -> every run of it ok
    for run_dir in [d for folder in folders for d in find_run_dirs(Path(folder))]:
        try:
            summary = read_summary_file(run_dir / SUMMARY)
        except ValueError:
            done.skipped += 1
            continue
        parent = run_dir.parent
        if (parent / SWEEP_MANIFEST).is_file() and parent not in sweeps:
            open_sweep(logger, parent)
            sweeps[parent] = True
        if parent in sweeps:
            sweeps[parent] &= summary.get("status") != "failed"
        watched = WatchedRun(run_dir, summary, logger, failed)
        took = watched.push(read_rows(run_dir), summary)
        for run in watched.runs.values():
            run.close()
        if failed:
            raise RuntimeError(
                f"{', '.join(sorted(failed))} failed while exporting {run_dir} (the line above says why)"
            )
        done.sent += took > 0
        done.there += took == 0
    for sweep_dir, ok in sweeps.items():
        close_sweep(logger, sweep_dir, ok)
    return done
