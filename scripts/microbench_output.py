"""scripts/microbench.py's outputs: its rows' derived columns, the Markdown tables, the figures and the CSV."""

from __future__ import annotations

from pathlib import Path

GATED_MARK = " (2n->n)"  # marks a gated activation's rows: 2n elements in, n out


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
