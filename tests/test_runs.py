"""The run store against real SQLite files and real concurrent processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from llama_core.lab import store as runs_module
from llama_core.config import ModelConfig, TrainConfig
from llama_core.errors import UserError
from llama_core.lab.store import (ORPHAN_MESSAGE, SCHEMA_VERSION, RunNotFound, RunStore,
                             StoreError, check_run_id)

MODEL = ModelConfig(d_model=32, n_layers=1, n_heads=2, context_window=16)
TRAIN = TrainConfig(steps=30, eval_interval=10, eval_batches=2, batch_size=8)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs" / "test.db")


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _dead_pid() -> int:
    """The pid of a process that has certainly exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_round_trip(store):
    rid = store.create_run(MODEL, TRAIN, name="tiny", group="sweep-1", owner="alice")
    assert check_run_id(rid) == rid and rid.startswith("r") and len(rid) == 9
    run = store.get_run(rid)
    assert (run.name, run.group, run.owner, run.status) == ("tiny", "sweep-1", "alice", "queued")
    assert run.model_config["d_model"] == 32 and run.train_config["steps"] == 30
    assert run.seed == TRAIN.seed and run.code_version and run["status"] == "queued"
    assert run.get("no-such-field", 7) == 7

    assert store.mark_running(rid, os.getpid(), "cpu", "2.13.0")
    assert not store.mark_running(rid, os.getpid(), "cpu")  # only once
    for step in (10, 20, 30):
        store.add_metric(rid, {"step": step, "tokens": step * 128, "seconds": step / 10,
                               "train_loss": 4.0 - step / 100, "val_loss": 4.1 - step / 100,
                               "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 1000.0,
                               "sample": f"text at {step}", "extra": {"rms": [1.0, 2.0]},
                               "surprise": 1})
    metrics = store.metrics(rid)
    assert [m["step"] for m in metrics] == [10, 20, 30]
    assert metrics[0]["extra"] == {"rms": [1.0, 2.0], "surprise": 1}
    assert [s["text"] for s in store.samples(rid)] == ["text at 10", "text at 20",
                                                       "text at 30"]
    assert store.get_run(rid).steps == 30 and store.get_run(rid).tokens == 30 * 128

    ckpt = store.run_dir(rid, create=True) / "model.safetensors"
    ckpt.write_bytes(b"weights")
    result = {"final_train_loss": 3.7, "final_val_loss": 3.8, "steps": 30, "tokens": 3840,
              "wall_s": 1.5, "tokens_per_s": 2560.0, "params": 12345, "device": "cpu",
              "data_sha256": "ab" * 32, "checkpoint": ckpt}
    assert store.finish_run(rid, "finished", result, None)
    run = store.get_run(rid)
    assert run.status == "finished" and run.final_val_loss == 3.8 and run.params == 12345
    assert run.checkpoint == f"{rid}/model.safetensors"
    assert store.checkpoint_path(rid) == ckpt
    # A late report never overwrites the recorded outcome.
    assert not store.finish_run(rid, "failed", None, "too late")
    assert store.get_run(rid).status == "finished"

    df = store.metrics_frame([rid])
    assert list(df["step"]) == [10, 20, 30] and df["val_loss"].dtype == "float64"


def test_a_frame_of_rows_with_and_without_extras_keeps_both(store):
    """A run stopped live has a last row with no extras after rows with them; pandas 3
    would read that None as NaN, and the Compare page once crashed on it."""
    rid = store.create_run(MODEL, TRAIN)
    store.add_metric(rid, {"step": 10, "val_loss": 3.0, "extra": {"rms": [1.0]}})
    store.add_metric(rid, {"step": 20, "val_loss": 2.9})
    df = store.metrics_frame([rid])
    assert list(df["extra"]) == [{"rms": [1.0]}, None]


def test_list_filters_and_order(store):
    a = store.create_run(MODEL, TRAIN, group="g1", owner="ann")
    b = store.create_run(MODEL, TRAIN, group="g1", owner="bob")
    c = store.create_run(MODEL, TRAIN, owner="ann")
    store.finish_run(c, "failed", None, "broken")
    assert [r.id for r in store.list_runs()] == [c, b, a]
    assert [r.id for r in store.list_runs(oldest_first=True)] == [a, b, c]
    assert [r.id for r in store.list_runs(group="g1")] == [b, a]
    assert [r.id for r in store.list_runs(owner="ann")] == [c, a]
    assert [r.id for r in store.list_runs(status="queued", owner="ann")] == [a]
    assert [r.id for r in store.list_runs(status=["queued", "failed"], limit=2)] == [c, b]
    with pytest.raises(UserError, match="not a run status"):
        store.list_runs(status="done")


def test_wal_and_schema_version(store):
    store.create_run(MODEL, TRAIN)
    raw = sqlite3.connect(store.path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("SELECT version FROM llama_lab_schema").fetchall() == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)]
    raw.close()
    assert store._connect().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_default_location_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(tmp_path / "elsewhere"))
    s = RunStore()
    assert s.path == tmp_path / "elsewhere" / "llama_lab.db" and s.path.exists()
    assert s.run_dir("r1234abcd") == tmp_path / "elsewhere" / "r1234abcd"


def test_migration_upgrades_and_keeps_data(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    rid = RunStore(path).create_run(MODEL, TRAIN, name="old run")
    monkeypatch.setattr(runs_module, "MIGRATIONS", runs_module.MIGRATIONS + [
        ("a note column", ["ALTER TABLE runs ADD COLUMN note TEXT"])])
    monkeypatch.setattr(runs_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    s = RunStore(path)
    assert s.get_run(rid).name == "old run"
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert "note" in [r[1] for r in raw.execute("PRAGMA table_info(runs)")]
    raw.close()


def _old_release_store(path, version: int, **run) -> str:
    """A database as release ``version`` of the schema left it, holding one run written
    with that release's columns only; returns the run's id."""
    raw = sqlite3.connect(path)
    for i in range(version):
        for sql in runs_module.MIGRATIONS[i][1]:
            raw.execute(sql)
        raw.execute("INSERT INTO llama_lab_schema VALUES (?, 0, ?)",
                    (i + 1, runs_module.MIGRATIONS[i][0]))
    raw.execute(f"PRAGMA user_version = {version}")
    row = {"id": "rold00001", "name": "old", "model_config": "{}", "train_config": "{}",
           "status": "finished", "created": 1.0, **run}
    raw.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()))
    raw.commit()
    raw.close()
    return row["id"]


def test_a_first_release_database_gains_student_names(tmp_path):
    """A store written before student names existed opens, keeps its runs and can
    remember names from then on."""
    path = tmp_path / "v1.db"
    rid = _old_release_store(path, 1, name="from v1", owner="s-0123456789")
    s = RunStore(path)
    assert s.get_run(rid).name == "from v1"
    assert s.set_student_name("s-0123456789", "  Ada   Lovelace ") == "Ada Lovelace"
    assert s.student_names() == {"s-0123456789": "Ada Lovelace"}


def test_a_second_release_database_keeps_its_live_and_dead_owners_apart(tmp_path):
    """Rows from before owners' start times were recorded: the pid alone decides, so a
    live owner keeps its run and a dead one's run is interrupted."""
    path = tmp_path / "v2.db"
    alive = _old_release_store(path, 2, status="running", pid=os.getpid())
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO runs (id, name, model_config, train_config, status, created, "
                "pid) VALUES ('rold00002', 'dead', '{}', '{}', 'running', 2.0, ?)",
                (_dead_pid(),))
    raw.commit()
    raw.close()
    s = RunStore(path)
    assert s.mark_interrupted_orphans() == ["rold00002"]
    assert s.get_run(alive).status == "running"
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_student_names_are_kept_replaced_and_forgotten(store):
    assert store.student_names() == {}
    store.set_student_name("s-aaaaaaaaaa", "Ada")
    store.set_student_name("s-bbbbbbbbbb", "Grace")
    store.set_student_name("s-aaaaaaaaaa", "Ada L.")
    assert store.student_names() == {"s-aaaaaaaaaa": "Ada L.", "s-bbbbbbbbbb": "Grace"}
    assert store.set_student_name("s-bbbbbbbbbb", "   ") == ""
    assert store.student_names() == {"s-aaaaaaaaaa": "Ada L."}


@pytest.mark.parametrize("owner, name, says", [
    ("s-aaaaaaaaaa", "x" * 41, "at most 40 characters, not 41"),
    ("s-aaaaaaaaaa", "Ada\x00", "control characters"),
    ("", "Ada", "needs the student's id"),
])
def test_a_bad_student_name_is_one_sentence_and_changes_nothing(store, owner, name, says):
    store.set_student_name("s-aaaaaaaaaa", "Ada")
    with pytest.raises(UserError, match=says):
        store.set_student_name(owner, name)
    assert store.student_names() == {"s-aaaaaaaaaa": "Ada"}


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    RunStore(path).create_run(MODEL, TRAIN)
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    raw.close()
    before = _sha(path)
    with pytest.raises(StoreError, match="newer Llama Lab"):
        RunStore(path)
    assert _sha(path) == before


@pytest.mark.parametrize("content", [os.urandom(8192), b"hello, I am a text file\n" * 10,
                                     b"SQLite format 3\x00" + os.urandom(4000)])
def test_not_a_database_is_refused_untouched(tmp_path, content):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(StoreError) as e:
        RunStore(path)
    assert "not" in str(e.value) and str(path) in str(e.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_foreign_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "shop.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    raw.execute("INSERT INTO customers (name) VALUES ('Ada')")
    raw.commit()
    raw.close()
    before = _sha(path)
    with pytest.raises(StoreError, match="belongs to something else"):
        RunStore(path)
    assert _sha(path) == before
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched
    raw.close()


def test_folder_as_db_path_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        RunStore(tmp_path)


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    rid = RunStore(path).create_run(MODEL, TRAIN)
    assert RunStore(path).get_run(rid).status == "queued"


@pytest.mark.parametrize("bad", ["../etc", "R1234", "", "a" * 41, "r12/34", "r1 2", None, 12])
def test_invalid_run_ids(store, bad):
    with pytest.raises(UserError, match="not a run id"):
        store.get_run(bad)
    with pytest.raises(UserError):
        store.run_dir(bad)
    with pytest.raises(UserError):
        store.delete_runs([bad])


def test_unknown_run(store):
    with pytest.raises(RunNotFound, match="no run 'r00000000'"):
        store.get_run("r00000000")
    with pytest.raises(RunNotFound):
        store.add_metric("r00000000", {"step": 1})
    with pytest.raises(RunNotFound):
        store.request_stop("r00000000")
    with pytest.raises(UserError, match="not a group id"):
        store.create_run(MODEL, TRAIN, group="My Group")


def test_nan_loss_is_stored_as_null(store):
    rid = store.create_run(MODEL, TRAIN)
    store.add_metric(rid, {"step": 5, "train_loss": float("nan"), "val_loss": float("inf")})
    m = store.metrics(rid)[0]
    assert m["train_loss"] is None and m["val_loss"] == float("inf")


def _writer(path: str, n_runs: int, n_metrics: int, barrier) -> list[str]:
    store = RunStore(path)
    barrier.wait()
    ids = []
    for _ in range(n_runs):
        rid = store.create_run(MODEL, TRAIN)
        store.mark_running(rid, os.getpid(), "cpu")
        for step in range(n_metrics):
            store.add_metric(rid, {"step": step, "tokens": step, "train_loss": 1.0,
                                   "sample": "x" if step % 10 == 0 else None})
        store.finish_run(rid, "finished", {"steps": n_metrics}, None)
        ids.append(rid)
    return ids


def test_concurrent_writer_processes(store):
    """Four processes and two threads hammer one database: nobody sees 'locked'."""
    n_proc, n_runs, n_metrics = 4, 3, 150
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as mgr:
        barrier = mgr.Barrier(n_proc)
        with ctx.Pool(n_proc) as pool:
            results = [pool.apply_async(_writer, (str(store.path), n_runs, n_metrics, barrier))
                       for _ in range(n_proc)]
            # Readers and a writer thread in this process at the same time.
            stop = threading.Event()
            seen = []

            def read():
                while not stop.is_set():
                    seen.append(len(store.list_runs()))
            readers = [threading.Thread(target=read) for _ in range(2)]
            for t in readers:
                t.start()
            ids = [rid for r in results for rid in r.get(timeout=120)]
            stop.set()
            for t in readers:
                t.join()
    assert len(ids) == len(set(ids)) == n_proc * n_runs
    for rid in ids:
        run = store.get_run(rid)
        assert run.status == "finished" and run.steps == n_metrics
        assert [m["step"] for m in store.metrics(rid)] == list(range(n_metrics))
        assert len(store.samples(rid)) == n_metrics // 10
    assert seen  # the readers ran alongside


def test_the_store_decides_no_policy():
    """Storage below policy: the store imports nothing of the classroom or the job
    manager (who may queue or start what is told to it: a check, a cap)."""
    import ast
    from pathlib import Path
    tree = ast.parse(Path(runs_module.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 for a in n.names}
    assert not {m for m in imported if "classroom" in m or "jobs" in m}, imported


def test_claim_next_respects_limit(store):
    ids = [store.create_run(MODEL, TRAIN) for _ in range(3)]
    assert store.claim_next(111, limit=2) == ids[0]
    assert store.claim_next(112, limit=2) == ids[1]
    assert store.claim_next(113, limit=2) is None
    assert [r.pid for r in store.list_runs(oldest_first=True)] == [111, 112, None]
    store.mark_running(ids[0], 111, "cpu")
    store.finish_run(ids[0], "finished", None, None)
    assert store.claim_next(113, limit=2) == ids[2]


def test_orphans_become_interrupted_with_metrics_kept(store):
    dead = _dead_pid()
    orphan = store.create_run(MODEL, TRAIN)
    store.mark_running(orphan, dead, "cpu")
    store.add_metric(orphan, {"step": 10, "val_loss": 3.0})
    alive = store.create_run(MODEL, TRAIN)
    store.mark_running(alive, os.getpid(), "cpu")
    claimed = store.create_run(MODEL, TRAIN)
    assert store.claim_next(dead) == claimed
    done = store.create_run(MODEL, TRAIN)
    store.finish_run(done, "finished", None, None)

    assert store.mark_interrupted_orphans() == [orphan]
    run = store.get_run(orphan)
    assert run.status == "interrupted" and run.error == ORPHAN_MESSAGE
    assert [m["step"] for m in store.metrics(orphan)] == [10]
    assert store.get_run(alive).status == "running"
    assert store.get_run(claimed).status == "queued" and store.get_run(claimed).pid is None
    assert store.get_run(done).status == "finished"
    assert store.mark_interrupted_orphans() == []


def test_stop_requests(store):
    queued = store.create_run(MODEL, TRAIN)
    assert store.request_stop(queued) == "stopped"
    assert store.get_run(queued).status == "stopped"
    running = store.create_run(MODEL, TRAIN)
    store.mark_running(running, os.getpid(), "cpu")
    assert not store.stop_requested(running)
    assert store.request_stop(running) == "running"
    assert store.stop_requested(running)


def test_delete_removes_rows_and_folder(store):
    rid = store.create_run(MODEL, TRAIN)
    other = store.create_run(MODEL, TRAIN)
    store.add_metric(rid, {"step": 1})
    folder = store.run_dir(rid, create=True)
    (folder / "model.safetensors").write_bytes(b"w")
    assert store.delete_runs([rid], force=True) == [rid]
    assert not folder.exists()
    with pytest.raises(RunNotFound):
        store.get_run(rid)
    assert store.metrics(rid) == [] and store.get_run(other).status == "queued"

    live = store.create_run(MODEL, TRAIN)
    store.mark_running(live, os.getpid(), "cpu")
    with pytest.raises(UserError, match="still running"):
        store.delete_runs([live], force=True)
    assert store.get_run(live).status == "running"


def test_export_csv_and_json(store):
    a = store.create_run(MODEL, TRAIN, name="a, with comma")
    b = store.create_run(MODEL, TRAIN, name="b")
    for rid in (a, b):
        for step in (10, 20):
            store.add_metric(rid, {"step": step, "val_loss": 2.0, "sample": "hi"})
    text = store.export([a, b], "csv")
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["run_id"], r["step"]) for r in rows] == [(a, "10"), (a, "20"), (b, "10"),
                                                        (b, "20")]
    assert rows[0]["name"] == "a, with comma" and rows[0]["model.d_model"] == "32"
    data = json.loads(store.export([a], "json"))
    assert data[0]["id"] == a and [m["step"] for m in data[0]["metrics"]] == [10, 20]
    assert data[0]["samples"][0]["text"] == "hi"
    with pytest.raises(UserError, match="csv or json"):
        store.export([a], "xml")
    with pytest.raises(RunNotFound):
        store.export(["r00000000"], "csv")


def test_opening_again_keeps_live_connections_safe(store):
    """Regression: checking a file by reading it with open()/close() dropped this
    process's SQLite locks, so another process closing its connection deleted the WAL
    under us ("disk I/O error", then "database disk image is malformed")."""
    rid = store.create_run(MODEL, TRAIN)
    for step in range(20):
        store.add_metric(rid, {"step": step})
    RunStore(store.path)  # a second store on the same file, as the job manager opens
    other = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
             "c.execute(\"UPDATE runs SET name = 'renamed'\"); c.commit(); c.close()")
    subprocess.run([sys.executable, "-c", other, str(store.path)], check=True)
    for step in range(20, 40):
        store.add_metric(rid, {"step": step})
    assert len(store.metrics(rid)) == 40 and store.get_run(rid).name == "renamed"
    raw = sqlite3.connect(store.path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
