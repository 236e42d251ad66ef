"""Command line: draw f and f' of every activation on one grid and tabulate their measured properties."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/gallery"), help="output folder")
    parser.add_argument(
        "--activations",
        default=None,
        help="comma-separated registry names (default: all, the reference article's seven first)",
    )
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # files only: no window, no display needed
    from harness.networks.activations import ACTIVATIONS
    from harness.report.gallery import default_activations, display, plot, property_table
    from harness.report.render import md_table

    items = default_activations()
    if args.activations:
        names = [n.strip() for n in args.activations.split(",") if n.strip()]
        unknown = [n for n in names if n not in ACTIVATIONS]
        if unknown:
            print(f"error: unknown activation {', '.join(unknown)}; valid: {', '.join(ACTIVATIONS)}", file=sys.stderr)
            return 2
        items = [(n, n, {}) for n in names]
    args.out.mkdir(parents=True, exist_ok=True)
    table = property_table(items)
    table.to_csv(args.out / "properties.csv", index=False)
    (args.out / "properties.md").write_text(md_table(display(table)) + "\n", encoding="utf-8")
    plot(items, args.out / "gallery.png")
    print(md_table(display(table)))
    print(f"\ngallery: {args.out / 'gallery.png'}\ntable:   {args.out / 'properties.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
