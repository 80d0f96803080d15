"""A classroom in real Chromium: the Teacher page's predict-reveal-download path, and a
small version of benchmarks/load_classroom.py (4 students for ~30 s against one server
with a job limit of 1 and classroom settings): zero errors and every run finished."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from helpers_browser import (REPO, assert_no_exception, open_page, press_launch, screenshot,
                             wait_for_app)
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


def test_a_reload_is_the_same_student(tmp_path, browser, monkeypatch):
    """The per-student cap and name survive a reload: the student id lives in a cookie,
    so the reloaded tab keeps its name and is refused a second run, while another
    browser is not."""
    from conftest import running_dashboard
    from llama_core.lab.store import RunStore
    from test_browser_train_compare import choose, open_app_page, run_in_url, set_number

    settings = tmp_path / "classroom.toml"
    settings.write_text("[caps]\nrunning_per_student = 1\nqueued_per_student = 0\n")
    monkeypatch.setenv("LLAMA_LAB_CLASSROOM", str(settings))
    monkeypatch.setenv("LLAMA_LAB_MAX_CONCURRENT", "1")
    runs = tmp_path / "runs"
    runs.mkdir()
    store = RunStore(runs / "llama_lab.db")
    alice = browser.new_context(viewport={"width": 1400, "height": 900})
    bob = browser.new_context(viewport={"width": 1400, "height": 900})

    def build(page, url):
        open_app_page(page, f"{url}/train", "Build & train")
        choose(page, "tr_preset", "tiny")
        set_number(page, "tr_steps", 100_000)  # stopped below, long before the end

    def launch(page, url, expect_run=True):
        build(page, url)
        press_launch(page, expect_run)

    with running_dashboard(runs, "identity-server.log") as url:
        try:
            page = alice.new_page()
            launch(page, url)
            page.wait_for_url(re.compile(r"[?&]run="), timeout=30_000)
            first = run_in_url(page)
            cookie = {c["name"]: c["value"] for c in alice.cookies()}["llama_lab_student"]
            assert store.get_run(first).owner == cookie
            name = page.locator(".st-key-student_name input")
            name.fill("Alice")
            name.press("Enter")
            wait_for_app(page)
            assert store.student_names() == {cookie: "Alice"}

            page.reload()
            wait_for_app(page)
            expect(page.locator(".st-key-student_name input")).to_have_value("Alice")
            launch(page, url, expect_run=False)  # the cap is counted as the run is stored
            expect(page.get_by_test_id("stAlertContentError")).to_contain_text(
                "You already have 1 run(s) running and 0 waiting")
            assert_no_exception(page)
            screenshot(page, "classroom-cap-after-reload")
            assert [r.id for r in store.list_runs()] == [first]

            other = bob.new_page()
            launch(other, url)
            other.wait_for_url(re.compile(r"[?&]run="), timeout=30_000)
            second = run_in_url(other)
            assert store.get_run(second).owner not in (None, cookie)
        finally:
            for run in store.list_runs(status=("queued", "running")):
                store.request_stop(run.id)
            alice.close()
            bob.close()
