"""The MLP family (model=mlp): fully connected layers; depth 0 is logistic regression.

Its defaults are the MNIST-1D authors' MLP: two hidden layers of 100 units (their second layer is residual; ours
is not by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.common.errors import one_of
from harness.networks.gated import expansion, set_units
from harness.networks.models.base import NORMS, ActFactory, BaseModelConfig, Family


@dataclass(kw_only=True)
class MLPConfig(BaseModelConfig):
    name: str = field(default="mlp", init=False)
    depth: int = 2
    width: int = 100
    residual: bool = False  # a skip around every hidden layer after the first (equal widths)
    norm: str = "none"  # after each hidden Linear: none, batch or layer (NORMS)

    min_depth = 0

    def check(self) -> None:
        super().check()
        one_of("model.norm", self.norm, NORMS)


class Dense(nn.Module):
    """Linear -> optional norm -> activation; the Linear gives 2 x n_out features for a gated activation."""

    def __init__(self, n_in: int, n_out: int, act: ActFactory, norm: str):
        super().__init__()
        activation = act()
        set_units(activation, n_out)  # a per-unit activation's parameters (the spline's), before gating doubles n_out
        n_out *= expansion(activation)
        self.linear = nn.Linear(n_in, n_out)
        self.norm = NORMS[norm](0, n_out)
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(x)))


class MLP(nn.Module):
    """Fully connected classifier; depth 0 is logistic regression, residual adds skips between equal widths."""

    inputs = ("vector", "sequence", "image")  # the dataset kinds it takes

    @classmethod
    def from_config(cls, m: BaseModelConfig, input_shape: tuple[int, ...], num_classes: int, act: ActFactory) -> MLP:
        assert isinstance(m, MLPConfig)  # the registry's Family pairs each network with its own config
        return cls(math.prod(input_shape), num_classes, act, m.depth, m.width, m.residual, m.norm)

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        act: ActFactory,
        depth: int = MLPConfig.depth,
        width: int = MLPConfig.width,
        residual: bool = MLPConfig.residual,
        norm: str = MLPConfig.norm,
    ):
        super().__init__()
        sizes = [in_features] + [width] * depth
        self.hidden = nn.ModuleList(Dense(a, b, act, norm) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, D)
        for i, layer in enumerate(self.hidden):
            x = x + layer(x) if self.residual and i > 0 else layer(x)
        return self.head(x)


FAMILY = Family(MLPConfig, MLP, stacked=True)
