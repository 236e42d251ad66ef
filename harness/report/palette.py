"""One look per activation for every figure of a report: a colour from seaborn's colour-blind-safe "colorblind"
palette, a line style and a marker. Every activation of a report gets a look of its own, the same in every figure,
static (matplotlib, seaborn) or interactive (plotly).

Looks are handed out in the report's order (baseline first, then alphabetical). The k-th look is colour k mod 10,
line style (k + k div 10) mod 6 and marker k mod 9, and each activation takes the first free look whose colour no
other has yet: up to ten activations differ in colour, up to 60 in (colour, line style), and neighbours in the order
in line style and marker as well. Activations whose curves look alike (the smooth rectifiers GELU, SiLU, Mish...,
the ReLU family, ...: SIMILAR) get hues at least HUE_APART apart where a free look allows it.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import seaborn as sns
from matplotlib.colors import to_rgb

if TYPE_CHECKING:
    from matplotlib.typing import LineStyleType

PALETTE = "colorblind"  # seaborn's colour-blind-safe palette (after Okabe and Ito): ten colours
# name: (seaborn/matplotlib dash pattern, "" = solid; plotly's dash name)
DASHES: dict[str, str | tuple[float, ...]] = {
    "solid": "",
    "dash": (4.0, 1.5),
    "dot": (1.0, 1.5),
    "dashdot": (4.0, 1.5, 1.0, 1.5),
    "longdash": (8.0, 2.0),
    "longdashdot": (8.0, 2.0, 1.0, 2.0),
}
# matplotlib marker: plotly's symbol of the same shape
MARKERS = {
    "o": "circle",
    "s": "square",
    "^": "triangle-up",
    "D": "diamond",
    "v": "triangle-down",
    "P": "cross",
    "X": "x",
    "<": "triangle-left",
    ">": "triangle-right",
}
HUE_APART = 30.0  # degrees of hue that tell two colours apart at a glance (greys have no hue: apart from any hue)
# Activations whose curves (f, and so their runs) tend to lie on top of each other: given different hues.
SIMILAR = (
    {"gelu", "gelu_tanh", "silu", "mish", "swiglu", "geglu", "hardswish", "softplus"},
    {"relu", "leaky_relu", "rrelu", "prelu", "relu6", "reglu", "elu", "celu", "selu"},
    {"sigmoid", "hardsigmoid", "glu", "softmax", "logsigmoid"},
    {"tanh", "hardtanh", "softsign", "tanhshrink", "identity", "bilinear"},
    {"relu_squared", "star_relu"},
)
RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Look:
    colour: RGB
    dash: str  # a key of DASHES
    marker: str  # a key of MARKERS

    @property
    def dashes(self) -> str | tuple[float, ...]:
        """seaborn's `dashes=` value."""
        return DASHES[self.dash]

    @property
    def linestyle(self) -> LineStyleType:
        """matplotlib's `linestyle=` value."""
        pattern = DASHES[self.dash]
        return "-" if isinstance(pattern, str) else (0.0, pattern)

    @property
    def plotly_marker(self) -> str:
        return MARKERS[self.marker]

    @property
    def plotly_colour(self) -> str:
        return "rgb({:.0f},{:.0f},{:.0f})".format(*(255 * c for c in self.colour))


class Palette(dict[str, RGB]):
    """activation -> colour (what seaborn's `palette=` takes), in the report's order, with each one's whole Look."""

    def __init__(self, looks: dict[str, Look]) -> None:
        super().__init__({act: look.colour for act, look in looks.items()})
        self.looks = looks


def colours() -> list[RGB]:
    return [tuple(c) for c in sns.color_palette(PALETTE)]


def base_name(act: str) -> str:
    """'leaky_relu(negative_slope=0.2)' -> 'leaky_relu': the registry name inside a report's label."""
    return act.split("(", 1)[0]


def group_of(act: str) -> int | None:
    name = base_name(act)
    return next((i for i, group in enumerate(SIMILAR) if name in group), None)


def hue(colour: RGB) -> float | None:
    """The hue in degrees; None for a grey."""
    h, s, _ = colorsys.rgb_to_hsv(*colour)
    return None if s < 0.15 else 360.0 * h


def hues_apart(a: RGB, b: RGB) -> bool:
    ha, hb = hue(a), hue(b)
    if ha is None or hb is None:
        return (ha is None) != (hb is None)
    return min(abs(ha - hb), 360.0 - abs(ha - hb)) >= HUE_APART


def nth_look(k: int, palette: list[RGB]) -> Look:
    n = len(palette)
    return Look(palette[k % n], list(DASHES)[(k + k // n) % len(DASHES)], list(MARKERS)[k % len(MARKERS)])


def assign(acts: list[str]) -> dict[str, Look]:
    """Each activation, in order, the first free look whose hue no similar activation has taken already."""
    palette = colours()
    total = len(palette) * len(DASHES)  # distinct (colour, dash) pairs; beyond them looks repeat
    taken: set[int] = set()
    looks: dict[str, Look] = {}
    for act in acts:
        if len(taken) == total:
            taken.clear()
        free = [k for k in range(total) if k not in taken]
        peers = [looks[a].colour for a in looks if group_of(a) is not None and group_of(a) == group_of(act)]
        used = {look.colour for look in looks.values()}
        fresh = [k for k in free if nth_look(k, palette).colour not in used] if len(used) < len(palette) else []
        apart = [k for k in free if all(hues_apart(nth_look(k, palette).colour, c) for c in peers)]
        # a colour not yet shown and apart from similar peers' hues; else a new colour; else apart; else any free
        k = next((k for k in fresh if k in apart), (fresh or apart or free)[0])
        taken.add(k)
        looks[act] = nth_look(k, palette)
    return looks


def palette(acts: list[str], baseline: str | None = None) -> Palette:
    """The report's palette: baseline first, then alphabetical, each activation its own Look."""
    order = sorted(set(acts), key=lambda a: (a != baseline, a))
    return Palette(assign(order))


def looks(colours_by_act: dict) -> dict[str, Look]:
    """The Looks behind a palette; for a plain {act: colour} dict (a caller's own), its colours with the line styles
    and markers of its order."""
    if isinstance(colours_by_act, Palette):
        return colours_by_act.looks
    plain = [nth_look(k, colours()) for k in range(len(colours_by_act))]
    return {
        act: Look(to_rgb(colour), look.dash, look.marker) for (act, colour), look in zip(colours_by_act.items(), plain)
    }
