"""MLP, CNN (1-D or 2-D by the input's shape), RNN (Elman/GRU/LSTM cells) and the transformer (harness/transformer.py),
each built from an activation factory.

Every model names its activation-bearing layers `hidden.0`, `hidden.1`, ... and its classifier `head`; a layer's
weights and the activation that follows them share that name, which the probes and results use.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.gated import expansion, hidden_width
from harness.transformer import Projection, Transformer

ActFactory = Callable[[], nn.Module]

# Normalisation after each hidden layer, by the layer's spatial dimensions (0: dense, 1: sequence, 2: image).
NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda dims, n: nn.Identity(),
    "batch": lambda dims, n: (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(n),
    "layer": lambda dims, n: nn.LayerNorm(n) if dims == 0 else nn.GroupNorm(1, n),
}


class Dense(nn.Module):
    """Linear -> optional norm -> activation; the Linear gives 2 x n_out features for a gated activation."""

    def __init__(self, n_in: int, n_out: int, act: ActFactory, norm: str):
        super().__init__()
        activation = act()
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
    def from_config(cls, m, input_shape: tuple[int, ...], num_classes: int, act: ActFactory) -> MLP:
        return cls(math.prod(input_shape), num_classes, act, m.depth, m.width, m.residual, m.norm)

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        act: ActFactory,
        depth: int = 2,
        width: int = 100,
        residual: bool = False,
        norm: str = "none",
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


class ConvBlock(nn.Module):
    """Strided convolution -> optional norm -> activation, 1-D or 2-D; 2 x c_out channels for a gated activation."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int, act: ActFactory, norm: str):
        super().__init__()
        activation = act()
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
    def from_config(cls, m, input_shape: tuple[int, ...], num_classes: int, act: ActFactory) -> CNN:
        return cls(input_shape, num_classes, act, m.depth, m.width, m.kernel_size, m.norm)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        act: ActFactory,
        depth: int = 3,
        width: int = 25,
        kernel_size: int = 5,
        norm: str = "none",
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


# ---- recurrent cells: PyTorch's equations, with `act` in place of tanh


class Cell(nn.Module):
    """Weights laid out as in nn.RNN/nn.GRU/nn.LSTM, so that their weights copy across one to one."""

    gates = 1

    def __init__(self, n_in: int, hidden: int, act: ActFactory):
        super().__init__()
        self.hidden_size = hidden
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden, n_in))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden))
        self.bias_hh = nn.Parameter(torch.empty(self.gates * hidden))
        self.act = act()
        bound = 1 / math.sqrt(hidden)
        for p in self.parameters(recurse=False):  # the cell's own, as nn.RNN's; not the activation's (PReLU)
            nn.init.uniform_(p, -bound, bound)

    def init_state(self, batch: int, ref: torch.Tensor):
        return ref.new_zeros(batch, self.hidden_size)

    @staticmethod
    def output(state) -> torch.Tensor:
        return state


class ElmanCell(Cell):
    gates = 1

    def step(self, xw: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.act(xw + F.linear(h, self.weight_hh, self.bias_hh))


class GRUCell(Cell):
    gates = 3

    def step(self, xw: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        x_r, x_z, x_n = xw.chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = self.act(x_n + r * h_n)
        return (1 - z) * n + z * h


class LSTMCell(Cell):
    gates = 4

    def __init__(self, n_in: int, hidden: int, act: ActFactory):
        super().__init__(n_in, hidden, act)
        self.act_cell = act()  # the second tanh, on the cell state; the probes watch `act`, the candidate

    def init_state(self, batch: int, ref: torch.Tensor):
        zeros = ref.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    @staticmethod
    def output(state) -> torch.Tensor:
        return state[0]

    def step(self, xw: torch.Tensor, state):
        h, c = state
        i, f, g, o = (xw + F.linear(h, self.weight_hh, self.bias_hh)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(g)
        return torch.sigmoid(o) * self.act_cell(c), c


CELLS = {"elman": ElmanCell, "gru": GRUCell, "lstm": LSTMCell}


class Recurrent(nn.Module):
    """One recurrent layer over (B, T, I), optionally bidirectional; can keep h_t for gradients through time."""

    def __init__(self, cell: str, n_in: int, hidden: int, act: ActFactory, bidirectional: bool):
        super().__init__()
        self.cells = nn.ModuleList(CELLS[cell](n_in, hidden, act) for _ in range(2 if bidirectional else 1))
        self.record = False  # set by the probes on logged steps
        self.states: list[torch.Tensor] = []  # h_t of each direction, (B, T, H) each, when recording

    def run(self, cell: Cell, x: torch.Tensor) -> torch.Tensor:
        xw = F.linear(x, cell.weight_ih, cell.bias_ih)  # (B, T, G*H): input projections for all steps at once
        state = cell.init_state(x.shape[0], x)
        outputs = []
        for t in range(x.shape[1]):
            state = cell.step(xw[:, t], state)
            outputs.append(cell.output(state))
        if self.record:
            for h in outputs:
                h.retain_grad()
            self.states.append(outputs)
        return torch.stack(outputs, dim=1)  # (B, T, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.states = []
        out = [self.run(self.cells[0], x)]
        if len(self.cells) == 2:
            out.append(self.run(self.cells[1], x.flip(1)).flip(1))
            if self.record:
                self.states[1] = self.states[1][::-1]  # index the backward direction's states by input time
        return torch.cat(out, dim=2)  # (B, T, H * directions)


class RNN(nn.Module):
    """Stacked recurrent layers; the head reads the outputs of all time steps, as in the MNIST-1D authors' GRU."""

    inputs = ("sequence", "image")

    @classmethod
    def from_config(cls, m, input_shape: tuple[int, ...], num_classes: int, act: ActFactory) -> RNN:
        return cls(input_shape, num_classes, act, m.depth, m.width, m.cell, m.bidirectional)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        act: ActFactory,
        depth: int = 1,
        width: int = 6,
        cell: str = "gru",
        bidirectional: bool = True,
    ):
        super().__init__()
        steps, features = self.sequence_shape(input_shape)
        directions = 2 if bidirectional else 1
        sizes = [features] + [width * directions] * depth
        self.hidden = nn.ModuleList(Recurrent(cell, a, width, act, bidirectional) for a in sizes[:-1])
        self.head = nn.Linear(steps * sizes[-1], num_classes)

    @staticmethod
    def sequence_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
        """(time steps, features): a sequence (C, L) runs over L; an image (C, H, W) is read row by row."""
        if len(input_shape) == 2:
            return input_shape[1], input_shape[0]
        return input_shape[1], input_shape[0] * input_shape[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.transpose(1, 2)  # (B, C, L) -> (B, L, C)
        else:
            x = x.permute(0, 2, 1, 3).flatten(2)  # (B, C, H, W) -> (B, H, C*W)
        for layer in self.hidden:
            x = layer(x)
        return self.head(x.flatten(1))


# ---------------------------------------------------------------- construction and initialisation

# Activations that torch.nn.init.calculate_gain knows; the others use the ReLU gain.
# A gated unit's name stands for its gate's gain (its value half always gets the identity's; see initialise).
GAIN_NAMES = {
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
    for i, block in enumerate(model.hidden):
        layers[f"hidden.{i}"] = [
            p for m in weight_layers(block) for n, p in m.named_parameters(recurse=False) if n.startswith("weight")
        ]
    layers["head"] = [model.head.weight]
    return layers


def activation_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The activation module of each hidden layer (for an RNN, its first cell's; every cell shares the name)."""
    acts = {}
    for i, block in enumerate(model.hidden):
        acts[f"hidden.{i}"] = [c.act for c in block.cells] if isinstance(block, Recurrent) else [block.act]
    return acts


def _fans(w: torch.Tensor) -> tuple[int, int]:
    fan_in = w[0].numel()
    return fan_in, w.shape[0] * w[0][0].numel() if w.dim() > 2 else w.shape[0]


# model.init: how each hidden weight matrix is redrawn (in place, with the activation's gain); None keeps PyTorch's.
INITS: dict[str, Callable[[torch.Tensor, float], None] | None] = {
    "default": None,
    "kaiming": lambda w, gain: w.normal_(0, gain / math.sqrt(_fans(w)[0])),
    "xavier": lambda w, gain: w.normal_(0, gain * math.sqrt(2.0 / sum(_fans(w)))),
    "lecun": lambda w, gain: w.normal_(0, 1 / math.sqrt(_fans(w)[0])),
    "orthogonal": lambda w, gain: nn.init.orthogonal_(w, gain),
}


def initialise(model: nn.Module, scheme: str, gain: float) -> None:
    """Re-initialise hidden weight matrices (biases to zero); `default` keeps PyTorch's own.

    A gated layer's weight is drawn as two matrices: the rows of its value half u as for the identity (gain 1), the
    rows of its gate half g with the activation's gain, each half with its own n outputs as fan-out. A Projection
    (the transformer's q, k, v, attention output and FFN output) feeds no activation: gain 1, one matrix.
    """
    draw = INITS[scheme]
    if draw is None:
        return
    gated = {name: expansion(acts[0]) == 2 for name, acts in activation_layers(model).items()}
    for is_gated, block in zip(gated.values(), model.hidden):
        for module in weight_layers(block):
            plain = isinstance(module, Projection)
            for w in (p for n, p in module.named_parameters(recurse=False) if n.startswith("weight")):
                parts = zip(w.detach().chunk(2, dim=0), (1.0, gain)) if is_gated and not plain else [(w, gain)]
                for part, part_gain in parts:
                    with torch.no_grad():
                        draw(part, 1.0 if plain else part_gain)
    for module in weight_layers(model.hidden):  # not a norm's shift, not an activation's own parameters
        for n, p in module.named_parameters(recurse=False):
            if n.startswith("bias"):
                nn.init.zeros_(p)


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "rnn": RNN, "transformer": Transformer}


def build_model(
    model_cfg, act: ActFactory, input_shape: tuple[int, ...], num_classes: int, gain: float = 1.0
) -> nn.Module:
    """Build the configured model for an input shape (at the matched width if asked), then apply model.init.

    The width it was built with is `model.width_used`.
    """

    def construct(m, act: ActFactory) -> nn.Module:
        return MODELS[m.name].from_config(m, input_shape, num_classes, act)

    own = getattr(MODELS[model_cfg.name], "matches_ffn", False)  # the transformer matches in its FFN, at d_ff
    width = model_cfg.width if own else hidden_width(model_cfg, act, construct)
    model = construct(dataclasses.replace(model_cfg, width=width), act)
    model.width_used = width
    initialise(model, model_cfg.init, gain)
    return model
