"""What stands between a Launch click and the first point on the chart.

Launch holds its redraw until the run's first step is stored, so the live chart opens
with a point: it returns as soon as the step is there, waits no longer than
FIRST_STEP_WAIT_S for a process that never reports, and does not wait at all for a run
still queued for a free slot (a classroom at its cap), which could take minutes. The
page warms the corpus a launch needs in the background, so the click does not read and
tokenize it; a name the dashboard does not offer (a server path) is never opened."""

from __future__ import annotations

import functools
import threading
import time

import pytest

from llama_core import corpora
from llama_core.lab.store import RunStore
from llama_core.presets import build_configs
from ui import run_panel, state


@pytest.fixture
def store(runs_dir, monkeypatch) -> RunStore:
    store = RunStore(runs_dir / "runs.db")
    monkeypatch.setattr(state, "store", lambda: store)
    return store


def new_run(store: RunStore) -> str:
    return store.create_run(*build_configs("tiny", {"device": "cpu"}), owner="s-0123456789")


def timed_wait(run_id: str) -> float:
    start = time.monotonic()
    run_panel.wait_for_first_step(run_id)
    return time.monotonic() - start


def test_a_run_waiting_for_a_slot_is_not_waited_for(store):
    run_id = new_run(store)
    assert store.get_run(run_id).pid is None
    assert timed_wait(run_id) < 0.2


def test_the_wait_ends_when_the_first_step_is_stored(store):
    run_id = new_run(store)
    assert store.claim_next(4242) == run_id  # handed to a process, not yet training

    def first_step():
        time.sleep(0.3)
        store.mark_running(run_id, 4242, "cpu")
        store.add_step_losses(run_id, [(1, 0.01, 4.2)])

    writer = threading.Thread(target=first_step)
    writer.start()
    waited = timed_wait(run_id)
    writer.join()
    assert 0.3 <= waited < run_panel.FIRST_STEP_WAIT_S
    assert store.get_run(run_id).steps == 1


def test_a_run_that_never_reports_is_waited_for_a_second_at_most(store, monkeypatch):
    monkeypatch.setattr(run_panel, "FIRST_STEP_WAIT_S", 0.4)
    run_id = new_run(store)
    store.claim_next(4242)
    store.mark_running(run_id, 4242, "cpu")
    assert 0.4 <= timed_wait(run_id) < 1.0


def test_an_ended_run_is_not_waited_for(store):
    run_id = new_run(store)
    store.claim_next(4242)
    store.mark_running(run_id, 4242, "cpu")
    store.finish_run(run_id, "failed", error="The model does not fit in memory.")
    assert timed_wait(run_id) < 0.2


def test_the_page_warms_the_corpus_a_launch_will_load(monkeypatch):
    loaded = []
    real = corpora._load_file.__wrapped__

    def counting(*args):
        loaded.append(args[0])
        return real(*args)

    monkeypatch.setattr(corpora, "_load_file", functools.lru_cache(maxsize=4)(counting))
    monkeypatch.setattr(state, "_warmed", set())
    state.warm_corpus("shakespeare", "char")
    state.warm_corpus("shakespeare", "char")  # once per server
    deadline = time.monotonic() + 30
    while not loaded and time.monotonic() < deadline:
        time.sleep(0.01)
    corpus = corpora.load_corpus("shakespeare")  # waits for the warm-up, then reads its cache
    assert loaded == ["shakespeare"]
    assert corpus.name == "shakespeare"


def test_a_name_the_dashboard_does_not_offer_is_not_opened(monkeypatch, tmp_path):
    opened = []
    monkeypatch.setattr(corpora, "_load_file", lambda *args: opened.append(args))
    monkeypatch.setattr(state, "_warmed", set())
    secret = tmp_path / "secret.txt"
    secret.write_text("not for students")
    state.warm_corpus(str(secret), "char")
    state.warm_corpus("../../etc/passwd", "char")
    time.sleep(0.2)
    assert opened == [] and state._warmed == set()
