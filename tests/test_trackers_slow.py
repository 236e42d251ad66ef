"""logger=mlflow and the slow twins of tests/test_trackers.py: MLflow on a local SQLite store (MLFLOW_TRACKING_URI
honoured) and through `mlflow server`, read back by MlflowClient and compared with metrics.csv and summary.json;
`run.py -m activation=relu,gelu seed=0,1` with each logger, in parallel jobs into one store; the export; a fresh
process with logger=none; the MLflow UI and TensorBoard pages in a real headless browser (HARNESS_SHOTS=DIR saves
their screenshots there, as docs/trackers/ holds them)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.setup.config import LoggerConfig
from harness.trackers.export import export
from harness.trackers.records import figures, params, read_rows, tag_of
from harness.training.train import run
from tests.conftest import chromium
from tests.test_trackers import assert_tensorboard_holds, free_port, two_run_sweep

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow]


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def mlflow_runs(uri: str, experiment: str = "activation-harness") -> list:
    c = client(uri)
    found = c.get_experiment_by_name(experiment)
    return c.search_runs([found.experiment_id]) if found else []


def assert_mlflow_holds(uri: str, mlrun, run_dir: Path) -> None:
    """Every metrics.csv row at its step with its exact value, the summary's figures, the configuration as
    parameters, the tags, and summary.json as an artifact."""
    c = client(uri)
    summary = json.loads((run_dir / "summary.json").read_text())
    expected: dict[str, list[tuple[int, float]]] = {}
    for r in read_rows(run_dir):
        if r[4] is not None:
            expected.setdefault(tag_of(r), []).append((r[0], r[4]))
    last = max(r[0] for r in read_rows(run_dir))
    expected.update({f"summary/{k}": [(last, v)] for k, v in figures(summary).items()})
    assert set(mlrun.data.metrics) == set(expected)
    for key, series in expected.items():
        history = sorted((m.step, m.value) for m in c.get_metric_history(mlrun.info.run_id, key))
        assert history == sorted(series), key  # each step once, exactly
    assert mlrun.data.params == {k: str(v) for k, v in params(summary).items()}
    for key in ("activation", "model", "dataset", "seed", "config_hash"):
        assert mlrun.data.tags[key] == str(summary[key])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == run_dir.name
    local = Path(c.download_artifacts(mlrun.info.run_id, "summary.json", tempfile.mkdtemp()))  # not among the runs
    assert json.loads(local.read_text()) == summary


def test_with_logger_none_a_fresh_process_imports_no_tracker_package(tmp_path, data_root):
    code = (
        "import sys; from tests.conftest import tiny_config; from harness import run; "
        f"s = run(tiny_config({data_root!r}), {str(tmp_path / 'run')!r}); "
        "print(s['status'], sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboard', 'mlflow') "
        "or m.startswith('torch.utils.tensorboard')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "ok []", out.stderr[-2000:]


@pytest.mark.extra("trackers")
def test_mlflow_holds_every_row_the_summary_and_the_configuration(tiny, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # no logger.mlflow_uri: the standard variable decides
    summary = run(tiny("logger=mlflow", "logger.every_s=0"), tmp_path / "run")
    assert summary["status"] == "ok", summary.get("error")
    (mlrun,) = mlflow_runs(uri)
    assert_mlflow_holds(uri, mlrun, tmp_path / "run")


SWEEP = ["-m", "activation=relu,gelu", "seed=0,1", "trainer.steps=300", "trainer.threads=1", "trainer.progress=false"]


def run_py(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args, "hydra.sweeper.cost_probe=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.extra("trackers")
@pytest.mark.extra("launchers")
def test_a_parallel_sweep_into_one_sqlite_store_loses_nothing(tmp_path, data_root):
    """`run.py -m activation=relu,gelu seed=0,1 logger=mlflow` with two joblib workers writing one SQLite store:
    the sweep's parent run, made once, and its four jobs nested under it, each holding its whole records."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "sweep"
    done = run_py(
        *SWEEP, "logger=mlflow", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"dataset.root={data_root}",
        f"hydra.sweep.dir={out}", env={"MLFLOW_TRACKING_URI": uri},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {r.info.run_name: r for r in mlflow_runs(uri)}
    parent = runs.pop(out.name)
    jobs = sorted(p.parent for p in out.glob("*/summary.json"))
    assert sorted(runs) == [j.name for j in jobs] and len(jobs) == 4
    assert parent.info.status == "FINISHED"
    for job in jobs:
        assert runs[job.name].data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert_mlflow_holds(uri, runs[job.name], job)


@pytest.mark.extra("trackers")
def test_a_sweep_with_logger_tensorboard_shows_its_four_runs(tmp_path, data_root):
    out = tmp_path / "sweep"
    done = run_py(*SWEEP, "logger=tensorboard", f"dataset.root={data_root}", f"hydra.sweep.dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.parent for p in out.glob("*/summary.json"))
    assert len(jobs) == 4
    for job in jobs:
        assert_tensorboard_holds(job)


@pytest.mark.extra("trackers")
def test_a_missing_mlflow_server_stops_a_sweep_before_it_starts(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    done = run_py(*SWEEP, "logger=mlflow", f"logger.mlflow_uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot be reached" in done.stderr and not (tmp_path / "sweep").exists()


@contextlib.contextmanager
def serving(command: list[str], url: str, log: Path) -> Iterator[None]:
    """A server this test starts on a local port, until it answers url (at most 3 minutes); stopped after."""
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{command[0]} did not start: {log.read_text()[-2000:]}") from None
                time.sleep(1)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def mlflow_server(db: Path, port: int) -> list[str]:
    return [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]  # fmt: skip


@pytest.mark.extra("trackers")
def test_a_run_logs_through_an_mlflow_server(tiny, tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with serving(mlflow_server(tmp_path / "server.db", port), f"{uri}/health", tmp_path / "server.log"):
        summary = run(tiny("logger=mlflow", f"logger.mlflow_uri={uri}", "logger.every_s=0"), tmp_path / "run")
        assert summary["status"] == "ok", summary.get("error")
        (mlrun,) = mlflow_runs(uri)
        assert_mlflow_holds(uri, mlrun, tmp_path / "run")


@pytest.mark.extra("trackers")
def test_an_mlflow_export_of_a_sweep_nests_its_runs_and_a_second_adds_nothing(tiny, tmp_path):
    sweep = two_run_sweep(tiny, tmp_path)
    logger = LoggerConfig(name="mlflow", mlflow_uri=f"sqlite:///{tmp_path}/mlflow.db")
    uri = logger.mlflow_uri
    assert export([sweep], logger).sent == 2
    runs = {r.info.run_name: r for r in mlflow_runs(uri)}
    parent = runs.pop("sweep")
    for name, mlrun in runs.items():
        assert mlrun.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert_mlflow_holds(uri, mlrun, sweep / name)
    histories = {r.info.run_id: {k: len(client(uri).get_metric_history(r.info.run_id, k)) for k in r.data.metrics}
                 for r in mlflow_runs(uri)}  # fmt: skip
    again = export([sweep], logger)
    assert (again.sent, again.there) == (0, 2)
    assert {r.info.run_id: {k: len(client(uri).get_metric_history(r.info.run_id, k)) for k in r.data.metrics}
            for r in mlflow_runs(uri)} == histories  # fmt: skip


def wait_for(driver, texts: list[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not all(t in driver.page_source for t in texts):
        assert time.monotonic() < deadline, f"the page never showed {texts}"
        time.sleep(1)


def show_nested_runs(driver) -> None:
    """Click the parent run's expander in MLflow's runs table (its run-name cell's button), and close the
    assistant's side panel if it is open."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, 'button[aria-label="Close"]'):
        if button.is_displayed():
            button.click()
    driver.find_element(By.CSS_SELECTOR, 'button[data-component-id*="runnamecellrenderer"]').click()


@pytest.mark.extra("trackers")
@pytest.mark.extra("browser")
def test_the_mlflow_ui_and_tensorboard_show_a_small_sweeps_runs(tmp_path, data_root):
    """A small sweep logged to both, opened in headless Chromium: MLflow's experiment page lists its four runs
    (nested under the sweep's, opened), TensorBoard's scalars and HParams pages its four run folders."""
    out, db = tmp_path / "sweep", tmp_path / "mlflow.db"
    done = run_py(*SWEEP, "logger=many", f"dataset.root={data_root}", f"hydra.sweep.dir={out}",
                  env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.parent.name for p in out.glob("*/summary.json"))
    shots = Path(os.environ["HARNESS_SHOTS"]) if os.environ.get("HARNESS_SHOTS") else None
    ml_port, tb_port = free_port(), free_port()
    tensorboard = [str(BIN / "tensorboard"), "--logdir", str(out), "--host", "127.0.0.1", "--port", str(tb_port)]
    experiment = mlflow_runs(f"sqlite:///{db}")[0].info.experiment_id
    with (
        serving(mlflow_server(db, ml_port), f"http://127.0.0.1:{ml_port}/health", tmp_path / "mlflow.log"),
        serving(tensorboard, f"http://127.0.0.1:{tb_port}/", tmp_path / "tensorboard.log"),
    ):
        driver = chromium(tmp_path / "profile", {"browser": "ALL"})
        try:
            driver.set_window_size(1600, 1000)
            pages = {
                "mlflow_runs": (f"http://127.0.0.1:{ml_port}/#/experiments/{experiment}/runs", [out.name]),
                "tensorboard_scalars": (f"http://127.0.0.1:{tb_port}/#timeseries", names),
                "tensorboard_hparams": (f"http://127.0.0.1:{tb_port}/#hparams", names),
            }
            for shot, (url, texts) in pages.items():
                driver.get(url)
                wait_for(driver, texts)
                if shot == "mlflow_runs":  # the sweep's run opened: its four jobs nested under it
                    show_nested_runs(driver)
                    wait_for(driver, names)
                time.sleep(3)  # the charts draw after the names arrive
                if shots:
                    driver.save_screenshot(str(shots / f"{shot}.png"))
        finally:
            driver.quit()
