"""What the harness reads of a sweep's launcher (harness/sweeps/launchers.py): its kind, from the
_target_ each preset composes to; how many jobs it runs at once; each job's share of the cores."""

from __future__ import annotations

import pytest

from harness.sweeps import launchers
from tests.test_sweeps import hydra_config


def joblib_launcher(n_jobs: int) -> dict:
    return {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": n_jobs}


def test_parallel_jobs_share_the_cores():
    assert launchers.threads_per_job(joblib_launcher(2), cpus=2) == 1
    assert launchers.threads_per_job(joblib_launcher(-1), cpus=16) == 1  # joblib's -1: one job per core
    assert launchers.threads_per_job(joblib_launcher(4), cpus=16) == 4
    assert launchers.threads_per_job(joblib_launcher(-2), cpus=16) == 1  # 15 workers
    assert launchers.threads_per_job(joblib_launcher(-13), cpus=16) == 4  # 4 workers
    assert launchers.threads_per_job(joblib_launcher(64), cpus=16) == 1


@pytest.mark.extra("launchers")
def test_each_launcher_preset_is_known_by_its_target():
    """The kinds launcher_kind tells apart, from the _target_ each preset composes to (the harness's own SLURM
    launcher included), and from a launcher the harness does not know."""
    kinds = {
        preset: launchers.launcher_kind(hydra_config(*([f"hydra/launcher={preset}"] if preset else [])).hydra.launcher)
        for preset in ("", "joblib", "submitit_local", "submitit_slurm", "slurm_cpu", "slurm_gpu")
    }
    assert kinds == {
        "": "basic",
        "joblib": "joblib",
        "submitit_local": "submitit_local",
        "submitit_slurm": "submitit_slurm",
        "slurm_cpu": "submitit_slurm",
        "slurm_gpu": "submitit_slurm",
    }
    assert launchers.launcher_kind({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}) == "basic"
    assert launchers.launcher_kind({}) == "basic"


def test_jobs_at_once_are_the_launchers_parallel_jobs():
    assert launchers.jobs_at_once({"_target_": "hydra._internal.BasicLauncher"}, cpus=8) == 1
    assert launchers.jobs_at_once({"_target_": "x.JoblibLauncher", "n_jobs": -1}, cpus=8) == 8
    assert launchers.jobs_at_once({"_target_": "x.JoblibLauncher", "n_jobs": -3}, cpus=8) == 6
    assert launchers.jobs_at_once({"_target_": "x.JoblibLauncher", "n_jobs": 3}, cpus=8) == 3
    assert launchers.jobs_at_once({"_target_": "x.SubmititSlurmLauncher", "array_parallelism": 64}, cpus=8) == 64
    assert launchers.jobs_at_once({"_target_": "x.submitit_launcher.LocalLauncher", "array_parallelism": 5}, 8) == 5
