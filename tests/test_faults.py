"""Faults, for real: SIGKILL a training process, and SIGKILL the Streamlit server in the
middle of a run and start it again. After each the run store passes SQLite's integrity
check, every run has a final status that says what happened, finished runs are
byte-identical (rows, metrics, samples and checkpoint bytes) and new runs still train."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from llama_core.presets import build_configs
from llama_core.lab.jobs import JobManager
from llama_core.lab.store import RunStore
from runs_fixtures import TINY, train_tiny_runs, wait_for

LONG = {**TINY, "steps": 1_000_000, "time_budget": 60.0, "eval_interval": 5}


def fingerprint(store: RunStore, run_id: str) -> dict:
    """Everything a finished run is: its row, metrics, samples and checkpoint bytes."""
    run = store.get_run(run_id).to_dict()
    ckpt = store.checkpoint_path(run_id)
    return {"row": run, "metrics": store.metrics(run_id), "samples": store.samples(run_id),
            "checkpoint": hashlib.sha256(ckpt.read_bytes()).hexdigest() if ckpt else None}


def integrity_ok(path: Path) -> bool:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def consistent(store: RunStore) -> None:
    """No run left claiming to be running without a live process, and no stray status."""
    assert integrity_ok(store.path)
    for run in store.list_runs():
        assert run.status in ("queued", "running", "finished", "failed", "stopped",
                              "interrupted", "diverged"), run.status
        if run.status in ("interrupted", "failed"):
            assert run.error and "\n" not in run.error


def test_sigkill_a_worker(runs_dir):
    store = RunStore(runs_dir / "llama_lab.db")
    (done,) = train_tiny_runs(store.path, steps=10, eval_interval=5)
    before = fingerprint(store, done)
    with JobManager(store.path, max_concurrent=1, warm=False, poll_interval=0.1) as jm:
        victim = jm.submit(*build_configs("tiny", LONG), owner="s-a")
        # Steps now advance live between evaluations: wait for a stored evaluation.
        wait_for(lambda: store.metrics(victim), 120, "the run's first metric")
        run = store.get_run(victim)
        os.kill(run.pid, signal.SIGKILL)
        assert jm.wait(victim, timeout=60) == "interrupted"
        killed = store.get_run(victim)
        assert "SIGKILL" in killed.error and "metrics up to then are kept" in killed.error
        assert store.metrics(victim)  # what it learned before the kill is kept
        after = jm.submit(*build_configs("tiny", {**TINY, "steps": 10, "eval_interval": 5}),
                          owner="s-a")
        assert jm.wait(after, timeout=120) == "finished"
    consistent(store)
    assert fingerprint(store, done) == before


@pytest.mark.browser
def test_kill_the_server_mid_run_and_start_it_again(tmp_path, browser, monkeypatch):
    """SIGKILL the whole server (its process group: the dashboard and its idle warm
    workers) while one run trains and another is SIGKILLed with it (as when a machine
    dies); start the server again. The survivor finishes on its own, the dead run is
    marked interrupted by the new server, finished runs are untouched, and the new
    server trains a new run."""
    from conftest import running_dashboard
    from helpers_browser import open_page

    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("LLAMA_LAB_MAX_CONCURRENT", "2")
    monkeypatch.delenv("LLAMA_LAB_CLASSROOM", raising=False)
    store = RunStore(runs / "llama_lab.db")
    (done,) = train_tiny_runs(store.path, steps=10, eval_interval=5)
    before = fingerprint(store, done)
    survivor = store.create_run(*build_configs("tiny", {**LONG, "time_budget": 12.0}),
                                name="survivor", owner="s-a")
    doomed = store.create_run(*build_configs("tiny", LONG), name="doomed", owner="s-b")

    context = browser.new_context()
    page = context.new_page()
    try:
        with running_dashboard(runs, "faults-server-1.log") as url:
            open_page(page, f"{url}/teacher")  # the page makes the server's job manager
            wait_for(lambda: all(store.get_run(r).steps > 0 for r in (survivor, doomed)),
                       150, "both runs to train")
            server_pid = _server_pid(url)
            doomed_pid = store.get_run(doomed).pid
            os.killpg(server_pid, signal.SIGKILL)  # no goodbye: not even atexit runs
            os.kill(doomed_pid, signal.SIGKILL)
            wait_for(lambda: not _alive(server_pid), 10, "the server to die")
        assert store.get_run(survivor).status in ("running", "finished")

        with running_dashboard(runs, "faults-server-2.log") as url:
            open_page(page, f"{url}/teacher")
            assert wait_for(lambda: store.get_run(doomed).status == "interrupted", 30,
                              "the new server to mark the dead run interrupted")
            assert wait_for(lambda: store.get_run(survivor).status == "finished", 120,
                              "the surviving run to finish on its own")
            fresh = store.create_run(*build_configs("tiny", {**TINY, "steps": 10,
                                                             "eval_interval": 5}),
                                     owner="s-c")
            assert wait_for(lambda: store.get_run(fresh).status == "finished", 120,
                              "a run submitted after the restart")
    finally:
        context.close()
    consistent(store)
    assert fingerprint(store, done) == before
    assert store.checkpoint_path(survivor).is_file()
    assert "ended without saying how the run went" in store.get_run(doomed).error


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _server_pid(url: str) -> int:
    """The streamlit process listening on url's port (found through /proc)."""
    port = int(url.rsplit(":", 1)[1])
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":
                inode = parts[9]
                break
        if inode:
            break
    assert inode, f"nothing listens on port {port}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process owns the socket on port {port}")
