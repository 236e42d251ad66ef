"""One optimizer for K stacked members: every parameter is one leaf of shape (K, ...), slice [i] member i's.

torch's optimizers take one lr per param group; the members of a group differ in lr and weight decay, so here
both are (K,) tensors broadcast over each member's slice. The work per step loops over the stacked tensors only
(never over members), so its op count does not grow with K, and `step` never syncs with the host nor branches on
tensor values (the step counts are device tensors), so it can later run inside a captured CUDA graph. The
arithmetic follows torch's single-tensor Adam / AdamW / SGD op for op, so float64 agrees with torch.optim run on
each member alone; the per-member state converts to and from torch's own state_dict format for checkpoints.
`decay` exempts tensors from weight decay (the activations' own parameters: harness.setup.optimizers.decay_flags),
as torch.optim does for a second param group at weight_decay 0: the decay term is skipped for them, not zeroed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.optim.optimizer import _get_scalar_dtype

# What torch's _foreach ops take and what the out-of-place ones return
TensorList = list[torch.Tensor] | tuple[torch.Tensor, ...]
_TORCH_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
# Hyper-parameters shared by all members: a member's checkpoint that disagrees cannot be loaded faithfully.
_SHARED_KEYS = {
    "adam": ("betas", "eps", "amsgrad", "maximize"),
    "adamw": ("betas", "eps", "amsgrad", "maximize"),
    "sgd": ("momentum", "dampening", "nesterov", "maximize"),
}


def _stacked(t: torch.Tensor, member_axis: bool) -> torch.Tensor:
    """The tensor with its member axis: a plain model's tensor gains a leading axis of 1 (a view, so writes land)."""
    return t if member_axis else t.unsqueeze(0)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(K,) -> (K, 1, ..., 1), to broadcast one value per member over that member's slice of `like`."""
    return v.view((v.shape[0],) + (1,) * (like.dim() - 1))


class StackedOptimizer(torch.optim.Optimizer):
    """Adam, AdamW or SGD (momentum, no dampening, no nesterov) over stacked members with per-member lr and
    weight decay. `step(active)` updates only the members whose (K,) bool `active` is True. `decay`: per tensor,
    whether weight decay applies to it (None: to every one)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        kind: str,
        lr: Sequence[float],
        weight_decay: Sequence[float],
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        member_axis: bool = True,
        decay: Sequence[bool] | None = None,
    ) -> None:
        params = list(params)
        if kind not in _TORCH_OPTIMIZERS:
            raise ValueError(f"kind must be one of {sorted(_TORCH_OPTIMIZERS)}, not {kind!r}")
        if not params:
            raise ValueError("StackedOptimizer got no parameters")
        lrs, wds = [float(x) for x in lr], [float(x) for x in weight_decay]
        k = len(lrs)
        if len(wds) != k or k == 0:
            raise ValueError(f"lr has {k} members and weight_decay {len(wds)}; they must agree and be > 0")
        flags = [True] * len(params) if decay is None else [bool(d) for d in decay]
        if len(flags) != len(params):
            raise ValueError(f"decay has {len(flags)} flags for {len(params)} parameters")
        if not member_axis and k != 1:
            raise ValueError(f"member_axis=False means one member, got {k} learning rates")
        for p in params:
            if _stacked(p, member_axis).shape[0] != k:
                raise ValueError(f"parameter of shape {tuple(p.shape)} has no member axis of length {k}")
        ref = params[0]
        # Kept in the param group so the whole optimizer's state_dict() describes itself.
        # lr, weight decay and step counts in float64, as torch keeps them (Python floats): the factors a step
        # applies are computed there and rounded once to the parameters' dtype, so float32 runs round as torch's
        # own optimizer does, bit for bit (MPS has no float64: float32 there)
        hyper = torch.float32 if ref.device.type == "mps" else torch.float64
        defaults = dict(
            kind=kind,
            lr=torch.tensor(lrs, device=ref.device, dtype=hyper),
            weight_decay=torch.tensor(wds, device=ref.device, dtype=hyper),
            momentum=float(momentum),
            betas=(float(betas[0]), float(betas[1])),
            eps=float(eps),
            member_axis=member_axis,
        )
        super().__init__([{"params": params}], defaults)
        for i in range(k):  # torch's own checks on each member's hyper-parameters (negative lr, betas >= 1, ...)
            self._torch_group(i)
        # whether any member decays any tensor: torch skips the term at 0 (0 * an infinite weight is NaN)
        self.decays = any(wds) and any(flags)
        self.decay_flags = dict(zip(map(id, params), flags))  # by tensor: a step may see only those with a grad
        # one model (member_axis=False): its lr and weight decay as Python floats too, for torch's own fused
        # `param + alpha * grad` kernels, so a single run rounds as torch's optimizer does, bit for bit
        self.host = {"lr": lrs[0], "weight_decay": wds[0]} if not member_axis else None
        # Steps count per member and per tensor, as torch counts per tensor: one (P, K) table whose rows are the
        # tensors' "step" states, so that a step counts and bias-corrects every tensor at once.
        self.counts = torch.zeros(len(params), k, device=ref.device, dtype=hyper)
        for p, count in zip(params, self.counts):  # allocated up front: a captured step must not allocate lazily
            self._init_state(p, count)

    @property
    def kind(self) -> str:
        return self.param_groups[0]["kind"]

    @property
    def lr(self) -> torch.Tensor:
        return self.param_groups[0]["lr"]

    @property
    def weight_decay(self) -> torch.Tensor:
        return self.param_groups[0]["weight_decay"]

    def _init_state(self, p: torch.Tensor, count: torch.Tensor) -> None:
        s = _stacked(p, self.param_groups[0]["member_axis"])
        state = self.state[p]
        state["step"] = count  # a row of self.counts
        if self.kind != "sgd":
            state["exp_avg"] = torch.zeros_like(s)
            state["exp_avg_sq"] = torch.zeros_like(s)
        elif self.param_groups[0]["momentum"] != 0:
            state["momentum_buffer"] = torch.zeros_like(s)

    # The override takes the member mask where torch's takes a closure (GradScaler.step passes it through): not
    # torch's signature, by design; nothing calls it with a closure.
    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:  # type: ignore[override]
        """One step for the active members ((K,) bool on the device; None = all). Tensors without grad are
        skipped. Positional `active` so that GradScaler.step(opt, active) passes it through.

        In place, by torch's multi-tensor (_foreach) ops over the stacked tensors: a few dozen kernels a step
        whatever K is. With `active`, the step runs for everyone and the inactive members' slices are then put
        back with torch.where (not a blend: their NaN/inf can never leak), bit for bit as they were."""
        group = self.param_groups[0]
        params = group["params"]
        every = all(p.grad is not None for p in params)
        if not every:
            params = [p for p in params if p.grad is not None]
        if not params:
            return
        axis = group["member_axis"]
        flags = [self.decay_flags[id(p)] for p in params]  # weight decay applies to it, in the order of s and g
        states = [self.state[p] for p in params]
        s, g = [_stacked(p, axis) for p in params], [_stacked(p.grad, axis) for p in params]
        if active is not None:
            tensors = s + [st[k] for st in states for k in sorted(st)]
            kept = [t.clone() for t in tensors]
        if every:
            self.counts += 1  # every tensor's "step" at once (they are its rows)
            counts = self.counts
        else:
            steps = [st["step"] for st in states]
            torch._foreach_add_(steps, 1)
            counts = torch.stack(steps)
        if self.kind == "sgd":
            self._sgd(s, g, states, flags)
        else:
            self._adam(s, g, states, counts, flags)
        if active is not None:
            for t, old in zip(tensors, kept):
                t.copy_(torch.where(_bcast(active, t), t, old))

    def _adam(
        self,
        s: list[torch.Tensor],
        g: TensorList,
        states: list[dict[str, torch.Tensor]],
        counts: torch.Tensor,
        flags: list[bool],
    ) -> None:
        """torch's Adam / AdamW (amsgrad off), op for op, with per-member lr and weight decay; counts: the
        tensors' step counts (P, K), this step's included; flags: whether each tensor decays."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        dtype = s[0].dtype
        if self.kind == "adamw" and self.decays:  # param.mul_(1 - lr * weight_decay), before the moments
            decay = (1 - self.lr * self.weight_decay).to(dtype)
            decayed = [t for t, d in zip(s, flags) if d]
            if decayed:
                torch._foreach_mul_(decayed, [_bcast(decay, t) for t in decayed])
        elif self.decays:  # grad = grad.add(param, alpha=weight_decay): a new tensor, the gradient itself is kept
            g = self._decayed(g, s, flags)
        exp_avg, exp_avg_sq = [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states]
        torch._foreach_lerp_(exp_avg, g, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, g, g, value=1 - beta2)
        # per member and tensor: step_size = lr / (1 - beta1^t), sqrt(1 - beta2^t), all (P, K) at once
        step_size = (self.lr / (1 - torch.pow(beta1, counts))).to(dtype)
        correction2 = torch.sqrt(1 - torch.pow(beta2, counts)).to(dtype)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, [_bcast(v, x) for v, x in zip(correction2, s)])
        torch._foreach_add_(denom, group["eps"])
        # param.addcdiv_(exp_avg, denom, value=-step_size), which computes param + (value * exp_avg) / denom
        update = torch._foreach_mul(exp_avg, [_bcast(v, x) for v, x in zip(step_size, s)])
        torch._foreach_div_(update, denom)
        torch._foreach_sub_(s, update)

    def _sgd(
        self, s: list[torch.Tensor], g: TensorList, states: list[dict[str, torch.Tensor]], flags: list[bool]
    ) -> None:
        """torch's SGD (dampening 0, no nesterov), with per-member lr and weight decay."""
        momentum = self.param_groups[0]["momentum"]
        if self.decays:  # grad = grad.add(param, alpha=weight_decay)
            g = self._decayed(g, s, flags)
        if momentum != 0:  # the buffer starts at zero: its first step is 0 * momentum + grad, the grad itself
            buffers = [st["momentum_buffer"] for st in states]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, g)
            g = buffers
        if self.host is not None:  # param.add_(grad, alpha=-lr)
            torch._foreach_add_(s, g, alpha=-self.host["lr"])
        else:
            lr = self.lr.to(s[0].dtype)
            torch._foreach_sub_(s, torch._foreach_mul(g, [_bcast(lr, t) for t in s]))

    def _decayed(self, g: TensorList, s: list[torch.Tensor], which: list[bool]) -> TensorList:
        """grad + weight_decay * param for the tensors that decay (`which`), new tensors (the gradients themselves
        are kept); the exempt ones' gradients as they are, as torch skips the term in a group at weight decay 0."""
        if not any(which):
            return g
        gd, sd = [x for x, d in zip(g, which) if d], [x for x, d in zip(s, which) if d]
        if self.host is not None:
            new = torch._foreach_add(gd, sd, alpha=self.host["weight_decay"])
        else:
            wd = self.weight_decay.to(s[0].dtype)
            new = torch._foreach_add(gd, torch._foreach_mul(sd, [_bcast(wd, t) for t in sd]))
        if all(which):
            return new
        decayed = iter(new)
        return [next(decayed) if d else x for x, d in zip(g, which)]

    def _torch_group(self, i: int) -> dict[str, Any]:
        """Member i's param_groups entry exactly as torch's own optimizer builds it (same keys, same defaults),
        taken from a throwaway torch optimizer so it tracks the installed torch version."""
        group = self.param_groups[0]
        hyper = dict(lr=float(self.lr[i]), weight_decay=float(self.weight_decay[i]))
        if self.kind == "sgd":
            hyper["momentum"] = group["momentum"]
        else:
            hyper.update(betas=group["betas"], eps=group["eps"])
        dummy = torch.zeros(1, requires_grad=True)
        entry = _TORCH_OPTIMIZERS[self.kind]([dummy], **hyper).state_dict()["param_groups"][0]
        entry["params"] = list(range(len(group["params"])))
        return entry

    def member_state_dict(self, i: int) -> dict[str, Any]:
        """What torch.optim.<kind>(member i's params, ...).state_dict() would hold: a tensor never stepped for
        this member (or SGD without momentum) has no entry, as in torch; state tensors are cloned slices."""
        params = self.param_groups[0]["params"]
        # One host read for all tensors: which ones this member has stepped, and how often.
        steps = torch.stack([self.state[p]["step"][i].double() for p in params]).tolist()
        state: dict[int, dict[str, Any]] = {}
        for j, p in enumerate(params):
            if steps[j] == 0:
                continue
            st = self.state[p]
            if self.kind != "sgd":
                state[j] = {
                    "step": torch.tensor(steps[j], dtype=_get_scalar_dtype()),
                    "exp_avg": st["exp_avg"][i].clone(),
                    "exp_avg_sq": st["exp_avg_sq"][i].clone(),
                }
            elif "momentum_buffer" in st:
                state[j] = {"momentum_buffer": st["momentum_buffer"][i].clone()}
        return {"state": state, "param_groups": [self._torch_group(i)]}

    def load_member_state_dict(self, i: int, state_dict: dict[str, Any]) -> None:
        """Load a torch optimizer's (or member_state_dict's) state into member i's slices. As torch's
        load_state_dict does, the saved lr and weight decay become the member's; the shared hyper-parameters
        (betas, eps, momentum, ...) must match. A tensor without saved state restarts from no steps."""
        params = self.param_groups[0]["params"]
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError(
                f"expected one param group of {len(params)} tensors, got {[len(g['params']) for g in groups]}"
            )
        saved_group, ours = groups[0], self._torch_group(i)
        for key in _SHARED_KEYS[self.kind]:
            mine, theirs = ours[key], saved_group.get(key, ours[key])
            if (tuple(theirs) if key == "betas" else theirs) != mine:
                raise ValueError(f"saved {key}={theirs!r} differs from this optimizer's shared {key}={mine!r}")
        with torch.no_grad():
            self.lr[i] = float(saved_group["lr"])
            self.weight_decay[i] = float(saved_group["weight_decay"])
            if self.host is not None:
                self.host = {"lr": float(saved_group["lr"]), "weight_decay": float(saved_group["weight_decay"])}
            self.decays = self.decays or float(saved_group["weight_decay"]) != 0
            for j, p in enumerate(params):
                self._load_slice(self.state[p], i, state_dict["state"].get(saved_group["params"][j], {}))

    def _load_slice(self, state: dict[str, torch.Tensor], i: int, saved: dict[str, Any]) -> None:
        names = ("exp_avg", "exp_avg_sq") if self.kind != "sgd" else tuple(k for k in state if k != "step")
        # Older torch saved momentum_buffer=None for SGD without momentum: no buffer either way.
        present = [n for n in names if saved.get(n) is not None]
        if present and len(present) != len(names):
            raise ValueError(f"saved state has {sorted(saved)}, expected all of {list(names)}")
        for name in names:
            if present and tuple(saved[name].shape) != tuple(state[name][i].shape):
                raise ValueError(
                    f"saved {name} of shape {tuple(saved[name].shape)}, expected {tuple(state[name][i].shape)}"
                )  # copy_ would broadcast silently
            if present:
                state[name][i].copy_(saved[name])
            else:
                state[name][i].zero_()
        # SGD's internal count only marks "buffer started"; Adam's is torch's step.
        step = float(saved["step"]) if "step" in saved and present else float(bool(present))
        state["step"][i] = step


def clip_member_grads_(params: Sequence[torch.Tensor], max_norm: float, member_axis: bool = True) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_(member i's params, max_norm) for every member at once: each member's grads
    scaled by min(1, max_norm / (norm + 1e-6)), norm the L2 norm over all its tensors. Returns the (K,) norms;
    no host sync, ops independent of K. Tensors without grad are skipped."""
    if not member_axis:  # one model: torch's own clipping, so a single run clips as torch does, bit for bit
        return torch.nn.utils.clip_grad_norm_(params, max_norm).reshape(1)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        first = _stacked(params[0], member_axis)
        return torch.zeros(first.shape[0], device=first.device, dtype=first.dtype)
    per_tensor = [torch.linalg.vector_norm(g.reshape(g.shape[0], -1), 2, dim=1) for g in grads]
    norms = torch.linalg.vector_norm(torch.stack(per_tensor), 2, dim=0)
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for g in grads:
        g.mul_(_bcast(coef.to(g.dtype), g))
    return norms
