"""Hydra entry point: compose the config, train one combination with harness.run, exit with its status."""
from __future__ import annotations

import secrets
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from harness.config import Config

ConfigStore.instance().store(name="base_config", node=Config)
if not OmegaConf.has_resolver("uid"):
    OmegaConf.register_new_resolver("uid", lambda: secrets.token_hex(3))  # run-folder names never collide

# Errors that mean "bad input": one line, exit 2, before any training.
EXIT_BAD_INPUT = 2


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from harness import BadInput, run  # after Hydra has parsed the command line: `--help` stays fast
    from harness.console import format_summary

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        summary = run(OmegaConf.to_object(cfg), run_dir, list(hc.overrides.task))
    except BadInput as exc:
        if not any(run_dir.glob("*.json")) and not any(run_dir.glob("*.csv")):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: leave no empty run folder behind
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    print(format_summary(summary))
    if summary["status"] == "failed":
        sys.exit(1)


if __name__ == "__main__":
    main()
