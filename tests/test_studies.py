"""The built-in studies (conf/experiment/NAME.yaml) compose, validate and run in a tiny configuration; the born-dead
probe (harness/training/born_dead.py) agrees with a direct computation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from experiments import study_report
from harness import run
from harness.networks.activations import activation_spec
from harness.networks.models import build_model
from harness.networks.probes import PROBE_SIZE
from harness.records.results import read_summary
from harness.setup.config import ConfigError
from harness.setup.data import load_dataset
from harness.training.born_dead import born_dead_trials, trial_seed
from harness.training.train import check
from tests.conftest import CONF_DIR, compose_config
from tests.test_bench import assert_drawn

STUDIES = [
    "article_claims",
    "vanishing_gradients",
    "dying_relu",
    "mnist1d_baselines",
    "modern_activations",
    "lr_fairness",
    "transformer_ffn",
]
# Studies without a study report yet (experiments/studies.py STUDIES): composed, validated and run tiny only
UNREPORTED = ["ffn_activations"]
TINY = [
    "trainer.steps=4",
    "trainer.eval_every=2",
    "trainer.log_every=2",
    "dataset.train_size=200",
    "trainer.device=cpu",
    "trainer.threads=1",
    "trainer.progress=false",
]


def sweep_axes(name: str) -> list[list[str]]:
    """A study's sweep as Hydra's sweeper expands it: one list of `key=value` overrides per swept key."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+experiment={name}"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return [
        [f"{o.get_key_element()}={v}" for v in (o.sweep_string_iterator() if o.is_sweep_override() else [o.value()])]
        for o in parsed
    ]


def covering_jobs(axes: list[list[str]]) -> list[list[str]]:
    """Jobs that between them use every value of every axis (the full product is too many to compose in CI): job i
    takes each axis's i-th value, its last once it has no more; as many jobs as the longest axis has values."""
    return [[axis[min(i, len(axis) - 1)] for axis in axes] for i in range(max(map(len, axes)))]


def sweep_jobs(name: str) -> list[list[str]]:
    """The first and the last job of a study's full product: between them they use every variant file."""
    axes = sweep_axes(name)
    return [[a[0] for a in axes], [a[-1] for a in axes]]


@pytest.mark.parametrize("name", STUDIES + UNREPORTED)
def test_every_value_of_every_study_composes_and_validates(name):
    for job in covering_jobs(sweep_axes(name)):
        check(compose_config(f"+experiment={name}", *job, "trainer.device=cpu"))


@pytest.mark.parametrize("name", STUDIES + UNREPORTED)
def test_a_study_composes_the_same_whatever_the_order_of_its_config_files(name):
    """The sweeper puts a job's own overrides before `+experiment=NAME`: variant files must not fight it."""
    axes = [a if a[0].startswith("+experiment/") else a[:1] for a in sweep_axes(name)]  # vary the variant files
    for job in covering_jobs(axes):
        assert compose_config(*job, f"+experiment={name}") == compose_config(f"+experiment={name}", *job)


@pytest.mark.parametrize("draw", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["tables", "figures"])
@pytest.mark.parametrize("name", STUDIES)
def test_each_study_runs_tiny_and_its_report_builds(name, draw, data_root, tmp_path):
    jobs = sweep_jobs(name)
    for i, job in enumerate([jobs[0], jobs[-1]]):  # the first and the last job span every variant file
        extra = ["trainer.init_trials=5"] if name == "dying_relu" else TINY
        config = compose_config(f"+experiment={name}", *job, *extra, f"dataset.root={data_root}", "trainer.device=cpu")
        summary = run(config, tmp_path / "sweep" / str(i), [f"+experiment={name}", *job])
        assert summary["status"] == "ok", summary.get("error")  # it ran: neither failed nor diverged
    report = study_report.build(name, [str(tmp_path / "sweep")], tmp_path / "out", draw)
    text = report.read_text()
    assert text.startswith(f"# Study report: {name}\n") and "2 runs" in text and "Status: {'ok': 2}." in text
    links = re.findall(r"\]\((figures/[^)]+)\)", text)
    assert bool(links) == draw
    for link in links:  # every figure it links is there, and drawn
        assert_drawn(tmp_path / "out" / link)


@pytest.mark.parametrize("name", UNREPORTED)
def test_each_unreported_study_runs_tiny(name, data_root, tmp_path):
    for i, job in enumerate(sweep_jobs(name)):  # the first and the last job span every variant file
        config = compose_config(f"+experiment={name}", *job, *TINY, f"dataset.root={data_root}", "model.width=8")
        summary = run(config, tmp_path / str(i), [f"+experiment={name}", *job])
        assert summary["status"] == "ok", summary.get("error")


def test_ffn_activations_gives_each_model_its_own_budget_and_its_parts_are_the_whole():
    """The MLP at 6,000 steps, the transformer at 1,000 (6,000 with trainer.steps on the command line); the five
    parts of docs/studies.md (each with -m: a comma list on the command line needs it) cover the 1,408 runs of the
    study once each."""
    axes = sweep_axes("ffn_activations")
    variant, dataset, activation = axes[0], axes[1], axes[2]
    assert len(activation) == 11 and [len(a) for a in axes[3:]] == [4, 8]
    assert len(variant) * len(dataset) * len(activation) * 4 * 8 == 1408
    for file, model, steps in (("mlp", "mlp", 6000), ("transformer", "transformer", 1000)):
        config = compose_config("+experiment=ffn_activations", f"+experiment/ffn_activations={file}")
        assert (config.model.name, config.model.match_params, config.trainer.steps) == (model, True, steps)
        full = compose_config(
            "+experiment=ffn_activations", f"+experiment/ffn_activations={file}", "trainer.steps=6000"
        )
        assert full.trainer.steps == 6000
    parts = re.findall(r"^python run.py -m \+experiment=ffn_activations (.*?)\$J", docs_studies(), re.M | re.S)
    covered = []
    for part in parts:
        chosen = dict(o.split("=", 1) for o in part.replace("\\\n", " ").split())
        acts = chosen.get("activation", ",".join(a.split("=", 1)[1] for a in activation)).split(",")
        datasets = chosen["dataset"].split(",")
        covered += [(chosen["+experiment/ffn_activations"], d, a) for d in datasets for a in acts]
    assert len(parts) == 5 and sorted(covered) == sorted(
        (v.split("=")[1], d.split("=")[1], a.split("=")[1]) for v in variant for d in dataset for a in activation
    )


def docs_studies() -> str:
    return (Path(CONF_DIR).parent / "docs" / "studies.md").read_text()


def tiny_sweep(folder, data_root, activations, seeds, *overrides) -> None:
    for act in activations:
        for seed in seeds:
            config = compose_config(f"activation={act}", f"seed={seed}", *TINY, *overrides, f"dataset.root={data_root}")
            assert run(config, folder / f"{act}-{seed}")["status"] == "ok"


def test_study_comparisons_are_harness_reports_paired_t_test_and_holm(data_root, tmp_path):
    tiny_sweep(tmp_path / "sweep", data_root, ["relu", "gelu", "tanh"], [0, 1, 2], "trainer.steps=20")
    study_report.build("modern_activations", [str(tmp_path / "sweep")], tmp_path / "out", draw=False)
    table = pd.read_csv(tmp_path / "out" / "paired_vs_relu.csv").set_index("activation")
    runs = pd.read_csv(tmp_path / "out" / "summary.csv").pivot_table(
        index="seed", columns="activation", values="test_acc"
    )
    p = {}
    for act in ("gelu", "tanh"):  # the reference: scipy's paired t-test and a hand-made Holm step
        diff = runs[act] - runs["relu"]
        assert table.loc[act, "diff_mean"] == pytest.approx(diff.mean())
        p[act] = scipy.stats.ttest_rel(runs[act], runs["relu"]).pvalue
        assert table.loc[act, "p_t"] == pytest.approx(p[act])
        assert table.loc[act, "wins"] == (diff > 0).sum()
    low, high = sorted(p, key=p.get)
    assert table.loc[low, "p_t_holm"] == pytest.approx(min(1, 2 * p[low]))
    assert table.loc[high, "p_t_holm"] == pytest.approx(max(min(1, 2 * p[low]), p[high]))


def test_baselines_count_the_training_split_they_ran_on(data_root, tmp_path):
    # the split each run trained on: dataset.train_size=200 gives 200, where 4,000 x (1 - val_fraction) said 3,600
    tiny_sweep(tmp_path / "sweep", data_root, ["relu"], [0, 1, 2])
    report = study_report.build("mnist1d_baselines", [str(tmp_path / "sweep")], tmp_path / "out")
    assert "](figures/baselines.png)" in report.read_text()
    assert_drawn(tmp_path / "out" / "figures" / "baselines.png")
    row = pd.read_csv(tmp_path / "out" / "summary.csv").iloc[0]
    assert (row["model"], row["train samples"], row["seeds"]) == ("mlp", 200, 3)
    acc = [read_summary(p)["test_acc"] * 100 for p in sorted((tmp_path / "sweep").iterdir())]
    lo, hi = scipy.stats.t.interval(0.95, 2, loc=np.mean(acc), scale=scipy.stats.sem(acc))
    assert row["test acc % (final)"] == f"{np.mean(acc):.1f} [{lo:.1f}, {hi:.1f}]"


def test_study_report_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert study_report.main(["no_such_study", str(tmp_path)]) == 2
    assert study_report.main(["lr_fairness", str(tmp_path / "missing")]) == 2
    assert study_report.main(["lr_fairness", str(tmp_path)]) == 2  # a folder without runs
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: unknown study 'no_such_study'") and err[1].startswith("error: no such folder")
    assert err[2].startswith("error: no finished runs") and len(err) == 3


def test_command_line_overrides_win_over_the_study():
    config = compose_config(
        "+experiment=article_claims", "+experiment/article=rnn", "trainer.steps=7", "model.width=3", "seed=5"
    )
    assert (config.trainer.steps, config.model.width, config.model.cell, config.seed) == (7, 3, "elman", 5)
    assert compose_config("+experiment=dying_relu", "trainer.init_trials=9").trainer.init_trials == 9


def test_baseline_variants_are_the_mnist1d_authors_models():
    logistic = compose_config("+experiment=mnist1d_baselines", "+experiment/baseline=logistic")
    gru = compose_config("+experiment=mnist1d_baselines", "+experiment/baseline=gru")
    mlp = compose_config("+experiment=mnist1d_baselines", "+experiment/baseline=mlp_residual")
    assert (logistic.model.name, logistic.model.depth) == ("mlp", 0)
    assert (gru.model.name, gru.model.cell, gru.model.width, gru.model.bidirectional) == ("rnn", "gru", 6, True)
    assert gru.activation["name"] == "tanh"
    assert (mlp.model.depth, mlp.model.width, mlp.model.residual) == (2, 100, True)
    for c in (logistic, gru, mlp):
        assert (c.trainer.steps, c.trainer.lr, c.trainer.batch_size, c.trainer.optimizer) == (6000, 0.01, 100, "adam")


def test_init_trials_needs_steps_zero():
    with pytest.raises(ConfigError, match="trainer.steps=0"):
        check(compose_config("trainer.init_trials=3", "trainer.device=cpu"))
    with pytest.raises(ConfigError, match="init_trials"):
        check(compose_config("trainer.init_trials=-1", "trainer.steps=0", "trainer.device=cpu"))


def born_dead_directly(depth: int, width: int, init: str, seed: int, trials: int, x: torch.Tensor) -> int:
    """Reference: build each trial's network anew and walk its layers by hand (z <= 0 for every input)."""
    config = compose_config(f"model.depth={depth}", f"model.width={width}", f"model.init={init}", "trainer.steps=0")
    count = 0
    for i in range(trials):
        torch.manual_seed(trial_seed(seed, i))
        model = build_model(config.model, activation_spec({"name": "relu"}), tuple(x.shape[1:]), 10, math.sqrt(2.0))
        h = x.flatten(1)
        dead = False
        with torch.no_grad():
            for layer in model.hidden:
                z = layer.linear(h)
                dead |= bool((z <= 0).all())
                h = z.clamp_min(0)
        count += dead
    return count


def model_and_activation(config, data):
    """The model and ActivationSpec a run of config builds (harness.training.group.build_member_model), for
    born_dead_trials."""
    spec = activation_spec(config.activation)
    return build_model(config.model, spec, data.input_shape, data.num_classes, spec.gain), spec


@pytest.mark.parametrize("init", ["default", "kaiming"])
def test_born_dead_matches_a_direct_computation(init, data_root):
    data = load_dataset("mnist1d", data_root, False, None, 0.1, torch.device("cpu"))
    x = data.x_train[:256]
    config = compose_config("model.depth=12", "model.width=2", f"model.init={init}", "trainer.steps=0")
    result = born_dead_trials(*model_and_activation(config, data), config.model.init, x, 40, seed=3)
    expected = born_dead_directly(12, 2, init, 3, 40, x)
    assert result["born_dead_count"] == expected
    assert 0 < expected < 40  # the test can tell right from wrong: neither all nor none
    assert result["born_dead_se"] == pytest.approx(math.sqrt(expected / 40 * (1 - expected / 40) / 40))
    assert sum(result["born_dead_first_layer"].values()) == expected


def test_leaky_relu_is_never_born_dead(data_root):
    data = load_dataset("mnist1d", data_root, False, None, 0.1, torch.device("cpu"))
    config = compose_config("model.depth=20", "model.width=2", "activation=leaky_relu", "trainer.steps=0")
    result = born_dead_trials(*model_and_activation(config, data), config.model.init, data.x_train[:256], 20, seed=0)
    assert result["born_dead_fraction"] == 0.0 and result["init_dead_fraction_mean"] == 0.0


def test_born_dead_summary_keys_from_a_run(tiny, tmp_path, data_root):
    config = tiny("trainer.steps=0", "trainer.init_trials=10", "model.depth=8", "model.width=2")
    summary = run(config, tmp_path)
    assert summary["status"] == "ok", summary.get("error")
    assert summary["init_trials"] == 10 and 0 <= summary["born_dead_fraction"] <= 1
    # the count against a direct computation on the run's own probe inputs (its first PROBE_SIZE training samples)
    d = config.dataset
    data = load_dataset(d.name, data_root, False, d.train_size, d.val_fraction, torch.device("cpu"))
    expected = born_dead_directly(8, 2, config.model.init, config.seed, 10, data.x_train[:PROBE_SIZE])
    assert summary["born_dead_count"] == expected
    assert summary["born_dead_fraction"] == pytest.approx(expected / 10)


def test_the_learning_rate_is_tuned_on_validation_per_group_never_on_test():
    from experiments.study_tables import at_tuned_lr

    rows = [
        {"activation": act, "config.trainer.lr": lr, "seed": seed, "best_val_acc": val, "test_acc": test}
        for act, lr, val, test in [
            ("relu", 0.01, 0.9, 0.5),
            ("relu", 0.001, 0.8, 0.99),
            ("tanh", 0.01, 0.7, 0.9),
            ("tanh", 0.001, 0.75, 0.1),
        ]
        for seed in range(3)
    ]
    at_tuned, grid = at_tuned_lr(pd.DataFrame(rows), ["activation"])
    assert at_tuned.groupby("activation").lr.unique().map(list).to_dict() == {"relu": [0.01], "tanh": [0.001]}
    assert len(at_tuned) == 6 and grid[("tanh", 0.001)] == pytest.approx(0.75)


def test_a_group_job_counts_once_in_the_sum_of_job_times():
    runs = pd.DataFrame(
        {
            "run_dir": ["a", "b", "c"],
            "group.id": ["g", "g", "c"],
            "started_at": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-01T00:10:00Z"],
            "finished_at": ["2026-01-01T00:06:00Z", "2026-01-01T00:06:00Z", "2026-01-01T00:13:00Z"],
        }
    )
    assert study_report.timing(runs) == (
        "3 runs in 2 jobs; wall time 13.0 min from first start to last finish; sum of job times 9.0 min"
    )


def test_the_first_dead_layer_is_the_count_weighted_mean_of_one_based_layers():
    from experiments.studies import first_dead_layer

    runs = pd.DataFrame(
        {
            "width": [2, 3],
            "init": ["default", "default"],
            "born_dead_first_layer.hidden.0": [1, np.nan],  # one trial died at layer 1
            "born_dead_first_layer.hidden.4": [3, np.nan],
        }
    )  # three at layer 5; width 3: none died
    layers = first_dead_layer(runs)
    assert layers[(2, "default")] == pytest.approx((1 * 1 + 3 * 5) / 4)
    assert math.isnan(layers[(3, "default")])
