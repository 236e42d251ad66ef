"""config_hash, and the configuration a summary records, of a broad set of existing command lines: pinned.

tests/golden/config_hashes_broad.json was written by the code before each model family had its own config class
(every family's keys in one ModelConfig, the defaults in conf/model/*.yaml and conf/trainer/default.yaml). For
each command line below it holds the config_hash (which a sweep resumes by) and a digest of to_dict(config) in
its key order (what summary.json records under "config"). A change of either breaks the resume of existing
sweeps or splits a report of old and new runs into two settings. Regenerate only for an intended change:
    python -m tests.test_config_hashes --regenerate

Every command line is composed through Hydra, as `python run.py OVERRIDES` composes it: the defaults that moved
from the YAML files into the dataclasses are checked with them. A composition takes about 0.2 s, so the default
run checks each family's keys and the defaults, and `-m slow` every case (experiments' sweeps included).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from pathlib import Path

import pytest
import yaml

from harness.setup.config import config_hash, to_dict
from tests.conftest import CONF_DIR, compose_config

BROAD = Path(__file__).parent / "golden" / "config_hashes_broad.json"
MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
ACTIVATIONS = [
    ["activation=relu"],
    ["activation=tanh"],
    ["activation=leaky_relu", "activation.negative_slope=0.2"],
    ["activation=prelu"],
    ["activation=swiglu"],
    ["activation=softmax"],
    ["activation=custom", "activation.target=torch.nn.Tanh"],
]
# Each family's keys away from their defaults, one at a time (ffn_ratio=4: an int where the schema says float).
MODEL_FIELDS = {
    "all": ["model.depth=3", "model.width=7", "model.init=kaiming", "model.init=auto", "model.match_params=true"],
    "mlp": ["model.depth=0", "model.residual=true", "model.norm=batch", "model.norm=layer"],
    "cnn": ["model.kernel_size=3", "model.norm=batch", "model.norm=layer", "model.depth=1"],
    "rnn": ["model.cell=elman", "model.cell=lstm", "model.bidirectional=false", "model.depth=2"],
    "transformer": [
        "model.heads=4",
        "model.ffn_ratio=2.0",
        "model.ffn_ratio=2.5",
        "model.ffn_ratio=4",
        "model.patch=2",
        "model.patch=8",
        "model.norm=none",
    ],
}
# Keys of another family at the value every configuration carried for them: valid before, and still valid.
OTHER_FAMILIES_AT_THEIR_DEFAULT = {
    "mlp": ["model.kernel_size=5", "model.cell=elman", "model.bidirectional=false", "model.heads=2", "model.patch=4"],
    "cnn": ["model.residual=false", "model.cell=elman", "model.ffn_ratio=4.0"],
    "rnn": ["model.norm=none", "model.residual=false", "model.kernel_size=5", "model.heads=2"],
    "transformer": ["model.cell=elman", "model.bidirectional=false", "model.residual=false", "model.kernel_size=5"],
}
TRAINER_AND_DATA = [
    "trainer.steps=10",
    "trainer.batch_size=32",
    "trainer.lr=3e-3",
    "trainer.optimizer=sgd",
    "trainer.weight_decay=0.01",
    "trainer.momentum=0.5",
    "trainer.grad_clip=1.0",
    "trainer.device=cpu",
    "trainer.eval_every=10",
    "trainer.log_every=10",
    "trainer.precision=bf16",
    "trainer.compile=true",
    "trainer.checkpoint_every=5",
    "trainer.progress=false",
    "trainer.threads=1",
    "trainer.threads=null",
    "trainer.capture=false",
    "trainer.capture=true",
    "trainer.steps=0 trainer.init_trials=5",
    "dataset.train_size=300",
    "dataset.val_fraction=0.2",
    "dataset.root=/tmp/elsewhere",
    "dataset.download=true",
    "dataset=spirals",
    "dataset=cifar10",
    "dataset=fashion_mnist",
    "seed=3",
    "resume=true",
]
SEEDS_PER_SWEEP = 2  # an experiment's seed: range(8) adds nothing a second seed does not


def model_cases() -> list[list[str]]:
    cases = []
    for model in MODELS:
        for activation, dataset in itertools.product(ACTIVATIONS, ["mnist1d", "digits"]):
            cases.append([f"model={model}", *activation, f"dataset={dataset}"])
        for field in [*MODEL_FIELDS["all"], *MODEL_FIELDS[model], *OTHER_FAMILIES_AT_THEIR_DEFAULT[model]]:
            cases.append([f"model={model}", field])
    return cases


def trainer_cases() -> list[list[str]]:
    return [[], *(line.split() for line in TRAINER_AND_DATA)]


def sweep_values(value) -> list[str]:
    """An experiment's swept values: a comma list or range(N), seeds cut to SEEDS_PER_SWEEP."""
    text = str(value)
    if text.startswith("range("):
        return [str(i) for i in range(int(text[6:-1]))][:SEEDS_PER_SWEEP]
    return [v.strip().strip('"') for v in text.split(",")]


def experiment_cases() -> list[list[str]]:
    """Each experiment alone, then every value of each of its swept keys at least once (a covering set: the
    i-th case takes the i-th value of every key, cycling), each with +experiment=NAME."""
    cases = []
    for path in sorted((Path(CONF_DIR) / "experiment").glob("*.yaml")):
        base = [f"+experiment={path.stem}"]
        cases.append(base)
        params = (yaml.safe_load(path.read_text()).get("hydra") or {}).get("sweeper", {}).get("params") or {}
        swept = {key: sweep_values(value) for key, value in params.items()}
        for i in range(max(map(len, swept.values()), default=0)):
            cases.append([*base, *(f"{key}={values[i % len(values)]}" for key, values in swept.items())])
    return cases


def name(overrides: list[str]) -> str:
    return " ".join(overrides) or "(defaults)"


def all_cases() -> dict[str, list[str]]:
    return {name(c): c for c in [*model_cases(), *trainer_cases(), *experiment_cases()]}


def digest(config) -> str:
    """What a summary records under "config", as written (its key order counts)."""
    return hashlib.sha256(json.dumps(to_dict(config), default=str).encode()).hexdigest()[:16]


def pinned(overrides: list[str]) -> dict[str, str]:
    config = compose_config(*overrides)
    return {"hash": config_hash(config), "recorded": digest(config)}


# The default run: each family's keys (and its defaults, with relu), and every default of the trainer at once.
FAST = {
    name(c)
    for c in model_cases()
    if not c[1].startswith("activation=") or c[1:] == ["activation=relu", "dataset=mnist1d"]
}
FAST.add(name([]))


@pytest.mark.parametrize("case", sorted(FAST))
def test_hash_and_record_of_each_familys_keys_and_of_the_defaults_are_unchanged(case):
    assert pinned(all_cases()[case]) == json.loads(BROAD.read_text())[case]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(set(all_cases()) - FAST))
def test_hash_and_record_of_every_other_pinned_config_are_unchanged(case):
    assert pinned(all_cases()[case]) == json.loads(BROAD.read_text())[case]


def test_the_pinned_file_holds_every_case():
    assert set(json.loads(BROAD.read_text())) == set(all_cases())


if __name__ == "__main__" and "--regenerate" in sys.argv:
    BROAD.write_text(json.dumps({k: pinned(c) for k, c in all_cases().items()}, indent=1, sort_keys=True) + "\n")
