"""The learnt shape of an activation: its modules' own parameters (PReLU's slope, StarReLU's scale and bias, a
learnable activation's coefficients), as summary.json records them at initialisation and at the end, and loaded
back into a fresh module (harness/report/learnt_gallery.py draws f and f' from them).

Recorded per layer (harness.networks.models.activation_layers' names: hidden.0, hidden.1, ...) and per parameter,
each as a list of its values in their own shape (a single value as a list of one); a layer whose activation has no
parameters is left out. A layer with several activation modules (an RNN's two directions) names each module's
parameters with its index first: `0.weight`, `1.weight`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.networks.models import activation_layers

LearntParams = dict[str, dict[str, list]]  # layer -> parameter name -> its values as (nested) lists


def activation_parameters(model: nn.Module) -> LearntParams:
    """Every activation module's parameters now, per layer, in float64 lists (float32 values are exact in them)."""
    recorded: LearntParams = {}
    for layer, acts in activation_layers(model).items():
        params = {}
        for j, act in enumerate(acts):
            prefix = f"{j}." if len(acts) > 1 else ""
            for name, p in act.named_parameters():
                values = p.detach().to("cpu", torch.float64)
                params[prefix + name] = (values.reshape(1) if values.dim() == 0 else values).tolist()
        if params:
            recorded[layer] = params
    return recorded


def as_tensor(values: list) -> torch.Tensor:
    """A recorded parameter as a float64 tensor (null, the record of a non-finite value, as NaN)."""
    return torch.tensor(_nan_for_none(values), dtype=torch.float64)


def _nan_for_none(values: list | float | None) -> list | float:
    if isinstance(values, list):
        return [_nan_for_none(v) for v in values]
    return math.nan if values is None else values


def load_parameters(act: nn.Module, recorded: dict[str, list]) -> nn.Module:
    """act (a fresh module of the recorded activation) in float64 with the recorded parameters (one module's: the
    names without a direction prefix). A parameter whose recorded shape differs from the fresh module's (per-unit
    parameters, sized by the layer's width) takes the recorded shape. Returns act."""
    act = act.double()
    names = {name for name, _ in act.named_parameters()}
    if set(recorded) != names:
        raise ValueError(f"recorded parameters {sorted(recorded)} are not the module's {sorted(names)}")
    for name, values in recorded.items():
        owner, _, leaf = name.rpartition(".")
        module = act.get_submodule(owner)
        tensor = as_tensor(values)
        current = module._parameters[leaf]
        assert current is not None
        if tensor.numel() == current.numel():
            tensor = tensor.reshape(current.shape)
        # into the module's dict: a differently shaped tensor cannot be copy_'d into the fresh one
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=current.requires_grad)
    return act


def one_module(recorded: dict[str, list], index: int = 0) -> dict[str, list]:
    """One activation module's parameters out of a layer's record: as is, or module `index`'s of several."""
    prefixed = [name for name in recorded if name.split(".", 1)[0].isdigit()]
    if not prefixed or len(prefixed) != len(recorded):
        return recorded
    return {name.split(".", 1)[1]: v for name, v in recorded.items() if name.split(".", 1)[0] == str(index)}
