"""Figures and tables that read at a glance: one colour-blind-safe palette in which every activation differs, axes
fitted to the data (log where values span decades), omitted activations named in captions, intervals inside the
metric's range, a LaTeX table per question that fits a page, and the matched width named in the results table."""

from __future__ import annotations

import copy
import itertools
import random
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.colors import to_rgb

from harness.common.metrics import METRICS
from harness.records.results import write_metrics, write_summary
from harness.report import axes, build_report, omitted
from harness.report import figures as fig
from harness.report.palette import hue, hues_apart, looks, palette
from harness.setup.config import to_dict
from tests.conftest import compose_config

STEPS = [0, 50, 100]
LAYERS = ["hidden.0", "hidden.1"]


# ---------------------------------------------------------------- run folders with chosen numbers


def summary(base: dict, act: str, seed: int, acc: float, model: str = "mlp") -> dict:
    config = copy.deepcopy(base)
    config.update(seed=seed, activation={"name": act})
    return {
        "schema_version": 1,
        "status": "ok",
        "activation": act,
        "model": model,
        "dataset": "digits",
        "seed": seed,
        "config_hash": f"{act}-{seed}",
        "config": config,
        "test_acc_at_best_val": acc,
        "test_acc": acc,
        "best_val_acc": acc,
        "train_loss": 0.01,
        "test_loss": 0.3,
        "samples_per_s": 1000.0,
        "dead_fraction": 0.02,
        "saturated_fraction": None if act == "relu_squared" else 0.01,
        "n_params": 250,
        "device": "cpu",
        "num_threads": 1,
    }


def rows(act: str, seed: int, dead: float) -> list[tuple]:
    """metrics.csv rows: probes at three steps (relu_squared has no saturated fraction: an unbounded f'), gradient
    norms spanning four decades, validation accuracy."""
    out = []
    for step in STEPS:
        for depth, layer in enumerate(LAYERS):
            saturated = None if act == "relu_squared" else dead / 2
            out += [
                (step, "probe", "dead_fraction", layer, dead * (1 + depth) * step / 100, None),
                (step, "probe", "saturated_fraction", layer, saturated, None),
                (step, "probe", "act_mean", layer, 0.1 + 0.01 * seed, None),
                (step, "probe", "act_std", layer, 10.0 ** (-3 * depth) * (1 + seed), None),
                (step, "probe", "grad_norm", layer, 10.0 ** (-2 * depth) * (1 + 0.1 * seed), None),
            ]
        if step:
            out += [
                (step, "train", "loss", None, 1.0 / step, None),
                (step, "val", "acc", None, 0.95 + 0.04 * seed, None),  # two seeds: a band reaching past 1
                (step, "train", "grad_norm", "hidden.0", 0.2, None),
            ]
    return out


def write_runs(folder: Path, base: dict, accs: dict[str, list[float]], model: str = "mlp") -> Path:
    for act, per_seed in accs.items():
        for seed, acc in enumerate(per_seed):
            run_dir = folder / f"{act}-s{seed}"
            run_dir.mkdir(parents=True)
            write_metrics(run_dir, rows(act, seed, dead=0.01 if act == "relu" else 0.0))
            write_summary(run_dir, summary(base, act, seed, acc, model))
    return folder


ACCS = {"relu": [0.90, 1.00], "gelu": [0.85, 0.88], "silu": [0.86, 0.87], "relu_squared": [0.8, 0.82]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    base = to_dict(compose_config("model=mlp", "model.depth=2", "model.width=8", "dataset=digits"))
    return write_runs(tmp_path_factory.mktemp("glance") / "runs", base, ACCS)


@pytest.fixture(scope="module")
def report(runs) -> Path:
    return build_report([runs], out=runs.parent / "report", figures=False, latex=True)


@pytest.fixture(scope="module")
def data(runs):
    from harness.report.load import gather

    return gather([runs])


def drawn(draw, monkeypatch, *args) -> plt.Figure:
    """The matplotlib figure a figure function draws, instead of its PNG."""
    captured: list[plt.Figure] = []
    monkeypatch.setattr(fig, "save", lambda figure, path: captured.append(figure) or path)
    draw(*args, Path("unused.png"))
    return captured[0]


# ---------------------------------------------------------------- 1. one palette


def registry() -> list[str]:
    from harness.networks.activations import NAMES

    return list(NAMES)


def test_every_activation_of_the_registry_has_its_own_look_from_a_colour_blind_palette():
    acts = registry()
    assert len(acts) >= 31
    safe = {tuple(round(c, 6) for c in rgb) for rgb in sns.color_palette("colorblind")}
    rng = random.Random(0)
    subsets = [acts] + [rng.sample(acts, k) for k in (2, 5, 10, 17, 31) for _ in range(5)]
    for shown in subsets:
        look = palette(shown, baseline="relu" if "relu" in shown else None).looks
        pairs = [(tuple(round(c, 6) for c in v.colour), v.dash) for v in look.values()]
        assert len(set(pairs)) == len(shown), shown  # no two share (colour, line style)
        assert {p[0] for p in pairs} <= safe  # every colour from seaborn's colour-blind-safe palette
        if len(shown) <= 10:
            assert len({p[0] for p in pairs}) == len(shown)  # up to ten: every one its own colour
        if {"gelu", "silu"} <= set(shown):
            assert hues_apart(look["gelu"].colour, look["silu"].colour), (look["gelu"], look["silu"])


def test_gelu_and_silu_differ_in_hue_and_line_style_beside_each_other():
    look = palette(["relu", "gelu", "silu", "swiglu", "relu_squared"], baseline="relu").looks
    assert hues_apart(look["gelu"].colour, look["silu"].colour)
    h = [hue(look[a].colour) for a in ("gelu", "silu")]
    assert None in h or abs(h[0] - h[1]) >= 30  # hue in degrees, not just a lighter shade of one
    for a, b in itertools.combinations(look, 2):
        assert look[a].colour != look[b].colour and (look[a].dash, look[a].marker) != (look[b].dash, look[b].marker)


def check_legend(figure: plt.Figure, colours) -> None:
    """Each legend entry in its activation's palette colour and line style; not every one solid."""
    legend = figure.legends[0]
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        act = text.get_text()
        assert to_rgb(handle.get_color()) == pytest.approx(colours[act])
        solid = colours.looks[act].dashes == ""
        assert (handle.get_linestyle() == "-") == solid, (act, handle.get_linestyle())
    assert len({h.get_linestyle() for h in legend.legend_handles}) > 1  # line styles tell them apart too


@pytest.mark.slow  # about 8 s of seaborn; the units test below is its fast twin
def test_every_figure_draws_an_activation_in_its_palette_colour_and_line_style(data, monkeypatch):
    colours = palette(list(ACCS), baseline="relu")
    for draw in [fig.learning_curves, fig.units, fig.activation_stats, fig.gradients_by_depth]:
        figure = drawn(draw, monkeypatch, data.metrics, colours)
        check_legend(figure, colours)
        plt.close(figure)


def test_a_plain_colour_dict_still_draws():
    plain = {"relu": "C0", "tanh": (0.1, 0.2, 0.3)}
    look = looks(plain)
    assert look["tanh"].colour == (0.1, 0.2, 0.3) and look["relu"].dash != look["tanh"].dash


# ---------------------------------------------------------------- 2. axes fitted to the data


def test_fraction_limits_fit_small_fractions_and_stay_near_zero_one():
    lo, hi = axes.fraction_limits([0.0, 0.01, 0.02])
    assert lo < 0.0 and 0.02 < hi <= 0.03  # a margin, not a 0-1 axis
    assert axes.fraction_limits([0.0, 0.0]) == pytest.approx((-axes.MARGIN * axes.MIN_SPAN, (1 + axes.MARGIN) * 0.01))
    assert axes.fraction_limits([0.97, 1.0])[1] <= 1.0 + axes.MARGIN * 0.03 + 1e-12
    assert axes.fraction_limits([0.1, 0.3], floor=True)[0] == 0.0  # bars start at 0


def test_units_figure_axis_fits_small_dead_fractions(data, monkeypatch):
    colours = palette(list(ACCS), "relu")
    figure = drawn(fig.units, monkeypatch, data.metrics, colours)
    check_legend(figure, colours)
    dead = data.metrics.loc[data.metrics["metric"].isin(["dead_fraction", "saturated_fraction"]), "value"]
    assert dead.max() == pytest.approx(0.02)
    for ax in figure.axes:
        if ax.has_data():
            assert ax.get_ylim()[1] < 0.1, ax.get_ylim()  # was a fixed 0-1 axis: curves flat at the bottom
    plt.close(figure)


def test_values_spanning_decades_get_a_log_axis(data, monkeypatch):
    assert axes.wants_log([1e-4, 1e-1]) and not axes.wants_log([0.5, 2.0]) and not axes.wants_log([-1.0, 1e3])
    two = data.metrics[data.metrics["act"].isin(["relu", "gelu"])]
    decaying = 10.0 ** (-two["step"] / 25)  # output std: four decades from step 0 to 100 in every panel
    spread = two.assign(value=np.where(two["metric"] == "act_std", decaying, two["value"]))
    figure = drawn(fig.activation_stats, monkeypatch, spread, palette(["relu", "gelu"], "relu"))
    scales = {ax.get_title(): ax.get_yscale() for ax in figure.axes if ax.has_data()}
    assert scales["output std · hidden.0"] == "log" and scales["output std · hidden.1"] == "log"
    assert scales["output mean · hidden.0"] == "linear"  # 0.10 to 0.11: a linear axis
    plt.close(figure)


def test_overview_dead_panel_is_fitted_not_zero_to_one(data, monkeypatch, tmp_path):
    from harness.report.analysis import analyse
    from harness.report.build import palette_for, tuned_parts
    from harness.report.overview import overview

    a = analyse(data)
    parts = tuned_parts(a, "digits / mlp")
    monkeypatch.setattr("harness.report.overview.save", lambda figure, path: figure)
    figure = overview(parts["runs"], parts["metrics"], parts["layers"], palette_for(a), tmp_path / "o.png")
    dead = next(ax for ax in figure.axes if ax.get_title().startswith("3 dead units"))
    assert dead.get_ylim()[0] == 0.0 and dead.get_ylim()[1] < 0.2
    plt.close(figure)


# ---------------------------------------------------------------- 3. omitted activations named


def test_a_panel_that_leaves_an_activation_out_says_which_and_why(data):
    note = omitted.left_out(data.metrics, "units")
    assert "relu_squared" in note and "unbounded" in note and "saturated fraction" in note
    assert "gelu" not in note and "silu" not in note
    assert omitted.left_out(data.metrics[data.metrics["act"] != "relu_squared"], "units") == ""
    other = data.metrics[~((data.metrics["act"] == "gelu") & (data.metrics["metric"] == "act_std"))]
    assert "gelu (its runs recorded no value of it)" in omitted.left_out(other, "activations")


def test_the_units_caption_names_the_omitted_activation(data):
    from harness.report.analysis import analyse
    from harness.report.build import report_blocks
    from harness.report.render import Figure

    figures = {"digits-mlp_units": Path("units.png"), "digits-mlp_activations": Path("a.png")}
    blocks = report_blocks(analyse(data), [Path(".")], pd.DataFrame(), figures, {})  # type: ignore[arg-type]
    captions = {b.path.name: b.caption for b in blocks if isinstance(b, Figure)}
    assert "Not in the saturated fraction panels: relu_squared (f' is unbounded" in captions["units.png"]
    assert "relu_squared" not in captions["a.png"]


# ---------------------------------------------------------------- 4. intervals inside the metric's range


def test_a_two_seed_accuracy_interval_is_shown_inside_zero_one(report):
    from scipy import stats as sps

    acc = np.array(ACCS["relu"])
    half = sps.t.ppf(0.975, 1) * acc.std(ddof=1) / np.sqrt(2)
    assert acc.mean() + half > 1.5  # the t-interval itself reaches far past 1
    assert pd.read_csv(report / "summary.csv").query("act == 'relu'")["acc_ci_high"].iloc[0] > 1  # raw data kept
    md = (report / "report.md").read_text(encoding="utf-8")
    shown = [float(x) for x in re.findall(r"\b\d\.\d{3}\b", md.split("## The runs")[0])]
    assert shown and max(shown) <= 1.0
    assert "relu 0.950 [0.315, 1.000]" in md  # the answer's text and the results table
    assert "| 0.950 [0.315, 1.000] |" in md
    tex = (report / "tables.tex").read_text(encoding="utf-8")
    assert "0.950 [0.315, 1.000]" in tex


def test_with_ci_and_error_bars_clip_to_the_range():
    from harness.report.render import with_ci
    from harness.report.summary_figures import interval_err

    assert with_ci(0.95, 0.3, 1.6, bounds=(0.0, 1.0)) == "0.950 [0.300, 1.000]"
    assert with_ci(0.95, 0.3, 1.6) == "0.950 [0.300, 1.600]"  # no range given: as computed
    assert interval_err(0.95, -0.2, 1.6) == [[pytest.approx(0.95)], [pytest.approx(0.05)]]


def test_figure_bands_of_an_accuracy_end_at_one(data, monkeypatch):
    two = data.metrics[data.metrics["act"].isin(["relu", "gelu"])]
    figure = drawn(fig.learning_curves, monkeypatch, two, palette(["relu", "gelu"], "relu"))
    accuracy = [ax for ax in figure.axes if ax.get_title() == "validation accuracy"]
    assert accuracy
    for ax in accuracy:
        assert max(axes.plotted_y(ax)) <= 1.0
        assert ax.get_ylim()[1] <= 1.0 + axes.MARGIN
    plt.close(figure)


# ---------------------------------------------------------------- 5. LaTeX


def parse_tables(tex: str) -> list[tuple[int, list[str], list[list[str]]]]:
    """(columns of the spec, header cells, body rows) of every tabular."""
    found = []
    for spec, body in re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", tex, flags=re.S):
        assert body.count(r"\toprule") == 1 and body.count(r"\midrule") == 1 and body.count(r"\bottomrule") == 1
        head, rest = body.split(r"\midrule")
        rows = [line.strip() for line in rest.split(r"\bottomrule")[0].strip().splitlines()]
        cells = [re.split(r"(?<!\\)&", r.removesuffix(r"\\")) for r in rows]
        header = re.split(r"(?<!\\)&", head.replace(r"\toprule", "").strip().removesuffix(r"\\"))
        found.append((len(spec), header, cells))
    return found


def test_latex_has_a_booktabs_table_per_question_that_fits_a_page(report):
    tex = (report / "tables.tex").read_text(encoding="utf-8")
    tables = parse_tables(tex)
    assert len(tables) == 5  # accuracy, stability, dead units, gradient flow, cost
    for columns, header, cells in tables:
        assert columns <= 7 and len(header) == columns
        assert all(len(row) == columns for row in cells)
        assert len(cells) == len({tuple(row) for row in cells})  # no duplicate rows
        assert len(cells) == len(ACCS)  # one row per activation at its chosen setting
    assert tex.count(r"\small") == 5 and "booktabs" in tex
    assert "% Cost: time per step and memory are left out" in tex  # no cost probe records in these runs
    assert "task: digits / mlp" in tex  # one task: said once in the caption, not in every row


def test_a_wide_table_is_scaled_and_a_long_one_continues():
    from harness.report.latex import MAX_ROWS, pages

    long = pd.DataFrame({"activation": [f"act{i}" for i in range(MAX_ROWS + 3)], "x": ["y" * 120] * (MAX_ROWS + 3)})
    parts = pages(long, "cap", "tab:x")
    assert len(parts) == 2 and "(continued)" in parts[1] and r"\resizebox{\linewidth}" in parts[0]
    assert r"\resizebox" not in pages(long.assign(x="y").head(3), "cap", "tab:y")[0]


@pytest.mark.slow  # pdflatex compiles the tables (skipped where there is no TeX installation)
def test_tables_tex_compiles(report, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\usepackage{graphicx}\\begin{document}"
        f"\\input{{{report / 'tables.tex'}}}\\end{{document}}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path, capture_output=True
    )
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log  # every table fits the page's width


# ---------------------------------------------------------------- 6. the matched width


def test_the_transformer_shows_its_matched_ffn_width(tmp_path):
    from harness.networks.activations import activation_spec
    from harness.networks.models import TransformerConfig, build_model
    from harness.report.analysis import analyse
    from harness.report.headline import glance_table
    from harness.report.load import gather

    base = to_dict(compose_config("model=transformer", "model.width=32", "model.match_params=true", "dataset=digits"))
    folder = write_runs(tmp_path / "runs", base, {"relu": [0.9, 0.91], "swiglu": [0.92, 0.93]}, model="transformer")
    table = glance_table(analyse(gather([folder])).summary).set_index("activation")
    for act in ["relu", "swiglu"]:  # torch's model as the reference: the FFN's inner width it builds
        model = build_model(
            TransformerConfig(depth=1, width=32, match_params=True), activation_spec({"name": act}), (1, 8, 8), 10
        )
        d_ff = model.hidden[0].ffn_out.in_features
        assert table.loc[act, "matched width"] == f"FFN d_ff {d_ff}"
    assert table.loc["swiglu", "matched width"] != table.loc["relu", "matched width"]  # 85 against 128


def test_the_mlp_shows_its_matched_hidden_width():
    from harness.report.headline import glance_table
    from harness.report.load import label
    from tests.test_report import matched_and_not

    labelled = label(matched_and_not())
    s = labelled.assign(
        act=labelled["activation"], seeds=1, diverged=0, note="", n_params=1.0, **{c: np.nan for c in STAT_COLUMNS}
    )
    assert glance_table(s)["matched width"].tolist() == ["units 67", "units 100"]


STAT_COLUMNS = [
    f"{m.short}_{suffix}"
    for m in METRICS
    for suffix in (["gmean", "ci_low", "ci_high"] if m.geometric else ["mean", "sd", "ci_low", "ci_high", "worst"])
]
