"""hydra.sweeper.group_size: group jobs whose members are ordinary runs, resume member by member, auto's rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.records.results import read_summary
from harness.setup.config import Config, config_hash
from harness.sweeps import grouping
from harness.training.train import run_group
from tests.test_sweeps import BOTH, ONE_THREAD, TINY, main_in_process, run_py, states

SWEEP = ("seed=0,1", "trainer.lr=1e-2,3e-3")  # 4 runs of one configuration: members differ in seed and lr


class ElementwiseBoom(torch.nn.Module):
    """Declared elementwise, so it groups; raises on the first training step: a member that fails its group."""

    elementwise = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not x.is_leaf:  # in a model's training step, not in preflight's probe
            raise RuntimeError("boom: this member fails on purpose")
        return torch.relu(x)


class MyReLU(torch.nn.Module):
    """A custom activation that does not say it is elementwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def run_folders(sweep_dir: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sorted(sweep_dir.glob("*/summary.json"))}


def hydra_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / ".hydra" / name).read_bytes() for name in ("config.yaml", "overrides.yaml")}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The same 4-seed sweep one job per run (group_size=1) and in groups of 2."""
    base = tmp_path_factory.mktemp("groups")
    out = {}
    for size in (1, 2):
        out[size] = base / f"size{size}"
        result = main_in_process(
            "-m", *SWEEP, *TINY, ONE_THREAD, f"hydra.sweeper.group_size={size}", f"hydra.sweep.dir={out[size]}"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        out[f"stdout{size}"] = result.stdout
    return out


def test_members_write_the_folders_hydra_files_and_summary_keys_of_their_one_job_twins(sweeps):
    alone, grouped = run_folders(sweeps[1]), run_folders(sweeps[2])
    assert list(grouped) == list(alone) and len(grouped) == 4
    for name, folder in grouped.items():
        assert hydra_files(folder) == hydra_files(alone[name])
        twin, member = read_summary(alone[name]), read_summary(folder)
        assert set(member) == set(twin) and member["config_hash"] == twin["config_hash"]
        assert member["overrides"] == twin["overrides"] and member["seed"] == twin["seed"]
        assert (folder / "metrics.csv").read_text().splitlines()[0] == (
            alone[name] / "metrics.csv"
        ).read_text().splitlines()[0]
        assert twin["group"] == {"id": name, "size": 1, "index": 0}
    groups = [read_summary(f)["group"] for f in grouped.values()]
    by_id = {}
    for g in groups:
        by_id.setdefault(g["id"], []).append(g["index"])
    assert sorted(map(sorted, by_id.values())) == [[0, 1], [0, 1]] and {g["size"] for g in groups} == {2}
    for g in groups:  # the group's own log and Hydra files
        assert (sweeps[2] / ".groups" / g["id"] / "run.log").exists()
        assert (sweeps[2] / ".groups" / g["id"] / ".hydra" / "hydra.yaml").exists()
    assert not (sweeps[1] / ".groups").exists() and "groups:" not in sweeps["stdout1"]
    assert "4 runs in 2 group job(s) of up to 2" in sweeps["stdout2"]
    table = sweeps["stdout2"][sweeps["stdout2"].index("sweep results:") :]
    rows = [line for line in table.splitlines() if line.startswith("ok ")]  # members, not groups (names cut to fit)
    assert len(rows) == 4 and "4 ok of 4 jobs" in table


def test_members_train_as_run_group_trains_their_configs(sweeps, tmp_path):
    """The sweeper hands each member its own seed and lr: the group job equals run_group of their configs."""
    folders = list(run_folders(sweeps[2]).values())[:2]
    configs = [config_from_summary(read_summary(f)) for f in folders]
    assert [config_hash(c) for c in configs] == [read_summary(f)["config_hash"] for f in folders]
    run_group(configs, [tmp_path / f.name for f in folders], [[] for _ in folders], "g")
    for f in folders:
        assert (tmp_path / f.name / "metrics.csv").read_text() == (f / "metrics.csv").read_text()


def config_from_summary(summary: dict) -> Config:
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), summary["config"]))


def test_resume_after_losing_one_members_summary_reruns_only_that_member(sweeps, tmp_path):
    import shutil

    out = tmp_path / "sweep"
    shutil.copytree(sweeps[2], out)
    folders = run_folders(out)
    lost = list(folders)[1]
    (folders[lost] / "summary.json").unlink()
    kept = {n: (f / "summary.json").read_bytes() for n, f in folders.items() if n != lost}
    result = main_in_process(
        "-m", *SWEEP, *TINY, ONE_THREAD, "hydra.sweeper.group_size=2", "resume=true", f"hydra.sweep.dir={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 finished earlier (skipped), 1 to run" in result.stdout
    assert {n: (f / "summary.json").read_bytes() for n, f in folders.items() if n != lost} == kept
    again = read_summary(folders[lost])
    assert again["status"] == "ok" and again["group"] == {"id": lost, "size": 1, "index": 0}  # alone now


@BOTH
def test_a_member_that_raises_fails_its_group_and_resume_reruns_them(tmp_path, runner):
    out = tmp_path / "sweep"
    args = [
        "-m",
        "activation=custom",
        "activation.target=tests.test_sweep_groups.ElementwiseBoom",
        "seed=0,1",
        *TINY,
        ONE_THREAD,
        "hydra.sweeper.group_size=2",
        f"hydra.sweep.dir={out}",
    ]
    result = runner(*args)
    assert result.returncode == 1 and "2 runs in 1 group job(s)" in result.stdout
    assert list(states(out).values()) == ["failed", "failed"]
    for folder in run_folders(out).values():
        summary = read_summary(folder)
        assert "RuntimeError: boom" in summary["error"] and summary["group"]["size"] == 2
        assert not (folder / "job.lock").exists()
    again = runner(*args[:-1], "resume=true", f"hydra.sweep.dir={out}")
    assert "0 finished earlier (skipped), 2 to run" in again.stdout


def test_a_custom_activation_not_declared_elementwise_runs_alone_with_one_line_why(tmp_path):
    out = tmp_path / "sweep"
    result = main_in_process(
        "-m",
        "activation=custom",
        "activation.target=tests.test_sweep_groups.MyReLU",
        "seed=0,1",
        *TINY,
        ONE_THREAD,
        "hydra.sweeper.group_size=2",
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("not grouped")]
    assert lines == [
        "not grouped (2 job(s)): custom activation MyReLU not declared elementwise (set its class's elementwise = True)"
    ]
    assert not (out / ".groups").exists()
    assert [read_summary(f)["group"]["size"] for f in run_folders(out).values()] == [1, 1]


@pytest.mark.parametrize("bad", ["0", "two", "-3"])
def test_a_bad_group_size_stops_the_sweep_with_one_line(tmp_path, bad):
    out = tmp_path / "sweep"
    result = main_in_process("-m", *SWEEP, *TINY, f"hydra.sweeper.group_size={bad}", f"hydra.sweep.dir={out}")
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.strip().splitlines() == [
        f"error: hydra.sweeper.group_size={bad}: expected an integer >= 1 or 'auto'"
    ]


def test_auto_never_makes_fewer_groups_than_parallel_workers():
    for n_workers in (1, 2, 3, 8, 64):
        for sizes in ([16], [5, 3], [1, 1, 9], [40, 2, 7], [3]):
            names = [f"{k}-{i}" for k, n in enumerate(sizes) for i in range(n)]
            keys = {name: name.split("-")[0] for name in names}
            for gpu in (False, True):
                size = grouping.auto_size(len(names), n_workers, gpu)
                groups = grouping.form_groups(keys, size)
                assert len(groups) >= min(n_workers, len(names)), (n_workers, sizes, gpu)
                assert max(map(len, groups)) <= (grouping.GPU_CAP if gpu else grouping.CPU_CAP)
                assert sorted(n for g in groups for n in g) == sorted(names)
                assert all(len({keys[n] for n in g}) == 1 for g in groups)  # one configuration per group
    assert grouping.auto_size(16, 1, gpu=False) == 16 and grouping.auto_size(200, 2, gpu=True) == 64


def test_a_group_job_gives_each_member_its_own_values_of_every_member_key(tiny):
    """What the sweeper writes of a member (member_entry) and the group job reads back (with_member_values) are
    the values of harness.training.group.MEMBER_KEYS: the member's config comes back whole, whatever those keys are."""
    first = tiny("seed=0", "trainer.lr=0.1", "trainer.weight_decay=0")
    other = tiny("seed=7", "trainer.lr=0.003", "trainer.weight_decay=0.0001")
    values = json.loads(json.dumps(grouping.member_values(other)))  # through group.json
    assert values == {"seed": 7, "trainer.lr": 0.003, "trainer.weight_decay": 0.0001}
    assert grouping.with_member_values(first, values) == other
    assert config_hash(grouping.with_member_values(first, values)) == config_hash(other)


def test_split_balances_a_configurations_runs():
    assert [len(g) for g in grouping.split(list("abcde"), 4)] == [3, 2]
    assert [len(g) for g in grouping.split(list("abcdefgh"), 4)] == [4, 4]


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_joblib_runs_groups_in_parallel(tmp_path):
    out = tmp_path / "sweep"
    result = run_py(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *SWEEP,
        *TINY,
        "hydra.sweeper.group_size=auto",
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 runs in 2 group job(s) of up to 2" in result.stdout
    assert list(states(out).values()) == ["ok"] * 4
    sizes = [read_summary(f)["group"]["size"] for f in run_folders(out).values()]
    assert sizes == [2, 2, 2, 2]
    assert json.loads((out / "sweep.json").read_text())["jobs"][0]["dir"] in run_folders(out)


def test_a_group_jobs_crash_log_is_in_every_members_folder(tmp_path):
    from harness.sweeps.sweep import FAULT_LOG, crash_note, fault_logs

    dirs = [tmp_path / name for name in "abc"]
    for d in dirs:
        d.mkdir()
    with fault_logs(dirs):  # nothing crashed: nothing left behind
        assert all((d / FAULT_LOG).exists() for d in dirs)
    assert not any((d / FAULT_LOG).exists() for d in dirs)
    with fault_logs(dirs):
        with open(dirs[0] / FAULT_LOG, "a") as f:  # what faulthandler writes as the process dies
            f.write("Fatal Python error: Aborted\n")
    assert [crash_note(d) for d in dirs] == ["Fatal Python error: Aborted"] * 3


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_submitit_local_runs_groups(tmp_path):
    out = tmp_path / "sweep"
    result = run_py(
        "-m", "hydra/launcher=submitit_local", *SWEEP, *TINY, "hydra.sweeper.group_size=2", f"hydra.sweep.dir={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(states(out).values()) == ["ok"] * 4
    assert sorted(read_summary(f)["group"]["index"] for f in run_folders(out).values()) == [0, 0, 1, 1]
    assert len(list((out / ".groups").glob("*/run.log"))) == 2
