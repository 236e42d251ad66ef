"""The HTML report in headless Chromium: tables fit at 1,400 and 900 px, the plotly figures hover and toggle, and
the page makes no network request (read from Chromium's network log). A fast twin checks the same page's
structure without a browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.report.analysis import analyse
from harness.report.build import interactive_figures, report_blocks
from harness.report.interactive import plotly_script
from harness.report.load import gather
from harness.report.render import STACK_BELOW, to_html
from harness.setup.config import to_dict
from tests.conftest import chromium, compose_config
from tests.test_report_known import write_runs

WIDTHS = [1400, 900]
QUESTIONS = 5


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """The report's HTML for known runs, with its interactive figures (static figures are not drawn: faster)."""
    config = to_dict(compose_config("model=mlp", "model.depth=2", "model.width=8", "dataset=digits"))
    folder = write_runs(tmp_path_factory.mktemp("page") / "runs", config, new_keys=True)
    a = analyse(gather([folder]))
    blocks = report_blocks(a, [folder], pd.DataFrame(), {}, interactive_figures(a))
    path = folder.parent / "report.html"
    path.write_text(to_html("Activation comparison", blocks, plotly_script()), encoding="utf-8")
    return path


def test_page_structure_fast_twin(page):
    html = page.read_text(encoding="utf-8")
    library = plotly_script()
    assert html.count(library) == 1  # plotly.js inlined once for the page, however many figures
    assert html.count("Plotly.newPlot(") == QUESTIONS  # one interactive figure per question (one task)
    outside_scripts = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", outside_scripts)  # nothing to fetch
    assert "<script src" not in html
    wide = re.findall(r'<table class="wide">.*?</table>', html, flags=re.S)
    assert wide and all('data-label="task"' in t for t in wide)  # cells labelled for the stacked layout
    assert f"@media (max-width: {STACK_BELOW - 1}px)" in html
    assert html.count('"itemclick":"toggle"') == QUESTIONS  # a legend click hides or shows an activation
    *per_seed, cost = html.split("Plotly.newPlot(")[1:]  # in the questions' order: cost last
    for figure in per_seed:  # each figure's data: hover names activation and seed
        assert '"hovertemplate":"relu\\u003cbr\\u003eseed' in figure
    assert "no cost probe records" in cost  # these runs have none: the cost figure says so, drawing no run speed


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with its network log on."""
    driver = chromium(tmp_path_factory.mktemp("chrome-profile"), {"browser": "ALL", "performance": "ALL"})
    yield driver
    driver.quit()


def requests(driver, url: str) -> list[str]:
    """Every URL the page asked for while loading, from Chromium's network (performance) log."""
    driver.get_log("performance"), driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    driver.execute_script("return document.readyState")
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        # Chromium's own pages (the new-tab page it opens with) log requests too: those are not the report's.
        if message["method"] == "Network.requestWillBeSent" and not message["params"].get("documentURL", "").startswith(
            ("chrome:", "chrome-")
        ):
            found.append(message["params"]["request"]["url"])
    return found


def external(urls: list[str]) -> list[str]:
    return [u for u in urls if not u.startswith(("file:", "data:", "about:"))]


@pytest.mark.slow
@pytest.mark.extra("browser")
def test_the_network_check_can_fail(browser, tmp_path):
    page = tmp_path / "fetches.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="http://127.0.0.1:9/x.png"></body></html>'
    )
    assert external(requests(browser, page.as_uri())) == ["http://127.0.0.1:9/x.png"]


@pytest.mark.slow
@pytest.mark.extra("browser")
def test_page_makes_no_network_request(browser, page):
    urls = requests(browser, page.as_uri())
    assert urls and external(urls) == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


OVERFLOW = """
const doc = document.documentElement;
const out = {page: doc.scrollWidth - doc.clientWidth, tables: [], captions: []};
for (const t of document.querySelectorAll('table')) {
  out.tables.push(t.getBoundingClientRect().right - document.body.getBoundingClientRect().right);
  out.tables.push(t.scrollWidth - t.clientWidth);
}
for (const c of document.querySelectorAll('caption, td, th')) out.captions.push(c.scrollWidth - c.clientWidth);
out.stacked = Array.from(document.querySelectorAll('table.wide thead')).map(h => getComputedStyle(h).display);
return out;
"""


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.extra("browser")
def test_tables_fit_the_page(browser, page, width):
    browser.set_window_size(width, 1000)
    browser.get(page.as_uri())
    inner = browser.execute_script("return window.innerWidth")
    found = browser.execute_script(OVERFLOW)
    assert found["page"] <= 0, f"the page scrolls sideways at {inner} px"
    assert max(found["tables"]) <= 1, "a table is wider than the page"
    assert max(found["captions"]) <= 1, "a caption or cell is clipped"
    assert set(found["stacked"]) == ({"none"} if inner < STACK_BELOW else {"table-header-group"})


@pytest.mark.slow
@pytest.mark.extra("browser")
def test_figures_hover_and_legends_toggle(browser, page):
    from selenium.webdriver.support.wait import WebDriverWait

    browser.set_window_size(1400, 1000)
    browser.get(page.as_uri())
    plots = browser.execute_script("return document.querySelectorAll('.js-plotly-plot').length")
    assert plots == QUESTIONS
    templates = browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => p.data.map(t => t.hovertemplate))"
    )
    assert all(all("seed" in t and "relu" in " ".join(ts) for t in ts) for ts in templates)
    curves = "document.querySelectorAll('.js-plotly-plot')[1]"  # validation accuracy, one line per seed
    browser.execute_script(f"Plotly.Fx.hover({curves}, [{{curveNumber: 0, pointNumber: 2}}])")
    label = browser.execute_script(f"return {curves}.querySelector('.hoverlayer').textContent")
    name = browser.execute_script(f"return {curves}.data[0].name")
    assert re.fullmatch(rf"{name}seed \dstep 30val acc (0.8000|0.6750)", label), label  # RISE[2] or DIP[2]
    visible = "return document.querySelectorAll('.js-plotly-plot')[0].data[0].visible"
    assert browser.execute_script(visible) in (None, True)
    browser.find_elements("css selector", ".js-plotly-plot .legend .traces .legendtoggle")[0].click()
    # plotly waits out its double-click delay (300 ms) before a single click hides the trace
    WebDriverWait(browser, 3).until(lambda d: d.execute_script(visible) == "legendonly")
