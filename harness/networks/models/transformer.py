"""The transformer family (model=transformer): a small pre-norm encoder whose feed-forward block carries the
activation (docs/transformer.md).

Tokens: a sequence (C, L) is cut into L/P tokens of P consecutive steps, an image (C, H, W) into (H/P)(W/P) patches of
P x P; each token is projected to d_model (= model.width) and gets a learned positional embedding. The blocks are
torch.nn.TransformerEncoderLayer(norm_first=True, dropout=0)'s equations; the tokens are mean-pooled into the head.
Block K's FFN activation is the layer `hidden.K`: it sees (batch x tokens, features), so that its units are the
FFN's features (axis 1, as for the MLP), the probes reduce over batch and tokens, and softmax runs over features.
Its defaults: two blocks of d_model 32, 2 heads, an FFN of 4 x 32, tokens of 4 steps or 4 x 4 patches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from harness.common.errors import DataError, check
from harness.networks.gated import closest_size, expansion, set_units
from harness.networks.models.base import ActFactory, BaseModelConfig, Family, Projection

RNN_OPTIONS = "model.cell and model.bidirectional are rnn options; the transformer takes neither"


@dataclass(kw_only=True)
class TransformerConfig(BaseModelConfig):
    name: str = field(default="transformer", init=False)
    depth: int = 2  # blocks
    width: int = 32  # d_model
    heads: int = 2  # attention heads, dividing width
    ffn_ratio: float = 4.0  # d_ff = ffn_ratio x width (x 2/3 for a gated unit with match_params: ffn_width)
    patch: int = 4  # steps per token (sequences), P for P x P patches (images)
    norm: str = "layer"  # pre-norm LayerNorm, or none

    other_family_keys = {"cell": RNN_OPTIONS, "bidirectional": RNN_OPTIONS}

    def check(self) -> None:
        super().check()
        check(
            self.heads > 0 and self.width % self.heads == 0,
            f"model.heads={self.heads} must divide model.width={self.width}",
        )
        check(self.ffn_ratio > 0, f"model.ffn_ratio must be > 0, got {self.ffn_ratio}")
        check(
            round(2 / 3 * self.ffn_ratio * self.width) >= 1,  # the smaller d_ff of the two (ffn_width)
            f"model.ffn_ratio={self.ffn_ratio} leaves the FFN of model.width={self.width} without units",
        )
        check(self.patch > 0, f"model.patch must be > 0, got {self.patch}")
        check(
            self.norm in ("layer", "none"),
            f"model.norm={self.norm} is not supported by the transformer (pre-norm); use model.norm=layer or none",
        )

    def check_input(self, input_shape: tuple[int, ...], dataset: str) -> None:
        token_count(input_shape, self.patch)  # the patch must tile the input


def token_count(input_shape: tuple[int, ...], patch: int) -> int:
    """Tokens of an input (C, L) or (C, H, W) cut into patches; DataError (one line) if the patch does not divide."""
    sizes = input_shape[1:]
    if any(s % patch for s in sizes):
        raise DataError(
            f"model.patch={patch} does not divide the input ({'x'.join(map(str, sizes))}); "
            f"choose a divisor of {math.gcd(*sizes)}"
        )
    return math.prod(s // patch for s in sizes)


def ffn_width(m: TransformerConfig, act: nn.Module) -> int:
    """d_ff: model.ffn_ratio x width, or with model.match_params=true: for a gated activation Shazeer's
    round(2/3 x ffn_ratio x width), which gives its three matrices the parameters of the ungated FFN's two; for an
    activation with parameters of its own, the d_ff whose FFN (its two matrices and the activation's parameters at
    that many units) is closest to the parameter-free FFN's (PReLU's and StarReLU's d_ff stay ffn_ratio x width)."""
    d_ff = round(m.ffn_ratio * m.width)
    if m.match_params and expansion(act) == 2:
        return round(2 / 3 * m.ffn_ratio * m.width)
    if not m.match_params or next(act.parameters(), None) is None:
        return d_ff

    def ffn_params(units: int) -> int:  # ffn_in's weight and bias, ffn_out's weight, the activation's own
        with torch.device("meta"):  # a copy told its units: no memory, no draw from the random generator
            sized = copy.deepcopy(act).to("meta")
            set_units(sized, units)
        return 2 * m.width * units + units + sum(p.numel() for p in sized.parameters())

    return closest_size(ffn_params, 2 * m.width * d_ff + d_ff, d_ff)


def norm_layer(norm: str, width: int) -> nn.Module:
    return nn.LayerNorm(width) if norm == "layer" else nn.Identity()


class SelfAttention(nn.Module):
    """Multi-head self-attention with q, k, v and output as four D x D Linears (nn.MultiheadAttention's maths)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (Projection(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(proj: nn.Linear) -> torch.Tensor:  # (B, T, D) -> (B, heads, T, D / heads)
            return proj(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q), split(self.k), split(self.v))
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """x + attn(norm(x)), then x + ffn_out(act(ffn_in(norm(x)))); ffn_in gives 2 d_ff for a gated activation."""

    def __init__(self, width: int, heads: int, d_ff: int, act: Callable[[], nn.Module], norm: str):
        super().__init__()
        self.norm_attn, self.norm_ffn = norm_layer(norm, width), norm_layer(norm, width)
        self.attn = SelfAttention(width, heads)
        self.act = act()
        set_units(self.act, d_ff)  # the FFN's features are the units
        self.ffn_in = nn.Linear(width, d_ff * expansion(self.act))
        self.ffn_out = Projection(d_ff, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))
        h = self.ffn_in(self.norm_ffn(x))  # (B, T, F)
        h = self.act(h.flatten(0, 1)).view(*x.shape[:2], -1)  # the activation's units on axis 1: the features
        return x + self.ffn_out(h)


class Transformer(nn.Module):
    """Patch tokens -> learned positions -> pre-norm blocks -> final norm -> mean over tokens -> linear head."""

    inputs = ("sequence", "image")
    matches_ffn = True  # model.match_params narrows d_ff (ffn_width), not model.width: build_model leaves width be

    @classmethod
    def from_config(
        cls, m: BaseModelConfig, input_shape: tuple[int, ...], num_classes: int, act: ActFactory
    ) -> Transformer:
        assert isinstance(m, TransformerConfig)  # the registry's Family pairs each network with its own config
        return cls(input_shape, num_classes, act, m.depth, m.width, m.heads, ffn_width(m, act()), m.patch, m.norm)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        act: ActFactory,
        depth: int = TransformerConfig.depth,
        width: int = TransformerConfig.width,
        heads: int = TransformerConfig.heads,
        d_ff: int = round(TransformerConfig.ffn_ratio * TransformerConfig.width),
        patch: int = TransformerConfig.patch,
        norm: str = TransformerConfig.norm,
    ):
        super().__init__()
        self.patch = patch
        tokens = token_count(input_shape, patch)
        self.embed = nn.Linear(input_shape[0] * patch ** (len(input_shape) - 1), width)
        self.position = nn.Parameter(torch.empty(1, tokens, width).normal_(0, 0.02))  # BERT's and ViT's scale
        self.hidden = nn.ModuleList(Block(width, heads, d_ff, act, norm) for _ in range(depth))
        self.norm = norm_layer(norm, width)
        self.head = nn.Linear(width, num_classes)
        self.d_ff = d_ff

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, L/P, C*P); (B, C, H, W) -> (B, HW/P^2, C*P*P), patches in row-major order."""
        p = self.patch
        if x.dim() == 3:
            b, c, n = x.shape
            return x.view(b, c, n // p, p).permute(0, 2, 1, 3).flatten(2)
        b, c, h, w = x.shape
        return x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).flatten(3).flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.tokens(x)) + self.position
        for block in self.hidden:
            x = block(x)
        return self.head(self.norm(x).mean(1))


FAMILY = Family(TransformerConfig, Transformer, stacked=True)
