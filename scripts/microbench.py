"""Activation micro-benchmark: forward and forward+backward time of each activation against the device's copy bandwidth.

    python scripts/microbench.py [--activations relu,gelu,...] [--device auto|cpu|cuda] [--dtype float32,bfloat16]
                                 [--sizes 16k,256k,4M] [--modes eager,compile] [--repeats 10] [--threads 1]
                                 [--out DIR]

An elementwise activation moves every element through memory once each way, so on a GPU its speed is bounded by
memory bandwidth; on a CPU the smooth ones (tanh, GELU, Mish) are often bound by arithmetic instead. Every time is
therefore shown against the bandwidth of a plain copy measured on the same device, the same sizes and the same
allocation pattern in the same run: a clone for the out-of-place form, copy_ into a preallocated tensor for the
in-place form. Nominal traffic: forward 2 bytes-per-element units (read x, write y), forward+backward 5 (also read
dy and the saved tensor, write dx). A gated activation (glu, swiglu, ...) reads 2n elements and writes n: its size and
elements/s count the 2n inputs, its nominal traffic is forward 1.5 (read 2n, write n) and forward+backward 4 (also
read dy of n and the saved 2n, write dx of 2n) per input element, and its rows are marked "(2n->n)". Each timed
block runs the operation over a bank of distinct tensors (as many as fit in a few tens of MB, at most 64), after
warm-up blocks; the median and quartiles are over the blocks. On
CUDA blocks are timed with CUDA events; on the CPU at one thread by default, timed by that thread's CPU time, which
other processes on a shared machine do not move (with --threads N > 1, by perf_counter); the clock is reported.

Per activation it also records the bytes autograd saves for backward (saved_tensors_hooks) and the error of the
bf16 forward against fp32 on the same inputs. --out DIR writes microbench.csv (one row per measurement),
microbench.md (tables at the largest size) and microbench_*.png; the table is printed either way.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_SIZES = {"cpu": "16k,256k,4M", "cuda": "64k,1M,16M,64M"}
BANK_BYTES = {"cpu": 32 * 2**20, "cuda": 256 * 2**20}  # each block sweeps about this much input
MAX_BANK = 64
DTYPES = ("float32", "bfloat16", "float16")
TRAFFIC = {"fwd": 2, "fwd+bwd": 5}  # nominal elements moved per element of input
GATED_TRAFFIC = {"fwd": 1.5, "fwd+bwd": 4}  # 2n in, n out: forward 2n + n, backward n + 2n + 2n, over 2n
GATED_MARK = " (2n->n)"
WARMUP = 3


def parse_size(text: str) -> int:
    """'64k' -> 65536, '1M' -> 2**20, '4096' -> 4096 (binary multiples)."""
    text = text.strip()
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"bad size {text!r}; use e.g. 4096, 64k, 1M")
    return int(number) * scale


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from harness.activations import ACTIVATIONS
    from harness.bench import OneLineParser

    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--activations",
        default=None,
        help="comma-separated registry names (default: all but identity); relu is always measured, "
        "as the reference of the x-ReLU column",
    )
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    parser.add_argument("--dtype", default="float32,bfloat16", help="comma-separated: float32,bfloat16,float16")
    parser.add_argument(
        "--sizes",
        default=None,
        help=f"elements per tensor (default cpu {DEFAULT_SIZES['cpu']}, cuda {DEFAULT_SIZES['cuda']})",
    )
    parser.add_argument(
        "--modes",
        default="eager,compile",
        help="eager,compile (compile is skipped, with a note, where torch.compile does not work)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed blocks per measurement (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: timed by its CPU time)")
    parser.add_argument("--out", default=None, help="folder for microbench.csv, microbench.md and figures")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    valid = [n for n in ACTIVATIONS if n != "identity"]
    names = args.activations.split(",") if args.activations else valid
    for name in names:
        if name not in ACTIVATIONS:
            parser.error(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
    args.activations = ["relu"] + [n for n in dict.fromkeys(names) if n != "relu"]
    if args.device not in ("auto", "cpu", "cuda"):
        parser.error(f"--device must be auto, cpu or cuda, got {args.device!r}")
    args.dtypes = args.dtype.split(",")
    for dtype in args.dtypes:
        if dtype not in DTYPES:
            parser.error(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    args.modes = args.modes.split(",")
    for mode in args.modes:
        if mode not in ("eager", "compile"):
            parser.error(f"unknown mode {mode!r}; valid: eager, compile")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    try:
        args.size_list = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else None
    except ValueError as exc:
        parser.error(str(exc))
    return args


def resolve_device(name: str):
    """auto: CUDA if there is one, else CPU; an explicit cuda without a GPU is an error."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is available; use --device auto or cpu", file=sys.stderr)
        sys.exit(2)
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


# ---------------------------------------------------------------- building what is timed


def has_inplace(name: str) -> bool:
    """Whether the activation's factory takes inplace=True (ReLU, ELU, SiLU, ...)."""
    from harness.activations import ACTIVATIONS

    return "inplace" in inspect.signature(ACTIVATIONS[name].factory).parameters


def is_gated(name: str) -> bool:
    """Whether the activation takes 2n inputs to n outputs (harness/gated.py)."""
    from harness.activations import make_activation
    from harness.gated import expansion

    return expansion(make_activation(name)) == 2


def make_module(name: str, inplace: bool, device, dtype):
    """The activation as the training loop uses it (train mode: RReLU samples its slopes), on device and dtype."""
    from harness.activations import ACTIVATIONS, make_activation

    module = ACTIVATIONS[name].factory(inplace=True) if inplace else make_activation(name)
    return module.to(device=device, dtype=dtype).train()


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

    from harness.bench import time_blocks

    with torch.enable_grad() if grad else torch.no_grad():
        times = time_blocks(block, device, repeats, WARMUP, setup)
    return [seconds / len(bank.leaves) for seconds in times]


def measure_copy(bank: Bank, device, repeats: int) -> dict[str, float]:
    """Copy bandwidth in GB/s (2 bytes moved per byte copied) for each placement, medians over blocks."""
    from harness.bench import quartiles

    bytes_moved = 2 * bank.size * bank.element_bytes
    return {
        p: bytes_moved / quartiles(time_per_call(copy_block(p, bank), None, bank, device, repeats, False))[1] / 1e9
        for p in ("out", "in")
    }


def measure_activation(
    name: str, mode: str, banks: list[Bank], copies: list[dict], device, repeats: int, notes: list[str]
) -> list[dict]:
    """Every (size, placement, pass) of one activation in one mode, as CSV rows; one compiled module serves all
    sizes (dynamic shapes), so a compile costs once per activation, dtype and form. A form that fails (to compile,
    say) is left out with a note, and the others go on."""
    import torch

    from harness.bench import quartiles

    rows, gated = [], is_gated(name)
    for placement in ("out", "in") if has_inplace(name) else ("out",):
        act = make_module(name, placement == "in", device, banks[0].dtype)
        if mode == "compile":
            act = torch.compile(act, dynamic=True)
        for pass_ in ("fwd", "fwd+bwd"):
            try:
                for bank, copy_gbs in zip(banks, copies):
                    block, setup = blocks(act, placement, pass_, bank, gated)
                    q1, median, q3 = quartiles(time_per_call(block, setup, bank, device, repeats, pass_ != "fwd"))
                    rows.append(row(name, mode, placement, pass_, bank, copy_gbs[placement], q1, median, q3, gated))
            except Exception as exc:  # reported, and the other forms still run
                form = "in-place" if placement == "in" else "out-of-place"
                notes.append(
                    f"{name} {mode} {form} {pass_} {banks[0].dtype} failed: {type(exc).__name__}: {first_line(exc)}"
                )
    return rows


def row(
    name: str,
    mode: str,
    placement: str,
    pass_: str,
    bank: Bank,
    copy_gbs: float,
    q1: float,
    median: float,
    q3: float,
    gated: bool = False,
) -> dict:
    """One CSV row from the quartiles of the seconds per call; `size` and elements/s count the inputs."""
    gbs = (GATED_TRAFFIC if gated else TRAFFIC)[pass_] * bank.size * bank.element_bytes / median / 1e9
    return {
        "activation": name,
        "dtype": str(bank.dtype).removeprefix("torch."),
        "size": bank.size,
        "outputs_per_input": 0.5 if gated else 1.0,
        "mode": mode,
        "placement": placement,
        "pass": pass_,
        "median_us": median * 1e6,
        "p25_us": q1 * 1e6,
        "p75_us": q3 * 1e6,
        "spread": (q3 - q1) / median,
        "elements_per_s": bank.size / median,
        "gb_per_s": gbs,
        "copy_gb_per_s": copy_gbs,
        "copy_fraction": gbs / copy_gbs,
    }


def first_line(exc: Exception, limit: int = 110) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit] + "..."


def compile_works(device) -> str | None:
    """None if torch.compile runs here, else the first line of its error."""
    import torch

    try:
        torch.compile(torch.nn.ReLU(), dynamic=True)(torch.randn(8, device=device))
        return None
    except Exception as exc:  # a missing compiler or Triton: report and go on eager
        return f"{type(exc).__name__}: {first_line(exc)}"


def measure_all(args, device, notes: list[str]) -> list[dict]:
    """Every row: per dtype, the banks of every size and their copy baselines first, then each activation."""
    import torch

    modes = list(args.modes)
    if "compile" in modes:
        problem = compile_works(device)
        if problem:
            modes.remove("compile")
            notes.append(f"torch.compile does not work on this device, eager only: {problem}")
    sizes = args.size_list or [parse_size(s) for s in DEFAULT_SIZES[device.type].split(",")]
    rows = []
    for dtype_name in args.dtypes:
        banks = [make_bank(size, getattr(torch, dtype_name), device) for size in sizes]
        copies = [measure_copy(bank, device, args.repeats) for bank in banks]
        for name in args.activations:
            for mode in modes:
                if mode == "compile":
                    torch._dynamo.reset()  # a fresh cache per activation: no recompile limit is reached
                rows += measure_activation(name, mode, banks, copies, device, args.repeats, notes)
            print(f"  {dtype_name} {name}", file=sys.stderr)
        del banks
    return rows


def per_activation(names: list[str], device) -> dict[str, dict]:
    """Saved-for-backward bytes per element (fp32 and bf16, out-of-place and in-place) and the bf16 error."""
    import torch

    from harness.activations import make_activation
    from harness.bench import bf16_error, saved_bytes

    n = 4096
    x = 2 * torch.randn(4, n // 4, device=device, generator=torch.Generator(device=device).manual_seed(1))
    extras = {}
    for name in names:
        values = bf16_error(make_activation(name).to(device), x)
        for dtype in (torch.float32, torch.bfloat16):
            leaf = x.to(dtype).requires_grad_()
            tag = "fp32" if dtype == torch.float32 else "bf16"
            values[f"saved_bytes_per_element_{tag}"] = saved_bytes(make_module(name, False, device, dtype), leaf) / n
            if has_inplace(name):
                act = make_module(name, True, device, dtype)
                on_clone = lambda inputs, act=act: act(inputs.clone())  # in place on a non-leaf, as after a layer
                values[f"saved_bytes_per_element_{tag}_inplace"] = saved_bytes(on_clone, leaf) / n
        extras[name] = values
    return extras


# ---------------------------------------------------------------- output


def add_columns(rows: list[dict], extras: dict, meta: dict) -> None:
    """x-ReLU (time over eager ReLU's in the same dtype, size, form and pass: one reference for every mode), the
    per-activation figures and the run's metadata."""
    relu = {}
    for r in rows:
        if r["activation"] == "relu" and (
            r["mode"] == "eager" or (r["dtype"], r["size"], r["placement"], r["pass"]) not in relu
        ):
            relu[r["dtype"], r["size"], r["placement"], r["pass"]] = r["median_us"]
    for r in rows:
        base = relu.get((r["dtype"], r["size"], r["placement"], r["pass"]))
        r["vs_relu"] = r["median_us"] / base if base else None
        tag = "bf16" if r["dtype"] == "bfloat16" else "fp32"
        suffix = "_inplace" if r["placement"] == "in" else ""
        r["saved_bytes_per_element"] = extras[r["activation"]].get(f"saved_bytes_per_element_{tag}{suffix}")
        for key in ("bf16_rel_rms_err", "bf16_max_abs_err", "bf16_rounding_rel_rms_err"):
            r[key] = extras[r["activation"]][key]
        r.update(meta)


def markdown(rows: list[dict], meta: dict, notes: list[str]) -> str:
    """One table per dtype at the largest size: eager out-of-place against the copy, then the other forms."""
    lines = [
        f"Measured {meta['date']} on {meta['device']} ({meta['device_name']}"
        + (f", {meta['threads']} threads" if meta["device"] == "cpu" else "")
        + f", clock {meta['clock']}"
        + f"), torch {meta['torch_version']}. Times are medians per call; % copy = effective bandwidth "
        "(nominal traffic: forward 2, forward+backward 5 elements per element) over the copy bandwidth "
        "measured in the same run; x ReLU = time over eager ReLU's; saved = bytes kept for backward per element."
        f" Gated rows{GATED_MARK} read 2n elements and write n: size, Gelem/s and saved count the 2n inputs, "
        "and their nominal traffic is forward 1.5, forward+backward 4 per input element."
    ]
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        size = max(r["size"] for r in rows if r["dtype"] == dtype)
        here = {
            (r["activation"], r["mode"], r["placement"], r["pass"]): r
            for r in rows
            if r["dtype"] == dtype and r["size"] == size
        }
        copy = {r["placement"]: r["copy_gb_per_s"] for r in here.values()}
        lines += [
            "",
            f"**{dtype}, {size:,} elements**: copy bandwidth {copy['out']:.1f} GB/s (clone), "
            f"{copy.get('in', float('nan')):.1f} GB/s (copy_ into a preallocated tensor)",
            "",
            "| activation | pass | eager µs | Gelem/s | GB/s | % copy | x ReLU | in-place µs | compiled µs "
            "| compiled % copy | saved B/elem | bf16 rel. err |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (name, mode, placement, pass_), r in here.items():
            if mode != "eager" or placement != "out":
                continue
            inplace, compiled = here.get((name, "eager", "in", pass_)), here.get((name, "compile", "out", pass_))
            mark = GATED_MARK if r["outputs_per_input"] < 1 else ""
            lines.append(
                f"| {name}{mark} | {pass_} | {r['median_us']:.1f} | {r['elements_per_s'] / 1e9:.2f} "
                f"| {r['gb_per_s']:.1f} "
                f"| {100 * r['copy_fraction']:.0f}% | {fmt(r['vs_relu'], '.2f')} "
                f"| {fmt(inplace and inplace['median_us'], '.1f')} | {fmt(compiled and compiled['median_us'], '.1f')} "
                f"| {fmt(compiled and 100 * compiled['copy_fraction'], '.0f', '%')} "
                f"| {fmt(r['saved_bytes_per_element'], '.2f')} | {r['bf16_rel_rms_err']:.1e} |"
            )
    lines += [f"\nNote: {n}" for n in notes]
    return "\n".join(lines)


def fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None or value is False else f"{value:{spec}}{suffix}"


def figures(rows: list[dict], out: Path) -> None:
    """Bar charts at the largest size: fraction of copy bandwidth, and time relative to ReLU."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame(rows)
    df = df[df["size"] == df.groupby("dtype")["size"].transform("max")]
    df["activation"] = df["activation"] + df["outputs_per_input"].map({0.5: GATED_MARK, 1.0: ""})
    eager = df[(df["mode"] == "eager") & (df["placement"] == "out")]
    grid = sns.catplot(
        data=eager, x="activation", y="copy_fraction", hue="pass", col="dtype", kind="bar", height=3.5, aspect=2.2
    )
    grid.set_axis_labels("", "fraction of copy bandwidth").set_xticklabels(rotation=60)
    grid.figure.suptitle(
        f"{GATED_MARK.strip()}: reads 2n, writes n; nominal traffic 1.5 (fwd), 4 (fwd+bwd) per "
        "input element, against 2 and 5",
        y=1.04,
        fontsize=9,
    )
    grid.savefig(out / "microbench_copy_fraction.png", dpi=110)
    backward = df[(df["pass"] == "fwd+bwd") & (df["placement"] == "out")]
    grid = sns.catplot(
        data=backward, x="activation", y="vs_relu", hue="mode", col="dtype", kind="bar", height=3.5, aspect=2.2
    )
    grid.set(yscale="log")
    grid.set_axis_labels("", "forward+backward time / eager ReLU's").set_xticklabels(rotation=60)
    grid.figure.suptitle(f"{GATED_MARK.strip()}: 2n inputs (the same size as ReLU's), n outputs", y=1.04, fontsize=9)
    grid.savefig(out / "microbench_vs_relu.png", dpi=110)


def write_csv(rows: list[dict], path: Path) -> None:
    import csv

    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    import torch

    from harness.bench import device_name
    from harness.loop import speed_clock

    torch.set_num_threads(args.threads)
    meta = {
        "device": device.type,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "clock": speed_clock(device, 0.0),
        "torch_version": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    notes: list[str] = []
    rows = measure_all(args, device, notes)
    add_columns(rows, per_activation(args.activations, device), meta)
    table = markdown(rows, meta, notes)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(rows, out / "microbench.csv")
        (out / "microbench.md").write_text(table + "\n")
        figures(rows, out)
        print(f"\nwrote {out / 'microbench.csv'}, microbench.md and microbench_*.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
