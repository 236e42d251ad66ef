"""Sweeps on a real SLURM cluster: every job runs there, preemption and time limits continue, failures are reported.

Needs a cluster that answers sinfo and sacct: `sudo scripts/slurm_local.sh start` makes a single-node one, and
scripts/ci_slurm.sh starts it, runs `pytest -m slurm` and stops it. The default pytest run leaves these out.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from harness.records.cost import read_costs
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[1]


def cluster_answers() -> bool:
    """sinfo lists a usable node and sacct answers (accounting: submitit needs it to see a cancelled job)."""
    if not (shutil.which("sinfo") and shutil.which("sacct")):
        return False
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
        sacct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    usable = {"idle", "mixed", "allocated", "completing"}
    return nodes.returncode == sacct.returncode == 0 and bool(usable & set(nodes.stdout.split()))


@pytest.fixture(scope="module", autouse=True)
def cluster():
    require(
        cluster_answers(),
        "needs a SLURM cluster that answers sinfo and sacct: sudo scripts/slurm_local.sh start makes one",
    )


pytestmark = [pytest.mark.slurm, pytest.mark.extra("launchers")]


class SlowReLU(torch.nn.Module):
    """ReLU that sleeps $SLOW_RELU_S per training forward: a job slow enough to interrupt mid-way, at no CPU
    cost and with the same numbers as without the sleep (the uninterrupted reference runs without it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(float(os.environ.get("SLOW_RELU_S", 0)))
        return torch.relu(x)


# With SLOW_RELU_S=0.004 a job trains for about 8 s, checkpointing every 100 of its 1000 steps: long enough to
# be requeued, signalled or cancelled mid-way, since SLURM's KillWait lets it run 5 s on after the SIGTERM that
# submitit ignores. One torch thread on both sides: the preset's cpus_per_task would otherwise set it.
JOB = [
    "activation=custom",
    "activation.target=tests.test_slurm.SlowReLU",
    "dataset=digits",
    "dataset.train_size=300",
    "trainer.steps=1000",
    "trainer.log_every=50",
    "trainer.eval_every=250",
    "trainer.checkpoint_every=100",
    "trainer.progress=false",
    "trainer.device=cpu",
    "trainer.threads=1",
]
SLOW = {"SLOW_RELU_S": "0.004"}
SLURM = "hydra/launcher=slurm_cpu"
# summary.json keys that differ between two runs of one configuration: clocks, speed, where it ran (run_dir is
# checked on its own: each sweep has its folder)
VARYING = {
    "started_at",
    "finished_at",
    "train_time_s",
    "loop_time_s",
    "samples_per_s",
    "train_cpu_time_s",
    "clock_samples_per_s",
    "pid",
    "hostname",
    "run_dir",
}


@contextlib.contextmanager
def running(out: Path, *args: str, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """`python run.py -m ARGS hydra.sweep.dir=OUT` in the background, stdout and stderr to OUT.log. A test that
    fails leaves neither the sweep nor its SLURM jobs behind to hold the node for the next tests."""
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, **(env or {})}
    with open(f"{out}.log", "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "run.py", "-m", *args, f"hydra.sweep.dir={out}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            if (out / ".submitit").is_dir():
                subprocess.run(["scancel", *slurm_ids(out)], capture_output=True)


def finish(proc: subprocess.Popen, out: Path) -> str:
    """Wait for a sweep to end; its output."""
    proc.wait(timeout=240)
    return Path(f"{out}.log").read_text()


def sweep(out: Path, *args: str, env: dict | None = None) -> tuple[int, str]:
    with running(out, *args, env=env) as proc:
        return proc.wait(timeout=240), finish(proc, out)


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def job_dir(out: Path, seed: int) -> Path:
    return out / (
        "activation.target=tests.test_slurm.SlowReLU,activation=custom,dataset.train_size=300,"
        f"dataset=digits,seed={seed},trainer.eval_every=250,trainer.steps=1000"
    )


def checkpointed(out: Path, seed: int):
    return lambda: (job_dir(out, seed) / "checkpoint.pt").exists()


def slurm_ids(out: Path) -> list[str]:
    """The SLURM job ids (ARRAY_TASK) submitit submitted for this sweep, in job order."""
    ids = [p.name for p in (out / ".submitit").iterdir() if p.is_dir() and "_" in p.name]
    return sorted(ids, key=lambda i: int(i.split("_")[1]))


def sacct_states(job_id: str) -> list[str]:
    """Every state the job went through (-D: each requeued run too), oldest first, once it has ended (the
    database hears of the end a moment after submitit has the result)."""

    def states() -> list[str]:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "state"], capture_output=True, text=True, check=True
        ).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    wait_until(lambda: states() and states()[-1] not in ("PENDING", "RUNNING", "COMPLETING"), f"{job_id} to end", 30)
    return states()


def assert_same_results(folder: Path, reference: Path, resumed: bool = False) -> None:
    """summary.json equal but for its VARYING keys, metrics.csv equal byte for byte. A job rerun by resume=true
    records that override in its config and overrides: that difference is the only one allowed there."""
    got, want = (json.loads((f / "summary.json").read_text()) for f in (folder, reference))
    if resumed:
        rerun = [o for o in got["overrides"] if o.lower() == "resume=true"]
        assert got["config"]["resume"] and rerun
        got["config"]["resume"], got["overrides"] = False, [o for o in got["overrides"] if o not in rerun]
    differ = sorted(k for k in got.keys() | want.keys() if k not in VARYING and got.get(k) != want.get(k))
    assert not differ, {k: (got.get(k), want.get(k)) for k in differ}
    assert got["run_dir"] == str(folder)
    assert (folder / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()


def logs(folder: Path) -> str:
    """Every log under a folder: the jobs' run.log and submitit's stdout and stderr of each attempt."""
    return "\n".join(
        p.read_text(errors="replace")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name.endswith((".log", "_log.out", "_log.err"))
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: the same two jobs with the basic launcher, never interrupted (and without the sleep)."""
    out = tmp_path_factory.mktemp("basic") / "sweep"
    rc, text = sweep(out, "seed=0,1", *JOB)
    assert rc == 0, text[-3000:]
    return out


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, subprocess.Popen, str, dict]:
    """One sweep on the cluster: job 0 requeued (as on preemption), job 1 sent USR2 (as before its time limit).

    timeout_min=5: submitit takes any USR2 as the time limit's warning and spends one of max_num_timeout on
    it; SLURM's own warning would come 120 s before that limit, long after this sweep."""
    out = tmp_path_factory.mktemp("interrupted") / "sweep"
    args = [SLURM, "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=5", "seed=0,1", *JOB]
    with running(out, *args, env=SLOW) as proc:
        # Each job is interrupted as soon as its first checkpoint is there: waiting for both let a job that started
        # first run to its end within KillWait on a busy machine, and it then had no checkpoint to continue from.
        wait_until(checkpointed(out, 0), "job 0's first checkpoint")
        subprocess.run(["scontrol", "requeue", slurm_ids(out)[0]], check=True)  # what SLURM does on preemption
        wait_until(checkpointed(out, 1), "job 1's first checkpoint")
        ids = slurm_ids(out)
        subprocess.run(["scancel", "--signal=USR2", ids[1]], check=True)  # what --signal=USR2@120 sends
        text = finish(proc, out)
    return out, proc, text, {seed: sacct_states(i) for seed, i in enumerate(ids)}


def test_cpu_preset_runs_every_job_on_the_cluster_with_the_basic_launchers_results(uninterrupted, tmp_path):
    out = tmp_path / "sweep"
    rc, text = sweep(out, SLURM, "seed=0,1", *JOB)  # the preset as it is: 2 CPUs a job
    assert rc == 0, text[-3000:]
    ids = slurm_ids(out)
    assert len(ids) == 2 and all(sacct_states(i) == ["COMPLETED"] for i in ids)  # both ran on the cluster
    for seed in (0, 1):
        assert_same_results(job_dir(out, seed), job_dir(uninterrupted, seed))


def test_a_preempted_job_is_requeued_and_continues_from_its_checkpoint(uninterrupted, interrupted):
    out, proc, text, states = interrupted
    assert proc.returncode == 0, text[-3000:]
    assert states[0] == ["REQUEUED", "COMPLETED"]
    assert "continuing" in logs(job_dir(out, 0)) and "from its checkpoint.pt" in logs(job_dir(out, 0))
    assert_same_results(job_dir(out, 0), job_dir(uninterrupted, 0))


def test_a_job_signalled_before_its_time_limit_is_requeued_and_continues(uninterrupted, interrupted):
    out, proc, text, states = interrupted
    assert proc.returncode == 0, text[-3000:]
    assert states[1] == ["REQUEUED", "COMPLETED"]
    assert "this job is timed-out" in logs(out / ".submitit")
    assert "from its checkpoint.pt" in logs(job_dir(out, 1))
    assert "job failed" not in logs(job_dir(out, 1))  # submitit's exit after the requeue is no failure
    assert_same_results(job_dir(out, 1), job_dir(uninterrupted, 1))


def test_a_cancelled_job_fails_in_the_table_within_a_minute_and_resume_reruns_it(uninterrupted, tmp_path):
    out = tmp_path / "sweep"
    with running(out, SLURM, "hydra.launcher.cpus_per_task=1", "seed=0,1", *JOB, env=SLOW) as proc:  # both at once
        wait_until(checkpointed(out, 1), "the first checkpoint")
        job = slurm_ids(out)[1]
        subprocess.run(["scancel", job], check=True)
        cancelled_at = time.time()
        text = finish(proc, out)
        assert time.time() - cancelled_at < 60
    assert proc.returncode == 1, text[-3000:]
    table = text[text.index("sweep results:") :]
    line = next(x for x in table.splitlines() if " seed=1 " in x)  # long names: the table shows what differs
    assert line.startswith("failed") and f"JobEndedWithoutResult: SLURM job {job} ended CANCELLED" in line
    assert "1 ok, 1 failed of 2 jobs" in table
    assert_same_results(job_dir(out, 0), job_dir(uninterrupted, 0))  # the other job was waited for

    resume = shlex.split(next(x for x in text.splitlines() if x.startswith("resume:")).removeprefix("resume:"))
    rc, again = sweep(out, *[a for a in resume[3:] if not a.startswith("hydra.sweep.dir=")], env=SLOW)
    assert rc == 0, again[-3000:]
    assert "1 finished earlier (skipped), 1 to run" in again
    assert_same_results(job_dir(out, 1), job_dir(uninterrupted, 1), resumed=True)  # continued from its checkpoint
    assert "from its checkpoint.pt" in logs(job_dir(out, 1))


def test_starting_a_running_local_cluster_changes_nothing():
    pids = Path(os.environ.get("SLURM_LOCAL_DIR", "/var/lib/harness-slurm")) / "pids"
    if os.geteuid() != 0 or not pids.exists():
        pytest.skip("this cluster was not started by scripts/slurm_local.sh")
    before = pids.read_text()
    result = subprocess.run(
        [str(ROOT / "scripts" / "slurm_local.sh"), "start"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "already running" in result.stdout, result.stderr
    assert pids.read_text() == before  # the same daemons, none restarted


def test_bad_input_is_refused_before_anything_reaches_slurm(tmp_path):
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))

    def jobs_since() -> list[str]:  # every job SLURM has seen since, queued or ended
        return subprocess.run(
            ["sacct", "-n", "-X", "-P", "-S", since, "-o", "jobid"], capture_output=True, text=True, check=True
        ).stdout.split()

    before = jobs_since()
    out = tmp_path / "sweep"
    rc, text = sweep(out, SLURM, "seed=0,1", "trainer.lr=0.1,-1", *JOB)
    assert rc == 2
    assert text.strip() == "error: trainer.lr must be > 0, got -1.0 (job seed=0 trainer.lr=-1)"  # one line
    assert not out.exists()
    assert jobs_since() == before


GROUPED = [
    "activation=relu",
    "dataset=digits",
    "dataset.train_size=300",
    "trainer.steps=200",
    "trainer.log_every=50",
    "trainer.eval_every=100",
    "trainer.progress=false",
    "trainer.device=cpu",
    "trainer.threads=1",
    "hydra.sweeper.group_size=2",
]


def test_a_group_is_one_slurm_job_with_its_time_scaled_and_the_basic_launchers_results(tmp_path):
    reference, out = tmp_path / "basic", tmp_path / "slurm"
    rc, text = sweep(reference, "seed=0,1", *GROUPED)
    assert rc == 0, text[-3000:]
    rc, text = sweep(out, SLURM, "hydra.launcher.timeout_min=7", "seed=0,1", *GROUPED)
    assert rc == 0, text[-3000:]
    # the cost probe's job first, then the group's: one job each, no array task suffix
    probe, group = sorted((p.name for p in (out / ".submitit").iterdir() if p.is_dir()), key=int)
    assert sacct_states(group) == ["COMPLETED"]  # two members, one SLURM job
    assert sacct_states(probe) == ["COMPLETED"] and len(read_costs(out)) == 1  # the probe ran on the cluster too
    limit = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", group, "-o", "timelimitraw"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert limit == ["14"]  # 2 members x the preset's 7 minutes
    for seed in (0, 1):
        name = (
            "activation=relu,dataset.train_size=300,dataset=digits,"
            f"seed={seed},trainer.eval_every=100,trainer.steps=200"
        )
        got = json.loads((out / name / "summary.json").read_text())
        assert (got["group"]["size"], got["status"]) == (2, "ok")
        assert_same_results(out / name, reference / name)
