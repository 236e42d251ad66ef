"""Nothing lost: a job that exits or dies, two writers of one folder, a sweep aimed at another's folder, a job folder
that tries to leave its sweep. Sweeps run in process (the basic launcher) unless marked slow."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import run
from harness.records.results import read_summary
from harness.sweeps import joblock, status, sweep
from harness.sweeps.joblock import LOCK, JobBusy, JobLock, lock_state
from tests.conftest import CONF_DIR, probe_off, run_py_in_process

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "dataset=digits",
    "dataset.train_size=300",
    "trainer.steps=5",
    "trainer.eval_every=5",
    "trainer.log_every=5",
    "trainer.progress=false",
    "trainer.device=cpu",
    "trainer.threads=1",
]


class Quits(torch.nn.Module):
    """An activation that calls sys.exit on its first training step: a job that raises SystemExit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not x.is_leaf:  # in a model's training step, not in preflight's probe
            sys.exit(3)
        return torch.relu(x)


class Interrupts(torch.nn.Module):
    """An activation that raises KeyboardInterrupt on its first training step: the job's own code, not a Ctrl-C.
    (Preflight's and resolve's probes run it on a leaf tensor: those pass.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not x.is_leaf:
            raise KeyboardInterrupt
        return torch.relu(x)


class PressesCtrlC(torch.nn.Module):
    """An activation that sends its process SIGINT on the first training step, as the user's Ctrl-C does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not x.is_leaf:  # in a model's training step, not in a probe
            signal.raise_signal(signal.SIGINT)
        return torch.relu(x)


class Aborts(torch.nn.Module):
    """An activation that kills its process on the first training step (SIGABRT), as a segfault would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not x.is_leaf:  # in a model's training step, not in preflight's probe
            os.abort()
        return torch.relu(x)


def sweep_here(capsys, *args: str) -> tuple[int, str]:
    """`python run.py -m ARGS` in this process: (exit code, stdout + stderr)."""
    code = run_py_in_process("-m", *args, preflight=False)
    out = capsys.readouterr()
    return code, out.out + out.err


def states(sweep_dir: Path) -> dict[str, str]:
    return {p.name: sweep.job_state(p)[0] for p in sorted(sweep_dir.iterdir()) if (p / ".hydra").is_dir()}


def results(sweep_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(sweep_dir)): p.read_bytes()
        for p in sorted(sweep_dir.glob("*/*"))
        if p.name in ("summary.json", "metrics.csv")
    }


def folder(sweep_dir: Path, seed: int) -> Path:
    return next(p for p in sweep_dir.iterdir() if f"seed={seed}" in p.name)


# ---------------------------------------------------------------- 1. a job that exits or dies is a failed job


def test_a_job_that_calls_sys_exit_is_a_failed_job_and_the_sweep_goes_on(capsys, tmp_path):
    out = tmp_path / "sweep"
    code, text = sweep_here(
        capsys,
        "activation=custom",
        "activation.target=torch.nn.ReLU,tests.test_reliability_sweeps.Quits,torch.nn.Tanh",
        *TINY,
        f"hydra.sweep.dir={out}",
    )
    assert code == 1, text[-2000:]
    got = states(out)
    assert sorted(got.values()) == ["failed", "ok", "ok"]
    quits = next(p for p in out.iterdir() if "Quits" in p.name)
    assert "SystemExit: 3" in read_summary(quits)["error"]
    assert "SystemExit: 3" in text and "2 ok, 1 failed of 3 jobs" in text  # the table, printed


def test_a_job_that_raises_keyboard_interrupt_is_a_failed_job_and_the_sweep_goes_on(capsys, tmp_path):
    out = tmp_path / "sweep"
    code, text = sweep_here(
        capsys,
        "activation=custom",
        "activation.target=torch.nn.ReLU,tests.test_reliability_sweeps.Interrupts,torch.nn.Tanh",
        *TINY,
        f"hydra.sweep.dir={out}",
    )
    assert code == 1, text[-2000:]
    assert sorted(states(out).values()) == ["failed", "ok", "ok"]
    interrupts = next(p for p in out.iterdir() if "Interrupts" in p.name)
    assert "KeyboardInterrupt" in read_summary(interrupts)["error"]
    assert "2 ok, 1 failed of 3 jobs" in text and "sweep stopped early" not in text


def test_a_ctrl_c_sent_to_the_sweep_during_a_job_stops_the_sweep_with_the_table_so_far(capsys, tmp_path):
    out = tmp_path / "sweep"
    code, text = sweep_here(
        capsys,
        "activation=custom",
        "activation.target=torch.nn.ReLU,tests.test_reliability_sweeps.PressesCtrlC,torch.nn.Tanh",
        *TINY,
        f"hydra.sweep.dir={out}",
    )
    assert code == 130, text[-2000:]
    assert "sweep stopped early (interrupted)" in text and "1 ok, 2 unfinished of 3 jobs" in text
    pressed = next(p for p in out.iterdir() if "PressesCtrlC" in p.name)
    assert not (pressed / "summary.json").exists()  # not its failure: a resume runs it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the job's handler is gone


def test_a_job_whose_process_died_is_recorded_failed_on_resume_and_the_others_run(capsys, tmp_path):
    out = tmp_path / "sweep"
    assert sweep_here(capsys, "seed=0,1,2", *TINY, f"hydra.sweep.dir={out}")[0] == 0
    dead, redo = folder(out, 1), folder(out, 2)
    for job in (dead, redo):  # as the basic launcher leaves them when a job's os.abort takes the sweep down
        (job / "summary.json").unlink()
    (dead / "fault.log").write_text("Fatal Python error: Aborted\n\nCurrent thread 0x1 (most recent call first):\n")
    kept = results(out)
    code, text = sweep_here(capsys, "seed=0,1,2", *TINY, "resume=true", f"hydra.sweep.dir={out}")
    assert code == 1, text[-2000:]
    assert states(out) == {folder(out, 0).name: "ok", dead.name: "failed", redo.name: "ok"}
    assert "process died: Fatal Python error: Aborted" in read_summary(dead)["error"]
    assert (dead / "metrics.csv").read_bytes() == kept[f"{dead.name}/metrics.csv"]  # not rerun
    code, text = sweep_here(capsys, "seed=0,1,2", *TINY, "resume=true", f"hydra.sweep.dir={out}")
    assert code == 0 and states(out)[dead.name] == "ok"  # resuming again retries it


def run_py(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "run.py", *probe_off(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        **kwargs,
    )


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_a_job_that_aborts_fails_alone_under_joblib_and_is_resumed_past_under_basic(tmp_path):
    targets = "activation.target=torch.nn.ReLU,tests.test_reliability_sweeps.Aborts,torch.nn.Tanh,torch.nn.GELU"
    out = tmp_path / "joblib"
    result = run_py(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "activation=custom",
        targets,
        *TINY,
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(states(out).values()) == ["failed", "ok", "ok", "ok"]
    assert "3 ok, 1 failed of 4 jobs" in result.stdout

    out = tmp_path / "basic"
    result = run_py("-m", "activation=custom", targets, *TINY, f"hydra.sweep.dir={out}")
    assert result.returncode == -signal.SIGABRT or result.returncode == 134  # the in-process launcher dies with it
    result = run_py("-m", "activation=custom", targets, *TINY, "resume=true", f"hydra.sweep.dir={out}")
    assert result.returncode == 1 and sorted(states(out).values()) == ["failed", "ok", "ok", "ok"]


@pytest.mark.slow
def test_in_subprocesses_a_jobs_keyboard_interrupt_fails_it_and_a_ctrl_c_stops_the_sweep(tmp_path):
    out = tmp_path / "own"
    result = run_py(
        "-m",
        "activation=custom",
        "activation.target=torch.nn.ReLU,tests.test_reliability_sweeps.Interrupts,torch.nn.Tanh",
        *TINY,
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 ok, 1 failed of 3 jobs" in result.stdout

    out = tmp_path / "ctrl_c"
    args = [
        "-m",
        "seed=0,1",
        *TINY,
        "trainer.steps=100000",
        "trainer.log_every=50",
        "trainer.eval_every=100000",
        "trainer.checkpoint_every=50",
        f"hydra.sweep.dir={out}",
    ]
    with open(tmp_path / "ctrl_c.out", "w") as log:
        proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: list(out.glob("*/checkpoint.pt")), 240, "the first job training")
        proc.send_signal(signal.SIGINT)  # the user's Ctrl-C
        assert proc.wait(timeout=120) == 130
    text = (tmp_path / "ctrl_c.out").read_text()
    assert "sweep stopped early (interrupted)" in text and "2 unfinished of 2 jobs" in text


# ---------------------------------------------------------------- 2. one writer per job folder


def test_a_live_lock_keeps_a_second_writer_out_and_a_dead_holders_lock_is_taken_over(tmp_path):
    job = tmp_path / "job"
    with JobLock(job):
        assert lock_state(job) == "running"
        with pytest.raises(JobBusy, match=f"pid {os.getpid()}"):
            JobLock(job).__enter__()
    assert lock_state(job) is None and not (job / LOCK).exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = {"host": joblock.socket.gethostname(), "pid": int(dead.stdout)}
    (job / LOCK).write_text(json.dumps(holder))
    assert lock_state(job) == "stale"  # a dead process on this host: recognised at once
    (job / LOCK).write_text(json.dumps({"host": "node-17", "pid": 1}))
    assert lock_state(job) == "running"  # another node's holder, heartbeat fresh
    old = time.time() - joblock.STALE_S - 1
    os.utime(job / LOCK, (old, old))
    assert lock_state(job) == "stale"  # its heartbeat stopped: its node died
    with JobLock(job):
        assert joblock.read_lock(job)["pid"] == os.getpid()


def test_the_heartbeat_refreshes_the_lock_and_a_worker_ends_when_its_sweep_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(joblock, "BEAT_S", 0.01)
    exits = []
    monkeypatch.setattr(joblock.os, "_exit", exits.append)
    job = tmp_path / "job"
    lock = JobLock(job, watch_parent=True)
    with lock:
        old = time.time() - 100
        os.utime(job / LOCK, (old, old))
        time.sleep(0.2)
        assert time.time() - (job / LOCK).stat().st_mtime < 50  # refreshed
        lock.parent = -1  # as if the sweep died and the worker was handed to init
        deadline = time.time() + 5
        while not exits and time.time() < deadline:
            time.sleep(0.01)
    assert exits == [1] and not (job / LOCK).exists()


def test_a_resume_leaves_a_job_that_a_live_process_holds_alone(capsys, tmp_path):
    out = tmp_path / "sweep"
    assert sweep_here(capsys, "seed=0,1", *TINY, f"hydra.sweep.dir={out}")[0] == 0
    busy = folder(out, 1)
    (busy / "summary.json").unlink()
    (busy / "metrics.csv").write_text("being written by the other sweep")
    (busy / LOCK).write_text(json.dumps({"host": joblock.socket.gethostname(), "pid": os.getppid()}))
    code, text = sweep_here(capsys, "seed=0,1", *TINY, "resume=true", f"hydra.sweep.dir={out}")
    assert code == 1
    assert "1 running in another process (left alone), 0 to run" in text
    assert states(out)[busy.name] == "running" and "another process holds its job.lock" in text
    assert (busy / "metrics.csv").read_text() == "being written by the other sweep"


def test_checkpoints_are_written_under_a_unique_temporary_name(tiny, tmp_path):
    from harness.training.train import run as train_run

    run_dir = tmp_path / "run"
    (run_dir / "checkpoint.tmp").mkdir(parents=True)  # another writer's fixed temporary name, in the way
    summary = train_run(tiny("trainer.checkpoint_every=5"), run_dir)
    assert summary["status"] == "ok", summary.get("error")
    assert not list(run_dir.glob(".checkpoint.pt.*.tmp"))


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.extra("launchers")
def test_killing_a_joblib_sweep_ends_its_workers_and_a_resume_finishes_every_job_once(tmp_path):
    out = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1,2,3",
        *TINY,
        "trainer.steps=1500",
        "trainer.checkpoint_every=50",
        "trainer.log_every=50",
        "trainer.eval_every=1000",
        f"hydra.sweep.dir={out}",
    ]
    with open(tmp_path / "first.out", "w") as log:
        proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: len(list(out.glob(f"*/{LOCK}"))) == 2, 240, "two jobs running")
        holders = [joblock.read_lock(p.parent)["pid"] for p in out.glob(f"*/{LOCK}")]
        proc.kill()  # the main process only, as a lost terminal or an OOM kill would
        proc.wait()
    wait_for(lambda: not any(joblock.pid_alive(pid) for pid in holders), 30, "workers outlived their sweep")
    assert not list(out.glob(f"*/{LOCK}"))
    done = {p.parent.name for p in out.glob("*/summary.json")}  # a killed job's metrics.csv (at its checkpoint) grows
    finished = {k: v for k, v in results(out).items() if k.split("/")[0] in done}
    first, second = (
        subprocess.Popen(
            [sys.executable, "run.py", *args, "resume=true"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    )
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert all("Error" not in o for o in outputs), outputs
    assert list(states(out).values()) == ["ok"] * 4
    assert {k: v for k, v in results(out).items() if k in finished} == finished


# ---------------------------------------------------------------- 4. finished results are never replaced


def test_a_sweep_aimed_at_another_sweeps_folder_is_refused_and_a_resume_extends_it(capsys, tmp_path):
    out = tmp_path / "sweep"
    assert sweep_here(capsys, "activation=relu,tanh", *TINY, f"hydra.sweep.dir={out}")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, text = sweep_here(capsys, "activation=gelu", *TINY, f"hydra.sweep.dir={out}")
    assert code == 2 and f"error: {out} already holds a finished run; add resume=true" in text
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # sweep.json, multirun.yaml
    code, text = sweep_here(capsys, "activation=gelu", *TINY, "resume=true", f"hydra.sweep.dir={out}")
    assert code == 0
    assert [job["dir"].split(",")[0] for job in json.loads((out / "sweep.json").read_text())["jobs"]] == [
        "activation=relu",
        "activation=tanh",
        "activation=gelu",
    ]
    assert status.main([str(out)]) == 0 and "3 jobs (3 runs alone): 3 finished" in capsys.readouterr().out


# ---------------------------------------------------------------- 7. job folders stay inside their sweep


def test_a_job_folder_that_would_leave_its_sweep_is_refused(capsys, tmp_path):
    out = tmp_path / "a" / "b" / "sweep"
    code, text = sweep_here(
        capsys,
        "activation=custom",
        "activation.target=torch.nn.Identity",
        "+activation.tag='x/../../../ESCAPED'",
        *TINY,
        f"hydra.sweep.dir={out}",
    )
    assert code == 2 and "would lie outside the sweep folder" in text and len(text.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*ESCAPED*")) and not out.exists()


def test_the_printed_resume_command_parses_for_a_folder_with_spaces_and_brackets(capsys, tmp_path):
    out = tmp_path / "run (2) it's"
    code, text = sweep_here(capsys, "seed=0", *TINY, f"hydra.sweep.dir='{out}'".replace("'s", "\\'s"))
    assert code == 0, text[-2000:]
    argv = shlex.split(next(x for x in text.splitlines() if x.startswith("resume:")).removeprefix("resume:"))
    code, text = sweep_here(capsys, *[a for a in argv[2:] if a not in ("-m", "--config-path", CONF_DIR)])
    assert code == 0 and "1 finished earlier (skipped), 0 to run" in text


def run_once(capsys, *args: str) -> tuple[int, str]:
    """`python run.py ARGS` (a single run) in this process: (exit code, stdout + stderr)."""
    code = run_py_in_process(*args)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_single_run_never_replaces_a_finished_run_in_its_folder(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert run_once(capsys, *TINY, f"hydra.run.dir={run_dir}")[0] == 0
    before = {str(p): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    code, text = run_once(capsys, *TINY, "trainer.lr=0.001", f"hydra.run.dir={run_dir}")
    assert code == 2 and "already holds a finished run of another configuration" in text
    code, text = run_once(capsys, *TINY, f"hydra.run.dir={run_dir}")
    assert code == 2 and "already holds this finished run; add resume=true" in text
    code, text = run_once(capsys, *TINY, "resume=true", f"hydra.run.dir={run_dir}")
    assert code == 0 and "nothing to do" in text
    assert {str(p): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()} == before  # .hydra too


def test_submitits_requeue_exit_is_not_a_failed_job_but_a_jobs_own_exit_is(tiny, tmp_path, monkeypatch):
    from harness.training import train

    # submitit's signal handler ends a requeued job with sys.exit(-1) from submitit/core/job_environment.py
    handler = {}
    exec(
        compile(
            "import sys\ndef _exit():\n    sys.exit(-1)\n", "/site-packages/submitit/core/job_environment.py", "exec"
        ),
        handler,
    )

    def requeued(*args, **kwargs):
        handler["_exit"]()

    monkeypatch.setattr(train, "run", requeued)
    with pytest.raises(SystemExit):
        sweep.run_locked(tiny(), tmp_path / "requeued", [])
    assert not (tmp_path / "requeued" / "summary.json").exists() and not (tmp_path / "requeued" / LOCK).exists()
    monkeypatch.setattr(train, "run", lambda *args, **kwargs: sys.exit(-1))
    assert sweep.run_locked(tiny(), tmp_path / "own", [])["status"] == "failed"


def test_a_requeued_slurm_job_takes_over_the_lock_of_its_killed_earlier_attempt(tmp_path, monkeypatch):
    job = tmp_path / "job"
    job.mkdir()
    (job / LOCK).write_text(json.dumps({"host": "node-3", "pid": 4242, "slurm_job": "981"}))  # heartbeat fresh
    monkeypatch.setenv("SLURM_JOB_ID", "977")
    assert lock_state(job) == "running"  # another job's: left alone
    monkeypatch.setenv("SLURM_JOB_ID", "981")  # the same job, requeued onto another node
    assert lock_state(job) == "stale"
    with JobLock(job):
        assert joblock.read_lock(job)["slurm_job"] == "981" and lock_state(job) == "running"


@pytest.mark.parametrize("where", ["preflight", "training"])
def test_a_ctrl_c_during_a_single_run_is_one_line_and_exit_130(capsys, tmp_path, monkeypatch, where):
    """Wherever it lands (torch's imports happen in the preflight), not a traceback."""
    from harness.training import train
    from hydra_plugins.harness_sweeper import preflight

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(*(preflight, "check_command") if where == "preflight" else (train, "train"), interrupted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "run.py",
            "--config-path",
            CONF_DIR,
            "dataset=digits",
            "trainer.steps=5",
            "trainer.progress=false",
            "trainer.device=cpu",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        run.cli()
    err = capsys.readouterr().err
    assert exit_.value.code == 130 and err.startswith("interrupted (Ctrl-C)") and err.count("\n") == 1, err
