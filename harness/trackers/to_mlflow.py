"""MLflow: each run its own MLflow run (a sweep's nested under the sweep's parent run), tagged with its activation,
model, dataset, seed and config_hash; its configuration as parameters, its metrics.csv rows as metrics in batches,
its summary figures and summary.json at the end. The tracking URI: logger.mlflow_uri, else $MLFLOW_TRACKING_URI,
else sqlite:///mlflow.db in the working folder (MLflow 3's own default store)."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.trackers.records import figures, params, tags

TOOL = "mlflow"
METRICS_PER_CALL = 1000  # MLflow's limit on one log_batch
PARAMS_PER_CALL = 100
LOCK_TRIES = 10  # parallel jobs writing one SQLite store wait for its lock this many times
T = TypeVar("T")


def tracking_uri(configured: str | None) -> str:
    """The URI runs are logged to; a SQLite path made absolute, so that a sweep and its jobs name the same file."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).absolute())
    return uri


def sqlite_file(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@functools.cache
def client(uri: str) -> Any:
    """One MlflowClient per URI and process; MLflow's INFO lines (its tables made on first use) kept off the screen."""
    from mlflow.tracking import MlflowClient  # its import sets its loggers' levels: ours come after

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def retrying(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """call(*args, **kwargs), waiting and trying again while a SQLite store is locked by another job."""
    for attempt in range(LOCK_TRIES):
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if "locked" not in str(exc) or attempt == LOCK_TRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def experiment_id(uri: str, name: str) -> str:
    """The experiment's id, made if missing (its artifacts beside a SQLite file, as `mlflow server` keeps them)."""
    c = client(uri)
    found = retrying(c.get_experiment_by_name, name)
    if found is not None:
        return str(found.experiment_id)
    db = sqlite_file(uri)
    location = (db.parent / "mlartifacts").as_uri() if db else None
    try:
        return str(retrying(c.create_experiment, name, artifact_location=location))
    except Exception:  # made meanwhile by another process: then it is found
        found = retrying(c.get_experiment_by_name, name)
        if found is None:
            raise
        return str(found.experiment_id)


def open_run(uri: str, name: str, entry: dict[str, Any], run_name: str, run_tags: dict[str, str]) -> str:
    """The run that entry (a tracker.json entry) names, running again; else a new one, recorded in entry."""
    c = client(uri)
    if entry.get("run_id"):
        retrying(c.update_run, entry["run_id"], status="RUNNING")
        return str(entry["run_id"])
    exp = experiment_id(uri, name)
    run = retrying(c.create_run, exp, run_name=run_name, tags=run_tags)
    entry.update(run_id=run.info.run_id, experiment_id=exp)
    return str(run.info.run_id)


def end_run(uri: str, run_id: str, ok: bool) -> None:
    retrying(client(uri).set_terminated, run_id, "FINISHED" if ok else "FAILED")


class MlflowRun:
    """One harness run as an MLflow run: opened (or continued, from its tracker.json entry) on creation."""

    def __init__(
        self, run_dir: Path, summary: dict, entry: dict[str, Any], uri: str, experiment: str, parent: str | None
    ):
        self.uri, self.run_dir = uri, Path(run_dir)
        run_tags = tags(summary, run_dir)
        if parent:
            run_tags["mlflow.parentRunId"] = parent
        fresh = not entry.get("run_id")
        self.run_id = open_run(uri, experiment, entry, self.run_dir.name, run_tags)
        if fresh:
            self.log_params(params(summary))

    def log_params(self, values: dict[str, str | int | float | bool]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in values.items()]
        for i in range(0, len(items), PARAMS_PER_CALL):
            retrying(client(self.uri).log_batch, self.run_id, params=items[i : i + PARAMS_PER_CALL])

    def log(self, points: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(name, value, now, step) for name, value, step in points]
        for i in range(0, len(items), METRICS_PER_CALL):
            retrying(client(self.uri).log_batch, self.run_id, metrics=items[i : i + METRICS_PER_CALL])

    def finish(self, summary: dict, step: int) -> None:
        """Its summary figures (summary/KEY at the last step), status and summary.json; the run ended."""
        ok = summary.get("status") != "failed"
        if ok:
            self.log([(f"summary/{k}", v, step) for k, v in figures(summary).items()])
        c = client(self.uri)
        retrying(c.set_tag, self.run_id, "status", str(summary.get("status")))
        if ok and (self.run_dir / "summary.json").is_file():
            retrying(c.log_artifact, self.run_id, str(self.run_dir / "summary.json"))
        end_run(self.uri, self.run_id, ok)

    def close(self) -> None:
        """Nothing held open: MLflow's client writes each call through."""
