"""logger=tensorboard / mlflow / many (harness/trackers/, docs/trackers.md), the default suite's part: what TensorBoard
holds of a run, read back by its own event reader and compared with metrics.csv and summary.json; a group's members
and a sweep's jobs as runs of their own; a resume without duplicate steps; a failing or missing tracker; the
export. MLflow's store takes seconds to make, so its tests are in test_trackers_slow.py (each twin of one here)."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import socket
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.setup.config import Config
from harness.trackers import live
from harness.trackers.export import SWEEP_MANIFEST, export
from harness.trackers.records import figures, params, read_rows, read_state, tag_of
from harness.training import group
from harness.training.train import run, run_group
from tests.conftest import run_py_in_process, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
TRACKER_PACKAGES = ("tensorboard", "mlflow", "torch.utils.tensorboard")
TIMES = ("_time_s", "samples_per_s", "_at", "run_dir", "pid")  # what differs between two runs of one config


def tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a TensorBoard run folder, read by TensorBoard's own event reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def tb_hparams(folder: Path) -> dict[str, object]:
    """The HParams plugin's session start info in that run: the hyperparameters TensorBoard shows for it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    reader = EventAccumulator(str(folder))
    reader.Reload()
    content = reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def assert_tensorboard_holds(run_dir: Path) -> None:
    """Each metrics.csv row once at its step with its value (TensorBoard keeps float32), the summary's figures
    at the last step, and the configuration in the HParams tab."""
    scalars = tb_scalars(run_dir)
    rows = read_rows(run_dir)
    expected: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r[4] is not None:
            expected.setdefault(tag_of(r), []).append((r[0], r[4]))
    summary = json.loads((run_dir / "summary.json").read_text())
    last = max(r[0] for r in rows)
    expected.update({f"summary/{k}": [(last, v)] for k, v in figures(summary).items()})
    assert {"train/loss", "val/acc", "probe/dead_fraction/hidden.0", "train/grad_norm/head"} <= set(scalars)
    assert set(scalars) == set(expected)
    for tag, series in expected.items():
        got = scalars[tag]
        assert [s for s, _ in got] == [s for s, _ in series], tag  # each step once, in order
        assert all(math.isclose(g, v, rel_tol=1e-6, abs_tol=1e-30) for (_, g), (_, v) in zip(got, series)), tag
    hparams = tb_hparams(run_dir)
    assert hparams == {
        k: (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
        for k, v in params(summary).items()
    }


@pytest.fixture
def logged(tiny):
    return lambda name, *overrides: tiny(f"logger={name}", "logger.every_s=0", *overrides)


def test_with_logger_none_no_tracker_package_is_imported(tiny, tmp_path, monkeypatch):
    """Any import of a tracker package fails here (None in sys.modules), and a run with the default logger
    trains and records as ever; the slow twin looks at sys.modules of a fresh process."""
    for name in TRACKER_PACKAGES:
        monkeypatch.setitem(sys.modules, name, None)
    summary = run(tiny(), tmp_path / "run")
    assert summary["status"] == "ok", summary.get("error")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.csv", "summary.json"]


@pytest.mark.extra("trackers")
def test_tensorboard_holds_every_row_the_summary_and_the_hyperparameters(logged, tmp_path):
    summary = run(logged("tensorboard"), tmp_path / "run")
    assert summary["status"] == "ok", summary.get("error")
    assert_tensorboard_holds(tmp_path / "run")
    assert read_state(tmp_path / "run") == {"tensorboard": {"finished": True, "rows": len(read_rows(tmp_path / "run"))}}


@pytest.mark.extra("trackers")
def test_the_records_are_the_same_with_a_logger_on(tiny, logged, tmp_path):
    """metrics.csv byte for byte, summary.json but for its times: the trackers only read the records."""
    plain, watched = run(tiny(), tmp_path / "plain"), run(logged("tensorboard"), tmp_path / "watched")
    assert (tmp_path / "plain" / "metrics.csv").read_bytes() == (tmp_path / "watched" / "metrics.csv").read_bytes()

    def untimed(summary: dict) -> dict:
        return {k: v for k, v in summary.items() if not k.endswith(TIMES) and k != "group"}

    on_disk = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("plain", "watched")]
    assert untimed(on_disk[0]) == untimed(on_disk[1]) and untimed(plain) == untimed(watched)


@pytest.mark.extra("trackers")
def test_a_groups_members_are_runs_of_their_own(logged, tmp_path):
    """Two seeds trained in one loop: two TensorBoard runs, each its own member's rows; the fast twin of the
    parallel sweep into one MLflow store (test_trackers_slow.py)."""
    configs = [logged("tensorboard", f"seed={s}") for s in (0, 1)]
    summaries = run_group(configs, [tmp_path / "a", tmp_path / "b"], [[], []], "g")
    assert [s["status"] for s in summaries] == ["ok", "ok"]
    assert read_rows(tmp_path / "a") != read_rows(tmp_path / "b")
    for folder in ("a", "b"):
        assert_tensorboard_holds(tmp_path / folder)


@pytest.mark.extra("trackers")
@pytest.mark.parametrize("every_s, batches", [(0, 3), (1000, 2)])
def test_a_groups_members_send_one_batch_each_at_boundaries(every_s, batches, tiny, tmp_path, monkeypatch):
    """20 steps logged at 10 and 20: a batch per member at each boundary (every_s=0), or at the first one only
    (every_s longer than the run), and one at the end (the final probe's rows and the figures)."""
    calls: list[Path] = []
    send = live.to_tensorboard.TensorBoardRun.log
    monkeypatch.setattr(
        live.to_tensorboard.TensorBoardRun, "log", lambda self, points: calls.append(self.run_dir) or send(self, points)
    )
    configs = [tiny("logger=tensorboard", f"logger.every_s={every_s}", f"seed={s}") for s in (0, 1)]
    run_group(configs, [tmp_path / "a", tmp_path / "b"], [[], []], "g")
    assert Counter(calls) == {tmp_path / "a": batches, tmp_path / "b": batches}
    assert_tensorboard_holds(tmp_path / "a")


@pytest.mark.extra("trackers")
def test_a_resumed_run_continues_its_tracker_run_without_duplicate_steps(logged, tmp_path, monkeypatch):
    """Killed at step 40 with its checkpoint at step 20 and rows through step 30 sent: the resumed run
    recomputes 21-30 (not sent again) and sends the rest; TensorBoard then holds what an uninterrupted run does."""
    config = logged("tensorboard", "trainer.steps=40", "trainer.checkpoint_every=20")
    evaluate, calls = group.Group.evaluate, []

    def killed_at_40(self, split):
        calls.append(split)
        if calls.count("val") == 4:
            raise KeyboardInterrupt  # as when the job is killed: nothing recorded
        return evaluate(self, split)

    monkeypatch.setattr(group.Group, "evaluate", killed_at_40)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "run")
    sent = read_state(tmp_path / "run")["tensorboard"]["rows"]
    assert max(step for step, _ in tb_scalars(tmp_path / "run")["train/loss"]) == 30
    monkeypatch.setattr(group.Group, "evaluate", evaluate)
    assert run(config, tmp_path / "run")["status"] == "ok"
    assert len(read_rows(tmp_path / "run")) > sent
    assert_tensorboard_holds(tmp_path / "run")


@pytest.mark.extra("trackers")
def test_a_tracker_that_fails_mid_run_is_reported_once_and_the_run_goes_on(logged, tiny, tmp_path, monkeypatch, caplog):
    def broken(self, points):
        raise OSError("disk full")

    monkeypatch.setattr(live.to_tensorboard.TensorBoardRun, "log", broken)
    with caplog.at_level(logging.WARNING):
        summary = run(logged("tensorboard"), tmp_path / "run")
    assert summary["status"] == "ok"
    said = [r.getMessage() for r in caplog.records if "logger:" in r.getMessage()]
    assert said == ["logger: tensorboard failed (OSError: disk full); the run goes on without it"]
    plain = run(tiny(), tmp_path / "plain")
    assert (tmp_path / "run" / "metrics.csv").read_bytes() == (tmp_path / "plain" / "metrics.csv").read_bytes()
    assert plain["test_acc"] == summary["test_acc"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["missing", "unreachable"])
def test_a_missing_or_unreachable_tracker_is_one_line_and_exit_2_before_any_folder(case, tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    missing = "mlflow" if case == "missing" else None
    monkeypatch.setattr(live.importlib.util, "find_spec", lambda name: None if name == missing else find_spec("json"))
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (
        ["logger=mlflow", f"logger.mlflow_uri={uri}", f"hydra.run.dir={tmp_path}/run"],
        ["-m", "seed=0,1", "logger=many", f"logger.mlflow_uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep"],
    ):
        code = run_py_in_process(*args)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        expected = "needs the mlflow package (the trackers extra)" if missing else f"{uri} cannot be reached"
        assert expected in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("override, said", [("logger.name=wandb", "logger.name"), ("logger.every_s=-1", "every_s")])
def test_a_bad_logger_value_is_refused_in_one_line(override, said, tiny):
    from harness import ConfigError
    from harness.setup.resolve import resolve

    with pytest.raises(ConfigError, match=said):
        resolve(tiny(override))


def two_run_sweep(tiny: Callable[..., Config], tmp_path: Path) -> Path:
    """A folder the export takes for a sweep: two finished runs (seeds 0 and 1) and a sweep.json."""
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        assert run(tiny(f"seed={seed}"), sweep / f"seed={seed}")["status"] == "ok"
    (sweep / SWEEP_MANIFEST).write_text("{}")
    return sweep


@pytest.mark.extra("trackers")
def test_an_export_sends_each_run_once_and_a_second_adds_nothing(tiny, tmp_path):
    sweep = two_run_sweep(tiny, tmp_path)
    logger = live.LoggerConfig(name="tensorboard")
    first = export([sweep], logger)
    files = sorted(sweep.rglob("events.out.tfevents.*"))
    assert (first.sent, first.there, len(files)) == (2, 0, 2)
    for folder in ("seed=0", "seed=1"):
        assert_tensorboard_holds(sweep / folder)
    second = export([sweep], logger)
    assert (second.sent, second.there) == (0, 2)
    assert sorted(sweep.rglob("events.out.tfevents.*")) == files
    assert Counter(len(v) for v in tb_scalars(sweep / "seed=0").values()) == Counter(
        len(v) for v in tb_scalars(sweep / "seed=1").values()
    )


@pytest.mark.extra("trackers")
def test_a_sweep_logs_each_job_as_a_run_of_its_own(tmp_path, data_root, capsys):
    """In process, `run.py -m ... logger=tensorboard`: a run folder per job, each read back whole."""
    out = tmp_path / "sweep"
    code = run_py_in_process(
        "-m",
        "activation=relu,gelu",
        "logger=tensorboard",
        *tiny_overrides(data_root),
        f"hydra.sweep.dir={out}",
        preflight=False,
    )
    assert code == 0, capsys.readouterr().err[-2000:]
    jobs = sorted(p.parent for p in out.glob("*/summary.json"))
    assert len(jobs) == 2 and not [j for j in jobs if "logger" in j.name]  # the logger names no folder
    for job in jobs:
        assert_tensorboard_holds(job)


def test_the_export_knows_a_sweep_as_the_sweeps_manifest_names_it():
    from harness.sweeps.sweep import MANIFEST

    assert SWEEP_MANIFEST == MANIFEST
