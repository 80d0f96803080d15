"""The Ablations, Ladder and Pitfalls pages in real Chromium: the class set's bands
and verdicts on first load, a 2-variant x 2-seed ablation run from the page until its
bands and verdict table appear, the PNG button of Plotly's modebar, and screenshots of
each page in test-artifacts/."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from helpers_browser import APP_TIMEOUT_MS, open_page, screenshot, wait_for_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VERDICTS = re.compile(r"within seed noise|better|worse")


def open_direct(page, url: str, name: str | None = None):
    """Open a page by its address, as a shared link does."""
    return open_page(page, url, name=name)


def chart_fills(page, nth: int = 0) -> int:
    """Filled areas (the 95% bands) drawn in the nth Plotly chart."""
    chart = page.get_by_test_id("stPlotlyChart").nth(nth)
    chart.locator(".main-svg").first.wait_for()
    return chart.locator("path.js-fill").count()


def test_class_set_bands_verdicts_and_png_button(streamlit_server, page):
    open_direct(page, f"{streamlit_server}/ablate", name="ablate-classset")
    assert "group=classset-ablation" in page.url
    assert chart_fills(page) >= 9  # one band per variant, baseline included
    table = page.get_by_test_id("stTable").first
    expect(table).to_contain_text("pos=none")
    expect(table).to_contain_text("within seed noise")
    expect(table).to_contain_text("worse")
    # Plotly's own modebar (not Streamlit's toolbar) offers the PNG download.
    chart = page.get_by_test_id("stPlotlyChart").first
    png = chart.locator(".modebar-btn[data-title='Download plot as a PNG']")
    expect(png).to_have_count(1)
    chart.hover()
    expect(png).to_be_visible()


def test_a_two_variant_two_seed_ablation_from_the_page(streamlit_server, page):
    open_direct(page, f"{streamlit_server}/ablate")
    steps = page.get_by_role("spinbutton", name="Steps per run")
    steps.fill("30")
    steps.press("Enter")
    wait_for_app(page)
    seeds = page.get_by_role("spinbutton", name="Seeds (K)")
    seeds.fill("2")
    seeds.press("Enter")
    wait_for_app(page)
    expect(page.get_by_text("6 runs: 3 variants (baseline included) × 2 seeds")).to_be_visible()
    page.get_by_role("button", name="Start the ablation").click()
    page.wait_for_url(re.compile(r"group=sw-[0-9a-f]+"), timeout=APP_TIMEOUT_MS)
    wait_for_app(page)
    screenshot(page, "ablate-running")
    # Poll the page (its fragment reruns every second) until every run has finished.
    deadline = time.monotonic() + 240
    table = page.get_by_test_id("stTable").first
    while time.monotonic() < deadline:
        if (table.count() and table.inner_text().count("\n") >= 3
                and len(VERDICTS.findall(table.inner_text())) >= 2
                and not page.get_by_test_id("stProgress").count()):
            break
        page.wait_for_timeout(1000)
    else:
        screenshot(page, "ablate-timeout")
        raise AssertionError("the ablation did not finish within 4 minutes")
    wait_for_app(page)
    text = table.inner_text()
    for label in ("baseline", "norm=layernorm", "ffn=gelu"):
        assert label in text
    assert len(VERDICTS.findall(text)) >= 2
    assert chart_fills(page) >= 3  # a 95% band for each of the three variants
    legend = page.get_by_test_id("stPlotlyChart").first.locator(".legendtext")
    expect(legend.first).to_contain_text("(2 seeds)")
    screenshot(page, "ablate-finished")


def test_ladder_and_pitfalls_pages_render(streamlit_server, page):
    open_direct(page, f"{streamlit_server}/ladder", name="ladder")
    expect(page.get_by_text("0.16 (leak: it reads the answer)")).to_be_visible()
    assert page.get_by_test_id("stPlotlyChart").first.locator(".scatterlayer .trace").count() >= 7
    open_direct(page, f"{streamlit_server}/pitfalls", name="pitfalls")
    expect(page.get_by_text("These are deliberate bugs, switched on on purpose.")).to_be_visible()
    expect(page.get_by_text("FIRED").first).to_be_visible()
    page.get_by_text("Bug switched ON").click()
    wait_for_app(page)
    expect(page.get_by_text("silent").first).to_be_visible()
    screenshot(page, "pitfalls-bug-off")
