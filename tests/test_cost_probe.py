"""The cost probe (harness/training/cost.py): what a cost setting is, interleaved rounds inside a bounded budget,
memory counted against torch's own tensors, and the probe as a sweep runs it (alone, reused on resume, off by a key,
never the sweep's failure)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest
import torch

from harness.records.cost import COST_DIR, PROBE_JOB, SETTINGS_FILE, add_costs, cost_file, cost_id, read_costs
from harness.report import build_report
from harness.setup.config import Config, DatasetConfig, TrainerConfig, to_dict
from harness.sweeps.costs import plan_probe
from harness.training import cost, cost_memory
from tests.conftest import run_py_in_process
from tests.test_reliability_sweeps import TINY

SMALL = Config(
    model={"name": "mlp", "width": 16, "depth": 2},
    dataset=DatasetConfig(name="digits", train_size=300),
    trainer=TrainerConfig(steps=50, batch_size=20, device="cpu", threads=1, progress=False),
)


def entry(config: Config, sweep_steps: int = 100) -> dict:
    return {"cost_id": cost_id(config), "config": to_dict(config), "sweep_steps": sweep_steps}


def with_trainer(config: Config, **values: object) -> Config:
    return dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, **values))


# ---------------------------------------------------------------- what a cost setting is


def test_a_cost_setting_ignores_seed_learning_rate_and_init_but_not_what_a_step_computes():
    same = [
        dataclasses.replace(SMALL, seed=7),
        with_trainer(SMALL, lr=0.5, steps=9000, eval_every=10),
        dataclasses.replace(SMALL, model={"name": "mlp", "width": 16, "depth": 2, "init": "orthogonal"}),
        dataclasses.replace(SMALL, dataset=DatasetConfig(name="digits", train_size=300, root="elsewhere")),
    ]
    other = [
        dataclasses.replace(SMALL, activation={"name": "gelu"}),
        dataclasses.replace(SMALL, activation={"name": "leaky_relu", "negative_slope": 0.2}),
        dataclasses.replace(SMALL, model={"name": "mlp", "width": 32, "depth": 2}),
        with_trainer(SMALL, batch_size=40),
        with_trainer(SMALL, precision="bf16"),
        with_trainer(SMALL, threads=2),
        with_trainer(SMALL, optimizer="sgd"),
        with_trainer(SMALL, weight_decay=0.1),
        dataclasses.replace(SMALL, dataset=DatasetConfig(name="mnist1d")),
    ]
    assert {cost_id(c) for c in same} == {cost_id(SMALL)}
    assert len({cost_id(c) for c in [SMALL, *other]}) == 1 + len(other)


def test_a_sweeps_settings_are_listed_once_each_with_all_their_steps(tmp_path):
    configs = [dataclasses.replace(SMALL, seed=s, activation={"name": a}) for a in ("relu", "tanh") for s in (0, 1, 2)]
    todo, reused = plan_probe(tmp_path, configs)
    assert reused == 0 and [e["config"]["activation"]["name"] for e in todo] == ["relu", "tanh"]
    assert [e["sweep_steps"] for e in todo] == [150, 150]
    assert json.loads((tmp_path / COST_DIR / SETTINGS_FILE).read_text())["settings"] == todo


# ---------------------------------------------------------------- interleaved rounds, bounded


def test_every_round_times_each_setting_in_turn(tmp_path, monkeypatch):
    configs = [dataclasses.replace(SMALL, activation={"name": a}) for a in ("relu", "tanh", "gelu")]
    settings = [cost.build_setting(entry(c), tmp_path / str(i), 1, {}) for i, c in enumerate(configs)]
    order: list[tuple[str, str]] = []
    timed = cost.timed

    def logged(s: cost.Setting, block, n: int) -> float:
        order.append((s.entry["config"]["activation"]["name"], block.__name__))
        return timed(s, block, n)

    monkeypatch.setattr(cost, "timed", logged)
    cost.run_rounds(settings, 4)
    one_round = [(a, kind) for a in ("relu", "tanh", "gelu") for kind in ("train_step", "forward")]
    assert order == one_round * 4
    assert all(len(s.step_s) == len(s.forward_s) == 4 for s in settings)


@pytest.mark.parametrize(
    ("step_s", "sweep_steps", "limit_s"),
    [(1e-3, 10_000_000, cost.SETTING_LIMIT_S), (1e-3, 100_000, 5.0), (2e-3, 50, 0.0)],
    ids=["30 s a setting", "5% of the sweep", "the least that gives an interval"],
)
def test_a_settings_probe_time_stays_within_its_budget(monkeypatch, step_s, sweep_steps, limit_s):
    forward_s = step_s / 4

    class Fake:
        entry = {"sweep_steps": sweep_steps}
        steps_per_round = 1

        def train_step(self, _=None) -> None: ...

        def forward(self, _=None) -> None: ...

    seconds = lambda s, block, n: step_s if block.__name__ == "train_step" else forward_s  # noqa: E731
    monkeypatch.setattr(cost, "timed", seconds)
    monkeypatch.setattr(cost, "wall", seconds)  # the budget reads wall time
    fake = Fake()
    rounds = cost.size_rounds([fake])  # type: ignore[list-item]
    planned = rounds * fake.steps_per_round * (step_s + forward_s)
    assert rounds >= cost.MIN_ROUNDS
    if limit_s:
        assert planned <= limit_s
        assert planned >= 0.5 * min(limit_s, cost.MAX_ROUNDS * fake.steps_per_round * (step_s + forward_s))
    else:  # below the budget's reach: the least, MIN_ROUNDS rounds of one step
        assert (rounds, fake.steps_per_round) == (cost.MIN_ROUNDS, 1)


# ---------------------------------------------------------------- memory, counted against torch


def test_memory_counts_the_tensors_torch_holds(tmp_path):
    s = cost.build_setting(entry(SMALL), tmp_path, 1, {})
    cost.run_rounds([s], 1)
    memory = cost_memory.step_memory(s.group, s.entry["config"], 1, (None, None))
    model = s.group.members[0].model
    params = list(model.parameters())
    assert memory["param_bytes"] == sum(p.numel() * p.element_size() for p in params)
    assert memory["grad_bytes"] == memory["param_bytes"]  # every parameter has its gradient after a step
    reference = torch.optim.Adam([torch.nn.Parameter(p.detach().clone()) for p in params])
    for p in reference.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    reference.step()
    moments = sum(t.numel() * t.element_size() for st in reference.state.values() for k, t in st.items() if k != "step")
    assert moments <= memory["optimizer_bytes"] <= moments + 64 * len(params)  # plus the step counts


def test_gelu_saves_its_input_beside_the_next_layers_where_relu_saves_one_tensor(tmp_path):
    """ReLU's backward needs its output, which the next Linear saves anyway; GELU's needs its input: one more
    (batch, width) tensor per hidden layer."""
    saved = {}
    for act in ("relu", "gelu"):
        s = cost.build_setting(entry(dataclasses.replace(SMALL, activation={"name": act})), tmp_path / act, 1, {})
        saved[act] = cost_memory.step_memory(s.group, s.entry["config"], 1, (None, None))["saved_bytes"]
    assert saved["gelu"] - saved["relu"] == 2 * 20 * 16 * 4  # depth 2 x batch 20 x width 16 x float32


def test_a_fresh_process_reports_its_resident_memory(capsys):
    cost_memory.fresh_main(json.dumps(to_dict(SMALL)), "1")  # the fresh process's code, run here
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < figures["import_rss_bytes"] <= figures["peak_rss_bytes"]


@pytest.mark.slow
def test_a_fresh_process_reports_its_resident_memory_from_its_own_process():
    imported, peak = cost_memory.fresh_process_rss(to_dict(SMALL), 1)
    assert imported is not None and peak is not None and 0 < imported <= peak


# ---------------------------------------------------------------- as a sweep runs it


@pytest.fixture
def probe_here(monkeypatch):
    """The probe's child process run in this process, and the fresh processes' ~3 s a setting left out of the default
    suite (tests below and the slow sweeps run both for real)."""

    def here(cost_dir: Path, cpu_threads: int | None) -> subprocess.CompletedProcess:
        cost.run_probe(cost_dir, cpu_threads)
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(cost, "spawn_probe", here)
    monkeypatch.setattr(cost_memory, "fresh_process_rss", lambda config, threads: (1 << 20, 2 << 20))


def sweep(capsys, out: Path, *args: str) -> tuple[int, str]:
    code = run_py_in_process(
        "-m", "activation=relu,leaky_relu", "seed=0,1", *TINY, f"hydra.sweep.dir={out}", *args, preflight=False
    )
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_sweep_probes_each_setting_once_alone_and_reuses_it_on_resume(capsys, tmp_path, probe_here):
    out = tmp_path / "sweep"
    code, text = sweep(capsys, out, "hydra.sweeper.cost_probe=true", "hydra.sweeper.group_size=2")
    assert code == 0, text[-2000:]
    records = {r["config"]["activation"]["name"]: r for r in read_costs(out)}
    assert set(records) == {"relu", "leaky_relu"}
    for r in records.values():
        assert len(r["step_s"]) == len(r["forward_s"]) >= cost.MIN_ROUNDS
        assert r["memory"]["peak_rss_bytes"] == 2 << 20 and r["threads"] == 1
    member = json.loads(next(out.glob("activation=relu,*seed=0*/summary.json")).read_text())
    assert member["group"]["size"] == 2  # the jobs trained in groups, the probe alone: one model's parameters
    assert records["relu"]["n_params"] == member["n_params"]
    report = build_report([out], out=tmp_path / "report", figures=False)  # leaky_relu's slope: a key relu lacks
    answer = (report / "report.md").read_text().split("**Cost.**")[1].split("\n")[0]
    assert "measured alone by the cost probe" in answer and "leaky_relu" in answer
    before = cost_file(out).read_bytes()
    code, text = sweep(capsys, out, "hydra.sweeper.cost_probe=true", "resume=true")
    assert code == 0 and "the 2 setting(s) were measured earlier (reused)" in text
    assert cost_file(out).read_bytes() == before


def test_the_probe_is_off_with_its_key(capsys, tmp_path):
    code, text = sweep(capsys, tmp_path / "sweep", "hydra.sweeper.cost_probe=false")
    assert code == 0 and not (tmp_path / "sweep" / COST_DIR).exists() and "cost probe" not in text


def test_a_probe_that_fails_costs_the_sweep_nothing_but_its_figures(capsys, tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "Traceback (most recent call last):\nRuntimeError: no clock\n")
    monkeypatch.setattr(cost, "spawn_probe", lambda cost_dir, cpu_threads: failed)
    out = tmp_path / "sweep"
    code, text = sweep(capsys, out, "hydra.sweeper.cost_probe=true")
    assert code == 0, text[-2000:]
    assert "cost probe: 2 setting(s) not measured" in text and "Traceback" not in text
    assert "no clock" in (out / COST_DIR / PROBE_JOB / "error.txt").read_text()
    assert len(list(out.glob("*/summary.json"))) == 4


@pytest.mark.slow  # a child process importing torch; its fast twin: the failing probe above
def test_a_setting_that_kills_its_process_ends_the_probes_child_not_the_probe(tmp_path):
    """A custom activation that aborts in a training step (as a segfault would): the child dies, the probe job
    (under the basic launcher, the sweep itself) reports it in one line."""
    aborts = dataclasses.replace(SMALL, activation={"name": "custom", "target": "tests.test_reliability_sweeps.Aborts"})
    (tmp_path / COST_DIR / PROBE_JOB).mkdir(parents=True)
    plan_probe(tmp_path, [aborts])
    problem = cost.probe_job(tmp_path / COST_DIR / PROBE_JOB, 1)
    assert problem is not None and "ended with status -6" in problem
    assert (tmp_path / COST_DIR / PROBE_JOB / "error.txt").exists() and read_costs(tmp_path) == []


def test_a_damaged_cost_file_is_measured_again(tmp_path):
    configs = [dataclasses.replace(SMALL, activation={"name": a}) for a in ("relu", "tanh")]
    cost_file(tmp_path).parent.mkdir(parents=True)
    cost_file(tmp_path).write_text('{"schema_version": 1, "settings": [{"cost_id": 3}]}')
    todo, reused = plan_probe(tmp_path, configs)
    assert (len(todo), reused) == (2, 0)
    measured = [{**good_record(), "cost_id": e["cost_id"], "config": e["config"]} for e in todo]
    add_costs(tmp_path, measured)
    assert [r["cost_id"] for r in read_costs(tmp_path)] == [e["cost_id"] for e in todo]
    assert plan_probe(tmp_path, configs) == ([], 2)


def good_record() -> dict:
    memory = {"saved_bytes": 1, "param_bytes": 2, "grad_bytes": 2, "optimizer_bytes": 4, "peak_rss_bytes": 9}
    return {"probe": "p", "device": "cpu", "device_name": "cpu", "threads": 1, "hostname": "h", "n_params": 3,
            "measured_at": "2026-12-06T00:00:00+00:00", "steps_per_round": 1, "step_s": [1e-3] * 3,
            "forward_s": [1e-4] * 3, "memory": memory}  # fmt: skip


@pytest.mark.cuda  # skipped without a GPU (tests/conftest.py); scripts/gpu_check.sh runs it
def test_on_cuda_the_probe_records_the_allocators_peak_of_a_step(tmp_path):
    on_gpu = with_trainer(SMALL, device="cuda")
    s = cost.build_setting(entry(on_gpu), tmp_path, None, {})
    cost.run_rounds([s], 2)
    memory = cost_memory.step_memory(s.group, s.entry["config"], s.threads, (None, None))
    counted = memory["param_bytes"] + memory["grad_bytes"] + memory["optimizer_bytes"]
    assert s.group.device.type == "cuda" and all(t > 0 for t in s.step_s)
    assert memory["peak_alloc_bytes"] > counted and memory["peak_rss_bytes"] is None


def test_the_budget_is_wall_time_a_step_that_waits_is_not_free(tmp_path, monkeypatch):
    """Thread CPU time does not count a step's waits; the sweep's wall time does, and so does the cap a setting
    gets (here 0.1 s for a sweep whose 5% is far more)."""
    monkeypatch.setattr(cost, "SETTING_LIMIT_S", 0.1)
    s = cost.build_setting(entry(SMALL, sweep_steps=10**6), tmp_path, 1, {})
    awake = s.train_step
    s.train_step = lambda _=None: (time.sleep(0.01), awake())[1]  # type: ignore[method-assign]
    s.train_step.__name__ = "train_step"
    rounds = cost.size_rounds([s])
    assert rounds * s.steps_per_round * 0.01 <= 0.1  # by CPU time: 6 rounds of 7 steps, 0.42 s of sleep alone
