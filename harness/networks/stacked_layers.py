"""The stacked forwards of harness.networks.stacked: K members of one architecture computed at once from one "shadow"
module tree whose every parameter and buffer holds all K members' values on a leading member axis (K, ...).

Batched matmuls for the MLP, the RNN cells and the transformer, one grouped convolution for the CNN. Measured
here (one thread): bmm for the MLP and the cells, groups=K for the CNN, were the fastest stackings (torch.func.vmap
was slower). The members never mix: softmax runs over one member's units, norms per member, PReLU per member.

Layouts: MLP and RNN (K, B, ...) with the member axis first; CNN (B, K*C, ...) channels member-major; transformer
(K, B*T, D), each member's tokens flattened as its own FFN sees them, attention on (K*B, heads, T, D/heads).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.networks import modern
from harness.networks.gated import GatedActivation, StarReLU
from harness.networks.models import (
    CNN,
    MLP,
    RNN,
    Cell,
    ConvBlock,
    Dense,
    ElmanCell,
    GRUCell,
    LSTMCell,
    Recurrent,
    Transformer,
)
from harness.networks.models.rnn import State
from harness.networks.models.transformer import Block, SelfAttention
from harness.networks.modern import shaped
from harness.networks.spline import SplineActivation, stacked_spline

# With record, the RNN's h_t: per recurrent layer, per direction, a list over input time of (K, B, H) (OneModel's
# (B, H)) with retained gradients; empty for the other families and without record.
States = list[list[list[torch.Tensor]]]
Forward = Callable[[nn.Module, torch.Tensor, bool], tuple[torch.Tensor, States]]  # (shadow, x, record)


def bmm_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(K, B, I) @ (K, O, I)^T + (K, O): bmm, then the bias. Not baddbmm, whose rounding with one input feature
    (the MNIST-1D RNN's) changes with K. Under autocast the bias is added in the product's precision, as
    nn.Linear's addmm adds it (else bf16 would turn back into float32)."""
    product = torch.bmm(x, weight.transpose(1, 2))
    return product + bias.unsqueeze(1).to(product.dtype)


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """(K, B, I) -> (K, B, O): each member's own nn.Linear, from the stacked weight (K, O, I) and bias (K, O)."""
    return bmm_linear(x, layer.weight, layer.bias)


def prelu(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    """F.prelu: x if x > 0 else w * x, each member's own slope(s)."""
    assert isinstance(act, nn.PReLU)  # STACKED_ACTIVATIONS' key
    return torch.where(z > 0, z, shaped(act.weight, z, kdim, cdim) * z)


def star_relu(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    assert isinstance(act, StarReLU)  # STACKED_ACTIVATIONS' key
    return shaped(act.scale, z, kdim, cdim) * F.relu(z).square() + shaped(act.bias, z, kdim, cdim)


def gated(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    """[u, g] halves along one member's units, as GatedActivation.split takes them."""
    assert isinstance(act, GatedActivation)  # STACKED_ACTIVATIONS' key
    u, g = z.chunk(2, dim=cdim)
    return act.value(u) * act.gate(g)


# The stacked form of an activation module: (z, the shadow's module, member axis, unit axis) -> its output.
StackedActivation = Callable[[torch.Tensor, nn.Module, int, int], torch.Tensor]

# Activations that are not elementwise or carry parameters, by type; every other built-in is elementwise and
# parameter-free, applied to the whole stack at once (RReLU then draws its own noise: equal in law, not in bits).
STACKED_ACTIVATIONS: dict[type[nn.Module], StackedActivation] = {
    nn.Softmax: lambda z, act, kdim, cdim: z.softmax(cdim),
    nn.PReLU: prelu,
    StarReLU: star_relu,
    GatedActivation: gated,
    **modern.STACKED_FORMS,
    SplineActivation: stacked_spline,
}


def apply_activation(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    """The members' activation (the shadow's, parameters stacked) on z with member axis kdim and unit axis cdim."""
    for kind, apply in STACKED_ACTIVATIONS.items():
        if isinstance(act, kind):
            return apply(z, act, kdim, cdim)
    return act(z)


def activation(z: torch.Tensor, act: nn.Module, kdim: int, cdim: int) -> torch.Tensor:
    """apply_activation, shown to the unit probe's watch while one is set on the module
    (harness.networks.stacked_probes: the stacked forward calls no module hooks)."""
    out = apply_activation(z, act, kdim, cdim)
    watch = act.__dict__.get("stacked_watch")
    if watch is not None:
        watch(z, out, kdim, cdim)
    return out


def why_not_stacked(act: nn.Module) -> str | None:
    """Why a group cannot stack this activation exactly (it then runs one job per run), or None if it can."""
    if isinstance(act, (nn.Softmax, GatedActivation, modern.PolyNorm)) and act.dim != 1:
        return f"{type(act).__name__} over dim {act.dim}, not the units"
    if any(isinstance(act, kind) for kind in STACKED_ACTIVATIONS):
        return None
    builtin = type(act).__module__.startswith(("torch.nn", "harness."))
    if not builtin and not getattr(act, "elementwise", False):
        return f"custom activation {type(act).__name__} not declared elementwise (set its class's elementwise = True)"
    if next(act.parameters(), None) is not None:
        return f"{type(act).__name__} has parameters of its own"
    return None


def flat(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.flatten()


def batch_norm(x: torch.Tensor, norm: nn.BatchNorm1d | nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm over (B, K*C, ...) channels with the stacked (K, C) statistics: F.batch_norm updates their flat
    views in place, so each member's running statistics (views into the stack) move as its own module's would."""
    momentum = norm.momentum
    if norm.training:
        assert norm.num_batches_tracked is not None  # NORMS' BatchNorms track their running statistics
        with torch.no_grad():
            norm.num_batches_tracked += 1  # (K,): every member counts the batch
        if momentum is None:  # the cumulative average; the members step together, so member 0's count is theirs
            momentum = 1.0 / float(norm.num_batches_tracked[0])
    assert momentum is not None  # F.batch_norm refuses None in eval mode too; NORMS' BatchNorms have 0.1
    return F.batch_norm(
        x,
        flat(norm.running_mean),
        flat(norm.running_var),
        flat(norm.weight),
        flat(norm.bias),
        norm.training,
        momentum,
        norm.eps,
    )


def dense_norm(z: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """(K, B, C): nothing, LayerNorm per member, or BatchNorm1d per member."""
    if isinstance(norm, nn.LayerNorm):
        z = F.layer_norm(z, norm.normalized_shape, eps=norm.eps)
        return z * norm.weight.unsqueeze(1) + norm.bias.unsqueeze(1)
    if isinstance(norm, nn.BatchNorm1d):
        k, b, c = z.shape
        return batch_norm(z.transpose(0, 1).reshape(b, k * c), norm).view(b, k, c).transpose(0, 1)
    return z


def conv_norm(z: torch.Tensor, norm: nn.Module, k: int) -> torch.Tensor:
    """(B, K*C, ...): nothing, GroupNorm per member (K times its groups), or BatchNorm per member."""
    if isinstance(norm, nn.GroupNorm):
        return F.group_norm(z, k * norm.num_groups, flat(norm.weight), flat(norm.bias), norm.eps)
    if isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return batch_norm(z, norm)
    return z


def mlp_forward(m: nn.Module, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, States]:
    assert isinstance(m, MLP)  # FORWARDS' key
    x = x.flatten(2)  # (K, B, D)
    for i, block in enumerate(m.hidden):
        assert isinstance(block, Dense)
        h = activation(dense_norm(linear(x, block.linear), block.norm), block.act, 0, 2)
        x = x + h if m.residual and i > 0 else h
    return linear(x, m.head), []


def cnn_forward(m: nn.Module, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, States]:
    assert isinstance(m, CNN)  # FORWARDS' key
    k = x.shape[0]
    x = x.transpose(0, 1).flatten(1, 2)  # (B, K*C_in, ...): each member's channels in turn
    for block in m.hidden:
        assert isinstance(block, ConvBlock)
        conv = block.conv
        assert conv.bias is not None  # ConvBlock's convolutions have one
        step = F.conv1d if isinstance(conv, nn.Conv1d) else F.conv2d
        z = step(
            x, conv.weight.flatten(0, 1), conv.bias.flatten(), conv.stride, conv.padding, conv.dilation, groups=k
        )  # (K, Co, Ci, ...) -> (K*Co, Ci, ...): member i's filters are group i's
        z = conv_norm(z, block.norm, k)
        members = z.view(z.shape[0], k, -1, *z.shape[2:])  # (B, K, C, ...)
        x = activation(members, block.act, 1, 2).flatten(1, 2)
    features = x.view(x.shape[0], k, -1).transpose(0, 1)  # (K, B, C*L): each member's flatten(1)
    return linear(features, m.head), []


# ---- recurrent cells: the equations of harness.networks.models.rnn's cells on (K, B, H), with each member's activation


def elman_step(xw: torch.Tensor, hw: torch.Tensor, h: State, cell: Cell) -> State:
    return activation(xw + hw, cell.act, 0, 2)


def gru_step(xw: torch.Tensor, hw: torch.Tensor, h: State, cell: Cell) -> State:
    assert isinstance(h, torch.Tensor)  # run_cells' h
    x_r, x_z, x_n = xw.chunk(3, dim=2)
    h_r, h_z, h_n = hw.chunk(3, dim=2)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = activation(x_n + r * h_n, cell.act, 0, 2)
    return (1 - z) * n + z * h


def lstm_step(xw: torch.Tensor, hw: torch.Tensor, state: State, cell: Cell) -> State:
    assert isinstance(cell, LSTMCell)  # STEPS' key
    h, c = state
    i, f, g, o = (xw + hw).chunk(4, dim=2)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * activation(g, cell.act, 0, 2)
    return torch.sigmoid(o) * activation(c, cell.act_cell, 0, 2), c


# (this step's input projection, hw, the state, the shadow's cell) -> the next state, by cell type
STEPS: dict[type[Cell], Callable[[torch.Tensor, torch.Tensor, State, Cell], State]] = {
    ElmanCell: elman_step,
    GRUCell: gru_step,
    LSTMCell: lstm_step,
}


def run_cells(cell: Cell, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One direction of one recurrent layer over (K, B, T, I) -> (K, B, T, H), and its h_t if recording."""
    k, b, t, n_in = x.shape
    step, lstm = STEPS[type(cell)], isinstance(cell, LSTMCell)
    # the input projections (K, B, T, G*H) as (T, K, B, G*H), one contiguous slice per step; unbind's backward is
    # one stack, where indexing each step would make a full-size zero gradient per step (at K=16 that was most of
    # the backward's time)
    xw = (
        bmm_linear(x.reshape(k, b * t, n_in), cell.weight_ih, cell.bias_ih)
        .view(k, b, t, -1)
        .permute(2, 0, 1, 3)
        .contiguous()
        .unbind(0)
    )
    h = x.new_zeros(k, b, cell.hidden_size)
    state: State = (h, h) if lstm else h
    outputs = []
    for i in range(t):
        hidden = state[0] if isinstance(state, tuple) else state  # the LSTM's (h, c)
        state = step(xw[i], bmm_linear(hidden, cell.weight_hh, cell.bias_hh), state, cell)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    if record:
        for h in outputs:
            h.retain_grad()
    return torch.stack(outputs).permute(1, 2, 0, 3), outputs  # (K, B, T, H); stacked on dim 0: cheap backward


def rnn_forward(m: nn.Module, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, States]:
    """Logits, and per layer the h_t of each direction (indexed by input time) when recording."""
    assert isinstance(m, RNN)  # FORWARDS' key
    x = x.transpose(2, 3) if x.dim() == 4 else x.permute(0, 1, 3, 2, 4).flatten(3)  # (K, B, T, features)
    states = []
    for layer in m.hidden:
        assert isinstance(layer, Recurrent)
        out, forward_h = run_cells(layer.cell(0), x, record)
        outs, directions = [out], [forward_h]
        if len(layer.cells) == 2:
            out, backward_h = run_cells(layer.cell(1), x.flip(2), record)
            outs.append(out.flip(2))
            directions.append(backward_h[::-1])
        x = torch.cat(outs, dim=3)  # (K, B, T, H * directions)
        states.append(directions)
    return linear(x.flatten(2), m.head), states


def attention(x: torch.Tensor, attn: SelfAttention, batch: int) -> torch.Tensor:
    """(K, B*T, D) -> (K, B*T, D): each member's SelfAttention, all members' heads in one attention call."""
    k, n, d = x.shape
    t, heads = n // batch, attn.heads

    def split(proj: nn.Linear) -> torch.Tensor:  # (K, B*T, D) -> (K*B, heads, T, D / heads)
        return linear(x, proj).view(k * batch, t, heads, d // heads).transpose(1, 2)

    y = F.scaled_dot_product_attention(split(attn.q), split(attn.k), split(attn.v))
    return linear(y.transpose(1, 2).reshape(k, n, d), attn.out)


def transformer_forward(m: nn.Module, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, States]:
    assert isinstance(m, Transformer)  # FORWARDS' key
    k, b = x.shape[:2]
    tokens = m.tokens(x.flatten(0, 1))  # tokens() has no parameters: one call for all members, (K*B, T, C*P...)
    t = tokens.shape[1]
    x = linear(tokens.view(k, b * t, -1), m.embed).view(k, b, t, -1)
    x = (x + m.position).flatten(1, 2)  # (K, B*T, D); the positions (K, 1, T, D)
    for block in m.hidden:
        assert isinstance(block, Block)
        x = x + attention(dense_norm(x, block.norm_attn), block.attn, b)
        z = linear(dense_norm(x, block.norm_ffn), block.ffn_in)
        h = activation(z, block.act, 0, 2)  # units on axis 2: one member's FFN features
        x = x + linear(h, block.ffn_out)
    pooled = dense_norm(x, m.norm).view(k, b, t, -1).mean(2)
    return linear(pooled, m.head), []


# Keyed by network class; a family whose network is here declares it (harness.networks.models.base.Family.stacked), so
# that the sweeper groups its runs (tests/test_model_registry.py holds the two equal).
FORWARDS: dict[type[nn.Module], Forward] = {
    MLP: mlp_forward,
    CNN: cnn_forward,
    RNN: rnn_forward,
    Transformer: transformer_forward,
}
