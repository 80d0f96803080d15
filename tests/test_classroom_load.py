"""The classroom load check in miniature, in CI: benchmarks/load_classroom.py with 12
students as websocket tabs (Streamlit's own protocol, see benchmarks/streamlit_client.py)
for 30 s against one server with a job limit of 1 and classroom settings. Every student
opens pages, launches a tiny run and keeps reading pages whose live parts refresh, and
reloads now and then; the check is zero errors, every run finished and stored as its
student's (the id a browser keeps in its cookie). Timings are printed, never asserted."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers_browser import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from load_classroom import run_load  # noqa: E402
from streamlit_client import ProtocolError, StreamlitTab  # noqa: E402


def test_twelve_students_at_once():
    report = run_load(sessions=12, duration=30, max_concurrent=1, steps=20,
                      finish_timeout=300, timeout_ms=90_000, client="tab")
    print(report)
    assert report["errors"] == 0, report["error_samples"]
    assert report["runs_launched"] == 12 and report["runs_by_status"] == {"finished": 12}
    assert not report["runs_unfinished"]
    assert not report["runs_with_wrong_owner"]  # a reloaded tab is the same student
    assert report["pages"] >= 12 * 4
    assert report["server_rss_mb"]["peak"] > 0


def test_the_tab_client_sees_what_a_browser_would(streamlit_server):
    """The client finds a page's widgets by key, follows the app's pages, and says
    clearly when asked for a page or a widget that is not there."""
    async def visit():
        tab = StreamlitTab(streamlit_server, timeout=90)
        try:
            page = await tab.open("train")
            assert "Build & train" in page.headings and not page.exceptions
            assert page.widgets["tr_launch"][1] == "button"
            assert {"train", "compare", "teacher"} <= set(tab.pages)
            page = await tab.set("tr_preset", "tiny")
            assert not page.exceptions and not page.errors
            page = await tab.navigate("teacher")
            assert "Teacher" in page.headings
            with pytest.raises(ProtocolError, match="no widget with key 'tr_launch'"):
                await tab.click("tr_launch")
            with pytest.raises(ProtocolError, match="no page at /nowhere"):
                await tab.navigate("nowhere")
        finally:
            await tab.close()
    # A thread of its own: Playwright's sync API may hold this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, visit()).result()
