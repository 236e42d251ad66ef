"""Tuned, and honestly so (harness.report.edges, docs/reports.md): a rate chosen on validation at the edge of its
grid is called out, with the next rates to try, in the report and at the end of a sweep; the stability answer
counts a run that ended at chance as unstable beside a diverged one, and names which seeds did which."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from harness.records.results import write_metrics, write_summary
from harness.report import build_report
from harness.report import edges as ed
from harness.setup.config import to_dict
from hydra_plugins.harness_sweeper.harness_sweeper import HarnessSweeper, Job
from tests.conftest import compose_config

RATES = [0.001, 0.003, 0.01, 0.03]
# activation -> lr -> best validation accuracy of every seed: the best mean at the top of the grid (relu), at its
# bottom (tanh) and inside it (gelu). sigmoid tried one rate: not tuned, so no edge whatever it scores.
VAL = {
    "relu": dict(zip(RATES, [0.60, 0.70, 0.80, 0.90])),
    "tanh": dict(zip(RATES, [0.90, 0.80, 0.70, 0.60])),
    "gelu": dict(zip(RATES, [0.60, 0.90, 0.80, 0.70])),
    "sigmoid": {0.01: 0.70},
}
# The next rates, worked out by hand from the 1-3 grid's decades (docs/reports.md, "Rates at the grid's edge").
ABOVE, BELOW = "0.1, 0.3", "0.0003, 0.0001"
# sigmoid's four seeds: (status, final validation accuracy). mnist1d has 10 classes, so a run ended at chance at a
# final validation accuracy of at most 1.5 x 0.1 = 0.15; seed 1 diverged (its accuracy is not read as a collapse);
# seed 3 is just above the margin and stable.
SIGMOID_SEEDS = [("ok", 0.80), ("diverged", 0.10), ("ok", 0.12), ("ok", 0.151)]


def run_rows() -> list[dict]:
    rows = []
    for act, rates in VAL.items():
        for lr, val in rates.items():
            seeds = SIGMOID_SEEDS if act == "sigmoid" else [("ok", 0.8)] * 3
            for seed, (status, final_val) in enumerate(seeds):
                rows.append({"act": act, "lr": lr, "seed": seed, "val": val, "status": status, "final_val": final_val})
    return rows


def write_runs(folder: Path) -> list[Path]:
    """The runs as run folders, each written as the harness writes one (summary.json and metrics.csv)."""
    base = to_dict(compose_config("model=mlp", "dataset=mnist1d"))
    dirs = []
    for r in run_rows():
        run_dir = folder / f"{r['act']}-lr{r['lr']:g}-s{r['seed']}"
        run_dir.mkdir(parents=True)
        write_metrics(run_dir, [(10, "val", "acc", None, r["val"], None)])
        config = base | {"seed": r["seed"], "activation": {"name": r["act"]}}
        config["trainer"] = base["trainer"] | {"lr": r["lr"]}
        summary = {
            "schema_version": 1,
            "status": r["status"],
            "activation": r["act"],
            "model": "mlp",
            "dataset": "mnist1d",
            "seed": r["seed"],
            "config_hash": run_dir.name,
            "config": config,
            "best_val_acc": r["val"],
            "val_acc": r["final_val"],
            "test_acc_at_best_val": 0.5,
            "test_acc": 0.5,
            "train_loss": 0.5,
            "test_loss": 1.0,
            "n_params": 100,
            "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:01:00Z",
            "samples_per_s": 1e3,
            "git_sha": None,
            "git_dirty": False,
            "torch_version": "2",
            "device": "cpu",
        }
        write_summary(run_dir, summary)
        dirs.append(run_dir)
    return dirs


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> list[Path]:
    return write_runs(tmp_path_factory.mktemp("edges") / "runs")


@pytest.fixture(scope="module")
def markdown(folders) -> str:
    report = build_report([folders[0].parent], out=folders[0].parent.parent / "report", figures=False)
    return (report / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("rates", "side", "expected"),
    [
        ([1e-3, 3e-3, 1e-2, 3e-2], "largest", (1e-1, 3e-1)),  # a 1-3 grid continues by decades
        ([1e-3, 3e-3, 1e-2, 3e-2], "smallest", (3e-4, 1e-4)),
        ([1e-3, 2e-3, 5e-3, 1e-2], "largest", (2e-2, 5e-2)),  # a 1-2-5 grid too
        ([1e-3, 2e-3, 4e-3], "largest", (8e-3, 1.6e-2)),  # a geometric grid continues its ratio
        ([1e-3, 2e-3, 4e-3], "smallest", (5e-4, 2.5e-4)),
        ([1e-6, 1e-2], "largest", (1e2, 1e6)),  # two rates: their ratio, even a power of ten
        ([1e-3, 3e-3], "smallest", (3e-4, 1e-4)),  # two one-digit rates: one-digit next rates (not 3.33e-4)
        ([3e-3, 1e-2], "largest", (3e-2, 1e-1)),
        ([1.5e-3, 3e-3], "smallest", (7.5e-4, 3.75e-4)),  # typed with two digits: the exact ratio
        ([1e-3, 2e-3, 3e-3], "largest", (4.5e-3, 6.75e-3)),  # neither: the ratio at that edge
    ],
)
def test_next_rates_continue_the_grids_own_spacing(rates, side, expected):
    assert ed.next_rates(rates, side) == pytest.approx(expected, rel=1e-9)


def test_edges_are_found_at_the_top_and_bottom_of_the_grid_only():
    summary = pd.DataFrame(
        [
            {"task": "t", "act": act, "setting": f"lr={lr:g}", "lr": lr, "chosen": lr == max(val, key=val.get)}
            for act, val in VAL.items()
            for lr in val
        ]
    )
    found = {e.act: (e.side, e.chosen, e.next_rates) for e in ed.find_edges(summary)}
    assert found == {"relu": ("largest", 0.03, (0.1, 0.3)), "tanh": ("smallest", 0.001, (0.0003, 0.0001))}


def test_other_swept_keys_are_held_equal():
    # relu chose init=kaiming at 0.01: the largest kaiming rate, though init=default went up to 0.03
    grid = [("kaiming", 0.001), ("kaiming", 0.01), ("default", 0.001), ("default", 0.03)]
    summary = pd.DataFrame(
        [
            {"task": "t", "act": "relu", "setting": f"init={i}, lr={lr:g}", "lr": lr, "chosen": (i, lr) == grid[1]}
            for i, lr in grid
        ]
    )
    (edge,) = ed.find_edges(summary)
    assert (edge.others, edge.rates, edge.side, edge.next_rates) == ("init=kaiming", (0.001, 0.01), "largest", (0.1, 1))


def section(md: str, title: str) -> str:
    return md.split(title)[1].split("\n## ")[0]


def test_the_report_warns_at_the_edges_with_the_next_rates(markdown):
    screen = section(markdown, "## mnist1d / mlp")
    settings = next(line for line in screen.splitlines() if "settings tried" in line)
    assert "relu: the chosen lr=0.03 is the largest of the 4 rates tried (0.001, 0.003, 0.01, 0.03)" in settings
    assert f"try {ABOVE} next" in settings
    assert "tanh: the chosen lr=0.001 is the smallest of the 4 rates tried" in settings
    assert f"try {BELOW} next" in settings
    assert "gelu: the chosen" not in settings and "sigmoid: the chosen" not in settings
    bullets = [line for line in section(markdown, "## Summary").splitlines() if "Tuning may be unfinished" in line]
    assert len(bullets) == 2
    assert "relu on mnist1d / mlp: the chosen lr=0.03 is the largest" in bullets[0] and f"try {ABOVE}" in bullets[0]
    assert "tanh on mnist1d / mlp: the chosen lr=0.001 is the smallest" in bullets[1] and f"try {BELOW}" in bullets[1]
    settings_table = [line for line in markdown.splitlines() if re.search(r"\| (relu|gelu) \| lr=", line)]
    assert any(f"| yes: the largest lr tried (try {ABOVE} next) |" in line for line in settings_table)
    assert any("| gelu | lr=0.003 |" in line and line.rstrip().endswith("| yes |") for line in settings_table)


def test_the_sweeper_prints_the_same_warnings_from_the_finished_runs(folders):
    assert ed.sweep_lines(folders) == [
        "warning: relu on mnist1d / mlp: the chosen lr=0.03 is the largest of the rates tried "
        "(0.001, 0.003, 0.01, 0.03); try trainer.lr=0.1,0.3 next",
        "warning: tanh on mnist1d / mlp: the chosen lr=0.001 is the smallest of the rates tried "
        "(0.001, 0.003, 0.01, 0.03); try trainer.lr=0.0003,0.0001 next",
    ]


def test_the_sweepers_end_of_sweep_report_prints_them_after_the_table(folders, capsys):
    sweeper = SimpleNamespace(sweep_dir=folders[0].parent)  # what HarnessSweeper.report reads of itself
    lrs = [SimpleNamespace(trainer=SimpleNamespace(lr=float(d.name.split("-lr")[1].split("-")[0]))) for d in folders]
    jobs = [Job([], d.name, d.name, False, config=lr) for d, lr in zip(folders, lrs)]
    HarnessSweeper.report(sweeper, jobs, [], None, "python run.py ...")
    out = capsys.readouterr().out
    table, warnings = out.split(f" of {len(jobs)} jobs\n")  # the table's last line, then the warnings
    assert "warning: relu on mnist1d / mlp: the chosen lr=0.03 is the largest" in warnings
    assert "warning: tanh on mnist1d / mlp: the chosen lr=0.001 is the smallest" in warnings
    assert len(warnings.strip().splitlines()) == 2
    one_rate = [j for j in jobs if j.name.startswith("relu-lr0.03")]  # one rate: nothing was tuned
    HarnessSweeper.report(sweeper, one_rate, [], None, "python run.py ...")
    assert "warning" not in capsys.readouterr().out


def test_stability_counts_runs_at_chance_as_unstable_and_names_the_seeds(markdown):
    stability = re.search(r"\*\*Stability\.\*\* (.*)", section(markdown, "## mnist1d / mlp")).group(1)
    assert "final validation accuracy at most 1.5x chance; chance is 1/10 on mnist1d, so at most 0.15" in stability
    assert "sigmoid 2/4 (1 diverged: seed 1; 1 ended at chance: seed 2)" in stability  # seed 3 (0.151) is stable
    assert "relu 0/3" in stability
    bullets = section(markdown, "## Summary")
    assert "sigmoid was unstable in 2/4 runs at lr=0.01 on mnist1d / mlp: 1 diverged, 1 ended at chance" in bullets


@pytest.mark.slow  # a real sweep, in process: its fast twin calls the sweeper's report() on finished runs
def test_a_sweep_of_two_rates_ends_with_the_warning(tmp_path):
    from harness.records.results import read_summary
    from tests.test_sweeps import ONE_THREAD, TINY, main_in_process

    out = tmp_path / "sweep"
    result = main_in_process("-m", "trainer.lr=0.001,0.01", *TINY, ONE_THREAD, f"hydra.sweep.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = {
        s["config"]["trainer"]["lr"]: s for s in map(read_summary, (p.parent for p in out.glob("*/summary.json")))
    }
    assert all(s["status"] == "ok" and s["val_acc"] > 0.15 for s in summaries.values())  # stable: val decides
    best = max(summaries, key=lambda lr: summaries[lr]["best_val_acc"])
    side, beyond = ("largest", "0.1,1") if best == 0.01 else ("smallest", "0.0001,1e-05")  # a ratio of 10, continued
    warning = (
        f"warning: relu on digits / mlp: the chosen lr={best:g} is the {side} of the rates tried (0.001, 0.01); "
        f"try trainer.lr={beyond} next"
    )
    assert result.stdout.rstrip().endswith("2 ok of 2 jobs\n" + warning)
