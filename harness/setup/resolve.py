"""Resolve once: every check a run can make without its data, turning the Config into what the run is built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from harness.networks.activations import ActivationSpec, activation_spec
from harness.networks.gated import expansion
from harness.networks.models import INITS, MODELS
from harness.setup.config import Config, ConfigError, one_of
from harness.setup.data import check_fits, check_pair, check_root
from harness.setup.datafiles import check_files
from harness.setup.footprint import check_memory, checked
from harness.setup.optimizers import OPTIMIZERS
from harness.setup.validation import validate

AUTO = "auto"  # model.init=auto: each activation's recommended init (harness.networks.activations.ACTIVATIONS)
TORCH_THREADS = torch.get_num_threads()  # torch's own default, read before any run sets another
# trainer.threads=auto trains on one CPU thread below this many parameters x batch size (scripts/bench_threads.py,
# docs/speed.md): below it a second thread did not pay on a quiet 2-core CPU, and on a busy one it cost 5-100x
# (OpenMP threads spin waiting for each other) where one thread too many on a quiet machine costs at most 2x.
ONE_THREAD_BELOW = 100_000_000


@dataclass(frozen=True)
class Resolved:
    """A checked Config and what it names, built once: the activation spec and the device."""

    config: Config
    activation: ActivationSpec
    device: torch.device | None  # None when checked without the device (a sweep's login node may lack the GPU)
    init: str  # the model.init drawn: model.init itself, or for `auto` the activation's recommended one


def resolve(config: Config, device: bool = True) -> Resolved:
    """Every check that needs no data, in one place: values (the model family checks its own), registry names,
    the activation (type-checked, built and run on the model's shapes), the model x dataset pair and the shapes
    (the family's check_input), the memory the run needs, and the device. Raises ConfigError (one line)."""
    validate(config)
    m, t = config.model, config.trainer
    one_of("model", m.name, MODELS)
    one_of("model.init", m.init, [*INITS, AUTO])
    one_of("trainer.optimizer", t.optimizer, OPTIMIZERS)
    custom = config.activation.get("name") == "custom"  # built in a child process first (harness.setup.footprint)
    spec = activation_spec(config.activation, build=not custom)
    check_pair(m.name, config.dataset.name)
    check_fits(config)
    if not custom:  # before the model is built, whose error would say less
        check_gated_fits(m.name, spec)
    check_memory(config, checked(config, spec))  # the model on the meta device, the activation on its shapes
    check_gated_fits(m.name, spec)
    check_root(config.dataset.name, config.dataset.root)
    check_files(config.dataset.name, config.dataset.root, config.dataset.download)
    init = spec.init if m.init == AUTO else m.init
    return Resolved(config, spec, resolve_device(t.device) if device else None, init)


def check_gated_fits(model_name: str, spec: ActivationSpec) -> None:
    """Refuse, in one line, an activation the model cannot take: a gated one where its family has a reason not to
    (gated_refusal: the RNN's recurrence)."""
    reason = MODELS[model_name].config.gated_refusal
    if reason and expansion(spec()) == 2:
        takers = [name for name, family in MODELS.items() if not family.config.gated_refusal]
        raise ConfigError(
            f"activation={spec.name} is gated (2n inputs -> n outputs) and {reason}; use model="
            + " or model=".join(takers)
        )


def resolve_device(requested: str) -> torch.device:
    """auto picks CUDA, then MPS, then CPU; an explicit device that is not there is a ConfigError."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA GPU is available; use trainer.device=auto or cpu")
    if requested == "mps" and not mps:
        raise ConfigError("trainer.device=mps but MPS is not available; use trainer.device=auto or cpu")
    return torch.device(requested)


def resolve_threads(
    setting: int | Literal["auto"] | None, n_params: int, batch_size: int, device: torch.device, cap: int | None = None
) -> int:
    """The torch CPU threads a run trains on. auto: one on the CPU where more do not pay (parameters x batch below
    ONE_THREAD_BELOW), else `cap`; null: `cap`; a count: that count. `cap` is a parallel launcher's share of the
    cores (harness/sweeps/launchers.py threads_per_job), or torch's own default."""
    cap = cap or TORCH_THREADS
    if setting == "auto":
        return 1 if device.type == "cpu" and n_params * batch_size < ONE_THREAD_BELOW else cap
    return setting or cap
