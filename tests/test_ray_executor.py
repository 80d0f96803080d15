"""Runs and sweeps on a real Ray cluster, started once for this module on this machine
with two CPUs, asked for 127.0.0.1 (Ray 2.60 advertises the machine's own address for
it), no mock: the store on this side gets every metric while the runs
train, Stop and a killed worker end runs as they would locally, an unreachable cluster
refuses new runs, and a paired sweep on the cluster gives the local executor's numbers
bit for bit. Timings are printed, never asserted: the machine is shared.
"""

from __future__ import annotations

import os
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llama_core.config import ModelConfig, TrainConfig
from llama_core.lab.cli import main
from llama_core.lab.jobs import JobManager
from llama_core.lab.ray_executor import INSTALL_MESSAGE, LOST_MESSAGE, ClusterUnavailable
from llama_core.lab.store import RunStore
from llama_core.lab.sweeps import plan_sweep
from runs_fixtures import wait_for

ray = pytest.importorskip("ray", reason="Ray is pinned in requirements.txt; install it")

REPO = Path(__file__).resolve().parent.parent
MODEL = ModelConfig(d_model=32, n_layers=1, n_heads=2, context_window=16)
# Runs until stopped or killed, reporting a few times a second.
LONG = TrainConfig(steps=1_000_000, eval_interval=10, eval_batches=1, batch_size=8,
                   sample_chars=0)
SWEEP_SET = ["d_model=32", "n_layers=1", "n_heads=2", "context_window=16", "batch_size=8",
             "eval_interval=20", "eval_batches=2", "sample_chars=20"]
SWEEP_STEPS = 40
TIMEOUT = 120


@pytest.fixture(scope="module")
def cluster():
    """A real Ray instance on 127.0.0.1 with two CPUs, for the whole module; its address."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                       _node_ip_address="127.0.0.1",
                       runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.fixture
def manager(cluster, tmp_path):
    m = JobManager(tmp_path / "runs.db", max_concurrent=2, cluster=cluster)
    yield m
    m.shutdown(stop_runs=True, timeout=20)


def test_sweep_on_the_cluster_is_live_and_matches_the_local_executor(cluster, tmp_path):
    """Four tiny runs (baseline and one variant, two seeds) through the command line's
    --cluster, in a process of its own that joins the cluster as a second driver would:
    metrics reach the store while they train, each run ends with its metrics, samples,
    step losses and checkpoint on this side, and the same seeds trained by the local
    executor give the same numbers bit for bit."""
    db = tmp_path / "cluster.db"
    args = ["sweep", *sum((["--set", s] for s in SWEEP_SET), []), "--steps", str(SWEEP_STEPS),
            "--variant", "norm=layernorm", "--seeds", "2", "--parallel", "2",
            "--cluster", cluster, "--db", str(db), "--json"]
    t0 = time.monotonic()
    sweep = subprocess.Popen([sys.executable, "-m", "llama_core", *args], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: db.exists() or sweep.poll() is not None, what="the sweep's store")
    store = RunStore(db)
    live = []  # (run id, step losses stored, metric rows stored) seen while running
    while sweep.poll() is None:
        for run in store.list_runs(status="running"):
            losses, metrics = store.step_losses(run.id), store.metrics(run.id)
            if losses and store.get_run(run.id).status == "running":
                live.append((run.id, len(losses), len(metrics)))
        time.sleep(0.02)
    out, err = sweep.communicate()
    print(f"\nsweep of four runs on the cluster: {time.monotonic() - t0:.1f} s")
    assert sweep.returncode == 0, err[-2000:]
    assert json.loads(out)["not_finished"] == {}
    runs = store.list_runs(oldest_first=True)
    assert len(runs) == 4 and len({r.group for r in runs}) == 1
    assert live, "no step loss reached the store while a run was training"
    assert any(m for _, _, m in live), "no evaluation reached the store while running"
    for run in runs:
        assert run.status == "finished", (run.status, run.error)
        assert run.steps == SWEEP_STEPS and run.device == "cpu" and run.torch_version
        assert [m["step"] for m in store.metrics(run.id)] == [20, 40]
        assert [s for s, _, _ in store.step_losses(run.id)] == list(range(1, SWEEP_STEPS + 1))
        assert store.samples(run.id)
        assert (store.runs_dir / run.checkpoint).is_file()
        assert run.checkpoint == f"{run.id}/model.safetensors"

    # Seed 0 of the same plan through local processes (one thread each, as on the
    # cluster): the baseline and the variant.
    plan = plan_sweep(None, {**dict(s.split("=") for s in SWEEP_SET),
                             "steps": str(SWEEP_STEPS)}, [{"norm": "layernorm"}], [0])
    local = JobManager(tmp_path / "local.db", max_concurrent=2, warm=False)
    try:
        local_ids = [local.submit(p.model, p.train, name=p.label) for p in plan]
        for run_id in local_ids:
            assert local.wait(run_id, timeout=TIMEOUT) == "finished"
    finally:
        local.shutdown()
    by_key = {(r.name, r.seed): r for r in runs}
    for run_id in local_ids:
        mine = local.store.get_run(run_id)
        theirs = by_key[(mine.name, mine.seed)]
        assert ([loss for _, _, loss in local.store.step_losses(run_id)]
                == [loss for _, _, loss in store.step_losses(theirs.id)])
        assert ([(m["train_loss"], m["val_loss"]) for m in local.store.metrics(run_id)]
                == [(m["train_loss"], m["val_loss"]) for m in store.metrics(theirs.id)])
        assert mine.final_val_loss == theirs.final_val_loss
        assert local.store.samples(run_id) == store.samples(theirs.id)
        # The checkpoint that came back through Ray holds the very same weights.
        here = load_file(local.store.checkpoint_path(run_id))
        there = load_file(store.checkpoint_path(theirs.id))
        weights = [k for k in here if k.startswith("model.")]
        assert weights and all(torch.equal(here[k], there[k]) for k in weights)


def test_stop_ends_a_remote_run_with_its_checkpoint(manager):
    store = manager.store
    run_id = manager.submit(MODEL, LONG, name="to stop")
    wait_for(lambda: store.metrics(run_id), timeout=TIMEOUT, what="a stored evaluation")
    assert store.get_run(run_id).status == "running"
    t0 = time.monotonic()
    assert manager.stop(run_id) == "running"
    assert manager.wait(run_id, timeout=30) == "stopped"
    print(f"\nStop to stopped on the cluster: {time.monotonic() - t0:.2f} s")
    run = store.get_run(run_id)
    assert run.error is None  # it stopped on its own, not by force
    assert (store.runs_dir / run.checkpoint).is_file()
    assert run.steps >= store.metrics(run_id)[-1]["step"] > 0
    assert manager.active() == []


def test_a_killed_worker_marks_its_run_interrupted_with_its_metrics(manager):
    store = manager.store
    run_id = manager.submit(MODEL, LONG, name="to kill")
    wait_for(lambda: store.metrics(run_id), timeout=TIMEOUT, what="a stored evaluation")
    node, pid = wait_for(lambda: manager.cluster.where(run_id), what="the worker's pid")
    assert pid != os.getpid()
    kept = len(store.metrics(run_id))
    os.kill(pid, signal.SIGKILL)
    assert manager.wait(run_id, timeout=60) == "interrupted"
    run = store.get_run(run_id)
    assert run.error == LOST_MESSAGE
    assert len(store.metrics(run_id)) >= kept and store.step_losses(run_id)
    assert manager.active() == []


def test_shutdown_stops_training_runs_and_requeues_waiting_ones(cluster, tmp_path):
    """Tasks end with the manager's connection: the runs training stop with their
    checkpoints, and one still waiting for a free CPU on the cluster goes back to the
    queue for the next manager, never lost."""
    m = JobManager(tmp_path / "runs.db", max_concurrent=3, cluster=cluster)  # 2 CPUs
    store = m.store
    ids = [m.submit(MODEL, LONG, name=f"run {i}") for i in range(3)]
    training = wait_for(lambda: [r for r in ids if store.metrics(r)] if sum(
        bool(store.metrics(r)) for r in ids) == 2 else None, timeout=TIMEOUT,
        what="two runs training")
    m.shutdown()
    waiting = next(r for r in ids if r not in training)
    assert [store.get_run(r).status for r in training] == ["stopped", "stopped"]
    assert all((store.runs_dir / store.get_run(r).checkpoint).is_file() for r in training)
    run = store.get_run(waiting)
    assert (run.status, run.pid, run.started) == ("queued", None, None)
    assert not store.metrics(waiting)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once closed


def test_an_unreachable_cluster_refuses_new_runs_and_keeps_the_queue(cluster, tmp_path):
    db = tmp_path / "runs.db"
    waiting = RunStore(db).create_run(MODEL, LONG, name="queued before")
    address = f"127.0.0.1:{_closed_port()}"
    m = JobManager(db, max_concurrent=2, cluster=address)
    try:
        with pytest.raises(ClusterUnavailable, match="cannot be reached") as e:
            m.submit(MODEL, LONG, name="refused")
        assert "\n" not in str(e.value) and address in str(e.value)
        time.sleep(0.5)  # a few rounds of the manager's loop
        assert [(r.id, r.status, r.pid) for r in m.store.list_runs()] == [
            (waiting, "queued", None)]
    finally:
        m.shutdown()
    assert main(["sweep", "--variant", "norm=layernorm", "--cluster", address,
                 "--db", str(db)]) == 2


def test_an_address_that_names_no_port_is_one_sentence(tmp_path):
    m = JobManager(tmp_path / "runs.db", max_concurrent=1, cluster="head-node")
    try:
        with pytest.raises(ClusterUnavailable, match="not a Ray cluster address; give "
                                                     "HOST:PORT"):
            m.submit(MODEL, LONG)
        assert m.store.list_runs() == []
    finally:
        m.shutdown()


def test_without_ray_a_cluster_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets uninstalled
    m = JobManager(tmp_path / "runs.db", max_concurrent=1, cluster="local")
    try:
        with pytest.raises(ClusterUnavailable) as e:
            m.submit(MODEL, LONG)
        assert str(e.value) == INSTALL_MESSAGE and "pip install ray" in INSTALL_MESSAGE
        assert m.store.list_runs() == []
    finally:
        m.shutdown()
    assert main(["sweep", "--variant", "norm=layernorm", "--cluster", "local",
                 "--db", str(tmp_path / "runs.db")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {INSTALL_MESSAGE}"
