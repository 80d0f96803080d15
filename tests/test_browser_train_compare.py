"""Build & train and Compare in real Chromium against a real server and real training.

A student's path: open Build & train, pick a preset, launch, watch the loss chart gain
points, reload the tab mid-run and find the run still live (its id is in the URL), stop
it; then open Compare from a shared link with two run ids and see both curves. Every
step checks for Streamlit exceptions and leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from helpers_browser import (assert_no_exception, open_page, press_launch, screenshot,
                             wait_for_app)
from runs_fixtures import train_tiny_runs

pytestmark = pytest.mark.browser

RUN_TIMEOUT_S = 90


def chart_traces(page: Page, key: str) -> list[tuple[str, int]]:
    """(name, number of points) of every trace of the plotly chart with this key, read
    from plotly's own graph div (its _fullData holds the decoded arrays; data keeps
    the spec's base64 form). A Compare trace is named by its run id (its meta)."""
    plot = page.locator(f".st-key-{key} .js-plotly-plot")
    if not plot.count():
        return []
    return plot.first.evaluate(
        "gd => (gd._fullData || []).map(t => [t.meta || t.name || '', "
        "(t.y && t.y.length) || 0])")


def wait_for_points(page: Page, key: str, trace: str, at_least: int,
                    timeout_s: float = RUN_TIMEOUT_S) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        points = dict(chart_traces(page, key))
        seen = points.get(trace, 0)
        if seen >= at_least:
            return seen
        assert_no_exception(page)
        page.wait_for_timeout(500)
    raise AssertionError(f"the {trace!r} curve had {seen} points after {timeout_s} s, "
                         f"expected at least {at_least}")


def set_number(page: Page, key: str, value) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    wait_for_app(page)


def choose(page: Page, key: str, option: str) -> None:
    """Pick an option of a selectbox (a combobox in Streamlit 1.67)."""
    page.locator(f".st-key-{key} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def open_app_page(page: Page, url: str, heading: str, name: str | None = None) -> None:
    """open_page, then wait for the page's own heading: on a cold server the first
    'notRunning' can come before the script has even started."""
    open_page(page, url)
    expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=60_000)
    wait_for_app(page)
    assert_no_exception(page, url)
    if name:
        screenshot(page, name)


def metric_value(page: Page, label: str) -> str:
    m = page.get_by_test_id("stMetric").filter(has_text=label).first
    return m.get_by_test_id("stMetricValue").inner_text().strip()


def run_in_url(page: Page) -> str:
    match = re.search(r"[?&]run=([a-z0-9-]+)", page.url)
    assert match, f"no run id in {page.url}"
    return match.group(1)


def test_build_launch_watch_reload_and_stop(streamlit_server, page):
    open_app_page(page, f"{streamlit_server}/train", "Build & train", "train-1-builder")

    # The preset picker fills the controls: another preset, then back to tiny.
    choose(page, "tr_preset", "nanogpt-cpu")
    expect(page.locator(".st-key-tr_width input")).to_have_value("128")
    choose(page, "tr_preset", "tiny")
    expect(page.locator(".st-key-tr_width input")).to_have_value("64")
    tiny_params = metric_value(page, "Parameters")

    # Toggling a part changes the count at once; an impossible shape is one error.
    page.locator(".st-key-tr_norm").get_by_role("radio", name="none").click()
    wait_for_app(page)
    assert metric_value(page, "Parameters") != tiny_params
    set_number(page, "tr_heads", 3)
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text(
        "n_heads (3) must divide d_model (64)")
    expect(page.locator(".st-key-tr_launch button").first).to_be_disabled()
    screenshot(page, "train-2-invalid")
    set_number(page, "tr_heads", 4)
    page.locator(".st-key-tr_norm").get_by_role("radio", name="RMSNorm").click()
    wait_for_app(page)
    assert metric_value(page, "Parameters") == tiny_params

    # Train on the clock, long enough to reload the tab halfway on a busy machine.
    page.locator(".st-key-tr_budget").get_by_text("a time budget").click()
    wait_for_app(page)
    set_number(page, "tr_seconds", 600)  # stopped long before; never ends on its own here
    press_launch(page)
    run_id = run_in_url(page)
    # Read once: the live chart is redrawn every step, so a second read may fall
    # between two drawings.
    before = wait_for_points(page, "tr_loss_chart", "validation loss", 2)
    expect(page.get_by_test_id("stProgress")).to_be_visible()
    assert_no_exception(page)
    screenshot(page, "train-3-live")

    # A reload is a new session: the URL brings the run back, still live and growing.
    page.reload(wait_until="domcontentloaded")
    wait_for_app(page)
    assert run_in_url(page) == run_id
    expect(page.get_by_text(run_id).first).to_be_visible()
    wait_for_points(page, "tr_loss_chart", "validation loss", before + 1)
    expect(page.get_by_test_id("stProgress")).to_be_visible()
    assert_no_exception(page, "after reload")
    screenshot(page, "train-4-after-reload")

    page.locator(".st-key-tr_stop button").first.click()
    expect(page.get_by_text("stopped", exact=False).first).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stProgress")).to_have_count(0, timeout=60_000)
    wait_for_app(page)
    expect(page.get_by_test_id("stMetric").filter(has_text="Final validation loss")
           ).to_be_visible()
    assert_no_exception(page, "after stop")
    screenshot(page, "train-5-stopped")

    # The finished run links to Compare with itself chosen.
    page.get_by_role("link", name="Compare it with other runs").click()
    page.wait_for_url(re.compile(r"/compare\?runs="), timeout=30_000)
    wait_for_app(page)
    screenshot(page, "train-6-compare")
    names = [n for n, _ in chart_traces(page, "cmp_chart")]
    assert names == [run_id]
    assert_no_exception(page, "compare from the run")


def _server_store(tmp_path_factory) -> Path:
    """The run database of the session's Streamlit server (conftest's streamlit_server
    keeps its runs in the session's 'server-runs' temporary folder)."""
    found = sorted(tmp_path_factory.getbasetemp().glob("server-runs*"))
    assert found, "the streamlit_server fixture's runs folder was not found"
    return found[0] / "llama_lab.db"


def test_compare_from_a_shared_link(streamlit_server, page, tmp_path_factory):
    base, variant = train_tiny_runs(_server_store(tmp_path_factory),
                                    {"baseline": {}, "pos=learned": {"pos": "learned"}})
    url = f"{streamlit_server}/compare?runs={base}&runs={variant}"
    open_app_page(page, url, "Compare runs")
    names = sorted(n for n, _ in chart_traces(page, "cmp_chart"))
    assert names == sorted([base, variant])
    assert all(points == 3 for _, points in chart_traces(page, "cmp_chart"))
    expect(page.get_by_text("What differs")).to_be_visible()
    screenshot(page, "compare-1-shared-link")

    # Another x axis: the curves redraw and the choice joins the link.
    page.locator(".st-key-x").get_by_role("radio", name="FLOPs").click()
    wait_for_app(page)
    page.wait_for_url(re.compile(r"x=FLOPs"), timeout=10_000)
    assert f"runs={base}" in page.url and f"runs={variant}" in page.url
    title = page.locator(".st-key-cmp_chart .js-plotly-plot").first.evaluate(
        "gd => gd.layout.xaxis.title.text")
    assert title == "training compute (FLOPs)"
    assert_no_exception(page, "FLOPs axis")
    screenshot(page, "compare-2-flops")

    # The shared link survives a reload.
    page.reload(wait_until="domcontentloaded")
    wait_for_app(page)
    assert len(chart_traces(page, "cmp_chart")) == 2

    # A link with an id this store does not hold: a warning, the rest still drawn.
    open_app_page(page, f"{url}&runs=rnothere", "Compare runs")
    expect(page.get_by_test_id("stAlertContentWarning")).to_contain_text("rnothere")
    assert len(chart_traces(page, "cmp_chart")) == 2
    screenshot(page, "compare-3-unknown-id")
