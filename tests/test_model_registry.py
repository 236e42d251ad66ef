"""The model registry (harness.networks.models.MODELS): a family is its config class and its network, and nothing else
in the harness names a model. A toy family defined here trains through harness.training.train.run; a key of another
family is refused in one line; plain dicts, summaries and ModelConfig(...) round-trip to the family's own config."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from harness.networks import stacked_layers
from harness.networks.models import MODELS, BaseModelConfig, Dense, Family
from harness.setup.config import ConfigError, ModelConfig, config_hash, from_dict, model_config, to_dict
from harness.training.train import run
from tests.conftest import CONF_DIR, compose_config


@dataclass(kw_only=True)
class ToyConfig(BaseModelConfig):
    name: str = field(default="toy", init=False)
    depth: int = 1
    width: int = 16
    scale: float = 0.5  # a key of its own: the input is multiplied by it


class Toy(nn.Module):
    """An MLP on scaled inputs, built from the harness's Dense blocks: hidden.K carry the activation, head the
    logits, as every family's layers do."""

    inputs = ("vector", "sequence", "image")

    @classmethod
    def from_config(cls, m: ToyConfig, input_shape: tuple[int, ...], num_classes: int, act) -> Toy:
        return cls(math.prod(input_shape), num_classes, act, m.depth, m.width, m.scale)

    def __init__(self, n_in: int, num_classes: int, act, depth: int, width: int, scale: float):
        super().__init__()
        sizes = [n_in] + [width] * depth
        self.hidden = nn.ModuleList(Dense(a, b, act, "none") for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1) * self.scale
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)


@pytest.fixture
def toy(monkeypatch):
    """The toy family registered for one test: the one line a family module adds to MODELS."""
    monkeypatch.setitem(MODELS, "toy", Family(ToyConfig, Toy))


def test_a_toy_family_trains_through_the_public_entry_with_nothing_else_changed(toy, tiny, tmp_path):
    config = dataclasses.replace(tiny("activation=tanh"), model=model_config({"name": "toy", "scale": 0.25}))
    assert config.model == ToyConfig(scale=0.25)
    summary = run(config, tmp_path / "toy")
    assert summary["status"] == "ok", summary.get("error")
    assert summary["model"] == "toy" and summary["width_used"] == 16
    assert summary["config"]["model"]["scale"] == 0.25 and summary["config_hash"] == config_hash(config)
    assert set(summary["dead_fraction_init_by_layer"]) == {"hidden.0"}  # the probes found its layer
    assert from_dict(json.loads((tmp_path / "toy" / "summary.json").read_text())["config"]) == config


def test_a_family_without_a_stacked_forward_trains_alone(toy, tiny):
    from harness.setup.resolve import resolve
    from harness.training.group import why_not_grouped

    config = dataclasses.replace(tiny(), model=ToyConfig())
    assert why_not_grouped(resolve(config)) == "model=toy has no stacked forward (harness/networks/stacked_layers.py)"


def test_the_stacked_flag_is_true_exactly_for_the_networks_with_a_stacked_forward():
    assert {f.network for f in MODELS.values() if f.stacked} == set(stacked_layers.FORWARDS)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.cell=gru"], "^model.cell is not supported by the mlp: model.cell=gru is only supported by the rnn$"),
        (["model=cnn", "model.residual=true"], "model.residual=true is only supported by the mlp$"),
        (["model=rnn", "model.norm=layer"], "only supported by the mlp, cnn and transformer$"),
        (["model=rnn", "model.kernel_size=3"], "^model.kernel_size is not supported by the rnn"),
        (["model=transformer", "model.cell=lstm"], "^model.cell and model.bidirectional are rnn options"),
    ],
)
def test_a_key_of_another_family_is_refused_in_one_line_naming_it(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        compose_config(*overrides)
    assert "\n" not in str(info.value)


def test_a_key_of_another_family_at_the_value_every_run_recorded_is_accepted_and_changes_nothing():
    """Command lines and sweeps from before each family had its own keys: model=rnn model.norm=none was valid."""
    for model, other in [("mlp", "model.cell=elman"), ("rnn", "model.norm=none"), ("cnn", "model.heads=2")]:
        plain = compose_config(f"model={model}")
        assert compose_config(f"model={model}", other) == plain
        assert config_hash(compose_config(f"model={model}", other)) == config_hash(plain)


def test_a_key_of_no_family_and_a_value_of_the_wrong_type_are_refused_in_one_line(toy):
    with pytest.raises(ConfigError, match="^model.nosuch is not a key of any model; model=mlp takes depth, width"):
        model_config({"name": "mlp", "nosuch": 1})
    with pytest.raises(ConfigError, match=r"^model.scale is not supported by the mlp: model.scale=0.5 is only .* toy$"):
        model_config({"name": "mlp", "scale": 0.5})
    with pytest.raises(ConfigError, match="^model.width='8' must be int$"):
        model_config({"name": "toy", "width": "8"})
    with pytest.raises(ConfigError, match="^trainer.lr='fast' must be float$"):
        from_dict({"trainer": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="^dataset.nosuch is not a configuration key; dataset takes name, root"):
        from_dict({"dataset": {"nosuch": 1}})


@pytest.mark.parametrize("overrides", [[], ["model=cnn", "model.norm=batch"], ["model=rnn"], ["model=transformer"]])
def test_a_config_round_trips_through_plain_dicts_and_model_config(overrides):
    config = compose_config(*overrides, "trainer.lr=3e-3", "dataset=digits")
    tree = to_dict(config)
    assert from_dict(tree) == config and config_hash(from_dict(tree)) == config_hash(config)
    assert ModelConfig(**tree["model"]) == config.model  # how a notebook (or a summary's columns) rebuilds it


def test_an_int_given_for_a_float_key_is_that_float_so_the_hash_cannot_tell_them_apart():
    composed = compose_config("model=transformer", "model.ffn_ratio=2.0")
    tree = to_dict(composed)
    tree["model"]["ffn_ratio"] = 2
    assert type(from_dict(tree).model.ffn_ratio) is float and config_hash(from_dict(tree)) == config_hash(composed)


def test_each_default_is_written_once():
    """conf/model/NAME.yaml names its family and conf/trainer/default.yaml sets nothing: their defaults are the
    config classes' (harness/setup/config.py says which class holds which)."""
    conf = Path(CONF_DIR)
    for name, family in MODELS.items():
        assert yaml.safe_load((conf / "model" / f"{name}.yaml").read_text()) == {"name": name}
        assert family.config.name == name
    assert yaml.safe_load((conf / "trainer" / "default.yaml").read_text()) == {}
