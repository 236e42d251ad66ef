"""The values of a run configuration checked, one clear line for each that is refused (types were checked when the
configuration was built: harness.setup.config); the model family checks its own keys."""

from __future__ import annotations

import dataclasses
import math
import typing

from harness.common.errors import ConfigError, check, one_of
from harness.setup.config import LOGGERS, Config

if typing.TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
# Below this rate a float32 weight never moves: Adam's step is about lr, under the rounding step (about 1e-9) of a
# weight of order 1e-2; SGD's is smaller still. Large rates stay allowed: diverging on purpose is an experiment.
MIN_LR = 1e-10
MAX_THREADS = 1024  # more CPU threads than any machine has cores; 100000 fails creating their stacks


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
    one_of("logger.name", config.logger.name, tuple(LOGGERS))
    check(config.logger.every_s >= 0, f"logger.every_s must be >= 0, got {config.logger.every_s}")
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
