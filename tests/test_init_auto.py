"""model.init=auto: each activation draws its registry's recommended init, recorded as init_used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from harness import run
from harness.networks.activations import ACTIVATIONS
from harness.networks.models import INITS
from harness.setup.data import load_dataset
from harness.setup.resolve import resolve
from harness.training.group import build_member_model

DOC = Path(__file__).parents[1] / "docs" / "inits.md"


def test_every_activation_recommends_a_drawn_init_and_the_docs_table_says_which():
    assert all(entry.init in INITS and INITS[entry.init] is not None for entry in ACTIVATIONS.values())
    rows = dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", DOC.read_text(), flags=re.M))
    assert rows == {name: entry.init for name, entry in ACTIVATIONS.items()}


def built_weights(config) -> dict[str, torch.Tensor]:
    resolved = resolve(config)
    d = config.dataset
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, resolved.device)
    return build_member_model(resolved, data).state_dict()


@pytest.mark.parametrize("act, expected", [("relu", "kaiming"), ("selu", "lecun"), ("tanh", "xavier")])
def test_auto_draws_exactly_what_the_recommended_init_draws(tiny, act, expected):
    auto = built_weights(tiny(f"activation={act}", "model.init=auto"))
    explicit = built_weights(tiny(f"activation={act}", f"model.init={expected}"))
    pytorch = built_weights(tiny(f"activation={act}", "model.init=default"))
    assert resolve(tiny(f"activation={act}", "model.init=auto")).init == expected
    assert all(torch.equal(auto[k], explicit[k]) for k in explicit)
    assert not torch.equal(auto["hidden.1.linear.weight"], pytorch["hidden.1.linear.weight"])


def test_init_used_is_recorded_for_auto_and_for_an_init_asked_for(tiny, tmp_path):
    steps0 = "trainer.steps=0"
    assert run(tiny(steps0, "activation=selu", "model.init=auto"), tmp_path / "a")["init_used"] == "lecun"
    assert run(tiny(steps0, "activation=selu", "model.init=orthogonal"), tmp_path / "b")["init_used"] == "orthogonal"
    assert run(tiny(steps0), tmp_path / "c")["init_used"] == "default"
    custom = tiny(steps0, "activation=custom", "activation.target=torch.nn.Tanh", "model.init=auto")
    assert resolve(custom).init == "default"  # user code: no recommendation, PyTorch's own init
