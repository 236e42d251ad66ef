"""A run's trackers: what each run folder's tracker.json says they hold, the rows they lack sent in one batch per
run and tracker at the loop's boundaries (at most every logger.every_s) and at its end, after its records are
written. A tracker that fails is reported once and dropped; the run and its records go on as without it."""

from __future__ import annotations

import importlib.util
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.setup.config import LOGGERS, Config, ConfigError, LoggerConfig
from harness.trackers import to_mlflow, to_tensorboard
from harness.trackers.records import Row, points, read_rows, read_state, write_state

log = logging.getLogger(__name__)
EXTRA = "pip install -e '.[trackers]'"
REACH_TIMEOUT_S = 5.0


class TrackerError(ConfigError):
    """A tracker that is not installed or cannot be reached: one line, before the run starts."""


class Watched(Protocol):
    """What live() reads of a loop member (harness.training.loop.Member): its folder and its rows so far."""

    run_dir: Path
    state: Any  # its TrainState: .rows


def check(logger: LoggerConfig) -> None:
    """TrackerError unless each tracker of logger.name is installed and, for an MLflow server, answers; imports
    neither (their imports take seconds)."""
    for tool in LOGGERS[logger.name]:
        if importlib.util.find_spec(tool) is None:
            raise TrackerError(f"logger={logger.name} needs the {tool} package (the trackers extra): {EXTRA}")
    if to_mlflow.TOOL in LOGGERS[logger.name]:
        check_mlflow(to_mlflow.tracking_uri(logger.mlflow_uri))


def check_mlflow(uri: str) -> None:
    """A SQLite store's folder exists (the file is made on first use); a server answers its /health."""
    db = to_mlflow.sqlite_file(uri)
    if db is not None and not db.parent.is_dir():
        raise TrackerError(f"logger: MLflow's store {uri} is in a folder that does not exist ({db.parent})")
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S):
                pass
        except (OSError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackerError(f"logger: the MLflow server {uri} cannot be reached ({reason})") from None


def mlflow_key(logger: LoggerConfig) -> str:
    """tracker.json's key of an MLflow destination: the experiment and the store."""
    return f"{logger.experiment}@{to_mlflow.tracking_uri(logger.mlflow_uri)}"


def entry_of(state: dict[str, Any], tool: str, logger: LoggerConfig) -> dict[str, Any]:
    """tracker.json's entry for one tracker: TensorBoard's (the run folder itself), or MLflow's for this store."""
    if tool == to_tensorboard.TOOL:
        entry: dict[str, Any] = state.setdefault(tool, {})
        return entry
    return state.setdefault(tool, {}).setdefault(mlflow_key(logger), {})


class WatchedRun:
    """One run folder and its trackers; push() sends what they lack and records it in its tracker.json."""

    def __init__(self, run_dir: Path, summary: dict, logger: LoggerConfig, failed: set[str]) -> None:
        self.run_dir, self.summary, self.logger, self.failed = Path(run_dir), summary, logger, failed
        self.state = read_state(self.run_dir)
        self.runs: dict[str, Any] = {}

    def open(self, tool: str, entry: dict[str, Any]) -> Any:
        if tool not in self.runs:
            if tool == to_tensorboard.TOOL:
                self.runs[tool] = to_tensorboard.TensorBoardRun(self.run_dir, self.summary, entry)
            else:
                uri = to_mlflow.tracking_uri(self.logger.mlflow_uri)
                parent = read_state(self.run_dir.parent).get("mlflow", {}).get(mlflow_key(self.logger), {})
                self.runs[tool] = to_mlflow.MlflowRun(
                    self.run_dir, self.summary, entry, uri, self.logger.experiment, parent.get("run_id")
                )
        return self.runs[tool]

    def push(self, rows: list[Row], end: dict | None = None) -> int:
        """Send each tracker the rows after those it has, and at the end (end: the written summary) its figures;
        the number of trackers that took something."""
        took = 0
        for tool in LOGGERS[self.logger.name]:
            if tool in self.failed:
                continue
            entry = entry_of(self.state, tool, self.logger)
            if entry.get("finished"):
                continue
            new = points(rows[entry.get("rows", 0) :])
            try:
                if new or end:
                    run = self.open(tool, entry)
                    run.log(new) if new else None
                    entry["rows"] = max(entry.get("rows", 0), len(rows))
                    if end:
                        run.finish(end, max((r[0] for r in rows), default=0))
                        entry["finished"] = end.get("status") != "failed"
                    write_state(self.run_dir, self.state)
                    took += 1
            except Exception as exc:  # reported once, and the run goes on without this tracker
                self.failed.add(tool)
                log.warning(f"logger: {tool} failed ({type(exc).__name__}: {exc}); the run goes on without it")
        return took


class Trackers:
    """The trackers of a loop's members (a single run is a group of one); with logger=none it holds nothing and
    imports no tracker package. configs and summaries: the members', in order (the summaries as first made)."""

    def __init__(self, configs: Sequence[Config], summaries: Sequence[dict]) -> None:
        self.failed: set[str] = set()
        self.runs: dict[Path, WatchedRun] = {}
        for config, summary in zip(configs, summaries):
            if LOGGERS[config.logger.name]:
                check(config.logger)
                run_dir = Path(summary["run_dir"])
                self.runs[run_dir] = WatchedRun(run_dir, summary, config.logger, self.failed)
        self.every_s = min((w.logger.every_s for w in self.runs.values()), default=0.0)
        self.last = -math.inf  # the first boundary sends at once: the run shows in its tracker from its start

    def live(self, members: Sequence[Watched]) -> None:
        """At a boundary: each member's new rows, one batch per run and tracker, at the first boundary and then
        when every_s has passed since the last batch."""
        if not self.runs or time.monotonic() - self.last < self.every_s:
            return
        for m in members:
            watched = self.runs.get(Path(m.run_dir))
            if watched is not None:
                watched.push(m.state.rows)
        self.last = time.monotonic()

    def finish(self, summaries: Sequence[dict]) -> None:
        """After the records are written: the rows of metrics.csv not yet sent, the summary, and each run's end."""
        for summary in summaries:
            watched = self.runs.get(Path(summary["run_dir"]))
            if watched is not None:
                watched.push(read_rows(watched.run_dir), summary)
                for run in watched.runs.values():
                    run.close()


def open_sweep(logger: LoggerConfig, sweep_dir: Path) -> str | None:
    """Before a sweep launches any job: its MLflow experiment and parent run (a resumed sweep's own again), in
    sweep_dir/tracker.json where its jobs find it; None without MLflow."""
    if to_mlflow.TOOL not in LOGGERS[logger.name]:
        return None
    uri = to_mlflow.tracking_uri(logger.mlflow_uri)
    state = read_state(sweep_dir)
    entry = entry_of(state, to_mlflow.TOOL, logger)
    run_id = to_mlflow.open_run(uri, logger.experiment, entry, Path(sweep_dir).name, {"sweep_dir": str(sweep_dir)})
    write_state(sweep_dir, state)
    return run_id


def close_sweep(logger: LoggerConfig, sweep_dir: Path, ok: bool) -> None:
    """The sweep's parent run ended (FINISHED, or FAILED when a job failed)."""
    if to_mlflow.TOOL not in LOGGERS[logger.name]:
        return
    entry = read_state(sweep_dir).get(to_mlflow.TOOL, {}).get(mlflow_key(logger), {})
    if entry.get("run_id"):
        to_mlflow.end_run(to_mlflow.tracking_uri(logger.mlflow_uri), entry["run_id"], ok)
