"""submitit's SLURM launcher, except that a job SLURM ends without a result is one failed job, not a dead sweep."""
# conf/hydra/launcher/slurm_cpu.yaml and slurm_gpu.yaml name it as their _target_.

import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

if TYPE_CHECKING:
    import submitit  # imported where it is used: only on a machine that submits to SLURM

log = logging.getLogger(__name__)


class JobEndedWithoutResult(Exception):
    """SLURM ended the job (scancel, a node failure, too many timeouts) or it died before returning."""


class SubmititSlurmLauncher(SlurmLauncher):
    """Waits for every job of the array and returns them all. submitit's own launcher raises at the first job
    without a result, so the sweep ends there and the jobs after it, still running, go unreported. Here that
    job's return is a failure the sweeper tables; its folder has no summary.json, so resume=true reruns it (from
    its checkpoint.pt, if it wrote one)."""

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        """In the job, on its node: run it, with submitit's requeue signal handled without raising into it."""
        import submitit

        requeue_without_exiting(submitit.JobEnvironment._usr_sig())
        return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        numbered = list(enumerate(job_overrides, start=initial_job_idx))
        for idx, overrides in numbered:
            log.info(f"\t#{idx} : {' '.join(overrides)}")
        # One array per group size: a group of K members is one SLURM job that asks for K times the preset's
        # --time (the preset's limits are for one run); memory stays as it is, since a group loads its data once.
        by_size: dict[int, list] = {}
        for idx, overrides in numbered:
            by_size.setdefault(group_size(overrides, sweep_dir), []).append((idx, overrides))
        returns = {}
        for size, batch in sorted(by_size.items()):
            if size > 1:
                log.info(f"groups of {size} members: --time {self.params['timeout_min'] * size} min each")
            params = [
                (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
                for idx, overrides in batch
            ]
            jobs = self.executor(size).map_array(self, *zip(*params))
            returns.update({idx: (job, overrides) for job, (idx, overrides) in zip(jobs, batch)})
        return [collect(*returns[idx]) for idx, _ in numbered]

    def executor(self, size: int = 1) -> "submitit.AutoExecutor":
        """The executor submitit's launcher builds: our keys as sbatch options, submitit's own prefixed slurm_;
        the time limit scaled to a group's size."""
        import submitit

        own = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=self.params["submitit_folder"], slurm_max_num_timeout=self.params["max_num_timeout"]
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {**self.params, "timeout_min": self.params["timeout_min"] * size}
        executor.update_parameters(
            **{key if key in shared else f"slurm_{key}": value for key, value in params.items() if key not in own}
        )
        return executor


def group_size(overrides: Sequence[str], sweep_dir: Path) -> int:
    """Members of a group job (its hydra.sweep.subdir is .groups/<id>, where the sweeper wrote group.json); 1
    for an ordinary job."""
    from harness.sweeps.grouping import GROUPS, read_members

    for override in overrides:
        key, _, value = override.partition("=")
        if key == "hydra.sweep.subdir" and value.startswith(f"{GROUPS}/"):
            return len(read_members(sweep_dir / value)["members"])
    return 1


def requeue_without_exiting(signum: int) -> None:
    """Wrap submitit's handler of the signal SLURM sends before the time limit (and some clusters on preemption).

    It requeues the job, then raises SystemExit from wherever training happens to be. A job records an exit
    there as its failure (a summary.json that says failed, the checkpoint gone), and the sweep would collect that.
    Requeueing a running job makes SLURM end it anyway (SIGKILL KillWait seconds after the SIGTERM submitit
    ignores), so the job trains on until then and its restart continues from the last checkpoint.pt.
    """
    handler = signal.getsignal(signum)
    if not callable(handler):
        return

    def requeue(number: int, frame: FrameType | None) -> None:
        try:
            handler(number, frame)
        except SystemExit:
            log.warning("requeued: training on until SLURM ends this attempt; the next continues from its checkpoint")

    signal.signal(signum, requeue)


def collect(job: "submitit.Job", overrides: Sequence[str]) -> JobReturn:
    """The job's return once it has ended; a failed return when it ended without one."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        return job.results()[0]
    except (UncompletedJobError, FailedJobError) as exc:
        reason = str(exc).strip().splitlines()[0] if isinstance(exc, FailedJobError) else "without a result"
        error = JobEndedWithoutResult(f"SLURM job {job.job_id} ended {job.state} {reason}")
        log.error(f"{error}; its log: {job.paths.stderr}")
        return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=error)
