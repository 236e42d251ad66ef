"""Activation registry: name -> factory and recommended init; each activation's derivative and max|f'| for probes."""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import NamedTuple

import torch
from torch import nn

from harness.common.errors import ActivationError
from harness.networks.gated import (
    GEGLU,
    GLU,
    Bilinear,
    DReLU,
    ReGLU,
    ReLUSquared,
    StarReLU,
    SwiGLU,
    gate_max_slope,
    is_gated,
)
from harness.networks.modern import XIELU, PolyNorm, PolyReLU, Rational, TeLU
from harness.networks.spline import SplineActivation


def identity() -> nn.Module:
    """The linear baseline: no non-linearity at all."""
    return nn.Identity()


def hidden_softmax(dim: int = 1) -> nn.Module:
    """Softmax over the feature / channel dimension, as a hidden activation."""
    return nn.Softmax(dim=dim)


class Bound(NamedTuple):
    """A rule for one parameter that torch does not enforce (it would compute nan, or mix samples, silently)."""

    param: str
    rule: str  # what the one-line refusal says the value must be
    holds: Callable[[object], bool]


POSITIVE = "> 0", lambda v: v > 0
ALONG_FEATURES = (Bound("dim", "!= 0 (dim 0 is the batch: it would mix samples)", lambda v: v != 0),)


class ActivationEntry(NamedTuple):
    """A registry entry: the module factory, the model.init that `model.init=auto` draws for it, and the bounds of
    its parameters that torch does not check. Every float parameter must be finite besides (check_domain); the rest
    of each domain torch tells when the activation runs on the model's shapes (harness/setup/footprint.py)."""

    factory: Callable[..., nn.Module]
    init: str  # a name in harness.networks.models.INITS; the reasons are in docs/inits.md
    bounds: tuple[Bound, ...] = ()


# Kaiming (He et al., 2015) keeps the variance of rectifiers, which zero (or nearly) half their inputs; LeCun
# normal is what makes SELU self-normalising (Klambauer et al., 2017); Xavier (Glorot and Bengio, 2010) suits units
# that are linear and symmetric around 0 and saturate away from it. Each draws with the activation's gain.
ACTIVATIONS: dict[str, ActivationEntry] = {
    # the reference article's seven
    "relu": ActivationEntry(nn.ReLU, "kaiming"),
    "leaky_relu": ActivationEntry(nn.LeakyReLU, "kaiming"),  # its gain accounts for the negative slope
    "sigmoid": ActivationEntry(nn.Sigmoid, "xavier"),
    "tanh": ActivationEntry(nn.Tanh, "xavier"),
    "softmax": ActivationEntry(hidden_softmax, "xavier", ALONG_FEATURES),  # bounded and saturating, like the sigmoid
    "rrelu": ActivationEntry(nn.RReLU, "kaiming"),
    "relu6": ActivationEntry(nn.ReLU6, "kaiming"),
    # the rest of PyTorch's elementwise family
    "elu": ActivationEntry(nn.ELU, "kaiming"),  # a rectifier for z > 0 (Clevert et al. used He's init)
    "selu": ActivationEntry(nn.SELU, "lecun"),
    "celu": ActivationEntry(nn.CELU, "kaiming"),
    "gelu": ActivationEntry(nn.GELU, "kaiming"),  # smooth rectifiers: near 0 for z << 0, near z for z >> 0
    "gelu_tanh": ActivationEntry(partial(nn.GELU, approximate="tanh"), "kaiming"),
    "silu": ActivationEntry(nn.SiLU, "kaiming"),
    "mish": ActivationEntry(nn.Mish, "kaiming"),
    "prelu": ActivationEntry(nn.PReLU, "kaiming"),  # He et al. derived their init for PReLU
    "hardswish": ActivationEntry(nn.Hardswish, "kaiming"),
    "hardsigmoid": ActivationEntry(nn.Hardsigmoid, "xavier"),
    "hardtanh": ActivationEntry(nn.Hardtanh, "xavier"),
    "softplus": ActivationEntry(nn.Softplus, "kaiming", (Bound("beta", *POSITIVE),)),  # beta=0 divides by 0
    "softsign": ActivationEntry(nn.Softsign, "xavier"),  # one of the units Glorot and Bengio studied
    "tanhshrink": ActivationEntry(nn.Tanhshrink, "kaiming"),  # flat at 0, slope 1 far out: needs the larger variance
    "logsigmoid": ActivationEntry(nn.LogSigmoid, "kaiming"),  # a mirrored smooth rectifier: slope 1 for z << 0
    "identity": ActivationEntry(identity, "xavier"),  # Glorot's derivation is exact for linear units
    # gated (2n inputs -> n outputs: the layer before doubles its units) and squared-ReLU (harness/networks/gated.py); a
    # gated layer draws its value half with gain 1 and its gate half with the gate's gain
    # (harness/networks/models/weights.py)
    "glu": ActivationEntry(GLU, "xavier", ALONG_FEATURES),  # a sigmoid gate
    "reglu": ActivationEntry(ReGLU, "kaiming", ALONG_FEATURES),  # rectifier gates
    "geglu": ActivationEntry(GEGLU, "kaiming", ALONG_FEATURES),
    "swiglu": ActivationEntry(SwiGLU, "kaiming", ALONG_FEATURES),
    "bilinear": ActivationEntry(Bilinear, "xavier", ALONG_FEATURES),  # a linear gate: a product of two linear units
    "relu_squared": ActivationEntry(ReLUSquared, "kaiming"),  # a rectifier (its output's scale grows, as for ReLU)
    "star_relu": ActivationEntry(StarReLU, "lecun"),  # its scale and bias normalise relu(z)^2 for z ~ N(0, 1)
    # 2023-2026 (harness/networks/modern.py, spline.py; dReLU in gated.py): rectifier-like at initialisation, each
    # of them (PolyNorm's normalisation makes its input's scale irrelevant; the spline's base is SiLU)
    "telu": ActivationEntry(TeLU, "kaiming"),
    "xielu": ActivationEntry(XIELU, "kaiming"),
    "polyrelu": ActivationEntry(PolyReLU, "kaiming"),
    "polynorm": ActivationEntry(PolyNorm, "kaiming", ALONG_FEATURES),
    "drelu": ActivationEntry(DReLU, "kaiming", ALONG_FEATURES),  # ReLU on both halves: the ReLU gain on both
    "rational": ActivationEntry(Rational, "kaiming"),  # initialised to leaky ReLU
    "spline": ActivationEntry(SplineActivation, "kaiming"),
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
    return ACTIVATIONS[name].factory, params


def parameters_of(factory: Callable[..., nn.Module]) -> dict[str, object]:
    """The keyword parameters a factory accepts, with their defaults (runtime-only ones left out)."""
    params = inspect.signature(factory).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _RUNTIME_ARGS
    }


def check_params(name: str, factory: Callable[..., nn.Module], kwargs: dict) -> None:
    """Refuse keyword arguments the factory does not take, or whose type does not match the parameter's default."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        raise ActivationError(f"activation {name!r}: {factory!r} is not an nn.Module factory") from None
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    known = parameters_of(factory)
    unknown = sorted(set(kwargs) - set(known))
    if unknown and not accepts_any:
        valid = ", ".join(known) or "none"
        raise ActivationError(f"activation {name!r} has no parameter {', '.join(unknown)}; valid: {valid}")
    for key, value in kwargs.items():
        default = known.get(key)
        if not _same_type(value, default):
            raise ActivationError(
                f"activation.{key}={value!r} must be a {type(default).__name__}, like its "
                f"default ({name}'s {key}={default!r})"
            )


def _same_type(value: object, default: object) -> bool:
    """Whether a YAML value fits a parameter with this default (no default or None: anything does)."""
    if default is None or default is inspect.Parameter.empty or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


@dataclass(frozen=True)
class ActivationSpec:
    """A checked activation: its registry name, factory and parameters. Calling it builds one fresh instance.

    Built once per run by activation_spec; every layer calls it for its own instance (PReLU: its own slope).
    """

    name: str
    factory: Callable[..., nn.Module]
    params: dict
    node: dict  # the activation node as configured, `name` and `target` included
    init: str = "default"  # what model.init=auto draws: the registry's recommendation; PyTorch's own for `custom`

    def __call__(self) -> nn.Module:
        return self.factory(**self.params)

    @cached_property
    def max_slope(self) -> float | None:
        """max|f'| of a parameter-free activation, computed once; None for a learnable one (per module, then).
        A gated unit's is its gate function's (docs/activations.md)."""
        act = self()
        if next(act.parameters(), None) is not None:
            return None
        return gate_max_slope(act) if is_gated(act) else max_abs_derivative(act)

    @property
    def gain(self) -> float:
        """The init gain model.init uses (calculate_gain, the ReLU gain where torch knows none)."""
        from harness.networks.models import init_gain

        return init_gain(self.name, self.params)


def activation_spec(node: dict, build: bool = True) -> ActivationSpec:
    """Check an activation node ({name, its parameters}) and, with build, construct one instance; ActivationError
    if it is bad. harness.setup.footprint runs it on the model's shapes (and builds a custom one in a child process)."""
    params = dict(node)
    name = params.pop("name", None)
    factory, kwargs = resolve_factory(name, params)
    check_params(name, factory, kwargs)
    check_domain(name, kwargs)
    if build:
        construct(name, factory, kwargs)
    init = ACTIVATIONS[name].init if name in ACTIVATIONS else "default"
    return ActivationSpec(name, factory, kwargs, dict(node), init)


def check_domain(name: str, kwargs: dict) -> None:
    """Every float parameter finite, and the registry's bounds of this activation (Activation.bounds)."""
    for key, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ActivationError(f"activation.{key} must be a finite number, got {value}")
    for bound in ACTIVATIONS[name].bounds if name in ACTIVATIONS else ():
        value = kwargs.get(bound.param, parameters_of(ACTIVATIONS[name].factory).get(bound.param))
        if not bound.holds(value):
            raise ActivationError(f"activation.{bound.param} must be {bound.rule} for {name}, got {value}")


def construct(name: str, factory: Callable[..., nn.Module], kwargs: dict) -> nn.Module:
    """One instance, or ActivationError with the constructor's own error in one line."""
    try:
        instance = factory(**kwargs)
    except Exception as exc:
        raise ActivationError(
            f"activation {name!r} cannot be built with {kwargs}: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(instance, nn.Module):
        raise ActivationError(
            f"activation {name!r}: {factory!r} returned a {type(instance).__name__}, not an nn.Module"
        )
    return instance


def probe_activation(act: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Run act forward and backward on a real tensor of this shape with values across [-4, 4], as a model would in
    training; the output's shape. Raises what torch raises (a bad parameter, a shape it cannot take), and
    ValueError where the output or its gradient is not finite (softplus with beta=0, a slope of nan)."""
    x = torch.linspace(-4, 4, math.prod(shape)).reshape(shape).requires_grad_(True)  # an even count: never 0 exactly
    with torch.random.fork_rng(devices=[]):  # RReLU draws: the run's random stream stays as seeded
        y = act(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"it returned a {type(y).__name__}, not a tensor")
        if not torch.isfinite(y).all():
            raise ValueError("its output is not finite on inputs in [-4, 4]")
        if y.requires_grad and not torch.isfinite(torch.autograd.grad(y.sum(), x)[0]).all():
            raise ValueError("its gradient is not finite on inputs in [-4, 4]")
    return tuple(y.shape)


def make_activation(name: str, **params: object) -> nn.Module:
    """Build one activation module: `make_activation("leaky_relu", negative_slope=0.1)`."""
    return activation_spec({"name": name, **params})()


def derivative(act: nn.Module, z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """f'(z) elementwise; for softmax the diagonal of its Jacobian, s * (1 - s).

    Calls `act.forward`, not `act(...)`, so that the probes' forward hooks do not see these calls.
    """
    with torch.enable_grad():
        if isinstance(act, nn.Softmax):
            s = act.forward(z.float())
            return s * (1 - s)
        z = z.detach().to(torch.float64 if z.dtype == torch.float64 else torch.float32).requires_grad_(True)
        (grad,) = torch.autograd.grad(act.forward(z).sum(), z)
    return grad


def grid_input(act: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Shape a 1-D grid z so that act acts on each point as an elementwise function; a 2-D result's column 0 is
    the curve at z. Softmax gets the pair (z, 0), the two-class case, whose Jacobian diagonal is sigmoid'(z); a
    PReLU with one slope per channel gets (n, channels)."""
    param = next(act.parameters(), None)
    if isinstance(act, nn.Softmax):
        return torch.stack([z, torch.zeros_like(z)], dim=1)  # (n, 2)
    if param is not None and param.dim() == 1 and param.numel() > 1:
        return z[:, None].expand(len(z), param.numel())
    return z


def max_abs_derivative(act: nn.Module, lo: float = -20.0, hi: float = 20.0, n: int = 40001) -> float:
    """max|f'| over z in [lo, hi] (every channel of a per-channel PReLU), with the module's current parameters."""
    param = next(act.parameters(), None)
    z = grid_input(
        act,
        torch.linspace(
            lo, hi, n, device=None if param is None else param.device, dtype=None if param is None else param.dtype
        ),
    )
    was_training = act.training
    act.eval()  # RReLU: the derivative of its deterministic eval-mode slope
    try:
        slope = derivative(act, z)
        return (slope[:, 0] if isinstance(act, nn.Softmax) else slope).abs().max().item()
    finally:
        act.train(was_training)
