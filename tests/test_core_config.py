"""Watch-only keys, the config_hash rules that keep older sweeps resumable, and resolve-once checks."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest
import yaml

import harness.networks.activations
import harness.networks.probes
import harness.setup.config
from harness import ActivationError, run
from harness.setup.config import WATCH_ONLY, config_hash
from harness.setup.resolve import resolve
from tests.conftest import compose_config

HYDRA_ONLY = {"experiment", "hydra.sweep.dir"}  # in folder-name excludes, not config keys


def test_folder_names_leave_out_exactly_the_watch_only_keys():
    conf = yaml.safe_load((Path(__file__).parents[1] / "conf" / "config.yaml").read_text())
    excluded = conf["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    assert set(excluded) == HYDRA_ONLY | set(WATCH_ONLY) and len(excluded) == len(set(excluded))


def test_a_sweep_run_with_one_thread_count_resumes_with_another(tiny, tmp_path):
    from harness.sweeps.sweep import finished_runs
    from hydra_plugins.harness_sweeper.harness_sweeper import HarnessSweeper, Job

    sweep_dir = tmp_path / "sweep"
    summary = run(tiny("trainer.threads=1", "trainer.steps=10"), sweep_dir / "job", ["trainer.threads=1"])
    assert summary["status"] == "ok"
    again = tiny("trainer.threads=2", "trainer.steps=10")
    sweeper = types.SimpleNamespace(sweep_dir=sweep_dir)  # what HarnessSweeper.match reads of itself
    resumed = Job(["trainer.threads=2"], "job", config_hash(again), resume=True)
    HarnessSweeper.match(sweeper, resumed, finished_runs(sweep_dir))
    assert resumed.skip_to == sweep_dir / "job"
    without_resume = Job(["trainer.threads=2"], "job", config_hash(again), resume=False)
    with pytest.raises(Exception, match="already holds a finished run; add resume=true"):
        HarnessSweeper.match(sweeper, without_resume, {})


def test_a_key_added_after_v1_leaves_the_hash_of_existing_configs_unchanged(monkeypatch):
    # Pretend trainer.momentum was added after v1: the hash v1 wrote is the one of a tree without it.
    real_to_dict = harness.setup.config.to_dict

    def v1_tree(config):
        tree = real_to_dict(config)
        del tree["trainer"]["momentum"]
        return tree

    monkeypatch.setattr(harness.setup.config, "to_dict", v1_tree)
    v1_hash = config_hash(harness.setup.config.Config())
    monkeypatch.setattr(harness.setup.config, "to_dict", real_to_dict)
    monkeypatch.setattr(
        harness.setup.config, "ADDED_KEYS", {**harness.setup.config.ADDED_KEYS, "trainer.momentum": 0.9}
    )
    default = harness.setup.config.Config()
    assert config_hash(default) == v1_hash
    changed = dataclasses.replace(default, trainer=dataclasses.replace(default.trainer, momentum=0.5))
    assert config_hash(changed) != v1_hash


def test_watch_only_keys_leave_the_hash_unchanged():
    base = config_hash(compose_config())
    for override in [
        "trainer.threads=3",
        "trainer.threads=null",
        "trainer.threads=1",
        "trainer.log_every=7",
        "trainer.device=cpu",
        "resume=true",
        "trainer.checkpoint_every=5",
        "dataset.root=elsewhere",
        "trainer.progress=false",
    ]:
        assert config_hash(compose_config(override)) == base, override
    assert config_hash(compose_config("trainer.eval_every=7")) != base


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["activation=leaky_relu", "activation.negative_slope=abc"], "activation.negative_slope='abc' must be a float"),
        (["activation=prelu", "activation.num_parameters=1.5"], "activation.num_parameters=1.5 must be a int"),
        (["activation=custom", "activation.target=os.getcwd"], "returned a str, not an nn.Module"),
        (["activation=custom", "activation.target=tests.test_core_config.Broken"], "ValueError: no such width"),
        (["activation=custom", "activation.target=harness.setup.config.WATCH_ONLY"], "is not an nn.Module factory"),
    ],
)
def test_a_bad_activation_is_refused_in_one_line_before_data_loads(tiny, tmp_path, monkeypatch, overrides, message):
    import harness.training.train

    monkeypatch.setattr(harness.training.train, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(ActivationError, match=message.replace("(", r"\(").replace(".", r"\.")) as info:
        run(tiny(*overrides), tmp_path / "r")
    assert "\n" not in str(info.value)


class Broken(harness.networks.activations.nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        raise ValueError("no such width")


def test_max_slope_of_a_fixed_activation_is_computed_once_per_run(tiny, tmp_path, monkeypatch):
    calls = []
    real = harness.networks.activations.max_abs_derivative

    def counted(act, *args, **kwargs):
        calls.append(type(act).__name__)
        return real(act, *args, **kwargs)

    monkeypatch.setattr(harness.networks.activations, "max_abs_derivative", counted)
    # the probes call it as activations.max_abs_derivative (harness.networks.unit_slopes): patched there above
    assert run(tiny("activation=tanh"), tmp_path / "t")["status"] == "ok"
    assert calls == ["Tanh"]
    calls.clear()
    run(tiny("activation=prelu"), tmp_path / "p")  # learnable: from the current slope, every layer at every probe
    assert len(calls) == 2 * 4 and set(calls) == {"PReLU"}  # 2 layers x (init, steps 10 and 20, the end)


def test_resolve_refuses_names_from_the_registries():
    for override, valid in [
        ("model=rnn model.cell=gruu", "elman, gru, lstm"),
        ("model.norm=group", "none, batch, layer"),
        ("trainer.optimizer=lion", "adam, adamw, sgd"),
    ]:
        with pytest.raises(harness.setup.config.ConfigError, match=valid):
            resolve(compose_config(*override.split(), "trainer.device=cpu"))


def test_every_registry_name_has_its_config_group_file_and_back():
    from harness.networks.activations import NAMES
    from harness.networks.models import MODELS
    from harness.setup.data import DATASETS

    conf = Path(__file__).parents[1] / "conf"
    for group, names in [("model", MODELS), ("dataset", DATASETS), ("activation", NAMES)]:
        assert sorted(p.stem for p in (conf / group).glob("*.yaml")) == sorted(names), group


@pytest.mark.parametrize("activation", ["rrelu", "prelu", "softmax"])
def test_resolving_draws_nothing_from_the_global_generators(activation):
    import random

    import numpy as np
    import torch

    before = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    spec = resolve(compose_config(f"activation={activation}", "trainer.device=cpu")).activation
    spec.max_slope  # noqa: B018  computed on first use, before the seed too
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]
    assert (np.random.get_state()[1] == before[2]).all()
