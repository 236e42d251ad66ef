"""The model families, each built from an activation factory, and their registry MODELS.

A family is one module of this package: its config class (harness.networks.models.base.BaseModelConfig with the family's
own keys, checks and defaults) beside its network, and a FAMILY entry (base.Family) listed in MODELS below.
Validation, resolve, the data checks and grouping read MODELS and the config's own methods, never a model's name;
conf/model/NAME.yaml names the family for the command line. Adding a family: its module, one line in MODELS, the
YAML file (and, for runs of it to share a group, its stacked forward in harness/networks/stacked_layers.py).

Every model names its activation-bearing layers `hidden.0`, `hidden.1`, ... and its classifier `head`; a layer's
weights and the activation that follows them share that name, which the probes and results use
(harness/networks/models/weights.py).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from harness.networks.gated import hidden_width
from harness.networks.models import cnn, mlp, rnn, transformer
from harness.networks.models.base import NORMS, ActFactory, BaseModelConfig, Family, Network, Projection, hidden_layers
from harness.networks.models.cnn import CNN, CNNConfig, ConvBlock
from harness.networks.models.mlp import MLP, Dense, MLPConfig
from harness.networks.models.rnn import CELLS, RNN, Cell, ElmanCell, GRUCell, LSTMCell, Recurrent, RNNConfig
from harness.networks.models.transformer import Transformer, TransformerConfig
from harness.networks.models.weights import (
    INITS,
    WEIGHT_LAYERS,
    activation_layers,
    init_gain,
    initialise,
    layer_weights,
    weight_layers,
)

MODELS: dict[str, Family] = {family.name: family for family in (mlp.FAMILY, cnn.FAMILY, rnn.FAMILY, transformer.FAMILY)}

__all__ = [
    "CELLS",
    "CNN",
    "INITS",
    "MLP",
    "MODELS",
    "NORMS",
    "Network",
    "RNN",
    "WEIGHT_LAYERS",
    "ActFactory",
    "BaseModelConfig",
    "CNNConfig",
    "Cell",
    "ConvBlock",
    "Dense",
    "ElmanCell",
    "Family",
    "GRUCell",
    "LSTMCell",
    "MLPConfig",
    "Projection",
    "RNNConfig",
    "Recurrent",
    "Transformer",
    "TransformerConfig",
    "activation_layers",
    "build_model",
    "hidden_layers",
    "init_gain",
    "initialise",
    "layer_weights",
    "weight_layers",
]


def build_model(
    model_cfg: BaseModelConfig, act: ActFactory, input_shape: tuple[int, ...], num_classes: int, gain: float = 1.0
) -> nn.Module:
    """Build the configured model for an input shape (at the matched width if asked), then apply model.init.

    The width it was built with is `model.width_used`.
    """
    network = MODELS[model_cfg.name].network

    def construct(m: BaseModelConfig, act: ActFactory) -> nn.Module:
        return network.from_config(m, input_shape, num_classes, act)

    own = getattr(network, "matches_ffn", False)  # the transformer matches in its FFN, at d_ff
    width = model_cfg.width if own else hidden_width(model_cfg, act, construct)
    model = construct(dataclasses.replace(model_cfg, width=width), act)
    model.width_used = width  # type: ignore[assignment]  # torch's stub takes a Tensor or Module; any value is set
    initialise(model, model_cfg.init, gain)
    return model
