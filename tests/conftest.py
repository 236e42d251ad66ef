"""Shared test fixtures: configs composed in process (no subprocess), one cached MNIST-1D for the session."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import run  # noqa: F401  registers the structured-config schema and the `uid` resolver
from harness.config import Config

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(*overrides: str) -> Config:
    """The Config that `python run.py OVERRIDES` would run, composed in process."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread is faster and never oversubscribed."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    """One MNIST-1D cache for the whole session (generating it takes about a second)."""
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny(data_root):
    """compose_config with a few-step, quiet, small-data run on the session's cached data."""

    def make(*overrides: str) -> Config:
        base = ["trainer.steps=20", "trainer.eval_every=10", "trainer.log_every=10", "trainer.progress=false",
                f"dataset.root={data_root}", "dataset.train_size=300", "trainer.device=cpu", "trainer.threads=1"]
        return compose_config(*base, *overrides)

    return make
