"""Hydra entry point: compose the config, train one combination with harness.run, exit with its status."""
from __future__ import annotations

import logging
import secrets
import shutil
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.config import EXIT_BAD_INPUT, Config

ConfigStore.instance().store(name="base_config", node=Config)
if not OmegaConf.has_resolver("uid"):
    # Folder names never collide; cached, so that every use in one config sees the same id.
    OmegaConf.register_new_resolver("uid", lambda: secrets.token_hex(3), use_cache=True)

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> str | None:
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return sweep_job(cfg)
    from harness import ConfigError, run  # after Hydra has parsed the command line: `--help` stays fast
    from harness.console import format_summary

    run_dir = Path(hc.runtime.output_dir)
    try:
        summary = run(OmegaConf.to_object(cfg), run_dir, list(hc.overrides.task))
    except ConfigError as exc:
        if not any(run_dir.glob("*.json")) and not any(run_dir.glob("*.csv")):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: leave no empty run folder behind
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    print(format_summary(summary))
    if summary["status"] == "failed":
        sys.exit(1)
    return None


def sweep_job(cfg: DictConfig) -> str:
    """One job of a sweep: it never exits or raises, so the others run; the sweeper tables the outcome."""
    from harness import run
    from harness.sweep import failed_summary, progress

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    config = OmegaConf.to_object(cfg)
    if (run_dir / "checkpoint.pt").exists():
        log.info(f"continuing {run_dir.name} from its checkpoint.pt")
    try:
        summary = run(config, run_dir, overrides, cpu_threads=launcher_threads(hc.launcher))
    except Exception:  # data found missing only now, or a bug outside the loop: a failed job, not a failed sweep
        summary = failed_summary(config, run_dir, overrides, traceback.format_exc())
    if summary["status"] == "failed":
        log.error("job failed: %s\n%s", run_dir.name, summary.get("error"))  # the traceback, in the job's log
    done, total = progress(Path(hc.sweep.dir))
    acc = summary.get("test_acc")
    log.info(f"[{done}/{total} done] {summary['status']} {run_dir.name}"
             + (f" test_acc {acc:.4f}" if acc is not None else "") + f" -> {run_dir}")
    return summary["status"]


def launcher_threads(launcher: DictConfig) -> int | None:
    """The cap on torch threads per job for parallel launchers (their share of the cores); None (torch's default)
    for the sequential basic launcher."""
    from harness.sweep import threads_per_job

    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        return threads_per_job(int(launcher.n_jobs))
    if "submitit" in target:
        return launcher.get("cpus_per_task") or 1  # what SLURM allocates; local jobs all start at once
    return None


if __name__ == "__main__":
    main()
