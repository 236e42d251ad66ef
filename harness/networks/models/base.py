"""What every model family shares: the base of its config, its registry entry, the norms and the plain Linear.

A family is one module of this package: its config class (a BaseModelConfig with its own keys, checks and
defaults) beside its network class, and a FAMILY entry that harness/networks/models/__init__.py lists in MODELS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from torch import nn

from harness.common.errors import check

ActFactory = Callable[[], nn.Module]
MAX_WIDTH, MAX_DEPTH = 65536, 1000  # beyond these a model is a typo (1e9 units), not an experiment

# Normalisation after each hidden layer, by the layer's spatial dimensions (0: dense, 1: sequence, 2: image).
NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda dims, n: nn.Identity(),
    "batch": lambda dims, n: (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(n),
    "layer": lambda dims, n: nn.LayerNorm(n) if dims == 0 else nn.GroupNorm(1, n),
}


def hidden_layers(model: nn.Module) -> nn.ModuleList:
    """A model's activation-bearing layers `hidden`: hidden.0, hidden.1, ... (every family's is a ModuleList)."""
    hidden = model.hidden
    assert isinstance(hidden, nn.ModuleList), f"{type(model).__name__}.hidden is a {type(hidden).__name__}"
    return hidden


class Projection(nn.Linear):
    """A Linear that feeds no activation (the transformer's q, k, v, attention output and FFN output): model.init
    draws it with gain 1 and never splits it into gated halves (harness.networks.models.weights.initialise)."""


@dataclass(kw_only=True)
class BaseModelConfig:
    """The keys every family has. A family's config subclasses it, adds its own keys and states the default of
    each of its keys: that is the one place a model default is written (conf/model/NAME.yaml only names the
    family; the network's constructor defaults read the config class's). init and match_params default here."""

    name: str = field(default="", init=False)  # the family's name in MODELS: each family sets its own
    depth: int  # hidden, activation-bearing layers
    width: int  # the hidden layers' size: units, channels, hidden state or d_model
    init: str = "default"  # how hidden weight matrices are redrawn (harness.networks.models.weights.INITS, or auto)
    match_params: bool = False  # gated activations: the width whose n_params is closest to the ungated model's

    min_depth: ClassVar[int] = 1  # the MLP's depth 0 is logistic regression; other families need a hidden layer
    # Why the family cannot take a gated activation (2n inputs -> n outputs), if it cannot (harness.setup.resolve).
    gated_refusal: ClassVar[str | None] = None
    # A key of another family -> the line that refuses it here, where the generic line
    # (harness.setup.config.model_config) would say less.
    other_family_keys: ClassVar[dict[str, str]] = {}

    def check(self) -> None:
        """Refuse invalid values, one line each (harness.setup.validation.validate calls it; types were checked when the
        config was built)."""
        check(self.depth >= 0, f"model.depth must be >= 0, got {self.depth}")
        check(self.width > 0, f"model.width must be > 0, got {self.width}")
        check(self.width <= MAX_WIDTH, f"model.width must be <= {MAX_WIDTH}, got {self.width}")
        check(self.depth <= MAX_DEPTH, f"model.depth must be <= {MAX_DEPTH}, got {self.depth}")
        check(
            self.depth >= self.min_depth,
            f"model.depth={self.depth}: the {self.name} needs at least {self.min_depth} hidden layer; "
            "model.depth=0 is only valid for the mlp (logistic regression)",
        )

    def check_input(self, input_shape: tuple[int, ...], dataset: str) -> None:
        """Refuse (DataError, one line) a dataset whose samples, of input_shape, this configuration cannot take
        though its family takes their kind (harness.setup.data.check_pair checks the kind)."""


class Network(Protocol):
    """A family's network class (not an instance): the dataset kinds it takes, and how it is built."""

    @property
    def inputs(self) -> tuple[str, ...]: ...

    def from_config(
        self, m: BaseModelConfig, input_shape: tuple[int, ...], num_classes: int, act: ActFactory
    ) -> nn.Module:
        """The network for a config of its family (Family.config), an input shape and a class count."""
        ...


@dataclass(frozen=True)
class Family:
    """A registry entry (harness.networks.models.MODELS): the config class and the network it configures."""

    config: type[BaseModelConfig]
    network: Network  # a class: `inputs` (the dataset kinds it takes) and from_config(config, shape, classes, act)
    # harness/networks/stacked_layers.py's FORWARDS has the network's stacked forward, so that runs of it can share a
    # group; a family without one trains one run per job (harness.training.group.why_not_grouped).
    stacked: bool = False

    @property
    def name(self) -> str:
        return self.config.name
