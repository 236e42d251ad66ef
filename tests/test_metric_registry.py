"""harness.common.metrics: one registry of per-run metrics that the run's summary, the results contract and every report
table read. Adding a metric is one entry plus its measurement: a toy metric goes from a run to summary.csv, the
results table and tables.tex with nothing else changed."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from harness.common import metrics
from harness.common.metrics import Metric
from harness.report.build import build_report
from harness.training.loop import Member
from harness.training.train import run

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture
def two_runs(tiny, tmp_path):
    """Two seeds of a tiny run, with a toy metric measured beside the others."""
    root = tmp_path / "runs"
    course = Member.course

    def measured(self, units, grad_mean, n_test):  # the toy's measurement: the number of metrics.csv rows
        return {**course(self, units, grad_mean, n_test), "toy_rows": float(len(self.state.rows))}

    mp = pytest.MonkeyPatch()
    mp.setattr(Member, "course", measured)
    try:
        summaries = [run(tiny(f"seed={s}"), root / f"seed{s}") for s in (1, 2)]
    finally:
        mp.undo()
    return root, summaries


def test_every_stored_metric_is_in_a_runs_summary(two_runs):
    _, summaries = two_runs
    for s in summaries:
        missing = [key for key in metrics.stored() if key not in s]
        assert not missing, missing


def test_the_results_contract_lists_every_stored_metric():
    contract = (DOCS / "results.md").read_text()
    missing = [key for key in metrics.stored() if f"`{key}`" not in contract]
    assert not missing, f"docs/results.md does not list {missing}"


def test_the_registry_refuses_an_unknown_source_or_a_geometric_mean_shown_otherwise():
    with pytest.raises(ValueError, match="source"):
        Metric("x", "x", "x", "higher", "number", "somewhere", "x")
    with pytest.raises(ValueError, match="geometric"):
        Metric("x", "x", "x", None, "ratio", "loop", "x", geometric=True)


def test_adding_a_metric_is_one_entry_plus_its_measurement(two_runs, tmp_path, monkeypatch):
    root, summaries = two_runs
    toy = Metric("toy_rows", "toy", "toy rows", "higher", "number", "loop", "rows in metrics.csv", question="accuracy")
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, toy))
    out = build_report([root], out=tmp_path / "report", figures=False, latex=True)
    summary = pd.read_csv(out / "summary.csv")
    rows = [s["toy_rows"] for s in summaries]
    assert summary["toy_mean"].iloc[0] == pytest.approx(sum(rows) / 2)
    assert "toy rows" in (out / "report.md").read_text()
    assert re.search(r"toy rows", (out / "tables.tex").read_text())
    assert "rows in metrics.csv" in (out / "report.md").read_text()  # what the column means
