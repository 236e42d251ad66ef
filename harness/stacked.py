"""The forward pass of K models of one architecture as one stacked computation, for training a group of runs.

Each member keeps its own one-job model (its own leaf parameters, built exactly as its one-job run builds it);
the forward stacks the members' parameters on every call (cheap) and computes all K members at once: batched
matmuls for the MLP and the RNN cells, one grouped convolution for the CNN. Gradients land on each member's own
parameters, so the members' own optimizers, clipping and probes work on them unchanged. Measured here (one
thread): bmm for the MLP and the cells, groups=K for the CNN, were the fastest stackings (torch.func.vmap was
slower). The members never mix: softmax runs over one member's units, norms per member, PReLU per member.

Layouts: MLP and RNN (K, B, ...) with the member axis first; CNN (B, K*C, ...) channels member-major; transformer
(K, B*T, D), each member's tokens flattened as its own FFN sees them, attention on (K*B, heads, T, D/heads).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.gated import GatedActivation, StarReLU
from harness.models import CNN, MLP, RNN, ElmanCell, GRUCell, LSTMCell
from harness.transformer import Transformer


def stack(modules: list[nn.Module], name: str) -> torch.Tensor:
    return torch.stack([getattr(m, name) for m in modules])


def linear(x: torch.Tensor, layers: list[nn.Linear]) -> torch.Tensor:
    """(K, B, I) -> (K, B, O): each member's own nn.Linear. Not baddbmm: with one input feature (the MNIST-1D
    RNN's) its K=1 path rounds differently from K>1, and a member's float32 results must not depend on K."""
    return torch.bmm(x, stack(layers, "weight").transpose(1, 2)) + stack(layers, "bias").unsqueeze(1)


def shaped(acts: list[nn.Module], name: str, z: torch.Tensor, kdim: int, cdim: int) -> torch.Tensor:
    """The members' parameter `name` ((K, 1) or (K, units)) shaped to broadcast over z."""
    w = stack(acts, name)
    shape = [1] * z.dim()
    shape[kdim], shape[cdim] = w.shape
    return w.view(shape)


def prelu(z, acts, kdim, cdim):  # F.prelu: x if x > 0 else w * x, each member's own slope(s)
    return torch.where(z > 0, z, shaped(acts, "weight", z, kdim, cdim) * z)


def star_relu(z, acts, kdim, cdim):
    return shaped(acts, "scale", z, kdim, cdim) * F.relu(z).square() + shaped(acts, "bias", z, kdim, cdim)


def gated(z, acts, kdim, cdim):  # [u, g] halves along one member's units, as GatedActivation.split takes them
    u, g = z.chunk(2, dim=cdim)
    return u * acts[0].gate(g)


# Activations that are not elementwise or carry parameters, by type; every other built-in is elementwise and
# parameter-free, applied to the whole stack at once (RReLU then draws its own noise: equal in law, not in bits).
STACKED_ACTIVATIONS = {nn.Softmax: lambda z, acts, kdim, cdim: z.softmax(cdim), nn.PReLU: prelu,
                       StarReLU: star_relu, GatedActivation: gated}


def activation(z: torch.Tensor, acts: list[nn.Module], kdim: int, cdim: int) -> torch.Tensor:
    """The members' activation on a stacked tensor with the member axis kdim and the unit axis cdim."""
    for kind, apply in STACKED_ACTIVATIONS.items():
        if isinstance(acts[0], kind):
            return apply(z, acts, kdim, cdim)
    return acts[0](z)


def why_not_stacked(act: nn.Module) -> str | None:
    """Why a group cannot stack this activation exactly (it then runs one job per run), or None if it can."""
    if isinstance(act, (nn.Softmax, GatedActivation)) and act.dim != 1:
        return f"{type(act).__name__} over dim {act.dim}, not the units"
    if any(isinstance(act, kind) for kind in STACKED_ACTIVATIONS):
        return None
    builtin = type(act).__module__.startswith(("torch.nn", "harness."))
    if not builtin and not getattr(act, "elementwise", False):
        return f"custom activation {type(act).__name__} not declared elementwise (set its class's elementwise = True)"
    if next(act.parameters(), None) is not None:
        return f"{type(act).__name__} has parameters of its own"
    return None


def batch_norm(x: torch.Tensor, norms: list[nn.Module]) -> torch.Tensor:
    """BatchNorm over (B, K*C, ...) channels; each member's running statistics updated as its own module would."""
    n0 = norms[0]
    mean, var = torch.cat([n.running_mean for n in norms]), torch.cat([n.running_var for n in norms])
    out = F.batch_norm(x, mean, var, torch.cat([n.weight for n in norms]), torch.cat([n.bias for n in norms]),
                       True, n0.momentum, n0.eps)
    with torch.no_grad():
        for n, m, v in zip(norms, mean.chunk(len(norms)), var.chunk(len(norms))):
            n.running_mean.copy_(m)
            n.running_var.copy_(v)
            n.num_batches_tracked += 1
    return out


def dense_norm(z: torch.Tensor, norms: list[nn.Module]) -> torch.Tensor:
    """(K, B, C): nothing, LayerNorm per member, or BatchNorm1d per member."""
    n0 = norms[0]
    if isinstance(n0, nn.LayerNorm):
        z = F.layer_norm(z, n0.normalized_shape, eps=n0.eps)
        return z * stack(norms, "weight").unsqueeze(1) + stack(norms, "bias").unsqueeze(1)
    if isinstance(n0, nn.BatchNorm1d):
        k, b, c = z.shape
        flat = batch_norm(z.transpose(0, 1).reshape(b, k * c), norms)
        return flat.view(b, k, c).transpose(0, 1)
    return z


def conv_norm(z: torch.Tensor, norms: list[nn.Module]) -> torch.Tensor:
    """(B, K*C, ...): nothing, GroupNorm(1, C) per member (K groups), or BatchNorm per member."""
    n0 = norms[0]
    if isinstance(n0, nn.GroupNorm):
        return F.group_norm(z, len(norms), torch.cat([n.weight for n in norms]),
                            torch.cat([n.bias for n in norms]), n0.eps)
    if isinstance(n0, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return batch_norm(z, norms)
    return z


def mlp_forward(models: list[MLP], xs: list[torch.Tensor], record: bool) -> tuple[torch.Tensor, list]:
    x = torch.stack([x.flatten(1) for x in xs])  # (K, B, D)
    for i in range(len(models[0].hidden)):
        blocks = [m.hidden[i] for m in models]
        z = dense_norm(linear(x, [b.linear for b in blocks]), [b.norm for b in blocks])
        h = activation(z, [b.act for b in blocks], 0, 2)
        x = x + h if models[0].residual and i > 0 else h
    return linear(x, [m.head for m in models]), []


def cnn_forward(models: list[CNN], xs: list[torch.Tensor], record: bool) -> tuple[torch.Tensor, list]:
    k = len(models)
    x = torch.cat(xs, dim=1)  # (B, K*C_in, ...)
    for i in range(len(models[0].hidden)):
        blocks = [m.hidden[i] for m in models]
        conv = blocks[0].conv
        step = F.conv1d if isinstance(conv, nn.Conv1d) else F.conv2d
        z = step(x, torch.cat([b.conv.weight for b in blocks]), torch.cat([b.conv.bias for b in blocks]),
                 conv.stride, conv.padding, conv.dilation, groups=k)
        z = conv_norm(z, [b.norm for b in blocks])
        members = z.view(z.shape[0], k, -1, *z.shape[2:])  # (B, K, C, ...)
        x = activation(members, [b.act for b in blocks], 1, 2).flatten(1, 2)
    features = x.view(x.shape[0], k, -1).transpose(0, 1)  # (K, B, C*L): each member's flatten(1)
    return linear(features, [m.head for m in models]), []


# ---- recurrent cells: the equations of harness.models' cells on (K, B, H), with each member's activation


def elman_step(xw, hw, h, cells):
    return activation(xw + hw, [c.act for c in cells], 0, 2)


def gru_step(xw, hw, h, cells):
    x_r, x_z, x_n = xw.chunk(3, dim=2)
    h_r, h_z, h_n = hw.chunk(3, dim=2)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = activation(x_n + r * h_n, [c.act for c in cells], 0, 2)
    return (1 - z) * n + z * h


def lstm_step(xw, hw, state, cells):
    h, c = state
    i, f, g, o = (xw + hw).chunk(4, dim=2)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * activation(g, [cell.act for cell in cells], 0, 2)
    return torch.sigmoid(o) * activation(c, [cell.act_cell for cell in cells], 0, 2), c


STEPS = {ElmanCell: elman_step, GRUCell: gru_step, LSTMCell: lstm_step}


def run_cells(cells: list, x: torch.Tensor, record: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One direction of one recurrent layer over (K, B, T, I) -> (K, B, T, H), and its h_t if recording."""
    k, b, t, n_in = x.shape
    step, lstm = STEPS[type(cells[0])], isinstance(cells[0], LSTMCell)
    xw = linear(x.reshape(k, b * t, n_in), [_InputProjection(c) for c in cells]).view(k, b, t, -1)
    # (T, K, B, G*H), one contiguous slice per step; unbind's backward is one stack, where indexing each step
    # would make a full-size zero gradient per step (at K=16 that was most of the backward's time)
    xw = xw.permute(2, 0, 1, 3).contiguous().unbind(0)
    w_hh, b_hh = stack(cells, "weight_hh").transpose(1, 2), stack(cells, "bias_hh").unsqueeze(1)
    h = x.new_zeros(k, b, cells[0].hidden_size)
    state = (h, h) if lstm else h
    outputs = []
    for i in range(t):
        hidden = state[0] if lstm else state
        state = step(xw[i], torch.baddbmm(b_hh, hidden, w_hh), state, cells)
        outputs.append(state[0] if lstm else state)
    if record:
        for h in outputs:
            h.retain_grad()
    return torch.stack(outputs).permute(1, 2, 0, 3), outputs  # (K, B, T, H); stacked on dim 0: cheap backward


class _InputProjection:
    """A cell's input weights under nn.Linear's names, for linear()."""

    def __init__(self, cell):
        self.weight, self.bias = cell.weight_ih, cell.bias_ih


def rnn_forward(models: list[RNN], xs: list[torch.Tensor], record: bool) -> tuple[torch.Tensor, list]:
    """Logits, and per layer the h_t of each direction (indexed by input time) when recording."""
    x = torch.stack([x.transpose(1, 2) if x.dim() == 3 else x.permute(0, 2, 1, 3).flatten(2) for x in xs])
    states = []
    for i in range(len(models[0].hidden)):
        layers = [m.hidden[i] for m in models]
        out, forward_h = run_cells([layer.cells[0] for layer in layers], x, record)
        outs, directions = [out], [forward_h]
        if len(layers[0].cells) == 2:
            out, backward_h = run_cells([layer.cells[1] for layer in layers], x.flip(2), record)
            outs.append(out.flip(2))
            directions.append(backward_h[::-1])
        x = torch.cat(outs, dim=3)  # (K, B, T, H * directions)
        states.append(directions)
    return linear(x.flatten(2), [m.head for m in models]), states


def attention(x: torch.Tensor, attns: list, batch: int) -> torch.Tensor:
    """(K, B*T, D) -> (K, B*T, D): each member's SelfAttention, all members' heads in one attention call."""
    k, n, d = x.shape
    t, heads = n // batch, attns[0].heads

    def split(name: str) -> torch.Tensor:  # (K, B*T, D) -> (K*B, heads, T, D / heads)
        return linear(x, [getattr(a, name) for a in attns]).view(k * batch, t, heads, d // heads).transpose(1, 2)

    y = F.scaled_dot_product_attention(split("q"), split("k"), split("v"))
    return linear(y.transpose(1, 2).reshape(k, n, d), [a.out for a in attns])


def transformer_forward(models: list[Transformer], xs: list[torch.Tensor], record: bool) -> tuple[torch.Tensor, list]:
    tokens = torch.stack([m.tokens(x) for m, x in zip(models, xs)])  # (K, B, T, C*P...)
    k, b, t, _ = tokens.shape
    x = linear(tokens.flatten(1, 2), [m.embed for m in models]).view(k, b, t, -1)
    x = (x + stack(models, "position")).flatten(1, 2)  # (K, B*T, D); each position (1, T, D)
    for i in range(len(models[0].hidden)):
        blocks = [m.hidden[i] for m in models]
        x = x + attention(dense_norm(x, [blk.norm_attn for blk in blocks]), [blk.attn for blk in blocks], b)
        z = linear(dense_norm(x, [blk.norm_ffn for blk in blocks]), [blk.ffn_in for blk in blocks])
        h = activation(z, [blk.act for blk in blocks], 0, 2)  # units on axis 2: one member's FFN features
        x = x + linear(h, [blk.ffn_out for blk in blocks])
    pooled = dense_norm(x, [m.norm for m in models]).view(k, b, t, -1).mean(2)
    return linear(pooled, [m.head for m in models]), []


FORWARDS = {MLP: mlp_forward, CNN: cnn_forward, RNN: rnn_forward, Transformer: transformer_forward}


def forward(models: list[nn.Module], xs: list[torch.Tensor], record: bool = False) -> tuple[torch.Tensor, list]:
    """(K, B, classes) logits of the members on their own batches; with record, the RNN layers' h_t."""
    return FORWARDS[type(models[0])](models, xs, record)


def hidden_grad_norms(states: list, member: int) -> dict[str, torch.Tensor]:
    """||dL/dh_t|| per time step of one member's recurrent layers, as probes.hidden_grad_norms computes it."""
    norms = {}
    for i, directions in enumerate(states):
        per_direction = [torch.stack([h.grad[member].norm() for h in hs]) for hs in directions]
        norms[f"hidden.{i}"] = torch.stack(per_direction).square().sum(0).sqrt()
    return norms
