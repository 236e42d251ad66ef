"""Shared test fixtures: configs composed and `python run.py` commands run in process (no subprocess), one cached
MNIST-1D for the session, the optional extras a test needs (`@pytest.mark.extra(...)`), and the `serial` mark for
tests that must run alone."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import run  # registers the structured-config schema and the `uid` resolver
from harness.setup.config import Config

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_config(*overrides: str) -> Config:
    """The Config that `python run.py OVERRIDES` would run, composed in process."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


COST_PROBE = "hydra.sweeper.cost_probe"


def probe_off(args: tuple[str, ...]) -> tuple[str, ...]:
    """A sweep's (-m, or a study's hydra.mode) cost probe off unless the arguments set it: it has tests of its own
    (test_cost_probe.py, the SLURM tests); the others would pay its seconds for nothing."""
    return args if any(a.startswith(COST_PROBE) for a in args) else (*args, f"{COST_PROBE}=false")


def run_py_in_process(*args: str, preflight: bool = True) -> int:
    """`python run.py ARGS` in this process, with sys.argv patched for the call: its exit status. run.cli (the
    preflight, then Hydra), or with preflight=False run.main (Hydra only, as a sweep's own jobs start)."""
    saved = sys.argv
    args = probe_off(args)
    # imported, not run as a script, run.py's config_path would be looked up as a Python package: name the folder
    sys.argv = ["run.py", "--config-path", CONF_DIR, *args]
    try:
        (run.cli if preflight else run.main)()
        return 0
    except SystemExit as exc:  # as the interpreter reads it: None is success, an int the status, any other 1
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in the tests, as in a terminal, however pytest was started: a process started in
    the background by a shell without job control (`cmd &` in a script, nohup) inherits SIGINT ignored, and Python
    then installs no handler, so the tests that press Ctrl-C would see nothing happen."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread is faster and never oversubscribed."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    """One MNIST-1D cache for the whole session (generating it takes about a second)."""
    return str(tmp_path_factory.mktemp("data"))


def tiny_overrides(data_root: str) -> list[str]:
    """A few-step, quiet, small-data run on data cached in data_root, as command-line overrides. threads=1: two torch
    threads on a busy 2-core machine spin-wait and run ~20x slower."""
    return [
        "trainer.steps=20",
        "trainer.eval_every=10",
        "trainer.log_every=10",
        "trainer.progress=false",
        f"dataset.root={data_root}",
        "dataset.train_size=300",
        "trainer.device=cpu",
        "trainer.threads=1",
    ]


def tiny_config(data_root: str, *overrides: str) -> Config:
    """compose_config of tiny_overrides, then `overrides`."""
    return compose_config(*tiny_overrides(data_root), *overrides)


@pytest.fixture
def tiny(data_root):
    """tiny_config on the session's cached data."""
    return lambda *overrides: tiny_config(data_root, *overrides)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"

# What each optional extra is, how to tell it is there, and how to get it. A test marked
# @pytest.mark.extra("NAME") skips with that reason when the extra is absent; under CI=true (CI installs every
# extra) the skip is a failure, so that CI cannot pass with a test not run.
EXTRAS = {
    "launchers": (
        lambda: all(
            importlib.util.find_spec(m)
            for m in ("hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher")
        ),
        "needs the launchers extra: pip install -e '.[dev,launchers]'",
    ),
    "trackers": (
        lambda: all(importlib.util.find_spec(m) for m in ("tensorboard", "mlflow")),
        "needs the trackers extra: pip install -e '.[dev,trackers]'",
    ),
    "browser": (
        lambda: (
            Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and importlib.util.find_spec("selenium") is not None
        ),
        "needs Chromium and its driver: apt-get install chromium chromium-driver",
    ),
}


def require(present: bool, how: str) -> None:
    """Skip with `how` unless present; under CI=true, fail instead."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, and this test cannot run: it {how}", pytrace=False)
    pytest.skip(how)


def pytest_runtest_setup(item):
    for mark in item.iter_markers("extra"):
        present, how = EXTRAS[mark.args[0]]
        require(present(), how)
    if item.get_closest_marker("cuda"):  # the GPU check runs them (scripts/gpu_check.sh); CI never has a GPU
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker a core, at most 4 (each holds torch and its own data; more only add start-up)."""
    return min(os.cpu_count() or 1, 4)


@pytest.fixture(autouse=True)
def alone_if_serial(request, tmp_path_factory):
    """Under parallel workers (pytest-xdist), a `serial` test runs with no other test running in any worker: it
    times things or changes threads. Every test holds a shared lock on a file the workers share; a serial test
    holds it exclusively. A turnstile lets a waiting serial test in before new shared holders."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent  # the one base folder all workers of this session share
    exclusive = request.node.get_closest_marker("serial") is not None
    with ExitStack() as held:
        turnstile = held.enter_context(_flock(shared / "turnstile.lock", fcntl.LOCK_EX))
        held.enter_context(_flock(shared / "room.lock", fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH))
        if not exclusive:
            fcntl.flock(turnstile, fcntl.LOCK_UN)  # others pass the turnstile at once; a serial test keeps it
        yield


@contextmanager
def _flock(path: Path, how: int):
    with open(path, "a+") as f:
        fcntl.flock(f, how)
        yield f


def chromium(profile: Path, logs: dict):
    """Debian's headless Chromium driven by selenium, logging what `logs` asks for ({"browser": "ALL"}); for tests
    marked extra("browser")."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", logs)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
