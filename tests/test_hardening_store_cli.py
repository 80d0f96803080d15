"""The run store and the command line under attack (issue 11): commands on several ids
act on all or none, a damaged database is one sentence and can be recovered, a killed
or disk-starved run never stays "running", and nothing a run is named can reach a
terminal or a spreadsheet as a command. Real SQLite files, real subprocesses of
``python -m llama_core``, a real tmpfs for the full disk."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llama_core.lab import store as runs_module
from llama_core.presets import build_configs
from llama_core.errors import UserError
from llama_core.lab.worker import DISK_FULL_MESSAGE
from llama_core.lab.store import ORPHAN_MESSAGE, RunNotFound, RunStore
from runs_fixtures import TINY, train_tiny_runs, wait_for

REPO = Path(__file__).resolve().parent.parent
MODEL, TRAIN = build_configs("tiny", {**TINY, "steps": 20})
TINY_SET = ["--set", "eval_batches=1", "sample_chars=10", "threads=1", "batch_size=4",
            "context_window=16", "d_model=16", "n_layers=1", "n_heads=2"]


def cli(*args, db: Path, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), LLAMA_LAB_RUNS=str(db.parent))
    proc = subprocess.run([sys.executable, "-m", "llama_core", *map(str, args), "--db",
                           str(db)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def one_sentence(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed as a user's mistake should: exit 2, one line, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def listed(db: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads(cli("runs", "list", "--json", db=db,
                                               check=True).stdout)}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settle(db: Path) -> None:
    """Fold the WAL into the database file, so a copy of the file is the whole store."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


# --- 5. several ids: all or none ------------------------------------------------------

def test_several_ids_with_one_unknown_change_nothing(tmp_path):
    db = tmp_path / "runs" / "llama_lab.db"
    (done,) = train_tiny_runs(db, steps=10, eval_interval=5)
    store = RunStore(db)
    queued = store.create_run(MODEL, TRAIN, name="waiting")
    ghost = "rdeadbeef"

    for args, says in ((("delete", done, ghost), "none of the 2 runs was deleted"),
                       (("delete", ghost, done), "none of the 2 runs was deleted"),
                       (("stop", queued, ghost), "none of the 2 runs was stopped")):
        one_sentence(cli("runs", *args, db=db), repr(ghost), says)
    out = tmp_path / "out.csv"
    one_sentence(cli("runs", "export", done, ghost, "-o", out, db=db), repr(ghost))
    assert not out.exists()

    now = listed(db)
    assert now[done]["status"] == "finished" and now[queued]["status"] == "queued"
    assert (db.parent / done / "model.safetensors").is_file()

    # a live run among them: nothing is deleted either, even with --force
    live = store.create_run(MODEL, TRAIN)
    assert store.mark_running(live, os.getpid(), "cpu")
    one_sentence(cli("runs", "delete", done, live, "--force", db=db), "still running",
                 "nothing was deleted")
    assert set(listed(db)) == {done, queued, live}

    # and with every id good, all of them go at once
    store.finish_run(live, "stopped")
    assert json.loads(cli("runs", "delete", done, queued, live, "--force", "--json", db=db,
                          check=True).stdout) == {done: "deleted", queued: "deleted",
                                                  live: "deleted"}
    assert listed(db) == {} and not (db.parent / done).exists()


def test_the_store_checks_every_id_before_acting(tmp_path):
    store = RunStore(tmp_path / "llama_lab.db")
    a, b = store.create_run(MODEL, TRAIN), store.create_run(MODEL, TRAIN)
    with pytest.raises(RunNotFound, match="none of the 3 runs was deleted"):
        store.delete_runs([a, b, "r00000000"], force=True)
    with pytest.raises(UserError, match="not a run id"):
        store.request_stops([a, "../x"])
    with pytest.raises(UserError, match="queued; stop it first"):
        store.delete_runs([a, b])
    assert [r.status for r in store.list_runs()] == ["queued", "queued"]
    assert store.request_stops([a, b, a]) == {a: "stopped", b: "stopped"}


# --- 7. a damaged store ---------------------------------------------------------------

@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """A real store: two trained runs and twelve recorded ones, each with metrics and
    samples, so the runs table spans several pages. Returns (db, ids)."""
    db = tmp_path_factory.mktemp("healthy") / "llama_lab.db"
    ids = train_tiny_runs(db, seeds=(0, 1), steps=10, eval_interval=5)
    store = RunStore(db)
    for i in range(12):
        rid = store.create_run(MODEL, TRAIN, name=f"recorded {i} " + "x" * 150)
        for step in range(0, 200, 10):
            store.add_metric(rid, {"step": step, "val_loss": 3.0 - step / 100,
                                   "sample": f"sample {i} at {step}"})
        store.finish_run(rid, "finished", {"final_val_loss": 1.0, "steps": 190})
        ids.append(rid)
    store.close()
    settle(db)
    return db, ids


def _table_leaf_pages(db: Path) -> dict[int, bytes]:
    """Page number -> bytes of every table b-tree leaf page (type 0x0D) in the file."""
    data = db.read_bytes()
    size = int.from_bytes(data[16:18], "big")
    pages = {}
    for n in range(len(data) // size):
        page = data[n * size:(n + 1) * size]
        if page[100 if n == 0 else 0] == 0x0D:
            pages[n + 1] = page
    return pages


def _rows(db: Path, sql: str) -> list:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _every_runs_command_is_one_sentence(db: Path, victim: str, tmp_path: Path) -> None:
    before = sha(db)
    for args in (("list",), ("list", "--json"), ("show", victim), ("export", victim),
                 ("export", victim, "-o", tmp_path / "x.csv"), ("stop", victim),
                 ("delete", victim, "--force"), ("check",)):
        err = one_sentence(cli("runs", *args, db=db), "damaged", "runs recover")
        assert "not SQLite" not in err
    assert sha(db) == before and not (tmp_path / "x.csv").exists()


def test_a_damaged_page_is_one_sentence_and_the_rest_is_recovered(healthy, tmp_path):
    source, ids = healthy
    shutil.copytree(source.parent, tmp_path / "runs")  # the database and the run folders
    db = tmp_path / "runs" / "llama_lab.db"
    leaves = {n: p for n, p in _table_leaf_pages(db).items() if any(
        i.encode() in p for i in ids)}
    assert len(leaves) >= 3, "the runs table should span several pages"
    number = sorted(leaves)[len(leaves) // 2]  # a page in the middle of the table
    on_it = [i for i in ids if i.encode() in leaves[number]]
    size = len(leaves[number])
    with open(db, "r+b") as f:  # overwrite the page's bytes: a damaged sector
        f.seek((number - 1) * size)
        f.write(b"\xff" * size)

    _every_runs_command_is_one_sentence(db, on_it[0], tmp_path)

    before = sha(db)
    out = tmp_path / "recovered.db"
    proc = cli("runs", "recover", "-o", out, "--json", db=db, check=True)
    report = json.loads(proc.stdout)
    assert sha(db) == before, "recover must only read the damaged file"
    got = listed(out)
    assert set(got) == set(ids) - set(on_it)
    assert report["runs"] == len(got)
    original = RunStore(source)
    for rid in got:
        assert got[rid] == original.get_run(rid).to_dict() | {
            "checkpoint": got[rid]["checkpoint"]}
        assert RunStore(out).metrics(rid) == original.metrics(rid)
        assert RunStore(out).samples(rid) == original.samples(rid)
    trained = ids[0] if ids[0] in got else ids[1]
    # the checkpoint stays where it was, and the recovered store still finds it
    assert RunStore(out).checkpoint_path(trained) == db.parent / trained / "model.safetensors"
    assert RunStore(out).checkpoint_path(trained).is_file()
    assert cli("runs", "check", db=out, check=True).stdout.strip().endswith("ok).")


def test_a_truncated_file_is_damaged_not_foreign_and_its_first_runs_recover(healthy,
                                                                           tmp_path):
    source, ids = healthy
    db = tmp_path / "llama_lab.db"
    shutil.copy(source, db)
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size * 6 // 10)

    _every_runs_command_is_one_sentence(db, ids[0], tmp_path)
    with pytest.raises(runs_module.StoreDamaged, match="damaged"):
        RunStore(db)

    out = tmp_path / "recovered" / "llama_lab.db"
    cli("runs", "recover", "-o", out, db=db, check=True)
    got = listed(out)
    assert got and set(got) < set(ids)
    original = RunStore(source)
    for rid in got:
        assert got[rid]["name"] == original.get_run(rid).name
        assert got[rid]["status"] == original.get_run(rid).status


def test_check_says_ok_and_recover_never_overwrites(healthy, tmp_path):
    db, _ = healthy
    proc = cli("runs", "check", "--json", db=db, check=True)
    assert json.loads(proc.stdout) == {"path": str(db), "ok": True, "problems": []}
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"precious")
    one_sentence(cli("runs", "recover", "-o", taken, db=db), "already exists")
    assert taken.read_bytes() == b"precious"
    one_sentence(cli("runs", "recover", db=db), "-o NEW.db")
    one_sentence(cli("runs", "check", db=tmp_path / "nothing.db"), "no run database")


# --- 8. runs whose process is gone ----------------------------------------------------

def test_a_killed_command_line_train_is_interrupted_for_the_next_reader(tmp_path):
    db = tmp_path / "llama_lab.db"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_core", "train", "--preset", "tiny", "--steps",
         "1000000", *TINY_SET, "eval_interval=5", "--db", str(db), "--json"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def running():
            if not db.exists():
                return None
            store = RunStore(db)
            runs = store.list_runs(status="running")  # the store API: no sweep
            # A metric row, not just steps: the step count advances live between them.
            return runs[0] if runs and store.metrics(runs[0].id) else None
        run = wait_for(running, timeout=180, what="the train command to report a metric")
        assert run.pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert RunStore(db).get_run(run.id).status == "running"  # nobody has looked yet

    got = listed(db)[run.id]
    assert (got["status"], got["error"]) == ("interrupted", ORPHAN_MESSAGE)
    assert RunStore(db).metrics(run.id)  # metrics kept


def test_a_reused_pid_is_not_taken_for_the_owner(tmp_path):
    from llama_core.lab.store import owner_alive, process_start
    db = tmp_path / "llama_lab.db"
    store = RunStore(db)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        real, reused, claimed = (store.create_run(MODEL, TRAIN) for _ in range(3))
        for rid in (real, reused):
            assert store.mark_running(rid, stranger.pid, "cpu")
        assert store.claim_next(stranger.pid) == claimed
        token = process_start(stranger.pid)
        assert token and owner_alive(stranger.pid, token)
        # As if the runs' owner had died and the kernel given its pid to `stranger`,
        # which started at another moment:
        boot, ticks = token.rsplit(":", 1)
        con = sqlite3.connect(db)
        con.execute("UPDATE runs SET pid_start = ? WHERE id IN (?, ?)",
                    (f"{boot}:{int(ticks) - 1}", reused, claimed))
        con.commit()
        con.close()

        got = listed(db)
        assert got[real]["status"] == "running"  # the true owner is alive
        assert (got[reused]["status"], got[reused]["error"]) == ("interrupted",
                                                                 ORPHAN_MESSAGE)
        assert got[claimed]["status"] == "queued" and got[claimed]["pid"] is None
    finally:
        stranger.kill()
        stranger.wait()
    assert listed(db)[real]["status"] == "interrupted"  # and once it is gone, it is too


def test_without_proc_the_pid_alone_decides(tmp_path, monkeypatch):
    from llama_core.lab.store import owner_alive, process_start
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monkeypatch.setattr(runs_module, "PROC", tmp_path / "no-proc-here")
    assert process_start(os.getpid()) is None
    assert owner_alive(os.getpid(), None) and owner_alive(os.getpid(), "boot:123")
    assert not owner_alive(dead.pid, None)
    store = RunStore(tmp_path / "llama_lab.db")
    rid = store.create_run(MODEL, TRAIN)
    assert store.mark_running(rid, os.getpid(), "cpu")
    assert store.mark_interrupted_orphans() == [] and store.get_run(rid).status == "running"


def test_a_full_disk_is_said_so_not_read_only_or_locked(tmp_path):
    """SQLite's own "database or disk is full" (a page limit on this connection): one
    sentence naming the disk, and how a run ended can still be recorded."""
    from llama_core.lab.store import DiskFull
    store = RunStore(tmp_path / "llama_lab.db")
    rid = store.create_run(MODEL, TRAIN)
    assert store.mark_running(rid, os.getpid(), "cpu")
    conn = store._connect()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DiskFull) as e:
        for step in range(1000):
            store.add_metric(rid, {"step": step, "sample": "x" * 3000})
    msg = str(e.value)
    assert "disk is full" in msg and "read-only" not in msg and "locked" not in msg
    assert store.finish_run(rid, "failed", None, DISK_FULL_MESSAGE)
    assert store.get_run(rid).status == "failed"


def test_a_train_that_fills_the_disk_ends_failed_saying_so(tmp_path):
    """A real full disk: a 1 MiB tmpfs (in a private mount namespace) nearly filled
    before a command-line train starts writing metrics to a store on it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare is not installed")
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    script = r'''
set -u
mount -t tmpfs -o size=1m tmpfs "$1" || exit 77
head -c 600000 /dev/zero > "$1/filler"
"$3" -m llama_core train --preset tiny --steps 5000 --db "$1/llama_lab.db" --json \
  --set eval_interval=1 eval_batches=1 sample_chars=300 threads=1 batch_size=4 \
  context_window=16 d_model=16 n_layers=1 n_heads=2 > "$2/train.out" 2> "$2/train.err"
echo $? > "$2/train.rc"
"$3" -m llama_core runs list --json --db "$1/llama_lab.db" > "$2/list.out" 2> "$2/list.err"
echo $? > "$2/list.rc"
'''
    r = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script,
                        "sh", str(disk), str(out), sys.executable], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                       text=True, timeout=600)
    if r.returncode == 77 or not (out / "train.rc").exists():
        pytest.skip(f"cannot mount a private tmpfs here: {r.stderr.strip()[:200]}")
    err = (out / "train.err").read_text().strip()
    assert (out / "train.rc").read_text().strip() == "1", err
    assert err == DISK_FULL_MESSAGE
    assert (out / "list.rc").read_text().strip() == "0", (out / "list.err").read_text()
    (run,) = json.loads((out / "list.out").read_text())
    assert (run["status"], run["error"]) == ("failed", DISK_FULL_MESSAGE)
    assert run["steps"] > 0  # it was mid-run, and the metrics up to then are kept


# --- 9. output hygiene ----------------------------------------------------------------

EVIL_NAME = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\rover\u202eevil"


def test_control_characters_never_reach_the_terminal(tmp_path):
    db = tmp_path / "llama_lab.db"
    store = RunStore(db)
    rid = store.create_run(MODEL, TRAIN, name=EVIL_NAME)
    for args in (("list",), ("show", rid)):
        proc = cli("runs", *args, db=db, check=True)
        assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
        assert "\u202e" not in proc.stdout and "\x07" not in proc.stdout
        assert "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\rover\\u202eevil" in proc.stdout
    listed_name = json.loads(cli("runs", "list", "--json", db=db, check=True).stdout)[0]
    assert listed_name["name"] == EVIL_NAME  # JSON carries the true name, escaped by JSON
    proc = cli("runs", "show", "r\x1b[2Jx", db=db)
    assert "\x1b" not in proc.stderr


def test_csv_cells_never_run_as_formulas(tmp_path):
    db = tmp_path / "llama_lab.db"
    store = RunStore(db)
    names = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1)", "\t=1+1",
             "\r=1+1", "-1.5", "plain"]
    ids = []
    for name in names:
        rid = store.create_run(MODEL, TRAIN, name="placeholder")
        store.add_metric(rid, {"step": 1, "val_loss": -1.5, "lr": 1e-3})
        ids.append(rid)
    con = sqlite3.connect(db)  # as another tool could have written them (no stripping)
    con.executemany("UPDATE runs SET name = ? WHERE id = ?", zip(names, ids))
    con.commit()
    con.close()
    out = tmp_path / "runs.csv"
    cli("runs", "export", *ids, "-o", out, db=db, check=True)
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [
        "'=HYPERLINK(\"http://x\",\"y\")", "'+1+2", "'-2+3", "'@SUM(A1)", "'\t=1+1",
        "'\r=1+1", "-1.5", "plain"]
    assert {r["val_loss"] for r in rows} == {"-1.5"} and {r["lr"] for r in rows} == {"0.001"}


@pytest.mark.parametrize("where, says", [
    ("missing/runs.csv", "does not exist"),
    (".", "is a folder"),
    ("/dev/full", "not a regular file"),
])
def test_export_to_a_bad_place_is_one_sentence_and_leaves_no_file(tmp_path, where, says):
    db = tmp_path / "llama_lab.db"
    rid = RunStore(db).create_run(MODEL, TRAIN)
    target = where if where.startswith("/") else str(tmp_path / where)
    before = sorted(p.name for p in tmp_path.iterdir())
    one_sentence(cli("runs", "export", rid, "-o", target, db=db), says)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_export_is_all_or_nothing_on_a_full_file_limit(tmp_path):
    """RLIMIT_FSIZE (SIGXFSZ ignored) makes the write fail part way, as a full disk
    does: the old file is kept whole and no temporary file is left behind."""
    db = tmp_path / "llama_lab.db"
    store = RunStore(db)
    rid = store.create_run(MODEL, TRAIN)
    for step in range(2000):
        store.add_metric(rid, {"step": step, "val_loss": 1.0})
    out = tmp_path / "out" / "runs.csv"
    out.parent.mkdir()
    out.write_text("the previous export\n")
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))\n"
            "from llama_core.lab.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "runs", "export", rid, "-o", str(out),
                           "--db", str(db)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    one_sentence(proc, "disk is full", "nothing was written")
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in out.parent.iterdir()] == ["runs.csv"]


@pytest.mark.parametrize("args, says", [
    (["train", "--steps", "nan"], "--steps takes a whole number, not 'nan'."),
    (["train", "--seed", "x"], "--seed takes a whole number, not 'x'."),
    (["train", "--time-budget", "soon"], "--time-budget takes a number, not 'soon'."),
    (["sweep", "--seeds", "three", "--variant", "norm=layernorm"],
     "--seeds takes a whole number, not 'three'."),
    (["runs", "list", "--limit", "1.5"], "--limit takes a whole number, not '1.5'."),
    (["runs", "list", "--format", "xls"], "--format must be one of csv, json, not 'xls'."),
    (["train", "--device", "\x1b[2Jtpu"], "--device must be one of auto, cpu, cuda"),
    (["classset", "build", "--parallel", "two"], "--parallel takes a whole number"),
    (["runs", "list", "--no-such-flag"], "does not take --no-such-flag"),
])
def test_a_wrong_flag_value_is_one_sentence_not_the_usage(tmp_path, args, says):
    env = dict(os.environ, PYTHONPATH=str(REPO), LLAMA_LAB_RUNS=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "llama_core", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    err = one_sentence(proc, says)
    assert err.startswith("llama_core: ") and "usage:" not in err and "\x1b" not in err
    assert proc.stdout == ""
