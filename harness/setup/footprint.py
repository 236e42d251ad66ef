"""What a run will build, checked before it is built: the model on the meta device (shapes and parameter counts,
no memory), the activation run for real on the shapes that model gives it, and the memory the run needs against
the memory its job has. Refusals are ConfigErrors, one line each.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import math
import os
import pickle
import resource
import signal
from pathlib import Path

import torch
from torch import nn

from harness.networks.activations import ActivationSpec, activation_spec, probe_activation
from harness.networks.gated import expansion, set_units
from harness.setup.config import ActivationError, Config, ConfigError
from harness.setup.data import DATASETS
from harness.setup.optimizers import OPTIMIZER_STATES

BATCH = 2  # the meta forward's batch (BatchNorm needs two samples); the real probe's too
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Footprint:
    params: int  # the model's parameters
    activation_values: int  # values the activations take in and give out for one sample, over one forward pass


class StandIn(nn.Module):
    """The activation in a model built on the meta device: a real instance runs on a real tensor of the shape the
    model gives it (once per shape, batch 2), then the model gets an empty meta tensor of the output's shape."""

    def __init__(self, spec: ActivationSpec, probed: dict[tuple[int, ...], tuple[int, ...]], counter: list[int]):
        super().__init__()
        with torch.device("cpu"):  # a real instance inside the meta model: it runs on real numbers
            self.real = spec()
        self.spec, self.probed, self.counter = spec, probed, counter
        self.expansion = expansion(self.real)

    def set_units(self, units: int) -> None:
        """A per-unit activation's parameters for the layer's units (the spline's), counted in the model."""
        with torch.device("cpu"):  # as the real instance was built: it runs on real numbers
            set_units(self.real, units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (BATCH, *x.shape[1:])
        if shape not in self.probed:
            self.probed[shape] = self.probe(shape)
        out = (x.shape[0], *self.probed[shape][1:])
        self.counter[0] += x.numel() + math.prod(out)
        return torch.empty(out, device=x.device, dtype=x.dtype)

    def probe(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The real output's shape; ActivationError naming the activation, its parameters and the input."""
        node = ", ".join(f"activation.{k}={v}" for k, v in self.spec.node.items() if k != "name")
        where = f"activation={self.spec.name}" + (f" ({node})" if node else "")
        try:
            with torch.device("cpu"):  # real numbers, inside the meta model's forward pass
                out = probe_activation(self.real, shape)
        except Exception as exc:
            raise ActivationError(
                f"{where} fails on the input the model gives it, of shape (N, "
                f"{', '.join(map(str, shape[1:]))}): {type(exc).__name__}: {exc}"
            ) from None
        channels = shape[1] // self.expansion if len(shape) > 1 else None
        if len(out) != len(shape) or (channels is not None and out[1] != channels) or out[2:] != shape[2:]:
            raise ActivationError(
                f"{where} turns an input of shape {shape} into {tuple(out)}; the model needs "
                f"{(BATCH, channels, *shape[2:])}"
            )
        return out


_CACHE: dict[str, Footprint] = {}  # by what a footprint depends on: a sweep's seeds and rates share one probe


def cache_key(config: Config, spec: ActivationSpec) -> str:
    return json.dumps([spec.node, dataclasses.asdict(config.model), config.dataset.name], sort_keys=True, default=str)


def footprint(config: Config, spec: ActivationSpec) -> Footprint:
    """The model's parameters and activation values per sample, checked by building it on the meta device."""
    key = cache_key(config, spec)
    if key not in _CACHE:
        try:
            _CACHE[key] = build_on_meta(config, spec)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"model={config.model.name} cannot be built with activation={spec.name}: {type(exc).__name__}: {exc}"
            ) from None
    return _CACHE[key]


def build_on_meta(config: Config, spec: ActivationSpec) -> Footprint:
    # not at import time: harness.networks.models needs nothing from here
    from harness.networks.models import build_model

    data = DATASETS[config.dataset.name]
    probed: dict[tuple[int, ...], tuple[int, ...]] = {}  # input shape -> output shape, of batch BATCH
    counter = [0]
    model_cfg = dataclasses.replace(config.model, init="default")  # shapes and counts do not depend on the init
    with torch.device("meta"):
        model = build_model(model_cfg, lambda: StandIn(spec, probed, counter), data.input_shape, data.num_classes)
        params = sum(p.numel() for p in model.parameters())
        check_memory(config, Footprint(params, 0))  # before the forward pass: a model too large stops here
        counter[0] = 0
        model(torch.empty(BATCH, *data.input_shape))
    return Footprint(params, counter[0] // BATCH)


# ---------------------------------------------------------------- memory


def memory_needed(config: Config, fp: Footprint) -> int:
    """A lower bound on the bytes a run holds at once: the data as float32 tensors, the weights and their gradients,
    the optimizer's state (when it trains), and the activations of one batch saved for the backward pass. On a GPU
    the host holds the data and the model as built, before it moves."""
    t, d = config.trainer, config.dataset
    spec = DATASETS[d.name]
    data = (spec.train + spec.test) * math.prod(spec.input_shape) * 4
    if on_gpu(t.device):
        return data + fp.params * 4
    copies = 2 + (OPTIMIZER_STATES[t.optimizer](t) if t.steps else 0)
    batch = min(t.batch_size, spec.train_split(d.val_fraction, d.train_size))
    value_bytes = 4 if t.precision == "fp32" else 2
    return data + fp.params * 4 * copies + fp.activation_values * batch * value_bytes


def on_gpu(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def check_memory(config: Config, fp: Footprint) -> None:
    budget, where = job_memory()
    need = memory_needed(config, fp)
    if budget is not None and need > budget:
        m, t = config.model, config.trainer
        raise ConfigError(
            f"this run needs at least {need / GIB:.1f} GiB ({fp.params:,} parameters, model.width="
            f"{m.width}, model.depth={m.depth}, trainer.batch_size={t.batch_size}, "
            f"dataset={config.dataset.name}) but {where} is {budget / GIB:.1f} GiB; make it smaller"
        )


_launcher_request: tuple[int, str] | None = None  # (bytes, what) the launcher asks for each job


def set_launcher_memory(request: tuple[int, str] | None) -> None:
    """The memory a sweep's launcher asks for each job (a SLURM --mem), or None; set by the preflight, which may run
    on a login node whose own memory says nothing of the jobs'."""
    global _launcher_request
    _launcher_request = request


def job_memory() -> tuple[int | None, str]:
    """(bytes, what they are) a job will have: the launcher's request where it makes one, else this machine's
    available memory (None where unknown: nothing is refused)."""
    if _launcher_request is not None:
        return _launcher_request
    return available_memory(), "this machine's available memory"


def available_memory() -> int | None:
    """MemAvailable, capped by this process's cgroup limit (a container, a SLURM job); None where unknown."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        free = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemAvailable:"))) * 1024
    except (OSError, StopIteration, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        return min(free, int(limit) - used) if limit != "max" else free
    except (OSError, ValueError):
        return free


# ---------------------------------------------------------------- a custom activation, checked in a child process


def checked(config: Config, spec: ActivationSpec) -> Footprint:
    """footprint(), with a custom activation built and run in a forked child (where there is fork): one that kills
    its process (os.abort, a segfault) kills the child, and the parent says so in one line naming the target.

    Forked, not spawned: the child has torch and the user's module loaded already, where a spawned one would
    import them again (seconds per check). Registry activations are torch's and ours: they run in process.
    """
    key = cache_key(config, spec)
    if spec.name != "custom" or not hasattr(os, "fork") or key in _CACHE:
        return footprint(config, spec)
    import torch._dynamo  # noqa: F401  the meta kernels' first use imports it (seconds): once here, not per child

    target = spec.node.get("target")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        child(read, write, config, spec)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    status = os.waitpid(pid, 0)[1]
    if not data:
        how = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else f"exit {status >> 8}"
        raise ActivationError(f"activation.target={target} killed the process that built and ran it ({how})")
    kind, value = pickle.loads(data)
    if kind == "activation":
        raise ActivationError(value)
    if kind == "config":
        raise ConfigError(value)
    _CACHE[key] = value
    return value


def child(read: int, write: int, config: Config, spec: ActivationSpec) -> None:
    """The forked child's whole life: build the activation and the model, send the footprint or the error's one
    line, exit without running the parent's cleanup."""
    try:
        os.close(read)
        faulthandler.disable()  # a job's fault.log records its own process's death, not this child's
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a child that dies leaves no core file, and dies quickly
        torch.set_num_threads(1)  # a child forked from a process with a thread pool must not use it
        try:
            payload: tuple[str, Footprint | str] = ("ok", footprint(config, activation_spec(spec.node)))
        except ActivationError as exc:
            payload = ("activation", str(exc))
        except ConfigError as exc:
            payload = ("config", str(exc))
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: reported; the parent decides
            payload = (
                "activation",
                f"activation.target={spec.node.get('target')} could not be built: {type(exc).__name__}: {exc}",
            )
        with os.fdopen(write, "wb") as f:
            pickle.dump(payload, f)
    finally:
        os._exit(0)
