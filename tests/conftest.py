"""Shared fixtures: a private runs folder, the real TinyShakespeare file, a real
Streamlit server and a real headless Chromium. Nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO, wait_for_health

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    """An empty runs folder, named by LLAMA_LAB_RUNS, so no test touches runs/."""
    path = tmp_path / "runs"
    path.mkdir()
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(path))
    return path


@pytest.fixture
def app_runs(runs_dir):
    """runs_dir for AppTest pages that train: the job manager they start there ends
    afterwards, with any run it started stopped."""
    from helpers_apptest import stop_jobs

    yield runs_dir
    stop_jobs(runs_dir)


@pytest.fixture(scope="session")
def tinyshakespeare_dir() -> Path:
    """The folder holding tinyshakespeare.txt: LLAMA_LAB_DATA, else ../shared/data."""
    candidates = [Path(os.environ["LLAMA_LAB_DATA"])] if os.environ.get("LLAMA_LAB_DATA") else []
    candidates.append(REPO.parent / "shared" / "data")
    for folder in candidates:
        if (folder / "tinyshakespeare.txt").is_file():
            return folder.resolve()
    pytest.skip("tinyshakespeare.txt not found; set LLAMA_LAB_DATA")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and much faster than on two when other
    work shares the two cores; restored afterwards so other test files are unaffected."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def running_dashboard(runs: Path, log_name: str = "streamlit-server.log"):
    """`streamlit run dashboard.py` on a free loopback port with LLAMA_LAB_RUNS=runs;
    yields its base URL once /_stcore/health answers, and ends it afterwards. Its
    output is kept in test-artifacts/<log_name> for when a page misbehaves."""
    port = _free_port()
    env = {**os.environ, "LLAMA_LAB_RUNS": str(runs), "PYTHONUNBUFFERED": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / log_name
    log = open(log_path, "w")
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard.py",
           "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_health(url, timeout_s=60):
            alive = proc.poll() is None
            raise RuntimeError(f"Streamlit did not answer /_stcore/health within 60 s "
                               f"(process {'running' if alive else 'exited'}):\n"
                               + log_path.read_text()[-3000:])
        yield url
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory):
    """One dashboard server for the whole test session, with its own temporary runs."""
    with running_dashboard(tmp_path_factory.mktemp("server-runs")) as url:
        yield url


def _stop(proc: subprocess.Popen) -> None:
    """End the server's whole process group: politely, then for certain."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium through Playwright; skipped locally if it is missing,
    a failure in CI (where .ci/run installs it)."""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not found: apt-get install -y chromium"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh tab (own cookies, own Streamlit session) at a projector-like size."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()
