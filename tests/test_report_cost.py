"""The report's cost answer from the cost probe's records alone (harness.report.cost): ratios and intervals against
scipy, no figure from the runs' own timing, the line shown without records, the Pareto front against a brute-force
reference, an unreadable cost.json listed and skipped, and a group's wall time counted once."""

from __future__ import annotations

import copy
import functools
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.records.cost import add_costs, cost_file
from harness.records.results import write_metrics, write_summary
from harness.report import build_report
from harness.report.cost import pareto
from harness.report.cost_text import duration
from harness.setup.config import to_dict
from tests.conftest import compose_config

ACTS = ["relu", "gelu", "tanh", "leaky_relu"]
SEEDS = [0, 1, 2]
ACC = {
    "relu": [0.80, 0.82, 0.81],
    "gelu": [0.85, 0.86, 0.84],
    "tanh": [0.70, 0.71, 0.73],
    "leaky_relu": [0.79, 0.8, 0.78],
}
ABSURD = 987654321.0  # the runs' own samples/s and peak memory: none of it may reach the report
ROUNDS = 8
RNG = np.random.default_rng(7)
BASE_STEP = 1e-3 * (1 + 0.1 * RNG.random(ROUNDS))  # relu's per-round step time; the others move with it
STEP = {
    "relu": BASE_STEP,
    "gelu": BASE_STEP * (1.3 + 0.02 * RNG.standard_normal(ROUNDS)),
    "tanh": BASE_STEP * (0.9 + 0.02 * RNG.standard_normal(ROUNDS)),
    "leaky_relu": 1e-3 * (1.05 + 0.1 * RNG.random(ROUNDS)),  # another probe: not paired with relu
}
FORWARD = {act: 0.3 * s * (1 + 0.01 * RNG.random(ROUNDS)) for act, s in STEP.items()}
RSS = {"relu": 40 << 20, "gelu": 50 << 20, "tanh": 44 << 20, "leaky_relu": 41 << 20}
SAVED = {"relu": 1000, "gelu": 2000, "tanh": 1500, "leaky_relu": 1000}  # bytes saved for backward
COUNTED = {act: saved + 4000 for act, saved in SAVED.items()}  # plus parameters, gradients, optimizer state
GPU_STEP = {"relu": 2e-4 * (1 + 0.05 * RNG.random(ROUNDS)), "gelu": 2.6e-4 * (1 + 0.05 * RNG.random(ROUNDS))}


@functools.cache
def base_config(dataset: str) -> dict:
    return to_dict(compose_config("model=mlp", "model.width=8", f"dataset={dataset}"))


def config_of(act: str, dataset: str, seed: int) -> dict:
    config = copy.deepcopy(base_config(dataset))
    config.update(seed=seed, activation={"name": act})
    return config


def summary_of(act: str, dataset: str, seed: int) -> dict:
    grouped = dataset == "digits" and act != "leaky_relu"  # relu, gelu, tanh of one seed trained as one group
    return {
        "schema_version": 2,
        "status": "ok",
        "activation": act,
        "model": "mlp",
        "dataset": dataset,
        "seed": seed,
        "config_hash": f"{act}-{dataset}-{seed}",
        "config": config_of(act, dataset, seed),
        "test_acc_at_best_val": ACC[act][seed],
        "test_acc": ACC[act][seed],
        "best_val_acc": ACC[act][seed],
        "train_loss": 0.1,
        "test_loss": 0.3,
        "samples_per_s": ABSURD,
        "clock_samples_per_s": ABSURD,
        "speed_clock": "thread_cpu",
        "peak_mem_mb": ABSURD,
        "dead_fraction": 0.0,
        "saturated_fraction": 0.0,
        "n_params": 250,
        "device": "cpu",
        "num_threads": 1,
        "train_time_s": 90.0 + seed if grouped else 6.0,
        "loop_time_s": 100.0 + seed if grouped else 7.0,  # each member of a group records the group's wall time
        "group": {"id": f"g{seed}", "size": 3, "index": ACTS.index(act)} if grouped else None,
    }


def setting(act: str, probe: str, device: str, step: np.ndarray, memory: dict) -> dict:
    return {
        "cost_id": f"{act}-{device}",
        "probe": probe,
        "config": config_of(act, "digits", 0),
        "device": device,
        "device_name": "Test GPU" if device == "cuda" else "Test CPU",
        "threads": 1,
        "hostname": "here",
        "measured_at": "2026-12-06T00:00:00Z",
        "n_params": 250,
        "steps_per_round": 20,
        "step_s": [float(v) for v in step],
        "forward_s": [float(v) for v in (FORWARD[act] if device == "cpu" else 0.3 * step)],
        "memory": {
            "saved_bytes": SAVED[act],
            "param_bytes": 1000,
            "grad_bytes": 1000,
            "optimizer_bytes": 2000,
            **memory,
        },
    }


def write_folder(folder: Path) -> Path:
    for act, dataset, seed in itertools.product(ACTS, ["digits", "spirals"], SEEDS):
        run_dir = folder / f"{act}-{dataset}-s{seed}"
        run_dir.mkdir(parents=True)
        write_metrics(run_dir, [(10, "val", "acc", None, ACC[act][seed], None)])
        write_summary(run_dir, summary_of(act, dataset, seed))
    cpu = [
        setting(act, "p1" if act != "leaky_relu" else "p2", "cpu", STEP[act], rss(act))
        for act in ["relu", "gelu", "tanh", "leaky_relu"]
    ]
    gpu = [setting(act, "p3", "cuda", GPU_STEP[act], {"peak_alloc_bytes": RSS[act] // 4}) for act in GPU_STEP]
    add_costs(folder, cpu + gpu)  # the sweep's cost.json: the digits task only
    return folder


def rss(act: str) -> dict:
    return {"peak_rss_bytes": (300 << 20) + RSS[act], "import_rss_bytes": 300 << 20}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = write_folder(tmp_path_factory.mktemp("cost") / "sweep")
    return build_report([folder], out=folder.parent / "report", figures=False)


def cost_answer(md: str, task: str) -> str:
    screen = md.split(f"## {task}")[1].split("\n## ")[0]
    return re.search(r"\*\*Cost\.\*\* (.*)", screen).group(1)


def log_ratio_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    logs = np.log(a / b)
    lo, hi = sps.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=sps.sem(logs))
    return float(np.exp(logs.mean())), float(np.exp(lo)), float(np.exp(hi))


def test_ratios_and_intervals_match_scipy(report):
    table = pd.read_csv(report / "cost.csv")
    cpu = table[table["machine"] == "Test CPU (cpu, 1 thread)"].set_index("act")
    for act in ["relu", "gelu", "tanh", "leaky_relu"]:
        ci = sps.quantile_test(STEP[act], q=np.median(STEP[act])).confidence_interval(0.95)
        row = cpu.loc[act]
        assert (row["step_s"], row["step_low"], row["step_high"]) == pytest.approx((np.median(STEP[act]), *ci))
        assert row["memory_bytes"] == COUNTED[act] and row["memory_kind"] == "counted"
        assert row["rss_bytes"] == (300 << 20) + RSS[act]  # the fresh process's, shown beside it
    md = (report / "report.md").read_text(encoding="utf-8")
    text = cost_answer(md, "digits / mlp")
    for act in ["gelu", "tanh"]:
        for what, rounds in [("step", STEP), ("forward", FORWARD)]:
            want = log_ratio_ci(rounds[act], rounds["relu"])
            got = tuple(cpu.loc[act, [f"{what}_ratio", f"{what}_ratio_low", f"{what}_ratio_high"]])
            assert got == pytest.approx(want)
        assert cpu.loc[act, "memory_ratio"] == pytest.approx(COUNTED[act] / COUNTED["relu"])
        g, lo, hi = log_ratio_ci(STEP[act], STEP["relu"])
        assert f"({g:.3g}× [{lo:.3g}, {hi:.3g}] relu)" in text
    assert np.isnan(cpu.loc["leaky_relu", "step_ratio"])
    assert "leaky_relu" in text and "measured by another probe than relu: rounds not paired, no ratio" in text
    gpu = table[table["machine"] == "Test GPU (cuda)"].set_index("act")
    assert gpu.loc["gelu", "step_ratio"] == pytest.approx(log_ratio_ci(GPU_STEP["gelu"], GPU_STEP["relu"])[0])
    assert "On Test CPU (cpu, 1 thread)" in text and "On Test GPU (cuda)" in text  # one sentence per machine
    assert "Test GPU (cuda)" in md.split("## Cost")[1]  # and one row per machine in the table


def test_speed_and_memory_come_only_from_the_probe(report):
    for name in ["report.md", "report.html"]:
        page = (report / name).read_text(encoding="utf-8")
        for shown in ["987654321", "987,654,321", "9.88e+08", "988M", "samples/s"]:
            assert shown not in page, (name, shown)
        assert duration(float(np.median(STEP["gelu"]))) in page  # the probe's figure is there


def test_no_probe_records_says_so_and_shows_no_speed(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    text = cost_answer(md, "spirals / mlp")
    assert text.startswith("No cost probe records") and ".cost/cost.json" in text
    assert not re.search(r"\d\s?(ms|µs|s)\b|×", text.split("Size:")[0]), text
    assert "spirals / mlp: no cost probe records" in md.split("## Cost")[1]


def pareto_reference(points: list[tuple[str, float, float]]) -> set[str]:
    """Written from the definition, pair by pair: dominated when another is no slower and no less accurate, and
    strictly better in one."""
    front = set()
    for name, t, acc in points:
        if not any(t2 <= t and a2 >= acc and (t2 < t or a2 > acc) for n2, t2, a2 in points if n2 != name):
            front.add(name)
    return front


def test_pareto_front_matches_brute_force(report):
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 8))
        points = [(f"a{i}", float(rng.integers(1, 5)), float(rng.integers(1, 5))) for i in range(n)]  # ties too
        frame = pd.DataFrame(points, columns=["act", "step_s", "acc_mean"])
        assert pareto(frame) == pareto_reference(points)
    table = pd.read_csv(report / "cost.csv")
    cpu = table[table["machine"] == "Test CPU (cpu, 1 thread)"]
    points = [(r.act, r.step_s, float(np.mean(ACC[r.act]))) for r in cpu.itertuples()]
    assert pareto(cpu.assign(acc_mean=[p[2] for p in points])) == pareto_reference(points)


def test_unreadable_cost_file_is_listed_once_and_skipped(tmp_path):
    folder = write_folder(tmp_path / "sweep")
    cost_file(folder).write_text("{not json", encoding="utf-8")
    out = build_report([folder], out=tmp_path / "report", figures=False)
    skipped = pd.read_csv(out / "skipped.csv")
    listed = skipped[skipped["reason"].str.contains("cost.json")]
    assert len(listed) == 1 and listed["run_dir"].iloc[0].endswith(".cost/cost.json")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert cost_answer(md, "digits / mlp").startswith("No cost probe records")
    assert md.count("unreadable cost.json") == 1


def test_a_group_is_counted_once_in_the_sweeps_cost(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    grouped = sum(100.0 + s for s in SEEDS)  # three groups of three runs, each recording its group's wall time
    alone = 7.0 * (len(SEEDS) + len(ACTS) * len(SEEDS))  # leaky_relu on digits, every spirals run
    assert f"({grouped + alone:,.0f} s)" in md and "of which 3 trained several runs together" in md


def test_cost_figures_draw_from_the_probe(report, tmp_path):
    from harness.report import cost_figures
    from harness.report.cost import accuracy_points
    from harness.report.figures import palette
    from harness.report.interactive import cost as interactive_cost

    table = pd.read_csv(report / "cost.csv").fillna({"note": ""})
    summary = pd.read_csv(report / "summary.csv")
    colours = palette(ACTS, "relu")
    points = accuracy_points(table, summary)
    assert set(points.loc[points["pareto"] & (points["machine"] == "Test GPU (cuda)"), "act"]) == {"relu", "gelu"}
    assert cost_figures.relative_cost(table, "relu", colours, tmp_path / "cost.png").exists()
    assert cost_figures.accuracy_vs_cost(points, colours, tmp_path / "acc.png").exists()
    assert "ms per step" in interactive_cost(table[table["task"] == "digits / mlp"], colours)
