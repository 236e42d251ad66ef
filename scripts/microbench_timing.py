"""scripts/microbench.py's timing: a bank of distinct input tensors, the timed blocks of an activation and of a
plain copy over it, seconds per call, and the copy bandwidth every activation is shown against."""

from __future__ import annotations

from dataclasses import dataclass

BANK_BYTES = {"cpu": 32 * 2**20, "cuda": 256 * 2**20}  # each block sweeps about this much input
MAX_BANK = 64
WARMUP = 3


@dataclass
class Bank:
    """Distinct input tensors (leaves that require grad), their in-place working copies and a gradient."""

    leaves: list
    work: list
    grad: object
    size: int
    dtype: object

    @property
    def element_bytes(self) -> int:
        return self.leaves[0].element_size()


def make_bank(size: int, dtype, device) -> Bank:
    """As many distinct tensors of `size` elements as fit in BANK_BYTES (at most MAX_BANK), values N(0, 2^2)."""
    import torch

    shape = (size // 1024, 1024) if size % 1024 == 0 else (1, size)  # softmax runs over the last 1,024
    count = max(1, min(MAX_BANK, BANK_BYTES[device.type] // (size * torch.finfo(dtype).bits // 8)))
    generator = torch.Generator(device=device).manual_seed(0)
    leaves = [
        (2 * torch.randn(shape, device=device, generator=generator)).to(dtype).requires_grad_() for _ in range(count)
    ]
    work = [torch.empty_like(x, requires_grad=False) for x in leaves]
    return Bank(leaves, work, torch.randn_like(leaves[0]), size, dtype)


def blocks(act, placement: str, pass_: str, bank: Bank, gated: bool = False):
    """(block, setup) for time_blocks: a block applies act to every tensor of the bank, each result dropped at once.
    A gated act's output, and so the gradient fed back, is half the input's last axis."""
    import torch

    leaves, work, grad = bank.leaves, bank.work, bank.grad
    if gated:
        grad = grad[:, : grad.shape[1] // 2].contiguous()

    def forward(_):
        for x in leaves:
            act(x)

    def forward_backward(_):
        for x in leaves:
            torch.autograd.grad(act(x), x, grad)

    def restore():  # fresh input for the in-place form, outside the timing
        with torch.no_grad():
            for w, x in zip(work, leaves):
                w.copy_(x)

    def forward_inplace(_):
        for w in work:
            act(w)

    def clones():  # in-place with backward needs a non-leaf input: a clone (its backward runs no kernel)
        return [x.clone() for x in leaves]

    def forward_backward_inplace(inputs):
        for c, x in zip(inputs, leaves):
            torch.autograd.grad(act(c), x, grad)

    return {
        ("out", "fwd"): (forward, None),
        ("out", "fwd+bwd"): (forward_backward, None),
        ("in", "fwd"): (forward_inplace, restore),
        ("in", "fwd+bwd"): (forward_backward_inplace, clones),
    }[placement, pass_]


def copy_block(placement: str, bank: Bank):
    """The bandwidth baseline, allocating as the operation does: clone (out-of-place) or copy_ (in-place)."""

    def clone(_):
        for x in bank.leaves:
            x.clone()

    def copy(_):
        for w, x in zip(bank.work, bank.leaves):
            w.copy_(x)

    return clone if placement == "out" else copy


# ---------------------------------------------------------------- measuring


def time_per_call(block, setup, bank: Bank, device, repeats: int, grad: bool) -> list[float]:
    """Seconds per call: each block's time divided by the calls in it."""
    import torch

    from harness.training.bench import time_blocks

    with torch.enable_grad() if grad else torch.no_grad():
        times = time_blocks(block, device, repeats, WARMUP, setup)
    return [seconds / len(bank.leaves) for seconds in times]


def measure_copy(bank: Bank, device, repeats: int) -> dict[str, float]:
    """Copy bandwidth in GB/s (2 bytes moved per byte copied) for each placement, medians over blocks."""
    from harness.training.bench import quartiles

    bytes_moved = 2 * bank.size * bank.element_bytes
    return {
        p: bytes_moved / quartiles(time_per_call(copy_block(p, bank), None, bank, device, repeats, False))[1] / 1e9
        for p in ("out", "in")
    }
