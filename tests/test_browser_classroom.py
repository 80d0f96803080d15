"""A classroom in real Chromium: the Teacher page's predict-reveal-download path, and a
small version of benchmarks/load_classroom.py (4 students for ~30 s against one server
with a job limit of 1 and classroom settings): zero errors and every run finished."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from helpers_browser import REPO, assert_no_exception, open_page, screenshot, wait_for_app
from runs_fixtures import train_tiny_runs

pytestmark = pytest.mark.browser


def test_teacher_page_predict_reveal_and_download(tmp_path, browser, monkeypatch):
    from conftest import running_dashboard

    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.delenv("LLAMA_LAB_CLASSROOM", raising=False)
    a, b = train_tiny_runs(runs / "llama_lab.db", {"baseline": {},
                                                   "no-rope": {"pos": "none"}},
                           steps=10, eval_interval=5)
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        with running_dashboard(runs, "teacher-server.log") as url:
            open_page(page, f"{url}/teacher?runs={a}&runs={b}")
            expect(page.get_by_role("heading", name="Teacher")).to_be_visible()
            wait_for_app(page)
            assert_no_exception(page)
            expect(page.get_by_text("What did the class find?")).to_be_visible()
            reveal = page.locator(".st-key-t_reveal button")
            expect(reveal).to_be_disabled()
            page.get_by_role("radiogroup").get_by_text(f"baseline ({a})").click()
            wait_for_app(page)
            reveal.click()
            wait_for_app(page)
            expect(page.locator(".st-key-t_curves")).to_be_visible()
            expect(page.get_by_text("Lowest final validation loss")).to_be_visible()
            page.locator(".st-key-t_prepare button").click()
            wait_for_app(page)
            with page.expect_download() as info:
                page.locator(".st-key-t_download button").click()
            path = Path(info.value.path())
            html = path.read_text(encoding="utf-8")
            assert a in html and b in html and "Plotly" in html
            assert "<script src=" not in html  # self-contained
            screenshot(page, "teacher-revealed")
            # The share link reopens the same comparison in a fresh tab.
            other = context.new_page()
            open_page(other, f"{url}/compare?runs={a}&runs={b}")
            expect(other.get_by_role("heading", name="Compare runs")).to_be_visible()
            wait_for_app(other)
            assert_no_exception(other)
            expect(other.locator("[data-testid='stPlotlyChart']").first).to_be_visible()
    finally:
        context.close()


def test_four_students_at_once(browser):
    """The load check in miniature (the browser fixture only proves Chromium is here)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from load_classroom import run_load

    report = run_load(sessions=4, duration=30, max_concurrent=1, steps=20,
                      finish_timeout=180, timeout_ms=90_000)
    print(report)
    assert report["errors"] == 0, report["error_samples"]
    assert report["runs_launched"] == 4 and report["runs_by_status"] == {"finished": 4}
    assert not report["runs_unfinished"]
    assert report["pages"] >= 4 * 4
    assert report["server_rss_mb"]["peak"] > 0
