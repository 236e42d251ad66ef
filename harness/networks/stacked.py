"""K models of one architecture as one stacked model, for training a group of runs (harness/networks/stacked_layers.py
computes the forward).

The stacked state is the only state: each parameter and buffer exists once, as a (K, ...) tensor, and every
member module's parameters and buffers are views into it. The optimizer steps the stacked leaves (`params`) and
the gradients land there; the member modules stay usable for probes, evaluation of one member and their
state_dict()/load_state_dict() (which copies into the views, so into the stack), and always see the current values.

What cannot be stacked exactly (why_not_stacked) runs as a group of one through OneModel, with the same API and
no member axis on its parameters (member_axis = False).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn

from harness.networks import probes, stacked_layers
from harness.networks.models import Recurrent, activation_layers, hidden_layers, layer_weights
from harness.networks.stacked_layers import States, why_not_stacked

Compiled = Callable[[torch.Tensor], torch.Tensor]  # torch.compile of a model: its inputs -> its logits


def shadow_tree(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of model whose parameters and buffers (by their qualified names) are the given tensors (a
    parameter's an nn.Parameter)."""
    shadow = copy.deepcopy(model)
    for name, tensor in tensors.items():
        owner, _, leaf = name.rpartition(".")
        module = shadow.get_submodule(owner)
        # into the dicts themselves: nn.Module.__setattr__ would refuse a buffer's tensor under a parameter's name
        if leaf in module._parameters:
            assert isinstance(tensor, nn.Parameter), f"{name} is a parameter: its tensor must be an nn.Parameter"
            module._parameters[leaf] = tensor
        else:
            module._buffers[leaf] = tensor
    return shadow


class StackedModel:
    """K members of one architecture, already built (each from its own seed) on one device and dtype.

    StackedModel(models, stack=False) is a OneModel: the fallback for one member that cannot be stacked."""

    member_axis = True  # params are (K, ...): the optimizer's state and steps are per member along axis 0

    def __new__(cls, models: list[nn.Module], stack: bool = True, compiled: Compiled | None = None) -> StackedModel:
        return super().__new__(cls if stack else OneModel)

    def __init__(self, models: list[nn.Module], stack: bool = True, compiled: Compiled | None = None) -> None:
        check_stackable(models)
        self.members, self.k = list(models), len(models)
        self.names = [n for n, _ in models[0].named_parameters()]
        params: dict[str, nn.Parameter] = {}
        for n, p in models[0].named_parameters():
            params[n] = nn.Parameter(torch.stack([m.get_parameter(n).detach() for m in models]), p.requires_grad)
        stacks: dict[str, torch.Tensor] = dict(params)
        for n, _ in models[0].named_buffers():
            stacks[n] = torch.stack([m.get_buffer(n) for m in models])
        self.shadow = shadow_tree(models[0], stacks)  # before the views: deepcopy would copy a view's whole stack
        for i, m in enumerate(models):  # the members' own tensors become views into the stack (same objects)
            for n, tensor in stacks.items():
                (m.get_parameter(n) if isinstance(tensor, nn.Parameter) else m.get_buffer(n)).data = tensor.data[i]
        self.params = [params[n] for n in self.names]
        self.train(models[0].training)

    def forward(self, x: torch.Tensor, record: bool = False) -> tuple[torch.Tensor, States]:
        """x (K, B, *input_shape), member i's batch in x[i] -> (K, B, classes) logits, and with record the RNN
        layers' h_t (per layer, per direction, a list over input time of (K, B, H) with retained gradients)."""
        return stacked_layers.FORWARDS[type(self.shadow)](self.shadow, x, record)

    __call__ = forward

    def train(self, mode: bool = True) -> StackedModel:
        """BatchNorm's flag: eval normalises with the running statistics and leaves them be. The members too."""
        self.shadow.train(mode)
        for m in self.members:
            m.train(mode)
        return self

    def eval(self) -> StackedModel:
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.shadow.training


def check_stackable(models: list[nn.Module]) -> None:
    """ValueError unless the members share one architecture (names, shapes) and every activation stacks exactly."""
    shapes = [[(n, t.shape, t.dtype, t.device) for n, t in m.state_dict(keep_vars=True).items()] for m in models]
    if any(type(m) is not type(models[0]) or s != shapes[0] for m, s in zip(models, shapes)):
        raise ValueError("the members of a stacked model must share one architecture, dtype and device")
    for acts in activation_layers(models[0]).values():
        reason = next((r for r in map(why_not_stacked, acts) if r), None)
        if reason:
            raise ValueError(f"cannot stack: {reason}; use StackedModel([model], stack=False)")


class OneModel(StackedModel):
    """A group of one that is not stacked: params are the model's own (no member axis); forward(x) runs
    model(x[0]), through `compiled` (torch.compile of the model) when given and not recording."""

    member_axis = False

    def __init__(self, models: list[nn.Module], stack: bool = False, compiled: Compiled | None = None) -> None:
        if len(models) != 1:
            raise ValueError(f"an unstacked model holds one member, not {len(models)}")
        self.members, self.k, self.shadow, self.compiled = list(models), 1, models[0], compiled
        self.names = [n for n, _ in models[0].named_parameters()]
        self.params = list(models[0].parameters())

    def forward(self, x: torch.Tensor, record: bool = False) -> tuple[torch.Tensor, States]:
        """(1, B, classes) logits; with record, per recurrent layer its directions' h_t (B, H), as the stacked
        forward gives them (hidden_grad_norms reads both)."""
        model = self.shadow
        if not record:  # compiled for training steps; evaluation stays eager (no recompilation for eval mode)
            return (self.compiled if self.compiled is not None and model.training else model)(x[0]).unsqueeze(0), []
        probes.record_through_time(model, True)
        try:
            logits = model(x[0]).unsqueeze(0)
            states = [layer.states for layer in hidden_layers(model) if isinstance(layer, Recurrent) and layer.record]
        finally:
            probes.record_through_time(model, False)  # drops the layers' lists; `states` keeps them
        return logits, states

    __call__ = forward

    def train(self, mode: bool = True) -> OneModel:
        self.shadow.train(mode)
        return self


def weight_grad_norms(sm: StackedModel) -> torch.Tensor:
    """(K, layers): per member, the L2 norm of each layer's weight gradient, as probes.weight_grad_norms(member)
    computes it from the member's own gradients (the layers of probes' layer_weights), from the stacked grads."""
    if not sm.member_axis:
        return probes.weight_grad_norms(sm.shadow).unsqueeze(0)
    norms = []
    for weights in layer_weights(sm.shadow).values():  # the shadow's weights are the stacked leaves
        grads = [w.grad.flatten(1).norm(dim=1) for w in weights if w.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack(grads), dim=0) if grads else weights[0].new_zeros(sm.k))
    return torch.stack(norms, dim=1)


def global_grad_norm(sm: StackedModel) -> torch.Tensor:
    """(K,): per member, the L2 norm of its whole gradient, as probes.global_grad_norm(member)."""
    if not sm.member_axis:
        return probes.global_grad_norm(sm.shadow).unsqueeze(0)
    grads = [p.grad.flatten(1).norm(dim=1) for p in sm.params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(grads), dim=0) if grads else sm.params[0].new_zeros(sm.k)


def member_grad(h: torch.Tensor, member: int) -> torch.Tensor:
    """One member's part of a recorded h_t's gradient: row `member` of a stacked (K, B, H), or all of a (B, H)."""
    grad = probes.retained_grad(h)
    return grad[member] if h.dim() == 3 else grad


def hidden_grad_norms(states: States, member: int) -> dict[str, torch.Tensor]:
    """||dL/dh_t|| per time step of one member's recurrent layers, as probes.hidden_grad_norms computes it; states
    from StackedModel.forward (h_t (K, B, H)) or OneModel.forward (h_t (B, H), member 0)."""
    norms = {}
    for i, directions in enumerate(states):
        per_direction = [torch.stack([member_grad(h, member).norm() for h in hs]) for hs in directions]
        norms[f"hidden.{i}"] = torch.stack(per_direction).square().sum(0).sqrt()
    return norms
