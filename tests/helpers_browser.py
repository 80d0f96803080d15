"""Harness for driving the real dashboard in headless Chromium.

Streamlit reports its own state on the root element (`data-test-script-state` goes
initial -> running -> notRunning on every rerun), so we wait on that instead of sleeping.
Every wait is bounded, so a hung page fails a test instead of hanging CI.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, expect

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Headless, as root, on a machine with no outside network: skip what would phone home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
APP_TIMEOUT_MS = 60_000
SETTLE_MS = 250  # longer than Streamlit's ~200 ms widget debounce


def wait_for_health(base_url: str, timeout_s: float = 60.0) -> bool:
    """Poll Streamlit's health endpoint until it answers 'ok' or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def wait_for_app(page: Page, timeout_ms: int = APP_TIMEOUT_MS) -> None:
    """Block until the script has finished its run and every element has rendered."""
    page.wait_for_timeout(SETTLE_MS)
    app = "[data-testid='stApp']"
    page.locator(f"{app}[data-test-connection-state='CONNECTED']").wait_for(
        state="attached", timeout=timeout_ms)
    page.locator(f"{app}[data-test-script-state='notRunning']").wait_for(
        state="attached", timeout=timeout_ms)
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=timeout_ms)
    stale = page.locator("[data-testid='stElementContainer'][data-stale='true']")
    expect(stale).to_have_count(0, timeout=timeout_ms)


# From the Launch click on, every animation frame notes, on the browser's own clock (no
# round trip to Playwright skews it), when the address first names a run, when the live
# chart's plot exists and when its per-step trace holds a point.
_FIRST_POINT_WATCH = """name => {
    const seen = window.__firstPoint = {click: null, url: null, chart: null, point: null};
    const frame = () => {
        const now = performance.now();
        if (seen.url === null && /[?&]run=/.test(location.search)) seen.url = now;
        const plot = document.querySelector('.st-key-tr_loss_chart .js-plotly-plot');
        if (plot && seen.chart === null) seen.chart = now;
        const trace = plot && (plot._fullData || []).find(t => t.name === name);
        if (trace && trace.y && trace.y.length) seen.point = now;
        else requestAnimationFrame(frame);
    };
    document.querySelector('.st-key-tr_launch button').addEventListener('click', () => {
        seen.click = performance.now();
        requestAnimationFrame(frame);
    }, {once: true, capture: true});
}"""


def watch_first_point(page: Page, trace_name: str) -> None:
    """Before pressing Launch: note in the page when the run's first point is drawn."""
    page.evaluate(_FIRST_POINT_WATCH, trace_name)


def first_point_seen(page: Page, timeout_ms: int = 60_000) -> dict:
    """After Launch: seconds from the click to the URL naming the run, to the live chart
    and to its first point, as the page noted them (waits for the point)."""
    page.wait_for_function("window.__firstPoint.point !== null", polling=250,
                           timeout=timeout_ms)
    seen = page.evaluate("window.__firstPoint")
    return {k: (seen[k] - seen["click"]) / 1000 for k in ("url", "chart", "point")}


def press_launch(page: Page, expect_run: bool = True) -> float:
    """Press Build & train's Launch, first ticking the over-an-hour confirmation when the
    estimate asks for it (a long run on a busy machine does); return when it was pressed
    (time.monotonic), once the URL names the new run (or the app has answered, for a
    launch that is to be refused)."""
    wait_for_app(page)
    if page.locator(".st-key-tr_confirm_long input").count():
        page.locator(".st-key-tr_confirm_long label").first.click()
        wait_for_app(page)
    page.locator(".st-key-tr_launch button").first.click()
    clicked = time.monotonic()
    if expect_run:
        page.wait_for_url(re.compile(r"[?&]run="), timeout=30_000)
    else:
        wait_for_app(page)
    return clicked


def assert_no_exception(page: Page, where: str = "") -> None:
    """Fail with the exception's own text if any element shows a Streamlit traceback."""
    errors = page.locator("[data-testid='stException']")
    if errors.count():
        text = "\n---\n".join(errors.all_inner_texts())
        raise AssertionError(f"Streamlit exception on {where or page.url}:\n{text}")


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    """Save test-artifacts/<name>.png (git-ignored) so a person can look at the page.

    Streamlit scrolls inside its own container, so Playwright's full_page sees only the
    viewport: for a whole page we stretch the viewport to the content, then restore it.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        "() => Math.max(...['stMain', 'stSidebarContent'].map(id => "
        "document.querySelector(`[data-testid='${id}']`)?.scrollHeight || 0))")
    if full_page and size and height > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": min(height, 8000)})
        page.wait_for_timeout(400)  # let charts re-layout to the new size
    try:
        page.screenshot(path=str(path))
    finally:
        if size:
            page.set_viewport_size(size)
    return path


def open_page(page: Page, url: str, name: str | None = None) -> Page:
    """Go to url, wait for the app, check for exceptions, and screenshot it if named."""
    page.goto(url, wait_until="domcontentloaded", timeout=APP_TIMEOUT_MS)
    wait_for_app(page)
    assert_no_exception(page, url)
    if name:
        screenshot(page, name)
    return page


def sidebar_links(page: Page) -> list[tuple[str, str]]:
    """(title, href) of every page in the sidebar menu; empty while there is one page."""
    more = page.get_by_test_id("stSidebarNavViewButton")
    if more.count() and "more" in more.inner_text().lower():
        more.click()
    links = page.locator("[data-testid='stSidebarNav'] [data-testid='stSidebarNavLink']")
    # A link's text starts with its icon's ligature name ("home"); the title is last.
    return [(link.inner_text().strip().splitlines()[-1].strip(),
             link.get_attribute("href") or "") for link in links.all()]


def click_sidebar_link(page: Page, title: str, name: str | None = None) -> Page:
    """Open a page through its sidebar link, as a student would, and check it."""
    hrefs = dict(sidebar_links(page))
    if title not in hrefs:
        raise AssertionError(f"no sidebar link {title!r}; the menu has {sorted(hrefs)}")
    target = hrefs[title].split("?")[0].rstrip("/")
    page.locator(f"[data-testid='stSidebarNavLink'][href='{hrefs[title]}']").click()
    page.wait_for_url(lambda url: url.split("?")[0].rstrip("/") == target,
                      timeout=APP_TIMEOUT_MS)
    wait_for_app(page)
    assert_no_exception(page, title)
    if name:
        screenshot(page, name)
    return page
