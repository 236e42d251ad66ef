"""Interactive figures for the HTML report (plotly): hover names the activation, seed and value; a click on a
legend entry hides that activation. The page embeds plotly.js once (PLOTLY_SCRIPT) and fetches nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report.palette import looks

if TYPE_CHECKING:
    import plotly.graph_objects as go  # plotly loads when a figure is drawn, not at import

CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}
HEIGHT = 300


def colour(rgb: tuple[float, ...]) -> str:
    """An (r, g, b) colour in [0, 1] as plotly's 'rgb(r,g,b)'."""
    return "rgb({:.0f},{:.0f},{:.0f})".format(*(255 * np.asarray(rgb)))


def plotly_script() -> str:
    """plotly.js itself, inline: every figure of the page draws with this one copy."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def to_div(fig: go.Figure) -> str:
    fig.update_traces(selector={"type": "box"}, fillcolor="rgba(0,0,0,0)", line={"width": 1}, marker={"size": 8})
    fig.update_layout(
        height=HEIGHT,
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        template="plotly_white",
        legend={"title": {"text": "activation"}, "itemclick": "toggle"},
        autosize=True,
    )
    return fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, config=CONFIG)


def legend_once(shown: set[str], act: str) -> bool:
    """Show an activation in the legend once; every trace of it toggles together (legendgroup)."""
    first = act not in shown
    shown.add(act)
    return first


def accuracy(runs: pd.DataFrame, colours: dict) -> str:
    """One dot per seed, per activation: which seed is behind a low mean."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for act in [a for a in colours if a in set(runs["act"])]:
        r = runs[(runs["act"] == act) & (runs["status"] == "ok")]
        fig.add_trace(
            go.Box(
                y=r["test_acc_at_best_val"],
                x=[act] * len(r),
                name=act,
                legendgroup=act,
                boxpoints="all",
                hoveron="points",
                jitter=0.4,
                pointpos=0,
                marker_color=colour(colours[act]),
                marker_symbol=looks(colours)[act].plotly_marker,
                customdata=np.stack([r["seed"], r["setting"]], axis=1),
                hovertemplate=f"{act}<br>seed %{{customdata[0]}}<br>%{{customdata[1]}}<br>"
                "test acc %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(title="test accuracy, one dot per seed", yaxis_title="test accuracy", xaxis_title="")
    return to_div(fig)


def validation_curves(metrics: pd.DataFrame, colours: dict) -> str:
    """Validation accuracy against step, one line per seed: a dip names its seed on hover."""
    import plotly.graph_objects as go

    val = metrics[(metrics["split"] == "val") & (metrics["metric"] == "acc") & metrics["layer"].isna()]
    fig, shown = go.Figure(), set[str]()
    order = {act: i for i, act in enumerate(colours)}  # the legend in the palette's order, baseline first
    groups = sorted(val.sort_values("step").groupby(["act", "seed"]), key=lambda g: (order.get(g[0][0], -1), g[0][1]))
    for (act, seed), r in groups:
        if act not in colours:
            continue
        fig.add_trace(
            go.Scatter(
                x=r["step"],
                y=r["value"],
                mode="lines",
                name=act,
                legendgroup=act,
                showlegend=legend_once(shown, act),
                line={"color": colour(colours[act]), "width": 1.5, "dash": looks(colours)[act].dash},
                hovertemplate=f"{act}<br>seed {seed}<br>step %{{x}}<br>val acc %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title="validation accuracy, one line per seed", xaxis_title="step", yaxis_title="validation accuracy"
    )
    return to_div(fig)


def dead_units(layers: pd.DataFrame, colours: dict) -> str:
    """Per layer: dead at initialisation (left) and lost in training (right), one dot per seed."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, subplot_titles=["dead at initialisation", "lost in training"]
    )
    shown: set[str] = set()
    for col, key in [(1, "dead_init"), (2, "lost")]:
        for act in [a for a in colours if a in set(layers["act"])]:
            r = layers[layers["act"] == act].dropna(subset=[key])
            if r.empty:
                continue
            fig.add_trace(
                go.Box(
                    x=r["layer"],
                    y=r[key],
                    name=act,
                    legendgroup=act,
                    showlegend=legend_once(shown, act),
                    boxpoints="all",
                    hoveron="points",
                    pointpos=0,
                    jitter=0.3,
                    marker_color=colour(colours[act]),
                    marker_symbol=looks(colours)[act].plotly_marker,
                    customdata=r[["seed"]],
                    hovertemplate=f"{act}<br>seed %{{customdata[0]}}<br>%{{x}}<br>%{{y:.1%}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    if layers["lost"].isna().all():
        right = fig.layout.xaxis2.domain  # in paper coordinates: an axis without traces is not drawn
        fig.add_annotation(
            text="n/a: these runs predate<br>the trainer's per-unit masks",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=sum(right) / 2,
            y=0.5,
        )
    from harness.report.axes import fraction_limits  # the static figures' rule: fitted to the data, not 0-1

    values = layers[["dead_init", "lost"]].to_numpy().ravel()
    fig.update_yaxes(range=list(fraction_limits(values, floor=True)))
    fig.update_layout(boxmode="group", yaxis_title="fraction of the layer's units", yaxis_tickformat=".0%")
    return to_div(fig)


def gradient_flow(layers: pd.DataFrame, colours: dict) -> str:
    """Weight-gradient norm per layer at init and averaged over training, one line per seed, log scale."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["at initialisation", "mean over training"])
    shown: set[str] = set()
    for col, key in [(1, "grad_init"), (2, "grad_train")]:
        groups = layers.dropna(subset=[key]).sort_values("depth").groupby(["act", "seed"])
        for (act, seed), r in sorted(
            groups, key=lambda g: (list(colours).index(g[0][0]) if g[0][0] in colours else -1, g[0][1])
        ):
            if act not in colours:
                continue
            fig.add_trace(
                go.Scatter(
                    x=r["layer"],
                    y=r[key],
                    mode="lines+markers",
                    name=act,
                    legendgroup=act,
                    showlegend=legend_once(shown, act),
                    line={"color": colour(colours[act]), "dash": looks(colours)[act].dash},
                    marker={"symbol": looks(colours)[act].plotly_marker},
                    hovertemplate=f"{act}<br>seed {seed}<br>%{{x}}<br>‖∇W‖ %{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(type="log")
    fig.update_layout(yaxis_title="‖∇W‖ (log scale)")
    return to_div(fig)


def cost(table: pd.DataFrame, colours: dict) -> str:
    """Time per training step from the cost probe (harness.report.cost), median over rounds with its 95% interval,
    one point per machine: never the runs' own timing."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if table.empty:  # the figure stays, empty, so that every question has one: it says why
        fig.add_annotation(text="no cost probe records: no speed figure", showarrow=False, x=0.5, y=0.5)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    for act in [a for a in colours if a in set(table["act"])]:
        r = table[table["act"] == act]
        ms, low, high = (1e3 * r[c].astype(float) for c in ("step_s", "step_low", "step_high"))
        ratio = [
            f"{v:.3g}× the baseline" if pd.notna(v) else n or "the baseline" for v, n in zip(r["step_ratio"], r["note"])
        ]
        fig.add_trace(
            go.Scatter(
                x=r["machine"],
                y=ms,
                mode="markers",
                name=act,
                legendgroup=act,
                marker={"color": colour(colours[act]), "size": 9},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (high - ms).fillna(0),
                    "arrayminus": (ms - low).fillna(0),
                },
                customdata=np.array(ratio, dtype=object)[:, None],
                hovertemplate=f"{act}<br>%{{x}}<br>%{{y:.3g}} ms per step<br>%{{customdata[0]}}<extra></extra>",
            )
        )
    fig.update_layout(
        title="time per training step (cost probe)", yaxis_title="ms per step", xaxis_title="", scattermode="group"
    )
    return to_div(fig)


FIGURES = {
    "accuracy": ("runs", accuracy),
    "stability": ("metrics", validation_curves),
    "dead units": ("layers", dead_units),
    "gradient flow": ("layers", gradient_flow),
    "cost": ("cost", cost),
}
