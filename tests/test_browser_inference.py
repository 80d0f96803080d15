"""The Inference page (and the Rotary page's new length view) in real Chromium through a
real server: reached from the sidebar, no exception, every chart drawn, the same text
with and without the cache said on the page, and screenshots at 1280x720 and 1920x1080
in test-artifacts/ for a person to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from helpers_browser import open_page, screenshot, sidebar_links, wait_for_app
from runs_fixtures import train_tiny_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A classroom-like shape with 4 heads, so multi-head, grouped (2) and multi-query exist.
SHAPE = dict(context_window=64, d_model=64, n_layers=2, n_heads=4, steps=40)
SIZES = [(1280, 720), (1920, 1080)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A dashboard over a store with a multi-head, a grouped-query and a learned-positions
    run of one shape: (base url, {name: run id})."""
    from conftest import running_dashboard

    runs = tmp_path_factory.mktemp("inference-browser-runs")
    names = {"mha": {}, "gqa": {"n_kv_heads": 2}, "learned": {"pos": "learned"}}
    ids = dict(zip(names, train_tiny_runs(runs / "llama_lab.db", names, **SHAPE)))
    with running_dashboard(runs, "inference-server.log") as url:
        yield url, ids


@pytest.mark.parametrize("width,height", SIZES)
def test_inference_page_draws_everything_and_says_the_texts_match(server, browser, width,
                                                                   height):
    url, ids = server
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        open_page(page, url)
        assert "Inference" in dict(sidebar_links(page))
        page.goto(f"{url}/inference?run={ids['gqa']}", wait_until="domcontentloaded")
        wait_for_app(page, timeout_ms=180_000)
        expect(page.locator("[data-testid='stException']")).to_have_count(0)
        expect(page.get_by_text("Both ways wrote the same text")).to_be_visible()
        expect(page.locator("[data-testid='stPlotlyChart']")).to_have_count(3)
        # Plotly drew real axes with their units (not an empty frame).
        for words in ("tokens per second", "KiB per token", "nats per character"):
            expect(page.locator(f"svg text:has-text('{words}')").first).to_be_attached()
        screenshot(page, f"inference-{width}x{height}")
        screenshot(page, f"inference-top-{width}x{height}", full_page=False)
    finally:
        context.close()


def test_rotary_length_view_in_the_browser(server, browser):
    url, ids = server
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{url}/rotary?run={ids['mha']}", wait_until="domcontentloaded")
        wait_for_app(page, timeout_ms=180_000)
        expect(page.locator("[data-testid='stException']")).to_have_count(0)
        expect(page.get_by_text("Learned positions cannot go past their table")).to_be_visible()
        expect(page.locator("svg text:has-text('Loss at each position')")).to_have_count(1)
        screenshot(page, "rotary-lengths-1280x720")
    finally:
        context.close()
