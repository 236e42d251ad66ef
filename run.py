"""Hydra entry point: compose the config, train one combination with harness.run, exit with its status."""

from __future__ import annotations

import logging
import secrets
import shutil
import sys
from pathlib import Path
from typing import cast

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.common.text import FILE_ONLY, PATH_LIMIT, SCREEN_LIMIT, clean
from harness.setup.config import EXIT_BAD_INPUT, Config
from harness.sweeps.grouping import GROUPS
from harness.sweeps.launchers import launcher_kind, threads_per_job
from harness.training.console import LOG_ROOM, fit, keep_detail_off_the_console

ConfigStore.instance().store(name="base_config", node=Config)
if not OmegaConf.has_resolver("uid"):
    # Folder names never collide; cached, so that every use in one config sees the same id.
    OmegaConf.register_new_resolver("uid", lambda: secrets.token_hex(3), use_cache=True)

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> str | None:
    hc = HydraConfig.get()
    keep_detail_off_the_console()  # Hydra's job logging, made for this job: detail to its log file only
    if hc.mode == RunMode.MULTIRUN:
        return sweep_job(cfg)
    from harness import ConfigError, run  # the training code, once Hydra has parsed the command line
    from harness.sweeps.joblock import JobBusy, JobLock
    from harness.training.console import format_summary

    run_dir = Path(hc.runtime.output_dir)
    try:
        with JobLock(run_dir):  # one writer per run folder
            summary = run(as_config(cfg), run_dir, list(hc.overrides.task))
    except JobBusy as exc:  # another process took the folder after preflight looked
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except ConfigError as exc:
        remove_hydra_files(run_dir)  # nothing ran: leave no empty run folder behind
        print(f"error: {clean(exc)}", file=sys.stderr)  # one line, whatever the values held
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:  # the disk filled or the folder turned read-only meanwhile: it cannot record itself
        print(f"error: the run could not write {exc.filename or run_dir}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    print(format_summary(summary))
    if summary["status"] == "failed":
        sys.exit(1)
    return None


def as_config(cfg: DictConfig) -> Config:
    """The composed config as the harness's Config: the structured schema stored above (base_config, the first
    entry of conf/config.yaml's defaults) makes OmegaConf.to_object build one."""
    return cast(Config, OmegaConf.to_object(cfg))


def remove_hydra_files(run_dir: Path) -> None:
    """Remove what Hydra wrote into a run folder whose run refused to start, and the folder if that empties it."""
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "run.log").unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:  # it holds other files: not ours to remove
        pass


def sweep_job(cfg: DictConfig) -> str:
    """One job of a sweep: it never exits or raises, so the others run; the sweeper tables the outcome."""
    from harness.records.cost import COST_DIR
    from harness.sweeps.joblock import JobBusy
    from harness.sweeps.sweep import progress, run_locked

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    config = as_config(cfg)
    # joblib's workers end with their sweep; submitit's jobs outlive the submitting process on purpose
    watch_parent = launcher_kind(hc.launcher) == "joblib"
    if Path(str(hc.sweep.subdir)).parts[0] == GROUPS:
        return group_job(config, run_dir, watch_parent, threads_per_job(hc.launcher))
    if Path(str(hc.sweep.subdir)).parts[0] == COST_DIR:
        return cost_job(run_dir, threads_per_job(hc.launcher))  # run_dir: <sweep>/.cost/probe
    if (run_dir / "checkpoint.pt").exists():
        log.info(f"continuing {fit(run_dir.name, LOG_ROOM - 30)} from its checkpoint.pt")
    try:
        summary = run_locked(config, run_dir, overrides, watch_parent, cpu_threads=threads_per_job(hc.launcher))
    except JobBusy as exc:
        log.warning(clean(f"left alone: {exc}", LOG_ROOM))
        return "running"
    log_job_end(progress(Path(hc.sweep.dir)), summary, run_dir)
    return summary["status"]


def cost_job(job_dir: Path, cpu_threads: int | None) -> str:
    """The sweep's cost probe (harness.training.cost), measured in a child process: whatever happens there, the
    sweep goes on (without the figures it could not measure)."""
    from harness.training.cost import probe_job

    problem = probe_job(job_dir, cpu_threads)
    if problem is None:
        log.info("cost probe: every listed setting measured", extra=FILE_ONLY)  # the sweeper says so on the screen
        return "ok"
    log.error(clean(f"cost probe failed: {problem}", SCREEN_LIMIT))
    return "failed"


def group_job(config: Config, group_dir: Path, watch_parent: bool, cpu_threads: int | None) -> str:
    """A group of the sweep (hydra.sweeper.group_size): its members, listed in group_dir by the sweeper, train
    together; each writes its own run folder. config is the first member's; the others differ only in their values
    of harness.training.group.MEMBER_KEYS, which group_dir lists."""
    from harness.sweeps.grouping import read_members, with_member_values
    from harness.sweeps.sweep import progress, run_group_locked

    spec = read_members(group_dir)
    members = spec["members"]
    configs = [with_member_values(config, m["values"]) for m in members]
    run_dirs = [group_dir.parent.parent / m["name"] for m in members]
    log.info(f"group {clean(spec['id'], 16)}: {len(members)} members train together (named in its log file)")
    for i, m in enumerate(members):
        log.info(f"member {i + 1} of {len(members)}: {clean(m['name'], PATH_LIMIT)}", extra=FILE_ONLY)
    summaries = run_group_locked(
        configs,
        run_dirs,
        [m["overrides"] for m in members],
        spec["id"],
        [m["hydra_files"] for m in members],
        watch_parent,
        cpu_threads,  # the launcher's share of the cores, as a single job's
    )
    done = progress(group_dir.parent.parent)
    for s in summaries:
        log_job_end(done, s, Path(s["run_dir"]))
    return "failed" if any(s["status"] == "failed" for s in summaries) else "ok"


def log_job_end(done: tuple[int, int], summary: dict, run_dir: Path) -> None:
    """A finished job's (or group member's) line on the console, named by what tells it from the sweep's other
    jobs; its folder and a failure's traceback in the log file only (harness.common.text.FILE_ONLY)."""
    from harness.sweeps.jobtable import varying_label
    from harness.sweeps.sweep import read_manifest

    try:
        label = varying_label(read_manifest(run_dir.parent)["jobs"], run_dir.name)
    except ValueError:  # no readable sweep.json: the folder's name
        label = run_dir.name
    log.info(job_line(done, summary, run_dir, label))
    log.info(f"  its folder: {clean(run_dir, PATH_LIMIT)}", extra=FILE_ONLY)
    if summary["status"] == "failed":
        error = [line.strip() for line in str(summary.get("error") or "").splitlines() if line.strip()]
        log.error(clean(f"  traceback in its log file; {error[-1] if error else 'failed'}", LOG_ROOM))
        log.error(f"{clean(run_dir.name, PATH_LIMIT)} failed:\n{summary.get('error')}", extra=FILE_ONLY)


def job_line(done: tuple[int, int], summary: dict, run_dir: Path, label: str | None = None) -> str:
    """The console's line for a finished job: progress, outcome, its label or folder name (cleaned: a folder name
    holds any override; cut in its middle to one screen line, harness.training.console.LOG_ROOM)."""
    acc = summary.get("test_acc")
    head = f"[{done[0]}/{done[1]} done] {clean(summary['status'], 10)} "
    tail = f" test_acc {acc:.4f}" if acc is not None else ""
    return head + fit(label or run_dir.name, LOG_ROOM - len(head) - len(tail)) + tail


def cli() -> None:
    """`python run.py ...`: a command that cannot work gets one line and exit 2 before Hydra writes anything; a
    Ctrl-C gets one line and exit 130 wherever it lands (torch's imports, preflight, training), not a traceback."""
    try:
        from hydra_plugins.harness_sweeper.preflight import preflight

        preflight(sys.argv[1:], Path(__file__).resolve().parent)
        main()
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): a run stopped before its end records no result", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
