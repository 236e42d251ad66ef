"""What the harness needs to know of a sweep's launcher (hydra.launcher): which kind it is, how many jobs it runs
at once, and each job's share of the cores. Everything that reads hydra.launcher's _target_ asks launcher_kind.

Hydra's plugin scanner imports this module at start-up: it imports nothing heavy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Literal

LauncherKind = Literal["basic", "joblib", "submitit_local", "submitit_slurm"]
# hydra.launcher: a DictConfig (a plain dict in tests), its values whatever types its launcher's schema has
LauncherConfig = Mapping[str, Any]
# The loggers of Hydra's launchers that log a line per job ("#12 : seed=3 ...") and the joblib call they make
LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
)


def launcher_kind(launcher_cfg: LauncherConfig) -> LauncherKind:
    """The launcher a hydra.launcher config names by its _target_: joblib's, submitit's local or SLURM one (the
    harness's own SubmititSlurmLauncher is a SLURM one), else `basic`: one job after the other in this process, as
    far as the harness can tell (a launcher it does not know gets no share of the cores and no grouping by workers).
    """
    target = str(launcher_cfg.get("_target_") or "").lower()
    if "joblib" in target:
        return "joblib"
    if "submitit" in target:
        return "submitit_slurm" if "slurm" in target else "submitit_local"
    return "basic"


def usable_cpus() -> int:
    """The cores this process may run on (its affinity, which a container or taskset narrows), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def joblib_workers(launcher_cfg: LauncherConfig, cpus: int) -> int:
    """Workers a joblib launcher starts on `cpus` cores, by joblib's own rule for n_jobs (its default -1): n_jobs
    if positive, else cpus + 1 + n_jobs (-1 every core, -2 all but one, ...); at least one."""
    n_jobs = int(launcher_cfg.get("n_jobs", -1))
    return max(1, n_jobs if n_jobs > 0 else cpus + 1 + n_jobs)


def jobs_at_once(launcher_cfg: LauncherConfig, cpus: int) -> int:
    """How many jobs the launcher runs at once: joblib's workers, submitit's array_parallelism, else one."""
    kind = launcher_kind(launcher_cfg)
    if kind == "joblib":
        return joblib_workers(launcher_cfg, cpus)
    if kind in ("submitit_local", "submitit_slurm"):
        return max(1, int(launcher_cfg.get("array_parallelism") or 1))
    return 1


def threads_per_job(launcher_cfg: LauncherConfig, cpus: int | None = None) -> int | None:
    """The cap on each job's torch threads (harness.training.group.build_group's cpu_threads): joblib's workers share
    this machine's cores evenly; a submitit job has its cpus_per_task (what SLURM allocates; local jobs all start at
    once); None, torch's own default, for the sequential basic launcher."""
    kind = launcher_kind(launcher_cfg)
    if kind == "joblib":
        cpus = cpus or usable_cpus()
        return max(1, cpus // joblib_workers(launcher_cfg, cpus))
    if kind in ("submitit_local", "submitit_slurm"):
        return launcher_cfg.get("cpus_per_task") or 1
    return None


def quiet_launcher(launcher_cfg: LauncherConfig, hydra_verbose: object = False) -> bool:
    """Keep the launcher's per-job lines off the screen (the sweeper prints one line for the whole sweep), unless
    the user asks for chatter: hydra.launcher.verbose=N (joblib's own key: it then also prints joblib's
    "[Parallel(n_jobs=2)]: Done 1 tasks" lines) or Hydra's hydra.verbose. Returns whether they are kept off."""
    asked = int(launcher_cfg.get("verbose") or 0) > 0 or bool(hydra_verbose)
    for name in LAUNCHER_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if asked else logging.WARNING)
    return not asked
