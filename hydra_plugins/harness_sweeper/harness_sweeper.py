"""A Hydra sweeper that does not lose work: validates every job first, skips finished ones, tables failures."""
# No `from __future__ import annotations`: Hydra executes plugin modules before registering them in sys.modules,
# and dataclasses then cannot resolve string annotations.

import copy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.config import EXIT_BAD_INPUT  # nothing ran

EXIT_FAILED = 1  # a job failed or did not finish
EXIT_INTERRUPTED = 130


@dataclass
class HarnessSweeperConf:
    _target_: str = "hydra_plugins.harness_sweeper.harness_sweeper.HarnessSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="harness", node=HarnessSweeperConf, provider="harness")


class BadSweep(Exception):
    """A sweep that must not start; the message is one line for the user."""


@dataclass
class Job:
    overrides: list[str]
    name: str  # its folder under the sweep dir, named from its own overrides
    config_hash: str
    resume: bool
    skip_to: Path | None = None  # the finished run that resume keeps, when skipped


def compact(exc: BaseException) -> str:
    """One line from Hydra's and OmegaConf's multi-line messages, without their search-path and full_key noise."""
    text = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__) not in text:
        text += "\n" + str(exc.__cause__)
    text = text.split("\nConfig search path:")[0]
    text, found, options = text.partition("\n\nAvailable options in ")
    if found:  # a missing config-group option: name the valid ones on the same line
        group, _, names = options.partition(":")
        text += f"; valid {group}: " + ", ".join(names.split())
    noise = ("full_key:", "reference_type", "object_type")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(noise)]
    return ": ".join(lines)


def pin_sweep_dir(config: DictConfig) -> str:
    """Resolve the sweep dir once and hand it to every job as an override: `${now:}`/`${uid:}` never re-roll."""
    sweep_dir = str(Path(str(config.hydra.sweep.dir)).absolute())
    config.hydra.sweep.dir = sweep_dir
    escaped = sweep_dir.replace("\\", "\\\\").replace("'", "\\'")
    kept = [o for o in config.hydra.overrides.hydra if not o.startswith("hydra.sweep.dir=")]
    config.hydra.overrides.hydra = kept + [f"hydra.sweep.dir='{escaped}'"]
    return sweep_dir


def resume_command(sweep_dir: str) -> str:
    """The command line that continues this sweep: the same arguments, resume=true and the pinned folder."""
    args = [a for a in sys.argv[1:] if not a.lstrip("+").startswith(("resume=", "hydra.sweep.dir="))]
    return " ".join(["python", shlex.quote(sys.argv[0])] + [shlex.quote(a) for a in args]
                    + ["resume=true", shlex.quote(f"hydra.sweep.dir={sweep_dir}")])


class HarnessSweeper(BasicSweeper):
    """BasicSweeper's cartesian product, made safe to interrupt, resume and run on a cluster."""

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.sweep_dir = Path(pin_sweep_dir(config))  # before the launcher reads it (submitit's folder)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            jobs = self.plan(arguments)
        except BadSweep as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        command = resume_command(str(self.sweep_dir))
        self.start(jobs, command)
        returns, stopped = self.launch_all([j.overrides for j in jobs if j.skip_to is None])
        self.report(jobs, returns, stopped, command)
        return returns

    # ---------------------------------------------------------------- before any job starts

    def plan(self, arguments: list[str]) -> list[Job]:
        """Every job composed, type-checked and validated, and matched against finished runs; raises BadSweep."""
        from harness.sweep import finished_runs

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        try:
            parsed = parser.parse_overrides(self._parse_config() + list(arguments))
            combinations = self.split_arguments(parsed, None)[0]
        except Exception as exc:
            raise BadSweep(compact(exc)) from None
        swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
        jobs = [self.compose(overrides, swept) for overrides in combinations]
        seen: dict[str, Job] = {}
        for job in jobs:
            if job.name in seen:
                differ = " ".join(o for o in job.overrides if o not in seen[job.name].overrides)
                raise BadSweep(f"two jobs would share the folder {job.name!r}: {differ} is left out of folder names "
                               "(hydra.job.config.override_dirname.exclude_keys), so it cannot be swept")
            seen[job.name] = job
        finished = finished_runs(self.sweep_dir) if self.sweep_dir.exists() else {}
        for job in jobs:
            self.match(job, finished)
        return jobs

    def compose(self, overrides: list[str], swept: set) -> Job:
        """A job's config as its launcher will compose it, checked as harness.run will check it."""
        from harness.config import config_hash
        from harness.sweep import check_job

        label = " ".join(o for o in overrides if o.split("=", 1)[0] in swept) or " ".join(overrides)
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            name = str(cfg.hydra.sweep.subdir)
            task = copy.deepcopy(cfg)
            with read_write(task), open_dict(task):
                del task["hydra"]
            config = OmegaConf.to_object(task)
            check_job(config)
        except Exception as exc:
            raise BadSweep(f"{compact(exc)} (job {label})") from None
        return Job(list(overrides), name, config_hash(config), bool(config.resume))

    def match(self, job: Job, finished: dict) -> None:
        """Skip a job whose configuration already finished (resume); refuse to overwrite a finished run."""
        from harness.sweep import FINISHED, job_state

        if job.resume and job.config_hash in finished:
            job.skip_to = finished[job.config_hash]
            return
        state, summary = job_state(self.sweep_dir / job.name)
        if state not in FINISHED:
            return
        folder = self.sweep_dir / job.name
        if summary["config_hash"] != job.config_hash:
            raise BadSweep(f"{folder} holds a finished run of another configuration (config_hash "
                           f"{summary['config_hash']}, this job {job.config_hash}); use a new hydra.sweep.dir")
        raise BadSweep(f"{folder} already holds a finished run; add resume=true to skip finished jobs, "
                       "or leave hydra.sweep.dir out to start a new sweep")

    def start(self, jobs: list[Job], command: str) -> None:
        """Create the sweep folder, set corrupt summaries aside, write the manifest and say what will happen."""
        from harness.sweep import job_state, remove_leftovers, set_aside, write_manifest

        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        for job in (j for j in jobs if j.skip_to is None):
            folder = self.sweep_dir / job.name
            remove_leftovers(folder)  # nothing of this job runs now: its temporary files are a killed writer's
            if job_state(folder)[0] == "corrupt":
                print(f"{job.name}: corrupt summary.json moved to {set_aside(folder).name}; the job reruns")
        manifest = [{"dir": str((j.skip_to or self.sweep_dir / j.name).relative_to(self.sweep_dir)),
                     "overrides": j.overrides, "config_hash": j.config_hash} for j in jobs]
        write_manifest(self.sweep_dir, manifest, command)
        skipped = sum(j.skip_to is not None for j in jobs)
        launcher = self.config.hydra.runtime.choices.get("hydra/launcher", "basic")
        print(f"sweep: {len(jobs)} jobs, {skipped} finished earlier (skipped), {len(jobs) - skipped} to run "
              f"with the {launcher} launcher")
        print(f"results: {self.sweep_dir}")
        print(f"resume:  {command}")
        launcher_cfg = self.config.hydra.launcher
        if launcher_cfg.get("timeout_min") is not None:
            print(f"note: the launcher stops a job after hydra.launcher.timeout_min={launcher_cfg.timeout_min} minutes")
        if launcher_cfg.get("max_num_timeout") and not self.config.trainer.checkpoint_every:
            print("note: a job requeued after its time limit starts over; set trainer.checkpoint_every to continue it")
        sys.stdout.flush()

    # ---------------------------------------------------------------- running and reporting

    def launch_all(self, to_run: list[list[str]]) -> tuple[list, str | None]:
        """Launch the jobs in batches; a launcher that dies (a killed worker, Ctrl-C) ends the sweep, not the report."""
        returns: list = []
        try:
            for batch in self.split_overrides_to_chunks(to_run, self.max_batch_size) if to_run else []:
                returns += self.launcher.launch(batch, initial_job_idx=len(returns))
        except KeyboardInterrupt:
            return returns, "interrupted"
        except Exception as exc:  # e.g. joblib's TerminatedWorkerError when a worker is killed
            return returns, f"{type(exc).__name__}: {compact(exc)[:200]}"
        return returns, None

    def report(self, jobs: list[Job], returns: list, stopped: str | None, command: str) -> None:
        """One table of every job; exit non-zero when any failed or did not finish."""
        from harness.sweep import FINISHED, format_table, job_state

        raised = {tuple(r.overrides): r._return_value for r in returns if r.status == JobStatus.FAILED}
        rows = []
        for job in jobs:
            state, summary = job_state(job.skip_to or self.sweep_dir / job.name)
            error = raised.get(tuple(job.overrides))
            if summary is None and error is not None:  # raised before it could write its summary
                state, summary = "failed", {"error": f"{type(error).__name__}: {error}"}
            rows.append((state, job.name, summary))
        print(f"\nsweep results: {self.sweep_dir}")
        print(format_table(rows))
        bad = sum(state not in FINISHED for state, _, _ in rows)
        if stopped:
            print(f"sweep stopped early ({stopped})")
        if bad:
            print(f"{bad} job(s) failed or did not finish; rerun them with:\n  {command}")
        sys.stdout.flush()
        if stopped == "interrupted":
            sys.exit(EXIT_INTERRUPTED)
        if bad or stopped:
            sys.exit(EXIT_FAILED)
