"""Watch it learn (issue 13) below the browser: every step's loss reaches the store, a
blown-up run is never "finished", Stop is quick and not by force, Launch is refused for
what cannot fit, estimates beyond a day say so, and a reload restores the run's
settings in the controls."""

from __future__ import annotations

import math
import os
import time

import pytest
from helpers_apptest import open_page, stop_jobs
from llama_core.lab.jobs import JobManager
from llama_core.lab.store import RunStore
from llama_core.lab.worker import execute_run
from llama_core.presets import build_configs
from llama_core.stability import Stability
from llama_core.training import as_trained
from runs_fixtures import wait_for


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "llama_lab.db")


def queue(store: RunStore, **changes) -> str:
    """A queued tiny run, on one thread (two threads on a shared, busy 2-core machine
    wait on each other at every operation)."""
    model, train = build_configs("tiny", {"threads": 1, **changes})
    return store.create_run(as_trained(model, train), train, pid=os.getpid())


def test_every_step_is_stored_and_a_learning_run_finishes(store):
    run_id = queue(store, steps=60, eval_interval=30)
    assert execute_run(store.path, run_id) == 0
    run = store.get_run(run_id)
    assert run.status == "finished", run.error
    rows = store.step_losses(run_id)
    assert [r[0] for r in rows] == list(range(1, 61)), "one row per step, in order"
    assert all(math.isfinite(loss) for _, _, loss in rows)
    assert rows[0][2] > rows[-1][2], "a tiny model learns in 60 steps"
    assert all(b[1] >= a[1] for a, b in zip(rows, rows[1:])), "seconds only grow"


def test_learning_rate_10_is_flagged_never_finished(store):
    """The issue's run: lr 10 on tiny peaks near 250 nats/char and ends near 9.9."""
    run_id = queue(store, lr=10.0)
    assert execute_run(store.path, run_id) == 0
    run = store.get_run(run_id)
    assert run.status == "diverged"
    assert "lower the learning rate" in run.error
    assert len(store.step_losses(run_id)) == 200
    assert store.checkpoint_path(run_id) is not None, "the model is kept to look at"


def test_stability_verdicts():
    healthy = Stability(65, warmup_steps=5)
    for step in range(1, 101):
        healthy.observe(step, 4.2 - step / 50)
    assert healthy.verdict() is None
    climbed = Stability(65, warmup_steps=5)
    for step in range(1, 101):
        climbed.observe(step, 4.2 if step < 50 else 250.0)
    assert "unstable" in climbed.verdict() and "250.0" in climbed.verdict()
    worse = Stability(65, warmup_steps=5)
    for step in range(1, 101):
        worse.observe(step, 4.0 + step / 50)
    assert "did not learn" in worse.verdict()
    short = Stability(65, warmup_steps=20)  # stopped during warm-up: no verdict
    for step in range(1, 12):
        short.observe(step, 4.0 + step / 50)
    assert short.verdict() is None


def test_stop_ends_a_run_within_a_second_or_two_not_by_force(tmp_path):
    with JobManager(tmp_path / "llama_lab.db", max_concurrent=2) as manager:  # 1 thread
        manager.wait_ready(120)
        model, train = build_configs("tiny", {"steps": 100_000})
        run_id = manager.submit(model, train)
        wait_for(lambda: manager.store.step_losses(run_id), timeout=120,
                 what="the first step's loss")
        asked = time.monotonic()
        manager.stop(run_id)
        assert manager.wait(run_id, timeout=60, poll=0.02) == "stopped"
        took = time.monotonic() - asked
        run = manager.store.get_run(run_id)
        print(f"\nstop took {took:.2f} s ({os.getloadavg()[0]:.1f} load)")
        assert run.error is None, run.error  # not "stopped by force"
        assert manager.store.checkpoint_path(run_id) is not None
        assert took < manager.stop_grace_s / 2, f"stop took {took:.1f} s"


def test_store_keeps_step_losses_in_batches_and_deletes_them(store):
    run_id = queue(store)
    store.add_step_losses(run_id, [(1, 0.1, 4.2), (2, 0.2, float("nan")), (3, 0.3, 4.0)])
    store.add_step_losses(run_id, [])
    assert store.step_losses(run_id) == [(1, 0.1, 4.2), (2, 0.2, None), (3, 0.3, 4.0)]
    assert store.step_losses(run_id, since_step=2) == [(3, 0.3, 4.0)]
    assert store.get_run(run_id).steps == 3
    store.finish_run(run_id, "stopped")
    store.delete_runs([run_id])
    assert store.step_losses(run_id) == []


@pytest.mark.parametrize("seconds, shown", [(86_401, "more than a day"),
                                            (3.5e12, "more than a day"),
                                            (math.inf, "more than a day"),
                                            (7200, "2.0 h")])
def test_estimates_beyond_a_day_say_so(seconds, shown):
    from charts.numbers import rough_duration
    assert rough_duration(seconds) == shown


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(tmp_path))
    yield tmp_path
    if (tmp_path / "llama_lab.db").exists():
        stop_jobs(tmp_path)


def test_a_51_billion_parameter_model_leaves_launch_disabled(runs_dir):
    at = open_page("views/train.py", 120)
    at.number_input(key="tr_layers").set_value(64).run()
    at.number_input(key="tr_width").set_value(8192).run()
    assert not at.exception
    launch = at.button(key="tr_launch")
    assert launch.disabled
    assert "of memory" in launch.help and "free" in launch.help, launch.help
    assert any("of memory" in w.value for w in at.warning)
    assert {m.label: m.value for m in at.metric}["Estimated time"] == "more than a day"


def test_a_reload_shows_the_runs_settings(runs_dir):
    store = RunStore(runs_dir / "llama_lab.db")
    model, train = build_configs("tiny", {"n_layers": 3, "lr": 0.002, "ffn": "gelu",
                                          "steps": 1234})
    run_id = store.create_run(as_trained(model, train), train, pid=os.getpid())
    store.finish_run(run_id, "stopped")
    at = open_page("views/train.py", 120, run=run_id)
    assert at.number_input(key="tr_layers").value == 3
    assert at.number_input(key="tr_lr").value == 0.002
    assert at.number_input(key="tr_steps").value == 1234
    assert at.segmented_control(key="tr_ffn").value == "gelu"
