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
from pathlib import Path

from scripts.microbench_output import add_columns, figures, markdown, write_csv
from scripts.microbench_timing import Bank, blocks, make_bank, measure_copy, time_per_call

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_SIZES = {"cpu": "16k,256k,4M", "cuda": "64k,1M,16M,64M"}
DTYPES = ("float32", "bfloat16", "float16")
TRAFFIC = {"fwd": 2, "fwd+bwd": 5}  # nominal elements moved per element of input
GATED_TRAFFIC = {"fwd": 1.5, "fwd+bwd": 4}  # 2n in, n out: forward 2n + n, backward n + 2n + 2n, over 2n


def parse_size(text: str) -> int:
    """'64k' -> 65536, '1M' -> 2**20, '4096' -> 4096 (binary multiples)."""
    text = text.strip()
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale > 1 else text
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"bad size {text!r}; use e.g. 4096, 64k, 1M")
    return int(number) * scale


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from harness.networks.activations import ACTIVATIONS
    from harness.training.bench import OneLineParser

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
    from harness.networks.activations import ACTIVATIONS

    return "inplace" in inspect.signature(ACTIVATIONS[name].factory).parameters


def is_gated(name: str) -> bool:
    """Whether the activation takes 2n inputs to n outputs (harness/networks/gated.py)."""
    from harness.networks.activations import make_activation
    from harness.networks.gated import expansion

    return expansion(make_activation(name)) == 2


def make_module(name: str, inplace: bool, device, dtype):
    """The activation as the training loop uses it (train mode: RReLU samples its slopes), on device and dtype."""
    from harness.networks.activations import ACTIVATIONS, make_activation

    module = ACTIVATIONS[name].factory(inplace=True) if inplace else make_activation(name)
    return module.to(device=device, dtype=dtype).train()


def measure_activation(
    name: str, mode: str, banks: list[Bank], copies: list[dict], device, repeats: int, notes: list[str]
) -> list[dict]:
    """Every (size, placement, pass) of one activation in one mode, as CSV rows; one compiled module serves all
    sizes (dynamic shapes), so a compile costs once per activation, dtype and form. A form that fails (to compile,
    say) is left out with a note, and the others go on."""
    import torch

    from harness.training.bench import quartiles

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

    from harness.networks.activations import make_activation
    from harness.training.bench import bf16_error, saved_bytes

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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    import torch

    from harness.training.bench import device_name
    from harness.training.loop import speed_clock

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
