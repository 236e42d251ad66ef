"""The run configuration as plain dataclasses (Hydra's schema), its validation and its hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
MAX_WIDTH, MAX_DEPTH = 65536, 1000  # beyond these a model is a typo (1e9 units), not an experiment
# Below this rate a float32 weight never moves: Adam's step is about lr, under the rounding step (about 1e-9) of a
# weight of order 1e-2; SGD's is smaller still. Large rates stay allowed: diverging on purpose is an experiment.
MIN_LR = 1e-10
MAX_THREADS = 1024  # more CPU threads than any machine has cores; 100000 fails creating their stacks
# The names of the other axes (models, datasets, cells, norms, inits, optimizers) live in their registries, next to
# what they build (harness/models.py, harness/data.py, harness/loop.py); harness/resolve.py checks them.

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


EXIT_BAD_INPUT = 2  # the exit status of a refused command line or sweep: nothing ran


class ConfigError(ValueError):
    """An invalid configuration value, reported in one line before any work starts."""


class ActivationError(ConfigError):
    """A bad activation name or parameter."""


class DataError(ConfigError):
    """A dataset that cannot be loaded, or that the model cannot take."""


@dataclass
class ModelConfig:
    name: str = "mlp"
    depth: int = 2  # hidden, activation-bearing layers
    width: int = 100  # MLP units, CNN channels, RNN hidden size
    residual: bool = False
    init: str = "default"
    norm: str = "none"
    kernel_size: int = 5  # CNN: first layer's kernel; later layers use 3 (the MNIST-1D authors' ConvBase)
    cell: str = "elman"  # RNN only
    bidirectional: bool = False  # RNN only
    match_params: bool = False  # gated activations: the hidden width whose n_params is closest to the ungated model's
    heads: int = 2  # transformer only: attention heads, dividing model.width (d_model)
    ffn_ratio: float = 4.0  # transformer only: d_ff = ffn_ratio x width (x 2/3 for a gated unit with match_params)
    patch: int = 4  # transformer only: steps per token (sequences), P for P x P patches (images)


@dataclass
class DatasetConfig:
    name: str = "mnist1d"
    root: str = "data"
    download: bool = False
    train_size: int | None = None  # subsample the training split, for quick runs
    val_fraction: float = 0.1


@dataclass
class TrainerConfig:
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
    threads: Any = "auto"  # torch CPU threads: "auto" (harness.threads), a count, or null for torch's default
    init_trials: int = 0  # with steps=0: born-dead fraction over this many fresh initialisations (harness/born_dead.py)
    capture: Any = "auto"  # the training step as a CUDA graph: auto, true or false (harness/capture.py)


@dataclass
class Config:
    activation: dict[str, Any] = field(default_factory=lambda: {"name": "relu"})  # name + its parameters
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    resume: bool = False


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def one_of(key: str, value: str, valid) -> None:
    """Refuse a value that is not a name in `valid` (a tuple or a registry dict)."""
    _check(value in valid, f"{key}={value!r} is not valid; choose one of {', '.join(valid)}")


def validate(config: Config) -> None:
    """Refuse invalid values with one clear line (types are Hydra's job, through the dataclasses)."""
    t, m, d = config.trainer, config.model, config.dataset
    check_finite(config)
    _check(t.steps >= 0, f"trainer.steps must be >= 0, got {t.steps}")
    _check(t.batch_size > 0, f"trainer.batch_size must be > 0, got {t.batch_size}")
    _check(t.lr > 0, f"trainer.lr must be > 0, got {t.lr}")
    _check(t.lr >= MIN_LR, f"trainer.lr={t.lr} is below {MIN_LR}: a float32 weight would never move")
    _check(0 <= config.seed < 2**32, f"seed must be in [0, 2**32 - 1], got {config.seed}")  # numpy's seed range
    _check(0 <= t.momentum < 1, f"trainer.momentum must be in [0, 1), got {t.momentum}")
    _check(t.weight_decay >= 0, f"trainer.weight_decay must be >= 0, got {t.weight_decay}")
    _check(t.grad_clip is None or t.grad_clip > 0, f"trainer.grad_clip must be > 0 or null, got {t.grad_clip}")
    _check(t.eval_every > 0, f"trainer.eval_every must be > 0, got {t.eval_every}")
    _check(t.log_every > 0, f"trainer.log_every must be > 0, got {t.log_every}")
    _check(t.checkpoint_every >= 0, f"trainer.checkpoint_every must be >= 0, got {t.checkpoint_every}")
    _check(
        t.threads in (None, "auto") or (type(t.threads) is int and t.threads > 0),
        f"trainer.threads must be auto, a count > 0 or null, got {t.threads!r}",
    )
    _check(
        type(t.threads) is not int or t.threads <= MAX_THREADS,
        f"trainer.threads must be <= {MAX_THREADS}, got {t.threads}",
    )
    _check(0 <= t.init_trials <= 100_000, f"trainer.init_trials must be in [0, 100000], got {t.init_trials}")
    _check(
        t.init_trials == 0 or t.steps == 0,
        f"trainer.init_trials={t.init_trials} measures initialisations only; it needs trainer.steps=0",
    )
    one_of("trainer.device", t.device, DEVICES)
    _check(t.capture in ("auto", True, False), f"trainer.capture must be auto, true or false, got {t.capture!r}")
    _check(
        t.capture is not True or (t.precision != "fp16" and not t.compile),
        "trainer.capture=true cannot capture fp16's loss scaling or a compiled model; use trainer.capture=auto",
    )
    one_of("trainer.precision", t.precision, PRECISIONS)
    _check(m.depth >= 0, f"model.depth must be >= 0, got {m.depth}")
    _check(m.width > 0, f"model.width must be > 0, got {m.width}")
    _check(m.width <= MAX_WIDTH, f"model.width must be <= {MAX_WIDTH}, got {m.width}")
    _check(m.depth <= MAX_DEPTH, f"model.depth must be <= {MAX_DEPTH}, got {m.depth}")
    _check(m.kernel_size > 0, f"model.kernel_size must be > 0, got {m.kernel_size}")
    _check(m.name == "mlp" or m.depth > 0, "model.depth=0 is only valid for the mlp (logistic regression)")
    _check(m.name == "mlp" or not m.residual, "model.residual=true is only supported by the mlp")
    _check(m.name != "rnn" or m.norm == "none", "model.norm is not supported by the rnn; use model.norm=none")
    _check(d.train_size is None or d.train_size > 0, f"dataset.train_size must be > 0, got {d.train_size}")
    _check(0 < d.val_fraction < 1, f"dataset.val_fraction must be in (0, 1), got {d.val_fraction}")
    if m.name == "transformer":
        check_transformer(m)


def check_finite(node, prefix: str = "") -> None:
    """Every float value of the config (its nested sections too) is a finite number: nan and inf mean nothing."""
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_finite(value, key + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")


def check_transformer(m: ModelConfig) -> None:
    """The transformer's own keys, and the RNN's and CNN's options it has no use for, in one line each."""
    _check(m.heads > 0 and m.width % m.heads == 0, f"model.heads={m.heads} must divide model.width={m.width}")
    _check(m.ffn_ratio > 0, f"model.ffn_ratio must be > 0, got {m.ffn_ratio}")
    _check(
        round(2 / 3 * m.ffn_ratio * m.width) >= 1,  # the smaller d_ff of the two (harness.transformer.ffn_width)
        f"model.ffn_ratio={m.ffn_ratio} leaves the FFN of model.width={m.width} without units",
    )
    _check(m.patch > 0, f"model.patch must be > 0, got {m.patch}")
    _check(
        m.norm in ("layer", "none"),
        f"model.norm={m.norm} is not supported by the transformer (pre-norm); use model.norm=layer or none",
    )
    _check(
        not m.bidirectional and m.cell == "elman",
        "model.cell and model.bidirectional are rnn options; the transformer takes neither",
    )


def to_dict(config: Config) -> dict:
    """The configuration as plain nested dicts."""
    return dataclasses.asdict(config)


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


def _parent(tree: dict, key: str) -> tuple[dict, str]:
    """The dict that holds a dotted key's leaf, and the leaf's name."""
    *parents, leaf = key.split(".")
    for p in parents:
        tree = tree[p]
    return tree, leaf
