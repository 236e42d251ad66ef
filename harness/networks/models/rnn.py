"""The RNN family (model=rnn): stacked recurrent layers of Elman, GRU or LSTM cells, optionally bidirectional; the
head reads the outputs of every time step, as in the MNIST-1D authors' GRU.

The cells are PyTorch's equations with the activation in place of tanh: in the recurrence (Elman) or the candidate
state (GRU, LSTM; the LSTM's tanh on the cell state too); the gates stay sigmoid. Its defaults are the MNIST-1D
authors' GRU: one bidirectional layer of 6 hidden units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from harness.common.errors import one_of
from harness.networks.gated import set_units
from harness.networks.models.base import ActFactory, BaseModelConfig, Family


@dataclass(kw_only=True)
class RNNConfig(BaseModelConfig):
    name: str = field(default="rnn", init=False)
    depth: int = 1
    width: int = 6  # hidden units per direction
    cell: str = "gru"  # elman, gru or lstm (CELLS)
    bidirectional: bool = True  # a second direction reads the sequence backwards; the head reads both

    gated_refusal = "cannot replace tanh in the rnn's recurrence, whose state keeps its size"

    def check(self) -> None:
        super().check()
        one_of("model.cell", self.cell, CELLS)


# ---- recurrent cells: PyTorch's equations, with `act` in place of tanh

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # a cell's state: h, or the LSTM's (h, c)


class Cell(nn.Module):
    """Weights laid out as in nn.RNN/nn.GRU/nn.LSTM, so that their weights copy across one to one."""

    gates = 1

    def __init__(self, n_in: int, hidden: int, act: ActFactory) -> None:
        super().__init__()
        self.hidden_size = hidden
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden, n_in))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden))
        self.bias_hh = nn.Parameter(torch.empty(self.gates * hidden))
        self.act = act()
        set_units(self.act, hidden)  # a per-unit activation: one set of parameters per hidden unit
        bound = 1 / math.sqrt(hidden)
        for p in self.parameters(recurse=False):  # the cell's own, as nn.RNN's; not the activation's (PReLU)
            nn.init.uniform_(p, -bound, bound)

    def init_state(self, batch: int, ref: torch.Tensor) -> State:
        return ref.new_zeros(batch, self.hidden_size)

    @staticmethod
    def output(state: State) -> torch.Tensor:
        assert isinstance(state, torch.Tensor)  # h itself: only the LSTM's state is a pair, and it has its own
        return state

    def step(self, xw: torch.Tensor, state: State) -> State:
        """The next state from this step's input projection xw and the previous state (each cell its own)."""
        raise NotImplementedError


class ElmanCell(Cell):
    gates = 1

    def step(self, xw: torch.Tensor, h: State) -> torch.Tensor:
        assert isinstance(h, torch.Tensor)  # init_state's h
        return self.act(xw + F.linear(h, self.weight_hh, self.bias_hh))


class GRUCell(Cell):
    gates = 3

    def step(self, xw: torch.Tensor, h: State) -> torch.Tensor:
        assert isinstance(h, torch.Tensor)  # init_state's h
        x_r, x_z, x_n = xw.chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = self.act(x_n + r * h_n)
        return (1 - z) * n + z * h


class LSTMCell(Cell):
    gates = 4

    def __init__(self, n_in: int, hidden: int, act: ActFactory) -> None:
        super().__init__(n_in, hidden, act)
        self.act_cell = act()  # the second tanh, on the cell state; the probes watch `act`, the candidate
        set_units(self.act_cell, hidden)

    def init_state(self, batch: int, ref: torch.Tensor) -> State:
        zeros = ref.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    @staticmethod
    def output(state: State) -> torch.Tensor:
        return state[0]

    def step(self, xw: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, g, o = (xw + F.linear(h, self.weight_hh, self.bias_hh)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(g)
        return torch.sigmoid(o) * self.act_cell(c), c


CELLS = {"elman": ElmanCell, "gru": GRUCell, "lstm": LSTMCell}


class Recurrent(nn.Module):
    """One recurrent layer over (B, T, I), optionally bidirectional; can keep h_t for gradients through time."""

    def __init__(self, cell: str, n_in: int, hidden: int, act: ActFactory, bidirectional: bool) -> None:
        super().__init__()
        self.cells = nn.ModuleList(CELLS[cell](n_in, hidden, act) for _ in range(2 if bidirectional else 1))
        self.record = False  # set by the probes on logged steps
        self.states: list[list[torch.Tensor]] = []  # when recording, per direction its h_t: (B, H) for each t

    def cell(self, direction: int) -> Cell:
        """The cell of one direction (0 forward, 1 backward)."""
        cell = self.cells[direction]
        assert isinstance(cell, Cell)  # cells holds nothing else
        return cell

    def run(self, cell: Cell, x: torch.Tensor) -> torch.Tensor:
        xw = F.linear(x, cell.weight_ih, cell.bias_ih)  # (B, T, G*H): input projections for all steps at once
        state = cell.init_state(x.shape[0], x)
        outputs: list[torch.Tensor] = []
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
        out = [self.run(self.cell(0), x)]
        if len(self.cells) == 2:
            out.append(self.run(self.cell(1), x.flip(1)).flip(1))
            if self.record:
                self.states[1] = self.states[1][::-1]  # index the backward direction's states by input time
        return torch.cat(out, dim=2)  # (B, T, H * directions)


class RNN(nn.Module):
    """Stacked recurrent layers; the head reads the outputs of all time steps, as in the MNIST-1D authors' GRU."""

    inputs = ("sequence", "image")

    @classmethod
    def from_config(cls, m: BaseModelConfig, input_shape: tuple[int, ...], num_classes: int, act: ActFactory) -> RNN:
        assert isinstance(m, RNNConfig)  # the registry's Family pairs each network with its own config
        return cls(input_shape, num_classes, act, m.depth, m.width, m.cell, m.bidirectional)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        act: ActFactory,
        depth: int = RNNConfig.depth,
        width: int = RNNConfig.width,
        cell: str = RNNConfig.cell,
        bidirectional: bool = RNNConfig.bidirectional,
    ) -> None:
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


FAMILY = Family(RNNConfig, RNN, stacked=True)
