"""Every family's weights as the probes and model.init see them: the layers named hidden.0, hidden.1, ... and head,
their weight matrices and activations, and the schemes that redraw them (model.init)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from harness.networks.gated import is_gated, value_is_identity
from harness.networks.models.base import Projection, hidden_layers
from harness.networks.models.rnn import Cell, Recurrent

GainName = Literal["linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]  # calculate_gain names used below

# Activations that torch.nn.init.calculate_gain knows; the others use the ReLU gain.
# A gated unit's name stands for its gate's gain (its value half always gets the identity's; see initialise).
GAIN_NAMES: dict[str, GainName] = {
    "identity": "linear",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "selu": "selu",
    "glu": "sigmoid",
    "bilinear": "linear",
}


def init_gain(act_name: str, act_params: dict) -> float:
    """calculate_gain for the activation, the ReLU gain where torch knows none."""
    name = GAIN_NAMES.get(act_name, "relu")
    param = act_params.get("negative_slope", 0.01) if name == "leaky_relu" else None
    return nn.init.calculate_gain(name, param)


WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, Cell)  # what model.init redraws; never an activation's own


def weight_layers(block: nn.Module) -> list[nn.Module]:
    """The Linear, Conv and recurrent-cell modules of a block, in order; not its norm, not its activation."""
    return [m for m in block.modules() if isinstance(m, WEIGHT_LAYERS)]


def layer_weights(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Weight matrices of each named layer, in order of depth: the Linear/Conv weights and a cell's weight_ih and
    weight_hh; not biases, not norm scales, not an activation's own parameters (PReLU's slope is `act.weight`)."""
    layers = {}
    for i, block in enumerate(hidden_layers(model)):
        layers[f"hidden.{i}"] = [
            p for m in weight_layers(block) for n, p in m.named_parameters(recurse=False) if n.startswith("weight")
        ]
    layers["head"] = [model.get_parameter("head.weight")]
    return layers


def activation_layers(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The activation modules of each hidden layer: its `act` (for an RNN, each direction's cell's; they share the
    layer's name)."""
    acts = {}
    for i, block in enumerate(hidden_layers(model)):
        owners = block.cells if isinstance(block, Recurrent) else [block]
        acts[f"hidden.{i}"] = [owner.get_submodule("act") for owner in owners]
    return acts


def _fans(w: torch.Tensor) -> tuple[int, int]:
    fan_in = w[0].numel()
    return fan_in, w.shape[0] * w[0][0].numel() if w.dim() > 2 else w.shape[0]


# model.init: how each hidden weight matrix is redrawn (in place, with the activation's gain); None keeps PyTorch's.
INITS: dict[str, Callable[[torch.Tensor, float], torch.Tensor] | None] = {
    "default": None,
    "kaiming": lambda w, gain: w.normal_(0, gain / math.sqrt(_fans(w)[0])),
    "xavier": lambda w, gain: w.normal_(0, gain * math.sqrt(2.0 / sum(_fans(w)))),
    "lecun": lambda w, gain: w.normal_(0, 1 / math.sqrt(_fans(w)[0])),
    "orthogonal": lambda w, gain: nn.init.orthogonal_(w, gain),
}


def initialise(model: nn.Module, scheme: str, gain: float) -> None:
    """Re-initialise hidden weight matrices (biases to zero); `default` keeps PyTorch's own.

    A gated layer's weight is drawn as two matrices: the rows of its value half u as for the identity (gain 1; the
    activation's gain where u goes through a ReLU, as dReLU's does), the rows of its gate half g with the
    activation's gain, each half with its own n outputs as fan-out. A Projection
    (the transformer's q, k, v, attention output and FFN output) feeds no activation: gain 1, one matrix.
    """
    draw = INITS[scheme]
    if draw is None:
        return
    # per layer: None for an ungated one, else the gain of its value half
    value_gains = [
        (1.0 if value_is_identity(acts[0]) else gain) if is_gated(acts[0]) else None
        for acts in activation_layers(model).values()
    ]
    for value_gain, block in zip(value_gains, hidden_layers(model)):
        for module in weight_layers(block):
            plain = isinstance(module, Projection)
            for w in (p for n, p in module.named_parameters(recurse=False) if n.startswith("weight")):
                halves = value_gain is not None and not plain
                parts = zip(w.detach().chunk(2, dim=0), (value_gain or 1.0, gain)) if halves else [(w, gain)]
                for part, part_gain in parts:
                    with torch.no_grad():
                        draw(part, 1.0 if plain else part_gain)
    for module in weight_layers(hidden_layers(model)):  # not a norm's shift, not an activation's own parameters
        for n, p in module.named_parameters(recurse=False):
            if n.startswith("bias"):
                nn.init.zeros_(p)
