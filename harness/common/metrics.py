"""The metric registry: every per-run number the report compares across activations, in one place.

A run measures a metric (harness.training.loop.Member.finish, harness.common.flow, or the report's
harness.report.outcomes from what the run wrote) and stores it under its `key`; everything downstream reads this
registry: the numeric columns the report loads (harness.report.load), the summary over seeds with its intervals
(harness.report.stats), the results table and its LaTeX twin (harness.report.headline, harness.report.latex) and the
list of what each column means. Adding a metric is one entry here plus its measurement (tests/test_metric_registry.py
adds a toy one).

No torch here: the report imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("loop", "flow", "report")  # where it is measured: a run's summary.json, or derived by the report
CELLS = ("mean_ci", "mean_worst", "mean_sd", "mean", "gmean")  # how the results table shows it
FORMATS = ("percent", "points", "rate", "ratio", "loss", "number")  # its cells, and its type in summary.json
QUESTIONS = ["accuracy", "stability", "dead units", "gradient flow", "cost"]  # the report's first screen, in order


@dataclass(frozen=True)
class Metric:
    """One per-run number: its summary key, how tables name and show it, and how it is averaged over seeds."""

    key: str  # summary.json key (a "report" metric: the run column harness.report.outcomes derives)
    short: str  # the summary table's prefix: {short}_mean, _sd, _ci_low, _ci_high (gmean, ci for "gmean")
    label: str  # its column in the results table (None-like "" keeps it out of that table)
    better: str | None  # "higher", "lower", or None where neither is (a ratio best near 1)
    fmt: str  # FORMATS: percent (a fraction in [0, 1] shown as %), points (a fraction in accuracy points), rate
    # (per second), ratio, loss (non-negative), number: its cells, and its type in summary.json (harness.records.schema)
    source: str  # SOURCES
    meaning: str  # one sentence: what the number is (the report's method section lists them)
    cell: str = "mean"  # CELLS: the results table's cell
    geometric: bool = False  # averaged on the log scale (ratios that span decades): gmean and its interval
    question: str | None = None  # QUESTIONS: the first-screen question it answers, its table in tables.tex

    def __post_init__(self) -> None:
        if self.question not in (None, *QUESTIONS):
            raise ValueError(f"metric {self.key}: question {self.question!r} not one of {QUESTIONS}")
        if self.source not in SOURCES or self.cell not in CELLS or self.fmt not in FORMATS:
            raise ValueError(f"metric {self.key}: source, cell or fmt not one of {SOURCES}, {CELLS}, {FORMATS}")
        if self.geometric != (self.cell == "gmean"):
            raise ValueError(f"metric {self.key}: a geometric metric is shown as its gmean, and only it")


# one entry's fields on as few lines as they fit: the formatter would give each field a line
# fmt: off
METRICS: tuple[Metric, ...] = (
    Metric(
        "test_acc_at_best_val", "acc", "test acc [95% CI]", "higher", "percent", "loop",
        "test accuracy at the evaluation with the best validation accuracy", cell="mean_ci", question="accuracy",
    ),
    Metric("test_acc", "final_acc", "", "higher", "percent", "loop", "test accuracy at the end of training"),
    Metric("train_loss", "train_loss", "", "lower", "loss", "loop", "mean training loss over the last window"),
    Metric("test_loss", "test_loss", "", "lower", "loss", "loop", "test loss at the end of training"),
    Metric("samples_per_s", "samples_per_s", "", "higher", "rate", "loop", "training samples/s by the wall clock"),
    Metric(
        "val_drawdown_max", "drawdown", "drawdown mean (worst)", "lower", "points", "flow",
        "the largest fall of validation accuracy below its running best", cell="mean_worst",
        question="stability",
    ),
    Metric(
        "dead_init_fraction", "dead_init", "dead at init", "lower", "percent", "report",
        "units dead at the step-0 probe, mean over layers", question="dead units",
    ),
    Metric(
        "lost_fraction", "lost", "lost in training", "lower", "percent", "report",
        "units alive at step 0 and dead at the end, mean over layers", question="dead units",
    ),
    Metric(
        "dead_fraction", "dead", "dead at end", "lower", "percent", "loop", "units dead at the final probe",
        question="dead units",
    ),
    Metric("saturated_fraction", "saturated", "", "lower", "percent", "loop", "units saturated at the final probe"),
    # activation sparsity (harness.networks.sparsity): neither better nor worse in itself, what sparse units trade
    Metric(
        "zero_fraction", "zero", "exactly zero at end", None, "percent", "loop",
        "hidden activations exactly zero over the final probe set", question="dead units",
    ),
    Metric(
        "cett_sparsity", "cett", "CETT sparsity at end", None, "percent", "loop",
        "neurons whose contribution to the next layer can be dropped at CETT 0.2 (MLP, transformer FFN)",
        question="dead units",
    ),
    Metric(
        "small_fraction", "small", "near zero at end", None, "percent", "loop",
        "hidden activations at or below 1% of their layer's RMS output on the same sample", question="dead units",
    ),
    Metric(
        "grad_flow_ratio_init", "ratio_init", "grad ratio init", None, "ratio", "flow",
        "the head's weight-gradient norm over the first hidden layer's at initialisation", cell="gmean",
        geometric=True, question="gradient flow",
    ),
    Metric(
        "grad_flow_ratio", "ratio_train", "grad ratio training", None, "ratio", "flow",
        "the same ratio of the gradient norms averaged over training's logged steps", cell="gmean", geometric=True,
        question="gradient flow",
    ),
    # a run record only, never shown: the report's speed and memory come from the cost probe (harness.report.cost)
    Metric(
        "speed", "speed", "", "higher", "rate", "report",
        "training samples/s by the run's speed clock (its thread's CPU time on one thread)", cell="mean_sd",
    ),
)
# fmt: on

BY_KEY = {m.key: m for m in METRICS}


def stored() -> list[str]:
    """The keys a run's summary.json holds (the others the report derives)."""
    return [m.key for m in METRICS if m.source != "report"]


def answering(question: str) -> list[Metric]:
    """The metrics that answer a first-screen question, in the registry's order."""
    return [m for m in METRICS if m.question == question]


def in_table() -> list[Metric]:
    """The metrics of the results table, in its order."""
    return [m for m in METRICS if m.label]
