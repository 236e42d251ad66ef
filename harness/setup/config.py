"""The run configuration as plain dataclasses, built from plain dicts, and its hash (its values are checked in
harness.setup.validation).

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
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ConfigError and its kinds are defined in harness.common.errors; the code has always imported them from here.
from harness.common.errors import ActivationError as ActivationError
from harness.common.errors import ConfigError, init_fields, one_of, typed_fields
from harness.common.errors import DataError as DataError

if typing.TYPE_CHECKING:
    from harness.networks.models.base import BaseModelConfig

# logger=NAME: the trackers each choice logs to (harness/trackers/ holds them; conf/logger/NAME.yaml selects one)
LOGGERS: dict[str, tuple[str, ...]] = {
    "none": (),
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow",),
    "many": ("tensorboard", "mlflow"),
}
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
    # which trackers watch the run (harness/trackers/): its group's override `logger=NAME` and each key, for the
    # folder names; to_dict leaves the section out (a summary records the run, not who watched it)
    "logger.name",
    "logger.mlflow_uri",
    "logger.experiment",
    "logger.every_s",
    "logger",
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
    "trainer.activation_decay": False,
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
    name: str = "mnist1d"  # which dataset (harness/setup/data.py); dataset=NAME picks conf/dataset/NAME.yaml
    root: str = "data"  # where datasets are cached (mnist1d's .npz) or read in torchvision's folder layout
    # fetch mnist, fashion_mnist or cifar10 through torchvision, in the check before the run folder exists
    download: bool = False
    train_size: int | None = None  # subsample the training split, for quick runs
    # the validation split, carved from the training split with a fixed seed (the same for every run seed)
    val_fraction: float = 0.1


@dataclass
class TrainerConfig:
    """The MNIST-1D authors' budget: Adam, lr 1e-2, batch 100, 6,000 steps, evaluation every 250 steps."""

    steps: int = 6000  # optimizer steps; 0: the network at initialisation only
    batch_size: int = 100  # training samples per step
    lr: float = 1e-2  # at least MIN_LR (1e-10); large rates are allowed, to diverge on purpose
    optimizer: str = "adam"  # adam, adamw or sgd (harness/setup/optimizers.py)
    weight_decay: float = 0.0  # the optimizer's weight_decay
    # weight decay on the activation modules' own parameters too (PReLU's slope, StarReLU's scale and bias, ...);
    # false: they take none (harness.setup.optimizers.decay_flags, docs/activations.md)
    activation_decay: bool = False
    momentum: float = 0.9  # SGD only
    grad_clip: float | None = None  # clip the gradient norm to this; null: off
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda or mps
    eval_every: int = 250  # steps between evaluations on the validation and test splits
    log_every: int = 250  # steps between logged metrics; probes and gradient norms run on logged steps only
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast)
    compile: bool = False  # torch.compile the model
    # 0: no checkpoints; else one at the first log or evaluation step after each multiple, so that a resumed run
    # logs exactly what an uninterrupted one does
    checkpoint_every: int = 0
    progress: bool = True  # the progress bar
    # torch CPU threads: "auto" (harness.setup.resolve.resolve_threads), a count, or null: torch's
    threads: Any = "auto"
    # with steps=0: born-dead fraction over this many fresh initialisations (harness/training/born_dead.py)
    init_trials: int = 0
    # the training step as a CUDA graph: auto, true or false (harness/training/capture.py, docs/speed.md)
    capture: Any = "auto"


@dataclass
class LoggerConfig:
    """Which trackers a run also logs to (harness/trackers/, docs/trackers.md); its own records stay as they are."""

    name: str = "none"  # none, tensorboard, mlflow or many (both); logger=NAME picks conf/logger/NAME.yaml
    # MLflow's tracking URI; null: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working folder
    mlflow_uri: str | None = None
    experiment: str = "activation-harness"  # the MLflow experiment that runs and sweeps are logged under
    # live: the fewest seconds between two batches of a run's new rows (its first boundary's and its end's always go)
    every_s: float = 10.0


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
    seed: int = 0  # seeds torch, numpy and Python's random (0 to 2**32 - 1)
    resume: bool = False  # with hydra.sweep.dir=DIR: skip finished jobs, continue unfinished ones from checkpoints
    # the trackers it is logged to as well: logger=tensorboard, mlflow or many (harness/trackers/, docs/trackers.md)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = model_config(self.model)
        elif isinstance(self.model, ModelKeys):  # Config()'s default: the default family's, every key unset
            self.model = model_config(vars(self.model))


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
    del tree["logger"]  # watch-only, and not recorded: a run's records are the same whichever trackers watched it
    return tree


def config_hash(config: Config) -> str:
    """A stable hash of what a run computes: the config as sorted JSON, minus the watch-only keys.

    The standing rule, so that older sweeps still resume: a hash never changes for a config it was computed on.
    WATCH_ONLY keys are dropped (those in HASHED_AT_DEFAULT are hashed at their v1 default instead), and a key
    added after v1 (ADDED_KEYS) is dropped while it is at its default. A new config key goes into ADDED_KEYS.
    """
    tree = to_dict(config)
    for key in WATCH_ONLY:
        if key.split(".")[0] not in tree:  # logger: to_dict leaves it out
            continue
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
