"""The one validated reader (harness/records/schema.py): status, resume and the report read every summary.json and
sweep.json through it; a record that is not what the harness writes is listed once as unreadable and left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.common import metrics
from harness.records.results import load_runs, write_summary
from harness.records.schema import Unreadable, read_summary_file, summary_model
from harness.sweeps import status
from harness.sweeps.status import status_report
from harness.sweeps.sweep import failed_summary, finished_runs, job_state, progress

GOOD = {
    "schema_version": 1,
    "status": "ok",
    "activation": "relu",
    "model": "mlp",
    "dataset": "digits",
    "seed": 0,
    "config_hash": "abc",
    "config": {"model": {"width": 100}, "trainer": {"lr": 0.01}},
    "test_acc": 0.9,
    "started_at": "2026-12-01T10:00:00+00:00",
    "finished_at": "2026-12-01T10:01:00+00:00",
}
# Each with what it breaks; every one was accepted (or crashed a reader) before the validated reader.
JUNK = {
    "empty": "",
    "truncated": json.dumps(GOOD)[:40],
    "a_list": "[1, 2]",
    "string_accuracy": json.dumps(GOOD | {"test_acc": "0.99"}),
    "nan_accuracy": json.dumps(GOOD | {"test_acc": float("nan")}),  # json writes NaN: not JSON the harness writes
    "accuracy_above_one": json.dumps(GOOD | {"test_acc": 3.5}),
    "negative_time": json.dumps(GOOD | {"train_time_s": -1.0}),
    "string_width": json.dumps(GOOD | {"config": {"model": {"width": "wide"}, "trainer": {"lr": 0.01}}}),
    "other_schema": json.dumps(GOOD | {"schema_version": 3}),
    "odd_status": json.dumps(GOOD | {"status": "done"}),
    "unknown_key": json.dumps(GOOD | {"surprise": 1}),
    "no_config_hash": json.dumps({k: v for k, v in GOOD.items() if k != "config_hash"}),
    "bool_seed": json.dumps(GOOD | {"seed": True}),
}


def job_folders(root: Path) -> Path:
    """A sweep of one good job and one job per kind of junk summary.json."""
    root.mkdir()
    (root / "good").mkdir()
    write_summary(root / "good", dict(GOOD))
    for name, text in JUNK.items():
        (root / name).mkdir()
        (root / name / "summary.json").write_text(text)
    jobs = [{"dir": d} for d in ["good", *JUNK]]
    (root / "sweep.json").write_text(json.dumps({"command": "run.py -m", "jobs": jobs}))
    return root


def test_each_kind_of_junk_is_unreadable_with_its_field_named(tmp_path):
    root = job_folders(tmp_path / "sweep")
    assert read_summary_file(root / "good" / "summary.json")["test_acc"] == 0.9
    named = {
        "string_accuracy": "test_acc",
        "nan_accuracy": "test_acc",
        "accuracy_above_one": "test_acc",
        "negative_time": "train_time_s",
        "string_width": "config.model.width",
        "other_schema": "schema_version",
        "odd_status": "status",
        "unknown_key": "surprise",
        "no_config_hash": "the record: Value error, a finished",
        "bool_seed": "seed",
        "a_list": "the record: Input should be an object",
    }
    for name in JUNK:
        with pytest.raises(Unreadable) as caught:
            read_summary_file(root / name / "summary.json")
        message = str(caught.value)
        assert "\n" not in message and message.startswith(named.get(name, "the record: Invalid JSON")), message


def test_every_failing_field_is_named_in_one_line():
    with pytest.raises(Unreadable) as caught:
        from harness.records.schema import validated

        validated(summary_model(metrics.METRICS), json.dumps(GOOD | {"test_acc": "x", "seed": -1, "val_acc": 2}))
    assert [part.split(":")[0] for part in str(caught.value).split("; ")] == ["seed", "val_acc", "test_acc"]


def test_status_lists_junk_as_pending_unreadable_rows_never_as_finished(tmp_path):
    root = job_folders(tmp_path / "sweep")
    report = status_report(root).splitlines()
    assert report[2] == f"{1 + len(JUNK)} runs: 1 finished, 0 running, {len(JUNK)} pending, 0 failed"
    rows = {line.split()[3]: line for line in report[5:-1] if not line.startswith(" ")}  # not a note's next line
    assert rows["good"].split()[:2] == ["ok", "0.9000"]
    for name in JUNK:
        assert rows[name].split()[:3] == ["corrupt", "-", "-"] and "unreadable summary.json: " in rows[name], name
    assert finished_runs(root) == {"abc": root / "good"}  # resume keeps only the good one, reruns the rest
    assert job_state(root / "string_accuracy")[0] == "corrupt"


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"command": "x", "jobs": [',
        '{"jobs": [1]}',
        '{"jobs": [{"dir": "../x"}]}',
        '{"jobs": [{"dir": "/etc"}]}',
        '{"jobs": "all"}',
        "[]",
        json.dumps({"jobs": [{"dir": "x" * 100_000}]}),
    ],
    ids=["empty", "truncated", "number_job", "outside", "absolute", "string_jobs", "a_list", "name_too_long"],
)
def test_an_unreadable_sweep_json_is_one_line_and_exit_2(tmp_path, capsys, text):
    (tmp_path / "sweep.json").write_text(text)
    assert status.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'sweep.json'} is unreadable: ") and err.count("\n") == 1, err
    assert progress(tmp_path) == (0, 0)


def test_the_report_loader_skips_junk_with_the_reason_and_keeps_the_good_run(tmp_path):
    root = job_folders(tmp_path / "sweep")
    runs, _, skipped = load_runs(root)
    assert runs["run_dir"].tolist() == [str(root / "good")]
    reasons = dict(zip(skipped["run_dir"], skipped["reason"]))
    assert sorted(Path(d).name for d in reasons) == sorted(JUNK)
    assert all(r.startswith("unreadable summary.json: ") for r in reasons.values())
    assert "config.model.width: Input should be a valid integer" in reasons[str(root / "string_width")]


def test_what_the_harness_writes_passes_the_reader(tiny, tmp_path):
    """A real run, a failed job's summary, and the golden runs' summaries (every model, the born-dead probe; kept
    without their machine-dependent keys): the model lists every key they write, with its type."""
    from harness import run
    from tests.test_golden import golden_file

    run(tiny("dataset=digits", "trainer.steps=10"), tmp_path / "ok")  # digits: nothing to generate
    failed_summary(tiny("dataset=digits"), tmp_path / "failed", ["seed=0"], "Traceback\nRuntimeError: boom")
    assert [read_summary_file(tmp_path / name / "summary.json")["status"] for name in ("ok", "failed")] == [
        "ok",
        "failed",
    ]
    golden = json.loads(golden_file().read_text())
    for name, kept in golden.items():
        summary_model(metrics.METRICS).model_validate_json(json.dumps(kept["summary"] | {"config_hash": name}))


def test_a_single_run_a_group_member_and_a_job_failed_before_training_start_from_one_summary(tiny, tmp_path):
    """harness.records.results.new_summary is the one header: the three writers record the same identity keys."""
    from harness.records.results import new_summary
    from harness.training.train import run, run_group

    configs = [tiny("dataset=digits", "trainer.steps=3", f"seed={s}") for s in (1, 2)]
    one = run(configs[0], tmp_path / "one", ["seed=1"])
    member = run_group(configs, [tmp_path / "a", tmp_path / "b"], [["seed=1"], ["seed=2"]], "g")[0]
    failed = failed_summary(configs[0], tmp_path / "failed", ["seed=1"], "Traceback\nRuntimeError: boom")
    header = set(new_summary(configs[0], tmp_path, []))
    identity = ["schema_version", "activation", "model", "dataset", "seed", "config_hash", "overrides", "config"]
    for summary in (one, member, failed):
        assert header <= set(summary) and [summary[k] for k in identity] == [one[k] for k in identity]
    assert one["init_used"] == member["init_used"] is not None and failed["init_used"] is None
