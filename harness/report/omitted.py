"""What a figure's panels leave out, named in its caption with the reason: an activation whose saturation is not
defined (an unbounded f': harness.networks.gated), or whose runs recorded no value of a quantity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.report.figures import STATS, UNITS
from harness.report.palette import base_name

# figure kind -> the metrics.csv quantities its panels draw (for the caption's list of what a panel leaves out)
DRAWS = {
    "units": UNITS,
    "activations": STATS,
    "gradients": {"grad_norm": "gradient-norm"},
    "gradient_heatmap": {"grad_norm": "gradient-norm"},
}


def why_left_out(act: str, metric: str) -> str:
    """Why an activation has no value of a metric: saturation undefined (an unbounded f', harness.networks.gated),
    or, for any other case, that its runs recorded none."""
    from harness.networks.activations import ACTIVATIONS, make_activation
    from harness.networks.gated import saturation_defined

    name = base_name(act)
    if metric == "saturated_fraction" and name in ACTIVATIONS and not saturation_defined(make_activation(name)):
        return "f' is unbounded, so saturation is not defined: docs/measurements.md"
    return "its runs recorded no value of it"


def left_out(metrics: pd.DataFrame, kind: str) -> str:
    """The caption's sentence naming each activation of a figure that a panel leaves out, and why; '' if none."""
    acts = list(pd.unique(metrics["act"]))
    sentences = []
    for metric, label in DRAWS.get(kind, {}).items():
        rows = metrics[(metrics["metric"] == metric) & np.isfinite(metrics["value"].astype(float))]
        missing = [a for a in acts if a not in set(rows["act"])]
        reasons: dict[str, list[str]] = {}
        for act in missing:
            reasons.setdefault(why_left_out(act, metric), []).append(act)
        for reason, names in reasons.items():
            sentences.append(f"Not in the {label} panels: {', '.join(names)} ({reason}).")
    return " ".join(sentences)


def figure_notes(metrics: pd.DataFrame, prefix: str) -> dict[str, str]:
    """{figure name: the sentence its caption adds} for one task's figures that leave an activation out."""
    notes = {f"{prefix}_{kind}": left_out(metrics, kind) for kind in DRAWS}
    return {name: note for name, note in notes.items() if note}
