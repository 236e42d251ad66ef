"""The run configuration as plain dataclasses, built from plain dicts, with its validation and its hash.

Where each default is written, once: the trainer's and the dataset's in TrainerConfig and DatasetConfig below
(conf/trainer/default.yaml repeats none of them); a model family's in its config class beside its network
(harness/networks/models/mlp.py MLPConfig, cnn.py, rnn.py, transformer.py; BaseModelConfig for init and match_params),
which conf/model/NAME.yaml only names and the network's constructor reads; a dataset's name and root in DatasetConfig
and its choice of files in conf/dataset/; an activation's parameters in conf/activation/NAME.yaml.

The model section is the family's own config class, chosen by model.name from harness.networks.models.MODELS: plain keys
become it through model_config (Config does it for a dict); ModelConfig is the command line's schema of them and
ModelKeys the keys every run records (to_dict), which config_hash hashes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ConfigError and its kinds are defined in harness.common.errors; the code has always imported them from here.
from harness.common.errors import ActivationError as ActivationError
from harness.common.errors import ConfigError, check, init_fields, one_of, typed_fields
from harness.common.errors import DataError as DataError

if typing.TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from harness.networks.models.base import BaseModelConfig

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
# Below this rate a float32 weight never moves: Adam's step is about lr, under the rounding step (about 1e-9) of a
# weight of order 1e-2; SGD's is smaller still. Large rates stay allowed: diverging on purpose is an experiment.
MIN_LR = 1e-10
MAX_THREADS = 1024  # more CPU threads than any machine has cores; 100000 fails creating their stacks
DEFAULT_MODEL = "mlp"  # what Config() trains; conf/config.yaml's defaults list names it for the command line
# The names of the other axes live in their registries, next to what they build: models, cells, norms and inits in
# harness/networks/models/, datasets in harness/setup/data.py, optimizers in harness/setup/optimizers.py; the model
# families check their own keys, harness/setup/resolve.py the rest.

# Watch-only keys: they change where or how a run is watched, never its training trajectory, so they are left out
# of config_hash (a sweep resumes after changing them), of the sweep's folder names (conf/config.yaml's
# exclude_keys, held equal by a test) and of the report's axes. trainer.device changes the numerics in the last
# bits only. Some summary numbers depend on them anyway: trainer.log_every sets the window of train_loss and of
# the logged-step gradient means; trainer.threads and trainer.device set the speed.
WATCH_ONLY = (
    "resume",
    "trainer.device",
    "trainer.log_every",
    "trainer.progress",
    "trainer.checkpoint_every",
    "trainer.threads",
    "dataset.root",
    "dataset.download",
)
# Watch-only keys that schema v1 hashed: hashed at this value whatever they are set to, so that the hash of a
# config that leaves them at their default is the one v1 wrote.
HASHED_AT_DEFAULT = {"trainer.threads": None}
# Keys added after schema v1, with their defaults: left out of config_hash while at the default, so that adding
# a key never changes the hash of an existing config (older sweeps still resume). Add every new key here.
ADDED_KEYS: dict[str, object] = {
    "model.match_params": False,
    "model.heads": 2,
    "model.ffn_ratio": 4.0,
    "model.patch": 4,
    "trainer.capture": "auto",
}
# A key of ModelKeys that a family lacks is recorded at this value: the one a run of another family carried when
# one class held every family's keys. model_config accepts such a key at that value (it changes nothing).
UNUSED_MODEL_KEYS = {"residual": False, "norm": "none", "kernel_size": 5, "cell": "elman", "bidirectional": False}
UNUSED_MODEL_KEYS |= {"heads": 2, "ffn_ratio": 4.0, "patch": 4}


EXIT_BAD_INPUT = 2  # the exit status of a refused command line or sweep: nothing ran


@dataclass
class ModelKeys:
    """The model section as every run records it and OmegaConf types it; not a family's config
    (harness.networks.models).

    Until each family had its own config class, one class held every family's keys, and every run recorded (and
    hashed) all of them, in this order. A run still records them so (to_dict), which keeps summaries, and
    config_hash, as they always were; harness/records/schema.py reads their types here. Each is unset (None) until
    given: the defaults are the families'. ModelConfig, its subclass with every other family's keys, is the command
    line's.
    """

    name: str = DEFAULT_MODEL
    depth: int | None = None
    width: int | None = None
    residual: bool | None = None
    init: str | None = None
    norm: str | None = None
    kernel_size: int | None = None
    cell: str | None = None
    bidirectional: bool | None = None
    match_params: bool | None = None
    heads: int | None = None
    ffn_ratio: float | None = None
    patch: int | None = None


@dataclass
class DatasetConfig:
    name: str = "mnist1d"
    root: str = "data"
    download: bool = False
    train_size: int | None = None  # subsample the training split, for quick runs
    val_fraction: float = 0.1


@dataclass
class TrainerConfig:
    """The MNIST-1D authors' budget: Adam, lr 1e-2, batch 100, 6,000 steps, evaluation every 250 steps."""

    steps: int = 6000
    batch_size: int = 100
    lr: float = 1e-2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    grad_clip: float | None = None
    device: str = "auto"
    eval_every: int = 250
    log_every: int = 250
    precision: str = "fp32"
    compile: bool = False
    checkpoint_every: int = 0  # 0: no checkpoints
    progress: bool = True
    # torch CPU threads: "auto" (harness.setup.resolve.resolve_threads), a count, or null: torch's
    threads: Any = "auto"
    # with steps=0: born-dead fraction over this many fresh initialisations (harness/training/born_dead.py)
    init_trials: int = 0
    # the training step as a CUDA graph: auto, true or false (harness/training/capture.py, docs/speed.md)
    capture: Any = "auto"


@dataclass
class Config:
    activation: dict[str, Any] = field(default_factory=lambda: {"name": "relu"})  # name + its parameters
    # The family's own config (harness.networks.models: MLPConfig, CNNConfig, ...), built from the keys given here:
    # plain ({"name": "rnn", ...}) or a ModelConfig with every key unset, the default, which is what OmegaConf and Hydra
    # see of Config (every family's keys, typed). Annotated as recorded: each family is a class of its own.
    if typing.TYPE_CHECKING:  # to mypy, what __post_init__ makes of any of them: the family's config
        model: BaseModelConfig = field(default_factory=lambda: model_config({}))
    else:  # at run time, what OmegaConf, Hydra and harness.records.schema read
        model: ModelKeys = field(default_factory=lambda: unset_model_keys())
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    resume: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = model_config(self.model)
        elif isinstance(self.model, ModelKeys):  # Config()'s default: the default family's, every key unset
            self.model = model_config(vars(self.model))


def validate(config: Config) -> None:
    """Refuse invalid values with one clear line (types were checked when the config was built)."""
    t, d = config.trainer, config.dataset
    check_finite(config)
    check(t.steps >= 0, f"trainer.steps must be >= 0, got {t.steps}")
    check(t.batch_size > 0, f"trainer.batch_size must be > 0, got {t.batch_size}")
    check(t.lr > 0, f"trainer.lr must be > 0, got {t.lr}")
    check(t.lr >= MIN_LR, f"trainer.lr={t.lr} is below {MIN_LR}: a float32 weight would never move")
    check(0 <= config.seed < 2**32, f"seed must be in [0, 2**32 - 1], got {config.seed}")  # numpy's seed range
    check(0 <= t.momentum < 1, f"trainer.momentum must be in [0, 1), got {t.momentum}")
    check(t.weight_decay >= 0, f"trainer.weight_decay must be >= 0, got {t.weight_decay}")
    check(t.grad_clip is None or t.grad_clip > 0, f"trainer.grad_clip must be > 0 or null, got {t.grad_clip}")
    check(t.eval_every > 0, f"trainer.eval_every must be > 0, got {t.eval_every}")
    check(t.log_every > 0, f"trainer.log_every must be > 0, got {t.log_every}")
    check(t.checkpoint_every >= 0, f"trainer.checkpoint_every must be >= 0, got {t.checkpoint_every}")
    check(
        t.threads in (None, "auto") or (type(t.threads) is int and t.threads > 0),
        f"trainer.threads must be auto, a count > 0 or null, got {t.threads!r}",
    )
    check(
        type(t.threads) is not int or t.threads <= MAX_THREADS,
        f"trainer.threads must be <= {MAX_THREADS}, got {t.threads}",
    )
    check(0 <= t.init_trials <= 100_000, f"trainer.init_trials must be in [0, 100000], got {t.init_trials}")
    check(
        t.init_trials == 0 or t.steps == 0,
        f"trainer.init_trials={t.init_trials} measures initialisations only; it needs trainer.steps=0",
    )
    one_of("trainer.device", t.device, DEVICES)
    check(t.capture in ("auto", True, False), f"trainer.capture must be auto, true or false, got {t.capture!r}")
    check(
        t.capture is not True or (t.precision != "fp16" and not t.compile),
        "trainer.capture=true cannot capture fp16's loss scaling or a compiled model; use trainer.capture=auto",
    )
    one_of("trainer.precision", t.precision, PRECISIONS)
    config.model.check()
    check(d.train_size is None or d.train_size > 0, f"dataset.train_size must be > 0, got {d.train_size}")
    check(0 < d.val_fraction < 1, f"dataset.val_fraction must be in (0, 1), got {d.val_fraction}")


def check_finite(node: DataclassInstance | type[DataclassInstance], prefix: str = "") -> None:
    """Every float value of the config (its nested sections too) is a finite number: nan and inf mean nothing."""
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_finite(value, key + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")


# ---------------------------------------------------------------- from plain dicts


def model_config(keys: Mapping[str, object]) -> BaseModelConfig:
    """The config of the family keys["name"] names (DEFAULT_MODEL if none) from plain keys; a key set to None is
    unset (the family's default). A key of another family is refused in one line, unless it holds the value every
    run recorded for it (UNUSED_MODEL_KEYS); so is a key no family has, or a value of the wrong type."""
    from harness.networks.models import MODELS  # here: the registry imports torch; it never imports this module

    given = {key: value for key, value in keys.items() if value is not None}
    name = given.pop("name", DEFAULT_MODEL)
    one_of("model", name, MODELS)
    assert isinstance(name, str)  # a key of MODELS: one_of refused anything else
    family = MODELS[name].config
    own = init_fields(family)
    for key, value in given.items():
        if key in own or (key in UNUSED_MODEL_KEYS and UNUSED_MODEL_KEYS[key] == value):
            continue
        owners = [n for n, other in MODELS.items() if key in init_fields(other.config)]
        raise ConfigError(family.other_family_keys.get(key) or not_supported(name, key, value, owners, own))
    return family(**typed_fields(family, {k: v for k, v in given.items() if k in own}, "model."))


def not_supported(family: str, key: str, value: object, owners: list[str], own: dict[str, object]) -> str:
    """The line that refuses model.KEY=VALUE for a family that has no such key: who has it, or what this takes."""
    if not owners:
        return f"model.{key} is not a key of any model; model={family} takes {', '.join(own)}"
    names = ", ".join(owners[:-1]) + " and " + owners[-1] if len(owners) > 1 else owners[0]
    given = f"model.{key}={as_override(value)}"
    return f"model.{key} is not supported by the {family}: {given} is only supported by the {names}"


def as_override(value: object) -> str:
    """A value as the command line writes it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def from_dict(tree: Mapping[str, Any]) -> Config:
    """The Config of plain nested dicts: to_dict's output (a summary's "config"), a notebook's literal. A key left
    out takes its default; an unknown key, or a value of the wrong type, is a ConfigError (one line)."""
    sections: dict[str, type[DatasetConfig | TrainerConfig]] = {"dataset": DatasetConfig, "trainer": TrainerConfig}
    tree = dict(tree)
    # Config's keyword arguments, each typed at run time (typed_fields; the model section by Config itself)
    given = typed_fields(Config, {k: v for k, v in tree.items() if k not in sections and k != "model"}, "")
    given |= {key: cls(**typed_fields(cls, tree[key], f"{key}.")) for key, cls in sections.items() if key in tree}
    if "model" in tree:
        given["model"] = dict(tree["model"])
    return Config(**given)


def __getattr__(name: str) -> type[ModelKeys]:
    """ModelConfig is built on first use, from the registry in harness.networks.models, whose networks import torch: the
    report and status commands import this module and never build a model."""
    if name == "ModelConfig":
        return command_line_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def command_line_schema() -> type[ModelKeys]:
    """ModelConfig: the model section as given, before it is a family's config. As a dataclass it is Config's
    `model` as OmegaConf and Hydra see it (run.py stores Config as the schema): ModelKeys and every other key of a
    family, typed as the family types it, unset (None) unless given; so Hydra refuses a key no family has by name,
    and model_config one of another family. Called, ModelConfig(name=..., **keys) returns the family's own config
    (model_config); an instance of it is only ever unset_model_keys()."""
    from harness.networks.models import MODELS  # here: the registry imports torch; it never imports this module

    recorded = init_fields(ModelKeys)
    annotations = {key: hint for key, hint in recorded.items() if key != "name"}
    for family in MODELS.values():
        for key, hint in init_fields(family.config).items():
            if annotations.setdefault(key, hint | None) != hint | None:
                raise TypeError(f"model.{key} is {annotations[key]} in one family and {hint | None} in another")
    others = [(key, hint, None) for key, hint in annotations.items() if key not in recorded]
    namespace = {"__new__": lambda cls, **given: model_config(given), "__module__": __name__}
    schema = dataclasses.make_dataclass("ModelConfig", others, bases=(ModelKeys,), namespace=namespace)
    assert issubclass(schema, ModelKeys)  # true by bases=; it tells mypy, to which make_dataclass returns a `type`
    return schema


def unset_model_keys() -> ModelKeys:
    """A ModelConfig with every key unset, naming the default family: Config's default model."""
    schema = command_line_schema()
    keys = object.__new__(schema)  # not schema(): calling ModelConfig builds the family's config
    schema.__init__(keys)
    return keys


# ---------------------------------------------------------------- as plain dicts, and the hash


def to_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain nested dicts, the model's keys as every run has recorded them (ModelKeys, in
    that order; a family's keys beyond them after)."""
    tree = dataclasses.asdict(config)
    own = tree["model"]
    recorded = {key: own.get(key, UNUSED_MODEL_KEYS.get(key)) for key in init_fields(ModelKeys)}
    tree["model"] = recorded | {key: value for key, value in own.items() if key not in recorded}
    return tree


def config_hash(config: Config) -> str:
    """A stable hash of what a run computes: the config as sorted JSON, minus the watch-only keys.

    The standing rule, so that older sweeps still resume: a hash never changes for a config it was computed on.
    WATCH_ONLY keys are dropped (those in HASHED_AT_DEFAULT are hashed at their v1 default instead), and a key
    added after v1 (ADDED_KEYS) is dropped while it is at its default. A new config key goes into ADDED_KEYS.
    """
    tree = to_dict(config)
    for key in WATCH_ONLY:
        node, leaf = _parent(tree, key)
        if key in HASHED_AT_DEFAULT:
            node[leaf] = HASHED_AT_DEFAULT[key]
        else:
            node.pop(leaf, None)
    for key, default in ADDED_KEYS.items():
        node, leaf = _parent(tree, key)
        if node.get(leaf, default) == default:
            node.pop(leaf, None)
    blob = json.dumps(tree, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _parent(tree: dict[str, Any], key: str) -> tuple[dict[str, Any], str]:
    """The dict that holds a dotted key's leaf, and the leaf's name."""
    *parents, leaf = key.split(".")
    for p in parents:
        tree = tree[p]
    return tree, leaf
