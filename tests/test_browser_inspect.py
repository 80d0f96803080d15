"""Attention, Rotary and Generate in real Chromium, opened by URL with finished runs in
``?run=`` (as Build & train and Compare link to them): no exception, the charts drawn,
a screenshot of each in test-artifacts/ for a person to look at, and the time each page
took to render."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from helpers_browser import ARTIFACTS, REPO, open_page, screenshot, wait_for_app, \
    wait_for_health
from runs_fixtures import train_tiny_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The classroom shape (4 layers x 4 heads, 128 wide, context 64), trained briefly: what
# a class looks at, so the screenshots and timings are the real size.
CLASSROOM = dict(context_window=64, d_model=128, n_layers=4, n_heads=4, steps=40)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A dashboard server over a run store holding two finished classroom-sized runs
    (causal, and causal mask off); yields (base url, run ids)."""
    runs = tmp_path_factory.mktemp("inspect-browser-runs")
    ids = train_tiny_runs(runs / "llama_lab.db", {"llama": {}, "no-mask": {"causal": False}},
                          **CLASSROOM)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "streamlit-server-inspect.log", "w")
    env = {**os.environ, "LLAMA_LAB_RUNS": str(runs), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless",
         "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_health(url, timeout_s=60), "Streamlit did not start"
        yield url, ids
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def timed_open(page, url: str, name: str) -> float:
    """Open a page, check it, screenshot it; return seconds until it had rendered."""
    start = time.perf_counter()
    open_page(page, url)
    elapsed = time.perf_counter() - start
    with open(ARTIFACTS / "inspect-timings.txt", "a") as f:
        f.write(f"{name}: {elapsed:.2f} s to render {url.split('/', 3)[-1]}\n")
    screenshot(page, name)
    return elapsed


def test_attention_page_with_two_runs(page, server):
    url, (llama, nomask) = server
    timed_open(page, f"{url}/attention?run={llama}&run={nomask}", "inspect-attention")
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(8)  # 2 grids, difference, 2 heads, entropy, distance, future
    expect(page.get_by_text("rows = query position, columns = key position").first
           ).to_be_visible()
    assert f"run={llama}" in page.url and f"run={nomask}" in page.url


def test_rotary_page_with_a_rope_run(page, server):
    url, (llama, _) = server
    timed_open(page, f"{url}/rotary?run={llama}", "inspect-rotary")
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(6)  # spectrum, circle, distance, scaling, lengths, logits
    expect(page.get_by_test_id("stMetric")).to_contain_text("logits")


def test_generate_page_with_two_runs_and_a_bad_prompt(page, server):
    url, (llama, nomask) = server
    timed_open(page, f"{url}/generate?run={llama}&run={nomask}", "inspect-generate")
    expect(page.get_by_test_id("stCode")).to_have_count(2)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(2)
    prompt = page.get_by_label("Prompt")
    prompt.fill("Zoë: hello")
    prompt.press("Enter")
    wait_for_app(page)
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text("'ë'")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stSlider")).to_have_count(2)  # temperature, length
    screenshot(page, "inspect-generate-unknown")


def test_no_exception_after_changing_controls(page, server):
    url, (llama, _) = server
    open_page(page, url)
    open_page(page, f"{url}/attention?run={llama}")
    prompt = page.get_by_label("Prompt")
    prompt.fill("First Citizen: Before we proceed any further, hear me speak. All: Speak!")
    prompt.press("Enter")
    wait_for_app(page)
    expect(page.get_by_test_id("stAlertContentInfo").first).to_contain_text(
        "last 64 characters")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    screenshot(page, "inspect-attention-long-prompt")
