"""The memory a job will have (a SLURM launcher's request, else the machine's), and a disk that fills during a run:
the parts of the bad-input rules that need more than one command line to show (tests/test_bad_input.py has those)."""

from __future__ import annotations

import errno
import os

import pytest

from harness.setup import footprint
from hydra_plugins.harness_sweeper import preconditions
from tests.test_bad_input import CHEAP, run_here


@pytest.mark.parametrize(
    "launcher, expected",
    [
        ({"mem_gb": 4}, 4 * 2**30),
        ({"mem_per_cpu": "2G", "cpus_per_task": 3}, 6 * 2**30),
        ({"mem_per_cpu": 1500, "cpus_per_task": 2}, 3000 * 2**20),  # SLURM's unit: MiB
        ({"mem_per_gpu": "16G", "gpus_per_node": 2}, 32 * 2**30),
        ({"mem_gb": None}, None),
    ],
)
def test_the_memory_a_slurm_launcher_asks_for_each_job(launcher, expected):
    from omegaconf import OmegaConf

    request = preconditions.launcher_memory(OmegaConf.create(launcher))
    assert (request and request[0]) == expected


def test_a_sweeps_jobs_are_held_to_the_launchers_memory_not_the_login_nodes(monkeypatch):
    from harness.setup.config import ConfigError
    from harness.setup.resolve import resolve
    from tests.conftest import compose_config

    config = compose_config(*CHEAP, "model.width=4096", "model.depth=16")  # 252 M parameters: 1.9 GiB with gradients
    monkeypatch.setattr(footprint, "available_memory", lambda: 64 * 2**30)  # a big login node
    monkeypatch.setattr(footprint, "_launcher_request", None)  # what a preflight sets, undone after the test
    resolve(config, device=False)
    footprint.set_launcher_memory((2**30, "the memory hydra.launcher.mem_gb=1 asks for each job"))
    with pytest.raises(ConfigError, match="but the memory hydra.launcher.mem_gb=1 asks for each job is 1.0 GiB"):
        resolve(config, device=False)


def test_a_disk_that_fills_during_a_run_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    import harness.records.results

    def full(run_dir, summary):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir / "summary.json"))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(harness.records.results, "write_summary", full)
    code = run_here([*CHEAP, f"hydra.run.dir={tmp_path}/run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "summary.json: No space left on device" in err[0], err
