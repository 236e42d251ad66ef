"""A Hydra sweeper that does not lose work: validates every job first, skips finished ones, tables failures."""
# No `from __future__ import annotations`: Hydra executes plugin modules before registering them in sys.modules,
# and dataclasses then cannot resolve string annotations.

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.common.outputs import SymlinkRefused, refuse_symlinks
from harness.common.text import NOTE_LIMIT, PATH_LIMIT, SCREEN_LIMIT, clean
from harness.setup.config import EXIT_BAD_INPUT, Config  # EXIT_BAD_INPUT: nothing ran
from harness.sweeps import grouping
from harness.sweeps.launchers import launcher_kind, quiet_launcher, usable_cpus
from hydra_plugins.harness_sweeper import around
from hydra_plugins.harness_sweeper._folders import (  # noqa: F401  BadSweep and quoted_override: imported from here
    LINE,
    MULTIRUN,
    BadSweep,
    check_folder,
    compact,
    job_outputs,
    pin_sweep_dir,
    quoted_override,
    resume_command,
)

EXIT_FAILED = 1  # a job failed or did not finish
EXIT_INTERRUPTED = 130


@dataclass
class HarnessSweeperConf:
    _target_: str = "hydra_plugins.harness_sweeper.harness_sweeper.HarnessSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    group_size: Any = 1  # members per group job (an int, or auto); 1: one job per run (grouping.py)
    cost_probe: bool = True  # time each cost setting alone before the jobs start (harness/training/cost.py)


ConfigStore.instance().store(group="hydra/sweeper", name="harness", node=HarnessSweeperConf, provider="harness")


@dataclass
class Job:
    overrides: list[str]
    name: str  # its folder under the sweep dir, named from its own overrides
    config_hash: str
    resume: bool
    config: Any = None  # the harness Config, for the failed summary of a job whose process died
    skip_to: Path | None = None  # the finished run that resume keeps, when skipped
    running: bool = False  # a live process of another sweep holds its folder: left alone
    hydra_files: dict | None = None  # its .hydra/config.yaml and overrides.yaml as Hydra writes them (members)


class HarnessSweeper(BasicSweeper):
    """BasicSweeper's cartesian product, made safe to interrupt, resume and run on a cluster."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        group_size: Any = 1,
        cost_probe: bool = True,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.group_size = group_size
        self.cost_probe = cost_probe
        self.told: set[str] = set()  # the grouping lines said once, not again when a broken pool relaunches

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweep_dir = Path(pin_sweep_dir(config))  # before the launcher reads it (submitit's folder)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            jobs = self.plan(arguments)
            around.check_trackers(jobs)
        except BadSweep as exc:
            print(f"error: {clean(exc)}", file=sys.stderr)  # one line, whatever a swept value holds
            sys.exit(EXIT_BAD_INPUT)
        command = resume_command(str(self.sweep_dir))
        self.start(jobs, command)
        around.open_trackers(jobs, self.sweep_dir)
        if self.cost_probe:
            assert self.launcher is not None  # set by setup(), before sweep()
            around.probe_costs(self.launcher, self.sweep_dir, jobs)
        returns, stopped = self.launch_all(jobs)
        ended = all(r.status == JobStatus.COMPLETED and r._return_value != "failed" for r in returns)
        around.close_trackers(jobs, self.sweep_dir, ended and not stopped)
        self.report(jobs, returns, stopped, command)
        return returns

    # ---------------------------------------------------------------- before any job starts

    def plan(self, arguments: list[str]) -> list[Job]:
        """Every job composed, type-checked and validated, and matched against finished runs; raises BadSweep."""
        try:
            self.group_size = grouping.check_group_size(self.group_size)
        except ValueError as exc:
            raise BadSweep(str(exc)) from None
        if self.sweep_dir.exists() and not self.sweep_dir.is_dir():
            raise BadSweep(f"hydra.sweep.dir={self.sweep_dir} is a file, not a folder")
        from harness.sweeps.sweep import MANIFEST, finished_runs

        try:
            refuse_symlinks(self.sweep_dir, (MANIFEST, MULTIRUN))
        except SymlinkRefused as exc:
            raise BadSweep(clean(exc, PATH_LIMIT)) from None
        assert self.hydra_context is not None  # set by setup(), which Hydra calls before sweep()
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
                raise BadSweep(
                    f"two jobs would share the folder {job.name!r}: {differ} is left out of folder names "
                    "(hydra.job.config.override_dirname.exclude_keys), so it cannot be swept"
                )
            seen[job.name] = job
        finished = finished_runs(self.sweep_dir) if self.sweep_dir.exists() else {}
        self.check_other_sweep(jobs, finished)
        for job in jobs:
            self.match(job, finished)
        return jobs

    def check_other_sweep(self, jobs: list[Job], finished: dict) -> None:
        """Without resume, a sweep folder whose manifest lists finished runs is another sweep's: leave it whole."""
        from harness.sweeps.sweep import MANIFEST

        if not finished or not (self.sweep_dir / MANIFEST).exists() or any(j.resume for j in jobs):
            return
        raise BadSweep(
            f"{self.sweep_dir} already holds a finished run; add resume=true to skip its {len(finished)} "
            "finished job(s) and add these, or leave hydra.sweep.dir out to start a new sweep"
        )

    def compose(self, overrides: list[str], swept: set[str]) -> Job:
        """A job's config as its launcher will compose it, checked as harness.run will check it."""
        from harness.setup.config import config_hash
        from harness.sweeps.sweep import check_job

        assert self.hydra_context is not None and self.config is not None  # set by setup(), before sweep()
        label = " ".join(o for o in overrides if o.split("=", 1)[0] in swept) or " ".join(overrides)
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            name = str(cfg.hydra.sweep.subdir)
            task = copy.deepcopy(cfg)
            with read_write(task), open_dict(task):
                del task["hydra"]
            # The structured schema (Config, registered by run.py as base_config) makes the object a Config.
            config = cast(Config, OmegaConf.to_object(task))
            check_folder(self.sweep_dir, name, job_outputs(cfg))
            check_job(config)
        except BadSweep as exc:
            raise BadSweep(f"{exc} (job {label})") from None
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise BadSweep(f"{compact(exc)} (job {label})") from None
        except BaseException as exc:  # SystemExit: a custom activation probed here may call sys.exit
            raise BadSweep(f"the activation could not be built: {type(exc).__name__}: {exc} (job {label})") from None
        files = {"config.yaml": OmegaConf.to_yaml(task), "overrides.yaml": OmegaConf.to_yaml(cfg.hydra.overrides.task)}
        return Job(list(overrides), name, config_hash(config), bool(config.resume), config, hydra_files=files)

    def match(self, job: Job, finished: dict) -> None:
        """Skip a job whose configuration already finished (resume); refuse to overwrite a finished run."""
        from harness.sweeps.sweep import FINISHED, job_state

        if job.resume and job.config_hash in finished:
            job.skip_to = finished[job.config_hash]
            return
        state, summary = job_state(self.sweep_dir / job.name)
        job.running = state == "running"
        if state not in FINISHED:
            return
        assert summary is not None  # job_state returns a finished state only with its summary
        folder = self.sweep_dir / job.name
        if summary["config_hash"] != job.config_hash:
            raise BadSweep(
                f"{folder} holds a finished run of another configuration (config_hash "
                f"{summary['config_hash']}, this job {job.config_hash}); use a new hydra.sweep.dir"
            )
        raise BadSweep(
            f"{folder} already holds a finished run; add resume=true to skip finished jobs, "
            "or leave hydra.sweep.dir out to start a new sweep"
        )

    def start(self, jobs: list[Job], command: str) -> None:
        """Create the sweep folder, set corrupt summaries aside, write the manifest and say what will happen."""
        from harness.sweeps.sweep import extend_manifest, job_state, set_aside

        assert self.config is not None  # set by setup(), which Hydra calls before sweep()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        if not (self.sweep_dir / MULTIRUN).exists():  # the first sweep's; the manifest lists every job
            OmegaConf.save(self.config, self.sweep_dir / MULTIRUN)
        for job in self.to_run(jobs):
            folder = self.sweep_dir / job.name
            state, summary = job_state(folder)
            if state == "corrupt" and (aside := set_aside(folder)):
                why = (summary or {}).get("note", "corrupt summary.json")
                line = f"{job.name}: {why}; its files set aside ({aside.name}, ...); the job reruns"
                print(clean(line, SCREEN_LIMIT))
        self.record_crashes(jobs, "its process died in an earlier attempt; resume again to retry it")
        manifest = [
            {
                "dir": str((j.skip_to or self.sweep_dir / j.name).relative_to(self.sweep_dir)),
                "overrides": j.overrides,
                "config_hash": j.config_hash,
            }
            for j in jobs
        ]
        extend_manifest(self.sweep_dir, manifest, command)
        skipped = sum(j.skip_to is not None for j in jobs)
        running = sum(j.running for j in jobs)
        launcher = self.config.hydra.runtime.choices.get("hydra/launcher", "basic")
        print(
            f"sweep: {len(jobs)} jobs, {skipped} finished earlier (skipped), "
            + (f"{running} running in another process (left alone), " if running else "")
            + f"{len(self.to_run(jobs))} to run with the {launcher} launcher"
        )
        print(f"results: {self.sweep_dir}")  # a path and a command to copy: whole, each on its own line
        print(f"resume:  {command}")
        launcher_cfg = self.config.hydra.launcher
        quiet_launcher(launcher_cfg, self.config.hydra.verbose)  # no line per job unless hydra.launcher.verbose=N
        if launcher_cfg.get("timeout_min") is not None:
            print(f"note: the launcher stops a job after hydra.launcher.timeout_min={launcher_cfg.timeout_min} minutes")
        if launcher_cfg.get("max_num_timeout") and not self.config.trainer.checkpoint_every:
            print("note: a job requeued after its time limit starts over; set trainer.checkpoint_every to continue it")
        sys.stdout.flush()

    # ---------------------------------------------------------------- running and reporting

    @staticmethod
    def to_run(jobs: list[Job]) -> list[Job]:
        return [j for j in jobs if j.skip_to is None and not j.running]

    def record_crashes(self, jobs: list[Job], why: str) -> int:
        """A job whose process died of a signal (its fault.log says how) is a failed job, not one to run again now."""
        from harness.sweeps.sweep import crash_note, failed_summary

        crashed = 0
        for job in self.to_run(jobs):
            folder = self.sweep_dir / job.name
            note = crash_note(folder)
            if note:
                failed_summary(job.config, folder, job.overrides, f"the job's process died: {note} ({why})")
                job.skip_to, crashed = folder, crashed + 1
                print(clean(f"{job.name}: the job's process died ({note}); recorded as failed", LINE))
        return crashed

    def launch_all(self, jobs: list[Job]) -> tuple[list[JobReturn], str | None]:
        """Launch the jobs in batches; a launcher that dies (a killed worker, Ctrl-C) ends the sweep, not the report.

        Under joblib a job that kills its worker (os.abort, a segfault) breaks the whole pool: that job is recorded
        as failed and the jobs it took down with it are launched again, as long as each round records a crash.
        """
        assert self.launcher is not None and self.config is not None  # set by setup(), before sweep()
        returns: list[JobReturn] = []
        while True:
            pending = self.launch_list(self.to_run(jobs))
            try:
                for batch in self.split_overrides_to_chunks(pending, self.max_batch_size) if pending else []:
                    returns += self.launcher.launch(batch, initial_job_idx=len(returns))
                return returns, None
            except KeyboardInterrupt:
                return returns, "interrupted"
            except BaseException as exc:  # e.g. joblib's TerminatedWorkerError when a worker dies
                stopped = clean(f"{type(exc).__name__}: {compact(exc)}", NOTE_LIMIT)
                crashed = self.record_crashes(jobs, "it took its worker down")
                if not crashed or launcher_kind(self.config.hydra.launcher) != "joblib":
                    return returns, stopped
                self.refresh(jobs)

    def launch_list(self, jobs: list[Job]) -> list[list[str]]:
        """The overrides of each job to launch: a run alone as today; a group as one job whose folder is
        .groups/<id> (its log and Hydra files), which reads its members from there (run.py's group_job)."""
        assert self.config is not None  # set by setup(), which Hydra calls before sweep()
        groups, lines = grouping.plan_groups(jobs, self.group_size, self.config.hydra.launcher, usable_cpus())
        for line in lines:
            if line not in self.told:
                print(line)
                self.told.add(line)
        launches = []
        for group in groups:
            if len(group) == 1:
                launches.append(group[0].overrides)
                continue
            gid = grouping.group_id([j.name for j in group])
            grouping.write_members(self.sweep_dir, gid, [grouping.member_entry(j) for j in group])
            launches.append(group[0].overrides + [f"hydra.sweep.subdir={grouping.GROUPS}/{gid}"])
        sys.stdout.flush()
        return launches

    def refresh(self, jobs: list[Job]) -> None:
        """After a broken pool: jobs that finished meanwhile are done, the others (their workers gone) run again."""
        from harness.sweeps.sweep import FINISHED, job_state

        for job in self.to_run(jobs):
            state, _ = job_state(self.sweep_dir / job.name)
            if state in FINISHED or state == "failed":
                job.skip_to = self.sweep_dir / job.name
            job.running = state == "running"

    def report(self, jobs: list[Job], returns: list[JobReturn], stopped: str | None, command: str) -> None:
        """One table of every job; exit non-zero when any failed or did not finish."""
        from harness.sweeps.jobtable import format_table
        from harness.sweeps.sweep import FINISHED, job_state

        raised = {  # every launcher sets a return's overrides, which JobReturn types as optional
            tuple(r.overrides): r._return_value
            for r in returns
            if r.status == JobStatus.FAILED and r.overrides is not None
        }
        rows = []
        for job in jobs:
            state, summary = job_state(job.skip_to or self.sweep_dir / job.name)
            error = raised.get(tuple(job.overrides))
            if summary is None and error is not None:  # raised before it could write its summary
                state, summary = "failed", {"error": f"{type(error).__name__}: {error}"}
            rows.append((state, job.name, summary))
        print(f"\nsweep results: {self.sweep_dir}")
        print(format_table(rows))
        done = [job.skip_to or self.sweep_dir / job.name for job, row in zip(jobs, rows) if row[0] in FINISHED]
        around.edge_warnings(jobs, done)
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
