"""The CNN family (model=cnn): stride-2 convolutions, 1-D on sequences and 2-D on images by the input's shape.

Its defaults are the MNIST-1D authors' ConvBase: three stride-2 convolutions of 25 channels (kernels 5, 3, 3) and
a linear head on the flat features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from harness.common.errors import DataError, check, one_of
from harness.networks.gated import expansion, set_units
from harness.networks.models.base import NORMS, ActFactory, BaseModelConfig, Family


@dataclass(kw_only=True)
class CNNConfig(BaseModelConfig):
    name: str = field(default="cnn", init=False)
    depth: int = 3
    width: int = 25  # channels of every convolution
    kernel_size: int = 5  # the first convolution's kernel; later ones use 3 (the MNIST-1D authors' ConvBase)
    norm: str = "none"  # after each convolution: none, batch or layer (GroupNorm of one group; NORMS)

    def check(self) -> None:
        super().check()
        check(self.kernel_size > 0, f"model.kernel_size must be > 0, got {self.kernel_size}")
        one_of("model.norm", self.norm, NORMS)

    def check_input(self, input_shape: tuple[int, ...], dataset: str) -> None:
        if self.kernel_size > min(input_shape[1:]):
            raise DataError(
                f"model.kernel_size={self.kernel_size} is larger than the input "
                f"({'x'.join(map(str, input_shape[1:]))} for dataset={dataset})"
            )


class ConvBlock(nn.Module):
    """Strided convolution -> optional norm -> activation, 1-D or 2-D; 2 x c_out channels for a gated activation."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int, act: ActFactory, norm: str):
        super().__init__()
        activation = act()
        set_units(activation, c_out)  # the units are the channels: per-unit parameters are per channel
        c_out *= expansion(activation)
        self.conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(c_in, c_out, kernel, stride=2, padding=1)
        self.norm = NORMS[norm](dims, c_out)
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class CNN(nn.Module):
    """The MNIST-1D authors' ConvBase generalised: stride-2 convolutions, then a linear head on the flat features."""

    inputs = ("sequence", "image")

    @classmethod
    def from_config(cls, m: BaseModelConfig, input_shape: tuple[int, ...], num_classes: int, act: ActFactory) -> CNN:
        assert isinstance(m, CNNConfig)  # the registry's Family pairs each network with its own config
        return cls(input_shape, num_classes, act, m.depth, m.width, m.kernel_size, m.norm)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        act: ActFactory,
        depth: int = CNNConfig.depth,
        width: int = CNNConfig.width,
        kernel_size: int = CNNConfig.kernel_size,
        norm: str = CNNConfig.norm,
    ):
        super().__init__()
        dims = len(input_shape) - 1  # (C, L) -> 1-D, (C, H, W) -> 2-D
        channels = [input_shape[0]] + [width] * depth
        kernels = [kernel_size] + [3] * (depth - 1)
        self.hidden = nn.ModuleList(
            ConvBlock(dims, a, b, k, act, norm) for a, b, k in zip(channels[:-1], channels[1:], kernels)
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(2, *input_shape)).shape[1]
        self.head = nn.Linear(flat, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x)  # (B, C, L) or (B, C, H, W), halved each layer
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


FAMILY = Family(CNNConfig, CNN, stacked=True)
