"""Sweeps that survive: unique folders, resume, checkpoints, failure isolation, bad input, and each launcher."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from harness.records.results import load_checkpoint_file, read_summary, write_checkpoint_file
from harness.sweeps import launchers, sweep
from tests.conftest import CONF_DIR, probe_off, run_py_in_process

ROOT = Path(__file__).resolve().parents[1]
# digits ships with scikit-learn: nothing to generate or download, so every job starts at once
TINY = [
    "dataset=digits",
    "dataset.train_size=300",
    "trainer.steps=10",
    "trainer.eval_every=5",
    "trainer.log_every=5",
    "trainer.progress=false",
    "trainer.device=cpu",
]
ONE_THREAD = "trainer.threads=1"  # for the basic launcher: tiny networks run several times faster on a busy CPU


class Boom(torch.nn.Module):
    """An activation that raises on the first training step: a job that crashes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not x.is_leaf:  # in a model's training step, not in preflight's probe
            raise RuntimeError("boom: this job fails on purpose")
        return torch.relu(x)


def run_py(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python run.py ARGS` from the repository root, as a user would type it."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "run.py", *probe_off(args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def main_in_process(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The same as run_py, as run.main in this process (a patched argv): seconds faster per sweep."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_py_in_process(*args, preflight=False)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


# The whole-sweep checks run in process by default and, marked slow, as real subprocesses.
BOTH = pytest.mark.parametrize(
    "runner", [main_in_process, pytest.param(run_py, marks=pytest.mark.slow)], ids=["in_process", "subprocess"]
)


def states(sweep_dir: Path) -> dict[str, str]:
    """Job folder name -> state (ok, diverged, failed, corrupt, unfinished) of every job folder in a sweep."""
    return {p.name: sweep.job_state(p)[0] for p in sorted(sweep_dir.iterdir()) if (p / ".hydra").is_dir()}


def files(sweep_dir: Path) -> dict[str, bytes]:
    """The results files of every finished job (one with a summary.json), byte for byte."""
    return {
        str(p.relative_to(sweep_dir)): p.read_bytes()
        for job in sweep_dir.glob("*/summary.json")
        for p in (job, job.with_name("metrics.csv"))
        if p.exists()
    }


def resume_line(stdout: str) -> list[str]:
    """The resume command a sweep prints when it starts, ready for subprocess."""
    line = next(x for x in stdout.splitlines() if x.startswith("resume:"))
    argv = shlex.split(line.removeprefix("resume:"))
    assert argv[:2] == ["python", "run.py"]
    return argv[2:]


# ---------------------------------------------------------------- folder names


def hydra_config(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_job_folder_is_named_from_its_overrides_whatever_their_order():
    a = hydra_config("seed=1", "activation=tanh", "model.depth=3", "dataset.root=/elsewhere", "resume=true")
    b = hydra_config("model.depth=3", "activation=tanh", "seed=1")
    assert a.hydra.sweep.subdir == b.hydra.sweep.subdir == "activation=tanh,model.depth=3,seed=1"


def test_two_sweeps_started_in_the_same_microsecond_get_different_folders(monkeypatch):
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 1)

    monkeypatch.setattr("hydra.core.utils.datetime", Frozen)  # what Hydra's ${now:} reads
    frozen = "2026-01-01_00-00-00-000000"
    dirs = {str(hydra_config("seed=1").hydra.sweep.dir) for _ in range(20)}
    assert len(dirs) == 20
    assert all(d.startswith(f"results/sweeps/{frozen}_") and d.endswith("_sweep") for d in dirs)
    assert str(hydra_config("+experiment=smoke").hydra.sweep.dir).endswith("_smoke")  # the readable name


def test_two_sweeps_started_in_one_microsecond_land_in_two_folders_each_holding_all_its_jobs(tmp_path, monkeypatch):
    # The fast twin of the next test: the same second (the same microsecond, even), one process.
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 1)

    monkeypatch.setattr("hydra.core.utils.datetime", Frozen)
    for _ in range(2):
        result = main_in_process("-m", "seed=0,1", *TINY, "trainer.steps=0", ONE_THREAD, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    sweeps = sorted((tmp_path / "results" / "sweeps").iterdir())
    assert len(sweeps) == 2 and all(s.name.startswith("2026-01-01_00-00-00-000000_") for s in sweeps)
    for folder in sweeps:
        assert sorted(states(folder).values()) == ["ok", "ok"]


@pytest.mark.slow
def test_two_sweeps_started_together_land_in_two_folders_each_holding_all_its_jobs(tmp_path):
    # Default folders (no hydra.sweep.dir), relative to where the command runs: here tmp_path.
    command = [sys.executable, str(ROOT / "run.py"), "-m", "seed=0,1", *TINY, "trainer.steps=0", ONE_THREAD]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    sweeps = sorted((tmp_path / "results" / "sweeps").iterdir())
    assert len(sweeps) == 2
    for folder in sweeps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}_[0-9a-f]{6}_sweep", folder.name)
        assert sorted(states(folder).values()) == ["ok", "ok"]  # the random id is drawn once per sweep


# ---------------------------------------------------------------- what counts as finished


def test_job_state_reads_truncated_and_hand_edited_summaries_as_corrupt(tmp_path):
    good = {"schema_version": 1, "status": "ok", "config_hash": "abc", "test_acc": 0.5}
    cases = {
        "ok": json.dumps(good),
        "truncated": json.dumps(good)[:20],
        "empty": "",
        "list": "[1, 2]",
        "no_hash": json.dumps({"schema_version": 1, "status": "ok"}),
        "no_version": json.dumps({k: v for k, v in good.items() if k != "schema_version"}),
        "odd_status": json.dumps({"schema_version": 1, "status": "done", "config_hash": "a"}),
        "failed": json.dumps(
            {"schema_version": 1, "status": "failed", "config_hash": "abc", "error": "Traceback\nValueError: x"}
        ),
    }
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(text)
    (tmp_path / "unfinished").mkdir()
    got = {p.name: sweep.job_state(p)[0] for p in tmp_path.iterdir()}
    assert got == {
        "ok": "ok",
        "truncated": "corrupt",
        "empty": "corrupt",
        "list": "corrupt",
        "no_hash": "corrupt",
        "no_version": "corrupt",
        "odd_status": "corrupt",
        "failed": "failed",
        "unfinished": "unfinished",
    }
    assert sweep.finished_runs(tmp_path) == {"abc": tmp_path / "ok"}


def test_end_table_lists_every_job_with_its_outcome():
    table = sweep.format_table(
        [
            ("ok", "activation=relu", {"test_acc": 0.91, "train_time_s": 1.5}),
            ("diverged", "activation=sigmoid,trainer.lr=100", {"diverged_at_step": 7, "test_acc": 0.1}),
            ("failed", "activation=boom", {"error": "Traceback ...\nRuntimeError: boom"}),
            ("unfinished", "activation=tanh", None),
        ]
    )
    lines = table.splitlines()
    assert lines[1].split()[:3] == ["ok", "0.9100", "1.5"]
    assert "diverged at step 7" in lines[2] and "RuntimeError: boom" in lines[3] and "no summary.json" in lines[4]
    assert lines[-1] == "1 ok, 1 diverged, 1 failed, 1 unfinished of 4 jobs"


# ---------------------------------------------------------------- checkpoints


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so harness.run neither records it nor removes the checkpoint."""


def test_resumed_checkpointed_run_matches_the_uninterrupted_one(tiny, tmp_path, monkeypatch):
    import harness.training.group as group
    from harness.training.train import run

    # rrelu draws random slopes while training: the RNG state must travel in the checkpoint too. Checkpoints
    # every 7 steps but logs every 10: the checkpoint must not cut the running train-loss window.
    overrides = ["trainer.steps=40", "activation=rrelu", "model=cnn", "dataset=digits", "trainer.eval_every=10"]
    plain = run(tiny(*overrides), tmp_path / "plain")
    config = tiny(*overrides, "trainer.checkpoint_every=7")
    real_save, saves = group.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(args[-2]["step"])
        if len(saves) == 2:
            raise Killed

    monkeypatch.setattr(group, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run(config, tmp_path / "resumed")
    monkeypatch.setattr(group, "save_checkpoint", real_save)
    checkpoint = tmp_path / "resumed" / "checkpoint.pt"
    blob = load_checkpoint_file(checkpoint)
    assert blob["state"]["step"] == saves[-1] == 20 and not (tmp_path / "resumed" / "summary.json").exists()
    blob["state"]["train_time"] = 1000.0  # a first segment's time that cannot be missed in the sum
    blob["state"]["train_cpu_time"] = 1000.0  # the CPU clock continues too
    write_checkpoint_file(checkpoint, blob)

    resumed = run(config, tmp_path / "resumed")
    assert resumed["status"] == plain["status"] == "ok"
    timing = {
        "train_time_s",
        "loop_time_s",
        "samples_per_s",
        "train_cpu_time_s",
        "clock_samples_per_s",
        "started_at",
        "finished_at",
        "run_dir",
        "config",
        "pid",
        "group",
    }  # group: a one-job run's id is its folder's name
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in plain.items() if k not in timing}
    assert resumed["train_time_s"] > 1000.0 and resumed["train_cpu_time_s"] > 1000.0  # the segments add up
    assert list(resumed["lost_fraction_by_layer"]) == ["hidden.0", "hidden.1", "hidden.2"]  # step-0 masks resumed
    assert (tmp_path / "resumed" / "metrics.csv").read_bytes() == (tmp_path / "plain" / "metrics.csv").read_bytes()
    assert not checkpoint.exists()


# ---------------------------------------------------------------- whole sweeps, as a user runs them


@pytest.fixture(
    scope="module",
    params=[main_in_process, pytest.param(run_py, marks=pytest.mark.slow)],
    ids=["in_process", "subprocess"],
)
def smoke_sweep(request, tmp_path_factory):
    """The smoke study end to end with the basic launcher, trainer.steps overridden on the command line."""
    out = tmp_path_factory.mktemp("smoke") / "sweep"
    runner = request.param
    result = runner("+experiment=smoke", "trainer.steps=10", ONE_THREAD, f"hydra.sweep.dir={out}")
    return out, result, runner


def test_smoke_study_runs_4_jobs_with_the_basic_launcher(smoke_sweep):
    out, result, _ = smoke_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    assert states(out) == {
        f"activation={a},model={m},trainer.steps=10": "ok" for a in ("relu", "tanh") for m in ("mlp", "cnn")
    }
    summaries = [read_summary(p.parent) for p in out.glob("*/summary.json")]
    assert {s["steps"] for s in summaries} == {10}  # the command line beat the study's trainer.steps=20
    assert "sweep: 4 jobs, 0 finished earlier (skipped), 4 to run" in result.stdout
    assert "[4/4 done]" in result.stderr + result.stdout
    assert result.stdout.rstrip().endswith("4 ok of 4 jobs")


def test_resume_skips_finished_jobs_untouched_and_reruns_a_corrupt_one(smoke_sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(smoke_sweep[0], copy)
    rerun = "activation=tanh,model=mlp,trainer.steps=10"
    broken = copy / rerun / "summary.json"
    broken.write_text(broken.read_text()[:100])  # killed mid-write, disk full, or a slip of the editor
    (copy / rerun / ".metrics.csv.x1y2z3.tmp").write_text("step,spl")  # a killed writer's temporary file
    kept = {k: v for k, v in files(copy).items() if not k.startswith(rerun)}
    kept_hydra = {p: p.read_bytes() for p in copy.glob("*/.hydra/*") if rerun not in str(p)}
    runner = smoke_sweep[2]
    result = runner("+experiment=smoke", "trainer.steps=10", ONE_THREAD, "resume=true", f"hydra.sweep.dir={copy}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 finished earlier (skipped), 1 to run" in result.stdout
    assert set(states(copy).values()) == {"ok"}
    assert {k: v for k, v in files(copy).items() if not k.startswith(rerun)} == kept and len(kept) == 6
    assert {p: p.read_bytes() for p in copy.glob("*/.hydra/*") if rerun not in str(p)} == kept_hydra
    assert len(list(broken.parent.glob("summary.json.corrupt-*"))) == 1  # set aside, not lost
    assert not list(broken.parent.glob(".*.tmp"))


def test_a_finished_sweep_is_not_overwritten_without_resume(smoke_sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(smoke_sweep[0], copy)
    before = files(copy)
    result = smoke_sweep[2]("+experiment=smoke", "trainer.steps=10", ONE_THREAD, f"hydra.sweep.dir={copy}")
    assert result.returncode == 2
    assert "already holds a finished run; add resume=true" in result.stderr
    assert files(copy) == before


@BOTH
def test_a_crashing_job_leaves_the_others_finished_and_the_sweep_fails(tmp_path, runner):
    out = tmp_path / "sweep"
    targets = "torch.nn.ReLU,torch.nn.Tanh,tests.test_sweeps.Boom,torch.nn.GELU"
    result = runner(
        "-m", "activation=custom", f"activation.target={targets}", *TINY, ONE_THREAD, f"hydra.sweep.dir={out}"
    )
    assert result.returncode == 1
    boom = next(name for name in states(out) if "Boom" in name)
    assert list(states(out).values()).count("ok") == 3 and states(out)[boom] == "failed"
    summary = read_summary(out / boom)
    assert "RuntimeError: boom" in summary["error"] and "Traceback" in summary["error"]
    assert "RuntimeError: boom" in (out / boom / "run.log").read_text()  # the job's log has the traceback too
    table = result.stdout[result.stdout.index("sweep results:") :]
    row = next(line for line in table.splitlines() if line.startswith("failed"))  # its long name cut to one line
    assert row.split()[3].startswith(boom[:15]) and "RuntimeError: boom" in row and "3 ok, 1 failed of 4 jobs" in table

    ok_files = {k: v for k, v in files(out).items() if "Boom" not in k}
    again = runner(
        "-m",
        "activation=custom",
        f"activation.target={targets}",
        *TINY,
        ONE_THREAD,
        "resume=true",
        f"hydra.sweep.dir={out}",
    )
    assert again.returncode == 1 and "3 finished earlier (skipped), 1 to run" in again.stdout  # only it reruns
    assert {k: v for k, v in files(out).items() if "Boom" not in k} == ok_files


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            "trainer.lr=0.1,abc",
            "error: Error merging override trainer.lr=abc: Value 'abc' of type 'str' could not be "
            "converted to Float (job trainer.lr=abc)",
        ),
        ("trainer.lr=0.1,-1", "error: trainer.lr must be > 0, got -1.0 (job trainer.lr=-1)"),
    ],
)
@BOTH
def test_a_bad_value_anywhere_stops_the_sweep_before_any_job(tmp_path, bad, message, runner):
    out = tmp_path / "sweep"
    result = runner("-m", bad, *TINY, f"hydra.sweep.dir={out}")
    assert result.returncode == 2
    assert result.stderr.strip() == message, result.stderr  # one line, no traceback
    assert not out.exists()


def mid_job(sweep_dir: Path) -> list[Path]:
    """Checkpoints of jobs that have not finished."""
    return [p for p in sweep_dir.glob("*/checkpoint.pt") if not (p.parent / "summary.json").exists()]


def test_killed_mid_job_then_resume_completes_every_run(tmp_path, monkeypatch):
    # The fast twin of the SIGKILL test below: the process is interrupted (Ctrl-C, the one exception a job does not
    # record as its failure) just after the second job's first checkpoint, with the first job finished.
    import harness.training.group as group

    out = tmp_path / "sweep"
    args = [
        "-m",
        "seed=0,1",
        "dataset=digits",
        "dataset.train_size=300",
        "trainer.steps=40",
        "trainer.log_every=10",
        "trainer.eval_every=20",
        "trainer.checkpoint_every=10",
        "trainer.progress=false",
        "trainer.device=cpu",
        ONE_THREAD,
        f"hydra.sweep.dir={out}",
    ]
    real_save = group.save_checkpoint

    def save_then_die(*a, **kw):
        real_save(*a, **kw)
        if list(out.glob("*/summary.json")) and mid_job(out):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C: the user stops the sweep

    monkeypatch.setattr(group, "save_checkpoint", save_then_die)
    assert main_in_process(*args).returncode == 130  # the sweep's exit status after Ctrl-C
    saved_at = []  # the steps the resumed job checkpoints at: it continues from step 10, it does not start over

    def save_and_note(*a, **kw):
        real_save(*a, **kw)
        saved_at.append(a[-2]["step"])

    monkeypatch.setattr(group, "save_checkpoint", save_and_note)
    finished = files(out)
    assert sorted(states(out).values()) == ["ok", "unfinished"] and len(mid_job(out)) == 1
    result = main_in_process(*args, "resume=true")
    assert saved_at == [20, 30]
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(states(out).values()) == ["ok", "ok"]
    assert {k: v for k, v in files(out).items() if k in finished} == finished  # not retrained, not rewritten
    assert "from its checkpoint.pt" in result.stdout + result.stderr
    for job in out.glob("*/metrics.csv"):  # every file whole, no step logged twice
        metrics = pd.read_csv(job)
        assert not metrics.duplicated(["step", "split", "metric", "layer", "t"]).any()
        assert metrics["step"].max() == 40
    assert not list(out.glob("*/checkpoint.*")) and not list(out.glob("*/.*.tmp"))


@pytest.mark.slow
def test_sigkill_mid_job_then_resume_completes_every_run(tmp_path):
    out = tmp_path / "sweep"
    args = [
        "-m",
        "seed=0,1",
        "dataset=digits",
        "dataset.train_size=300",
        "trainer.steps=120",
        "trainer.log_every=10",
        "trainer.eval_every=60",
        "trainer.checkpoint_every=10",
        "trainer.progress=false",
        "trainer.device=cpu",
        ONE_THREAD,
        f"hydra.sweep.dir={out}",
    ]
    first = tmp_path / "first.out"
    with first.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "run.py", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + 240
        while not (list(out.glob("*/summary.json")) and mid_job(out)):  # one job done, the next one mid-way
            assert proc.poll() is None and time.time() < deadline, first.read_text()[-3000:]
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = files(out)
    assert list(states(out).values()).count("unfinished") == 1

    result = run_py(*resume_line(first.read_text()))
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(states(out).values()) == ["ok", "ok"]
    assert {k: v for k, v in files(out).items() if k in finished} == finished  # not retrained, not rewritten
    assert "from its checkpoint.pt" in result.stdout + result.stderr
    for job in out.glob("*/metrics.csv"):  # every file whole, no step logged twice
        metrics = pd.read_csv(job)
        assert not metrics.duplicated(["step", "split", "metric", "layer", "t"]).any()
        assert metrics["step"].max() == 120
    assert not list(out.glob("*/checkpoint.*")) and not list(out.glob("*/.*.tmp"))


# ---------------------------------------------------------------- launchers


@pytest.mark.extra("launchers")
def test_launcher_presets_give_each_job_its_share_of_threads_and_the_slurm_limits():
    # The fast twin of the launcher tests below: what each launcher is configured to do, composed in process.
    joblib = hydra_config("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert launchers.threads_per_job(joblib, cpus=8) == 4
    assert launchers.threads_per_job(hydra_config("seed=1").hydra.launcher) is None  # basic: torch's default
    slurm = hydra_config("hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu").hydra.launcher
    assert (
        slurm.partition,
        slurm.gpus_per_node,
        slurm.timeout_min,
        slurm.cpus_per_task,
        slurm.signal_delay_s,
        slurm.max_num_timeout,
    ) == ("gpu", 1, 240, 4, 120, 3)
    assert launchers.threads_per_job(slurm, cpus=8) == 4  # a job's torch threads are its CPUs


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_joblib_runs_4_jobs_in_parallel_with_a_share_of_the_cores(tmp_path):
    out = tmp_path / "sweep"
    result = run_py(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1,2,3",
        *TINY,
        "trainer.threads=null",
        f"hydra.sweep.dir={out}",
    )  # null: the share itself (auto: 1 here)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(states(out).values()) == ["ok"] * 4
    cpus = len(os.sched_getaffinity(0))
    assert {read_summary(p.parent)["num_threads"] for p in out.glob("*/summary.json")} == {max(1, cpus // 2)}


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_submitit_local_runs_4_jobs(tmp_path):
    out = tmp_path / "sweep"
    result = run_py("-m", "hydra/launcher=submitit_local", "seed=0,1,2,3", *TINY, f"hydra.sweep.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(states(out).values()) == ["ok"] * 4
    assert "timeout_min=60" in result.stdout  # the launcher's limit is said up front


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_slurm_preset_writes_the_sbatch_script_we_asked_for(tmp_path):
    # No cluster here: stub sbatch (refuses) and srun, then read the script submitit wrote for the array.
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in {"sbatch": "echo 'sbatch: no cluster (test stub)' >&2; exit 1", "srun": "exit 0"}.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    out = tmp_path / "sweep"
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    result = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            "hydra/launcher=slurm_gpu",
            "hydra.launcher.partition=gpu",
            "seed=0,1,2",
            "trainer.checkpoint_every=500",
            f"hydra.sweep.dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 1 and "sweep stopped early (FailedJobError" in result.stdout
    # the cost probe's submission (one job, refused too) comes first; the jobs' array is the newest
    scripts = sorted(out.glob(".submitit/.submission_file_*.sh"), key=lambda p: p.stat().st_mtime_ns)
    assert len(scripts) == 2 and "cost probe: the launcher failed" in result.stdout
    script = scripts[-1].read_text()
    for line in [
        "--partition=gpu",
        "--gpus-per-node=1",
        "--time=240",
        "--cpus-per-task=4",
        "--array=0-2%3",
        "--signal=USR2@120",
    ]:
        assert f"#SBATCH {line}\n" in script
