"""Turn a report's blocks (headings, text, tables, figures) into Markdown and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.common import metrics
from harness.common.metrics import Metric
from harness.common.text import PATH_LIMIT, clean

# Every string a page shows passes harness.common.text.clean: no control characters or escape sequences, and bounded.
# Activations, tasks and settings arrive cut already (harness/report/shown.py); these limits bound anything else
# (a path, an error message from a summary.json).
TEXT_LIMIT = 20_000  # a paragraph, bullet or caption
CELL_LIMIT = PATH_LIMIT  # a table cell (run folders are the longest honest ones)


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Figure:
    path: Path  # inside the report's figures/ folder
    caption: str


@dataclass
class Answer:
    """One of the first screen's answers: the question in bold, its numbers, and beside them (HTML only) the
    interactive figure that shows them."""

    question: str
    text: str
    figure: str = ""  # a plotly <div> from harness.report.interactive
    caption: str = ""


@dataclass
class Interactive:
    """A plotly figure in the HTML page; the Markdown shows the static PNG instead (when there is one)."""

    html: str  # a <div> and its drawing <script>, made by harness.report.interactive
    caption: str
    png: Path | None = None


Block = Heading | Text | Bullets | Table | Figure | Answer | Interactive


# ---- number formatting shared by every table


def num(value: float | None, digits: int = 3) -> str:
    """A number for a table cell; '–' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


# What each metric format can be (harness.common.metrics FORMATS): a fraction (percent, accuracy points) lies in
# [0, 1], a rate, ratio or loss is never negative. An interval is never shown outside its metric's range: a 2-seed
# t-interval of an accuracy near 1 reaches past 1, which no accuracy can.
RANGES = {
    "percent": (0.0, 1.0),
    "points": (0.0, 1.0),
    "rate": (0.0, math.inf),
    "ratio": (0.0, math.inf),
    "loss": (0.0, math.inf),
    "number": (-math.inf, math.inf),
}
UNBOUNDED = (-math.inf, math.inf)


def metric_range(m: Metric) -> tuple[float, float]:
    return RANGES[m.fmt]


def clip(value: float, bounds: tuple[float, float]) -> float:
    """value inside bounds; NaN stays NaN."""
    return value if math.isnan(value) else min(max(value, bounds[0]), bounds[1])


def with_ci(
    mean: float | None,
    lo: float | None,
    hi: float | None,
    digits: int = 3,
    bounds: tuple[float, float] = UNBOUNDED,
) -> str:
    """'0.637 [0.611, 0.663]': the mean and its 95% interval, clipped to bounds (the metric's range: metric_range),
    the interval left out when there is none."""
    if mean is None or math.isnan(mean):
        return "–"
    if lo is None or math.isnan(lo) or hi is None:
        return num(mean, digits)
    return f"{num(mean, digits)} [{num(clip(lo, bounds), digits)}, {num(clip(hi, bounds), digits)}]"


def clip_intervals(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary over seeds with every registry metric's interval clipped to the metric's range, for
    display: every table, answer and figure then shows an accuracy's interval inside [0, 1]. The CSV keeps the
    t-interval as computed."""
    clipped = {}
    for m in metrics.METRICS:
        low, high = metric_range(m)
        for column in [f"{m.short}_ci_low", f"{m.short}_ci_high"]:
            if column in summary:
                clipped[column] = pd.to_numeric(summary[column], errors="coerce").clip(low, high)
    return summary.assign(**clipped)


def clip_differences(comparison: pd.DataFrame, metric: str = "test_acc_at_best_val") -> pd.DataFrame:
    """The paired comparisons with their intervals clipped to what a difference of the metric can be (an
    accuracy's: [-1, 1]), for display, as clip_intervals does for the summary."""
    low, high = metric_range(metrics.BY_KEY[metric])
    columns = [c for c in ["diff_adj_low", "diff_adj_high", "diff_ci_low", "diff_ci_high"] if c in comparison]
    span = high - low
    return comparison.assign(**{c: pd.to_numeric(comparison[c], errors="coerce").clip(-span, span) for c in columns})


def p_value(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def percent(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.0f}%"


def rate(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:,.0f}"


# ---- Markdown


def md_cell(value: object) -> str:
    """A table cell that cannot break the table or inject HTML on GitHub."""
    return md_text(clean(value, CELL_LIMIT)).replace("|", "\\|")


def md_text(text: str) -> str:
    """Text that GitHub shows as written: anything that could open an HTML tag is escaped, 'p < 0.05' is not;
    control characters are gone (harness.common.text.clean)."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", clean(text, TEXT_LIMIT).replace("&", "&amp;"))


def esc(text: object, limit: int = TEXT_LIMIT) -> str:
    """Text for HTML: cleaned (harness.common.text.clean), then escaped (attribute values too)."""
    return html.escape(clean(text, limit), quote=True)


def md_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(md_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def to_markdown(title: str, blocks: list[Block], out: Path) -> str:
    """The report as GitHub-flavoured Markdown; figures are linked relative to `out`."""
    parts = [f"# {md_text(title)}"]
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {md_text(b.text)}")
        elif isinstance(b, Text):
            parts.append(md_text(b.text))
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {md_text(item)}" for item in b.items))
        elif isinstance(b, Answer):
            parts.append(f"**{md_text(b.question)}.** {md_text(b.text)}")
        elif isinstance(b, Table):
            parts.append((f"{md_text(b.caption)}\n\n" if b.caption else "") + md_table(b.frame))
        elif isinstance(b, Figure) or (isinstance(b, Interactive) and b.png is not None):
            path = b.path if isinstance(b, Figure) else b.png
            assert path is not None  # the condition above admits an Interactive only with its png
            rel = path.relative_to(out).as_posix()
            parts.append(f"![{md_text(b.caption.split('.')[0])}]({rel})\n\n{md_text(b.caption)}")
    return "\n\n".join(parts) + "\n"


# ---- HTML

# Tables never scroll sideways: cells wrap (long tokens such as run folders anywhere), and below STACK_BELOW px a
# wide table turns into one block per row, each cell labelled with its column.
STACK_BELOW = 1000
WIDE = 6  # a table with more columns than this stacks on narrow screens
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.4em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 60em; }
caption { caption-side: top; text-align: left; font-size: 0.9em; color: #444; padding-bottom: 0.3em; }
.question { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 1.2em; align-items: start;
            border-top: 1px solid #eee; }
.answer { margin: 0.6em 0; }
.plot { width: 100%; margin: 0.3em 0 0.8em; min-width: 0; }
@media (max-width: %STACK%px) {
  .question { display: block; }
  table.wide, table.wide tbody, table.wide tr, table.wide td, table.wide caption { display: block; width: auto; }
  table.wide thead { display: none; }
  table.wide tr { border: 1px solid #ccc; margin-bottom: 0.6em; }
  table.wide td { border: none; border-bottom: 1px solid #eee; }
  table.wide td::before { content: attr(data-label) ": "; font-weight: 600; }
}
""".replace("%STACK%", str(STACK_BELOW - 1))


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def html_table(frame: pd.DataFrame, caption: str) -> str:
    labels = [esc(c, CELL_LIMIT) for c in frame.columns]
    head = "".join(f"<th>{label}</th>" for label in labels)
    rows = "".join(
        "<tr>"
        + "".join(f'<td data-label="{label}">{esc(v, CELL_LIMIT)}</td>' for label, v in zip(labels, row))
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    wide = ' class="wide"' if len(frame.columns) > WIDE else ""
    return f"<table{wide}>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def to_html(title: str, blocks: list[Block], script: str = "") -> str:
    """One self-contained page: images as data URIs, `script` (plotly.js) inlined once, nothing fetched; text
    escaped. Without interactive blocks the page has no script at all."""
    plots = any((isinstance(b, Interactive) and b.html) or (isinstance(b, Answer) and b.figure) for b in blocks)
    parts = [script] if plots else []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{esc(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            parts.append(f"<p>{esc(b.text)}</p>")
        elif isinstance(b, Bullets):
            parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in b.items) + "</ul>")
        elif isinstance(b, Answer):
            text = f'<p class="answer"><b>{esc(b.question)}.</b> {esc(b.text)}</p>'
            plot = (
                f'<figure class="plot">{b.figure}<figcaption>{esc(b.caption)}</figcaption></figure>' if b.figure else ""
            )
            parts.append(f'<div class="question">{text}{plot}</div>')
        elif isinstance(b, Table):
            parts.append(html_table(b.frame, b.caption))
        elif isinstance(b, Figure):
            alt = esc(b.caption.split(".")[0])
            parts.append(
                f'<figure><img src="{data_uri(b.path)}" alt="{alt}"><figcaption>{esc(b.caption)}</figcaption></figure>'
            )
        elif isinstance(b, Interactive) and b.html:  # html "": a static figure for the Markdown only
            parts.append(f'<figure class="plot">{b.html}<figcaption>{esc(b.caption)}</figcaption></figure>')
    # An empty data: icon stops the browser asking for /favicon.ico, which would log an error offline.
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{STYLE}</style></head>'
        f"<body><h1>{esc(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
