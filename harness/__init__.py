"""Activation benchmarking harness: train activation x model x dataset combinations and measure what happens."""

from __future__ import annotations

from pathlib import Path

from harness.setup.config import ActivationError, Config, ConfigError, DataError

# ActivationError and DataError are ConfigErrors: bad input, reported in one line before any data is loaded.
__all__ = ["ActivationError", "Config", "ConfigError", "DataError", "run"]


def run(
    config: Config, run_dir: Path, overrides: list[str] | tuple[str, ...] = (), cpu_threads: int | None = None
) -> dict:
    """Train one combination in run_dir; see harness.training.train.run."""
    from harness.training.train import run as train_run  # torch loads here, not at import time

    return train_run(config, run_dir, overrides, cpu_threads=cpu_threads)
