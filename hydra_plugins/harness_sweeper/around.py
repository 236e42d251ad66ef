"""What the sweep does around its jobs, before and after them: the cost probe (harness/training/cost.py, one job
through the sweep's own launcher), the trackers (logger=: checked before any folder is written, MLflow's parent
run opened before any job and closed after the last), and the warning for rates tuned at the edge of their grid."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.text import clean
from hydra_plugins.harness_sweeper._folders import LINE, BadSweep, compact

if TYPE_CHECKING:
    from hydra.plugins.launcher import Launcher

    from hydra_plugins.harness_sweeper.harness_sweeper import Job


def probe_costs(launcher: Launcher, sweep_dir: Path, jobs: list[Job]) -> None:
    """The cost probe (harness/training/cost.py): one job, through the sweep's own launcher and alone, times
    every cost setting not measured earlier; a probe that fails costs the report its cost figures, not the sweep."""
    from harness.records.cost import COST_DIR, PROBE_JOB
    from harness.sweeps.costs import missing, plan_probe

    todo, reused = plan_probe(sweep_dir, [j.config for j in jobs])
    if not todo:
        print(f"cost probe: the {reused} setting(s) were measured earlier (reused)")
        return
    print(f"cost probe: timing {len(todo)} setting(s) alone first (hydra.sweeper.cost_probe=false: no probe)")
    sys.stdout.flush()
    began = time.perf_counter()
    try:
        probe_job = [*jobs[0].overrides, f"hydra.sweep.subdir={COST_DIR}/{PROBE_JOB}"]  # any job's config
        launcher.launch([probe_job], initial_job_idx=0)
    except Exception as exc:  # a launcher's failure is reported below as settings left unmeasured
        print(clean(f"cost probe: the launcher failed: {type(exc).__name__}: {compact(exc)}", LINE))
    left = missing(sweep_dir, todo)
    took = f"in {time.perf_counter() - began:.0f} s"
    if left:
        print(clean(f"cost probe: {len(left)} setting(s) not measured {took}; see {COST_DIR}/ (the sweep goes on)"))
    else:
        print(f"cost probe: {len(todo)} setting(s) measured {took}")


def loggers(jobs: list[Job]) -> list[Any]:
    """The distinct logger sections (harness.setup.config.LoggerConfig) of the jobs that log somewhere."""
    found = [j.config.logger for j in jobs if j.config is not None and j.config.logger.name != "none"]
    return [logger for i, logger in enumerate(found) if logger not in found[:i]]


def check_trackers(jobs: list[Job]) -> None:
    """logger=: each tracker installed and reachable, before any folder is written; raises BadSweep."""
    from harness.trackers.live import TrackerError, check

    for logger in loggers(jobs):
        try:
            check(logger)
        except TrackerError as exc:
            raise BadSweep(str(exc)) from None


def open_trackers(jobs: list[Job], sweep_dir: Path) -> None:
    """MLflow's experiment and the sweep's parent run, made once before any job starts (jobs racing to make one
    experiment is a known MLflow failure); the jobs find it in the sweep's tracker.json and nest under it."""
    from harness.trackers.live import open_sweep

    for logger in loggers(jobs):
        try:
            open_sweep(logger, sweep_dir)
        except Exception as exc:  # the jobs still log, each a run of its own
            print(clean(f"logger: {logger.name} failed ({type(exc).__name__}: {exc}); no parent run", LINE))


def close_trackers(jobs: list[Job], sweep_dir: Path, ok: bool) -> None:
    """The sweep's parent run ended: FINISHED, or FAILED when a job failed or the sweep stopped early."""
    from harness.trackers.live import close_sweep

    for logger in loggers(jobs):
        try:
            close_sweep(logger, sweep_dir, ok)
        except Exception as exc:  # the sweep's own table follows regardless
            print(clean(f"logger: {logger.name} failed ({type(exc).__name__}: {exc}) ending the sweep's run", LINE))


def edge_warnings(jobs: list[Job], done: list[Path]) -> None:
    """After the job table: a rate chosen at the edge of the grid it was tuned on, with the next rates to try (the
    report's rule, harness.report.edges), when the sweep tried more than one rate."""
    if len({j.config.trainer.lr for j in jobs if j.config is not None}) < 2:
        return
    from harness.report.edges import sweep_lines  # loaded only when rates were swept

    try:
        lines = sweep_lines(done)
    except Exception as exc:  # a look at the tuning must not cost the sweep its table's verdict
        lines = [f"the check for rates chosen at the grid's edge failed: {type(exc).__name__}: {exc}"]
    for line in lines:
        print(clean(line, LINE))
