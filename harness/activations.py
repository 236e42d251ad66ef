"""Activation registry: name -> factory, plus each activation's derivative and max|f'| for probes and plots."""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from harness.config import ActivationError
from harness.gated import GATED_ACTIVATIONS, SQUARED_ACTIVATIONS


def identity() -> nn.Module:
    """The linear baseline: no non-linearity at all."""
    return nn.Identity()


def hidden_softmax(dim: int = 1) -> nn.Module:
    """Softmax over the feature / channel dimension, as a hidden activation."""
    return nn.Softmax(dim=dim)


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    # the reference article's seven
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": hidden_softmax,
    "rrelu": nn.RReLU,
    "relu6": nn.ReLU6,
    # the rest of PyTorch's elementwise family
    "elu": nn.ELU,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "prelu": nn.PReLU,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "hardtanh": nn.Hardtanh,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "tanhshrink": nn.Tanhshrink,
    "logsigmoid": nn.LogSigmoid,
    "identity": identity,
    # gated (2n inputs -> n outputs: the layer before doubles its units) and squared-ReLU (harness/gated.py)
    **GATED_ACTIVATIONS,
    **SQUARED_ACTIVATIONS,
}
# `custom` is not a factory of its own: it imports the class named by `target` (see make_activation).
NAMES = sorted([*ACTIVATIONS, "custom"])

# Arguments that only change how an op runs, never what it computes: not offered as YAML parameters.
_RUNTIME_ARGS = {"inplace", "device", "dtype"}


def import_target(target: str) -> Callable[..., nn.Module]:
    """Import `package.module.Name` for a user's own activation."""
    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ActivationError(f"activation.target must be 'package.module.Name', got {target!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ActivationError(f"cannot import activation.target={target!r}: {exc}") from None


def resolve_factory(name: str, params: dict) -> tuple[Callable[..., nn.Module], dict]:
    """Return (factory, keyword arguments) for a registry name, popping `target` for `custom`."""
    params = dict(params)
    if name == "custom":
        target = params.pop("target", None)
        if not target or target == "???":
            raise ActivationError("activation=custom needs activation.target=package.module.Name")
        return import_target(target), params
    if name not in ACTIVATIONS:
        raise ActivationError(f"unknown activation {name!r}; valid: {', '.join(NAMES)}")
    return ACTIVATIONS[name], params


def parameters_of(factory: Callable[..., nn.Module]) -> dict[str, object]:
    """The keyword parameters a factory accepts, with their defaults (runtime-only ones left out)."""
    params = inspect.signature(factory).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _RUNTIME_ARGS
    }


def check_params(name: str, params: dict) -> None:
    """Refuse keyword arguments the activation's factory does not take, listing the ones it does."""
    factory, kwargs = resolve_factory(name, params)
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    known = parameters_of(factory)
    unknown = sorted(set(kwargs) - set(known))
    if unknown and not accepts_any:
        valid = ", ".join(known) or "none"
        raise ActivationError(f"activation {name!r} has no parameter {', '.join(unknown)}; valid: {valid}")


def make_activation(name: str, **params) -> nn.Module:
    """Build one activation module: `make_activation("leaky_relu", negative_slope=0.1)`."""
    check_params(name, params)
    factory, kwargs = resolve_factory(name, params)
    return factory(**kwargs)


def activation_factory(name: str, **params) -> Callable[[], nn.Module]:
    """A zero-argument factory, so that every layer gets its own instance (and PReLU its own slope)."""
    check_params(name, params)
    return partial(make_activation, name, **params)


def derivative(act: nn.Module, z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """f'(z) elementwise; for softmax the diagonal of its Jacobian, s * (1 - s).

    Calls `act.forward`, not `act(...)`, so that the probes' forward hooks do not see these calls.
    """
    with torch.enable_grad():
        if isinstance(act, nn.Softmax):
            s = act.forward(z.float())
            return s * (1 - s)
        z = z.detach().float().requires_grad_(True)
        (grad,) = torch.autograd.grad(act.forward(z).sum(), z)
    return grad


def max_abs_derivative(act: nn.Module, lo: float = -20.0, hi: float = 20.0, n: int = 40001) -> float:
    """max|f'| over z in [lo, hi], with the module's current parameters (PReLU's learned slope).

    Softmax is evaluated on the pair (z, 0), the two-class case, whose Jacobian diagonal is sigmoid'(z).
    """
    param = next(act.parameters(), None)
    z = torch.linspace(lo, hi, n, device=param.device if param is not None else None)
    if isinstance(act, nn.Softmax):
        z = torch.stack([z, torch.zeros_like(z)], dim=1)  # (n, 2)
        return derivative(act, z)[:, 0].abs().max().item()
    was_training = act.training
    act.eval()  # RReLU: the derivative of its deterministic eval-mode slope
    try:
        if param is not None and param.dim() == 1 and param.numel() > 1:  # PReLU with one slope per channel
            z = z[:, None].expand(n, param.numel())
        return derivative(act, z).abs().max().item()
    finally:
        act.train(was_training)
