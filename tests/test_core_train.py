"""The training loop and its results files: every key, determinism, divergence, init-only runs, load_runs."""

from __future__ import annotations

import json

import pandas as pd

from harness import run
from harness.records.results import load_runs

SUMMARY_KEYS = {
    "schema_version",
    "status",
    "activation",
    "model",
    "dataset",
    "seed",
    "config_hash",
    "overrides",
    "train_loss",
    "train_acc",
    "val_acc",
    "best_val_acc",
    "test_acc",
    "test_loss",
    "test_acc_at_best_val",
    "steps",
    "diverged_at_step",
    "train_time_s",
    "samples_per_s",
    "speed_clock",
    "train_cpu_time_s",
    "clock_samples_per_s",
    "peak_mem_mb",
    "dead_fraction",
    "saturated_fraction",
    "dead_fraction_by_layer",
    "saturated_fraction_by_layer",
    "grad_norm_init_by_layer",
    "grad_norm_by_layer",
    "grad_norm_final_by_layer",
    "grad_norm_global",
    "device",
    "device_name",
    "num_threads",
    "precision",
    "compile",
    "n_params",
    "torch_version",
    "package_versions",
    "git_sha",
    "git_dirty",
    "dataset_checksum",
    "started_at",
    "finished_at",
    "dead_fraction_init_by_layer",
    "lost_fraction_by_layer",
    "grad_flow_ratio_init",
    "grad_flow_ratio",
    "val_drawdown_max",
    "n_test",
}


def test_results_files_have_every_key(tiny, tmp_path):
    summary = run(tiny("activation=tanh"), tmp_path / "r", ["activation=tanh"])
    on_disk = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk)
    assert on_disk["status"] == "ok" and on_disk["steps"] == 20 and on_disk["overrides"] == ["activation=tanh"]
    assert list(on_disk["dead_fraction_by_layer"]) == ["hidden.0", "hidden.1"]
    assert list(on_disk["grad_norm_init_by_layer"]) == ["hidden.0", "hidden.1", "head"]
    assert 0 <= on_disk["test_acc_at_best_val"] <= 1 and on_disk["samples_per_s"] > 0
    metrics = pd.read_csv(tmp_path / "r" / "metrics.csv")
    assert list(metrics.columns) == ["step", "split", "metric", "layer", "value", "t"]
    assert {"train", "val", "test", "probe"} == set(metrics.split)
    probe_steps = sorted(metrics.query("split == 'probe' and metric == 'dead_fraction'").step.unique())
    assert probe_steps == [0, 10, 20]  # at initialisation, every evaluation, and the end
    assert summary["test_acc"] == metrics.query("split == 'test' and metric == 'acc'").value.iloc[-1]


def test_same_seed_gives_identical_results_on_cpu(tiny, tmp_path):
    keys = ["train_loss", "test_acc", "val_acc", "grad_norm_by_layer", "dead_fraction_by_layer"]
    a = run(tiny("activation=rrelu", "seed=3"), tmp_path / "a")  # RReLU draws random slopes while training
    b = run(tiny("activation=rrelu", "seed=3"), tmp_path / "b")
    c = run(tiny("activation=rrelu", "seed=4"), tmp_path / "c")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["train_loss"] != c["train_loss"]
    strip = lambda p: pd.read_csv(p / "metrics.csv")
    pd.testing.assert_frame_equal(strip(tmp_path / "a"), strip(tmp_path / "b"))


def test_a_loss_that_turns_non_finite_marks_the_run_diverged(tiny, tmp_path):
    s = run(tiny("trainer.optimizer=sgd", "trainer.lr=1e12", "trainer.steps=30"), tmp_path / "d")
    assert s["status"] == "diverged"
    assert 1 <= s["diverged_at_step"] <= 10 and s["steps"] == 10  # stopped at the first boundary after it
    on_disk = json.loads((tmp_path / "d" / "summary.json").read_text())  # non-finite numbers stored as null
    assert on_disk["diverged_at_step"] == s["diverged_at_step"]


def test_steps_zero_measures_the_network_at_initialisation(tiny, tmp_path):
    s = run(tiny("trainer.steps=0", "activation=sigmoid", "model.depth=6"), tmp_path / "z")
    assert s["status"] == "ok" and s["steps"] == 0 and s["samples_per_s"] is None
    assert s["grad_norm_final_by_layer"] == s["grad_norm_init_by_layer"]
    assert 0 < s["test_acc"] < 0.5 and s["dead_fraction"] is not None


def test_an_error_during_training_is_recorded_as_failed(tiny, tmp_path, monkeypatch):
    import harness.training.group

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(harness.training.group, "StackedOptimizer", explode)
    s = run(tiny(), tmp_path / "f")
    assert s["status"] == "failed" and "RuntimeError: boom" in s["error"]
    assert json.loads((tmp_path / "f" / "summary.json").read_text())["status"] == "failed"


def test_rnn_records_gradients_through_time(tiny, tmp_path):
    run(
        tiny("model=rnn", "activation=tanh", "model.cell=elman", "model.bidirectional=false", "model.width=4"),
        tmp_path / "rnn",
    )
    m = pd.read_csv(tmp_path / "rnn" / "metrics.csv")
    h = m.query("metric == 'grad_norm_h'")
    assert set(h.split) == {"train", "probe"} and sorted(h.t.unique()) == list(range(40))


def test_load_runs_gives_one_row_per_run_and_lists_the_unusable(tiny, tmp_path):
    run(tiny("activation=relu"), tmp_path / "sweep" / "a")
    run(tiny("activation=gelu"), tmp_path / "sweep" / "b")
    (tmp_path / "sweep" / "c" / ".hydra").mkdir(parents=True)  # started, never finished
    (tmp_path / "sweep" / "d").mkdir()
    (tmp_path / "sweep" / "d" / "summary.json").write_text('{"status": "ok", "activ')  # cut mid-write
    runs, metrics, skipped = load_runs(tmp_path / "sweep")
    assert sorted(runs.activation) == ["gelu", "relu"]
    assert {"config.model.depth", "config.trainer.lr", "dead_fraction_by_layer.hidden.0"} <= set(runs.columns)
    assert set(metrics.run_dir) == set(runs.run_dir)
    assert sorted(p.rsplit("/", 1)[-1] for p in skipped.run_dir) == ["c", "d"]


def test_load_runs_points_at_where_a_moved_run_is_now(tiny, tmp_path):
    run(tiny(), tmp_path / "before")
    (tmp_path / "before").rename(tmp_path / "after")
    runs, metrics, _ = load_runs(tmp_path / "after")
    assert runs.run_dir.tolist() == [str(tmp_path / "after")]
    assert set(metrics.run_dir) == {str(tmp_path / "after")}
