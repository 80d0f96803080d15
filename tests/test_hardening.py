"""The bad-input catalogue: configs, corpora, uploads, prompts, checkpoints, run ids
from URLs, classroom settings, a read-only run folder and a full disk. Each one must
end in one clear sentence (a UserError, never a traceback), and a store holding a
finished run must be byte-for-byte the same afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llama_core.lab import classroom
from llama_core.config import model_from_dict
from llama_core.presets import build_configs
from llama_core.corpora import corpus_text
from llama_core.data import MAX_CORPUS_BYTES, validate_text
from llama_core.errors import CorpusError, UnknownCharactersError, UserError
from llama_core.inspect import attention_maps
from llama_core.lab.worker import DISK_FULL_MESSAGE, execute_run
from llama_core.lab.report import comparison_html
from llama_core.lab.store import RunNotFound, RunStore, check_run_id
from llama_core.checkpoint import load_checkpoint, read_checkpoint
from llama_core.generate import generate_text
from runs_fixtures import TINY, train_tiny_runs

REPO = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict:
    """Hash of every file under the runs folder (SQLite's -wal/-shm side files aside)
    plus the store's rows, metrics and samples."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.endswith(("-wal", "-shm")):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    con = sqlite3.connect(f"file:{folder / 'llama_lab.db'}?mode=ro", uri=True)
    for table in ("runs", "metrics", "samples"):
        out[table] = sorted(map(repr, con.execute(f"SELECT * FROM {table}").fetchall()))
    con.close()
    return out


@pytest.fixture(scope="module")
def precious(tmp_path_factory):
    """A store with one finished run; its folder is checkpointed so bytes are stable."""
    folder = tmp_path_factory.mktemp("precious-runs")
    store = RunStore(folder / "llama_lab.db")
    (run_id,) = train_tiny_runs(store.path, steps=10, eval_interval=5)
    con = sqlite3.connect(store.path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return store, run_id, folder


@pytest.fixture(scope="module")
def model_and_tokenizer(precious):
    store, run_id, _ = precious
    model, tokenizer, _ = load_checkpoint(store.checkpoint_path(run_id))
    return model, tokenizer


def _files(tmp: Path) -> dict[str, Path]:
    """Bad files, made fresh for each case that needs one."""
    f = {}
    f["binary"] = tmp / "picture.png"
    f["binary"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    f["latin1"] = tmp / "latin1.txt"
    f["latin1"].write_bytes(("Caf\xe9 " * 400).encode("latin-1"))
    f["short"] = tmp / "short.txt"
    f["short"].write_text("To be or not to be.")
    f["empty"] = tmp / "empty.txt"
    f["empty"].write_bytes(b"")
    f["folder"] = tmp / "a-folder"
    f["folder"].mkdir()
    f["pickle"] = tmp / "model.pt"
    torch.save({"w": torch.zeros(3)}, f["pickle"])
    f["foreign"] = tmp / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(f["foreign"]))
    f["notsqlite"] = tmp / "notadb.db"
    f["notsqlite"].write_text("hello, I am a text file\n" * 10)
    return f


def truncated_checkpoint(store, run_id, tmp):
    src = store.checkpoint_path(run_id).read_bytes()
    p = tmp / "truncated.safetensors"
    p.write_bytes(src[: len(src) // 2])
    return p


# (id, call(ctx) -> anything, expected error class, words the message must hold)
CASES = [
    # --- configs
    ("config-negative-width", lambda c: build_configs("tiny", {"d_model": -1}),
     UserError, "d_model"),
    ("config-heads-do-not-divide", lambda c: build_configs("tiny", {"d_model": 30,
                                                                   "n_heads": 4}),
     UserError, "n_heads"),
    ("config-unknown-norm", lambda c: build_configs("tiny", {"norm": "batchnorm"}),
     UserError, "norm"),
    ("config-unknown-field", lambda c: build_configs("tiny", {"learning_rate": "0.1"}),
     UserError, "Unknown setting 'learning_rate'"),
    ("config-nan-lr", lambda c: build_configs("tiny", {"lr": "nan"}), UserError, "lr"),
    ("config-huge-context", lambda c: build_configs("tiny", {"context_window": 10 ** 9}),
     UserError, "context_window"),
    ("config-unknown-preset", lambda c: build_configs("gpt-5"), UserError, "Unknown preset"),
    ("config-stored-garbage", lambda c: model_from_dict({"d_model": "wide"}), UserError,
     "d_model"),
    # --- corpora by name or path
    ("corpus-unknown-name", lambda c: corpus_text("wikipedia"), CorpusError,
     "Unknown corpus"),
    ("corpus-traversal-missing", lambda c: corpus_text("../../etc/nothing-here"),
     CorpusError, "No file"),
    ("corpus-folder", lambda c: corpus_text(str(c["files"]["folder"])), CorpusError,
     "folder"),
    ("corpus-binary-file", lambda c: corpus_text(str(c["files"]["binary"])), CorpusError,
     "binary"),
    ("corpus-not-utf8", lambda c: corpus_text(str(c["files"]["latin1"])), CorpusError,
     "UTF-8"),
    ("corpus-too-short", lambda c: corpus_text(str(c["files"]["short"])), CorpusError,
     "too short"),
    ("corpus-empty", lambda c: corpus_text(str(c["files"]["empty"])), CorpusError, "empty"),
    # --- uploads (bytes as a browser sends them)
    ("upload-too-big", lambda c: validate_text(b"a" * (MAX_CORPUS_BYTES + 1),
                                               what="big.txt"), CorpusError, "limit"),
    ("upload-png", lambda c: validate_text(c["files"]["binary"].read_bytes(),
                                           what="cat.png"), CorpusError, "cat.png"),
    ("upload-utf16", lambda c: validate_text(("hello world " * 200).encode("utf-16"),
                                             what="u16.txt"), CorpusError, "u16.txt"),
    ("upload-control-chars", lambda c: validate_text(b"\x01\x02\x03abc" * 500,
                                                     what="ctl.txt"), CorpusError,
     "control characters"),
    ("upload-one-character", lambda c: validate_text(b"a" * 5000, what="a.txt"),
     CorpusError, "one distinct character"),
    ("upload-whitespace", lambda c: validate_text(b" \n\t" * 900, what="ws.txt"),
     CorpusError, "whitespace"),
    # --- prompts
    ("prompt-unknown-characters", lambda c: generate_text(*c["mt"], "日本語 ☃", 5),
     UnknownCharactersError, "never saw"),
    ("prompt-nul", lambda c: generate_text(*c["mt"], "\x00", 5), UnknownCharactersError,
     "never saw"),
    ("prompt-bad-temperature", lambda c: generate_text(*c["mt"], "To", 5,
                                                       temperature=float("nan")),
     UserError, "temperature"),
    ("prompt-longer-than-context", lambda c: attention_maps(*c["mt"], "a" * 500),
     UserError, "shorten"),
    ("prompt-empty-attention", lambda c: attention_maps(*c["mt"], ""), UserError,
     "at least one character"),
    # --- checkpoints
    ("checkpoint-pickle", lambda c: read_checkpoint(c["files"]["pickle"]), UserError,
     "safetensors"),
    ("checkpoint-truncated", lambda c: read_checkpoint(
        truncated_checkpoint(c["store"], c["run"], c["tmp"])), UserError, "safetensors"),
    ("checkpoint-foreign", lambda c: read_checkpoint(c["files"]["foreign"]), UserError,
     "not written by Llama Lab"),
    ("checkpoint-missing", lambda c: read_checkpoint(c["tmp"] / "nope.safetensors"),
     UserError, "No checkpoint"),
    # --- run ids from URLs and the command line
    ("url-traversal", lambda c: c["store"].get_run("../../etc/passwd"), UserError,
     "not a run id"),
    ("url-encoded-traversal", lambda c: c["store"].get_run("%2e%2e%2fetc"), UserError,
     "not a run id"),
    ("url-uppercase-script", lambda c: c["store"].get_run("<script>alert(1)</script>"),
     UserError, "not a run id"),
    ("url-very-long-id", lambda c: check_run_id("r" * 5000), UserError, "not a run id"),
    ("url-not-a-string", lambda c: check_run_id(["r1"]), UserError, "not a run id"),
    ("url-unknown-run", lambda c: c["store"].get_run("r00000000"), RunNotFound,
     "There is no run"),
    ("run-dir-traversal", lambda c: c["store"].run_dir("../outside", create=True),
     UserError, "not a run id"),
    ("delete-traversal", lambda c: c["store"].delete_runs([".."]), UserError,
     "not a run id"),
    ("stop-unknown", lambda c: c["store"].request_stop("rdeadbeef"), UserError, "no run"),
    ("export-traversal", lambda c: c["store"].export(["../x"]), UserError, "not a run id"),
    ("report-traversal", lambda c: comparison_html(c["store"], ["/etc/passwd"]), UserError,
     "not a run id"),
    ("report-empty", lambda c: comparison_html(c["store"], []), UserError, "at least one"),
    ("group-traversal", lambda c: c["store"].create_run(*build_configs("tiny"),
                                                        group="../../x"),
     UserError, "not a group id"),
    # --- a student's name, as a crafted websocket message could send it
    ("student-name-control-characters",
     lambda c: c["store"].set_student_name("s-0123456789", "Ann\x00<b>"), UserError,
     "control characters"),
    ("student-name-too-long", lambda c: c["store"].set_student_name("s-0123456789",
                                                                    "A" * 5000),
     UserError, "at most 40 characters"),
    # --- stores
    ("store-not-sqlite", lambda c: RunStore(c["files"]["notsqlite"]), UserError,
     "not SQLite"),
    ("store-is-a-folder", lambda c: RunStore(c["files"]["folder"]), UserError, "folder"),
    # --- classroom limits and settings
    ("classroom-over-cap", lambda c: classroom.create_run(
        c["room"]("[caps]\nd_model = 32\n"), *build_configs("tiny", {"d_model": 64}),
        owner="s-x"), UserError, "over this classroom's cap"),
    ("classroom-locked-field", lambda c: classroom.create_run(
        c["room"]("[locked]\nnorm = 'rmsnorm'\n"),
        *build_configs("tiny", {"norm": "layernorm"}), owner="s-x"), UserError,
     "locked by the teacher"),
    ("classroom-corpus-path", lambda c: classroom.create_run(
        c["room"]("[classroom]\ncorpora = ['shakespeare']\n"),
        *build_configs("tiny", {"corpus": "/etc/passwd"}), owner="s-x"),
     UserError, "not open in this classroom"),
    ("classroom-broken-file", lambda c: classroom.create_run(
        c["room"]("[caps]\nd_model = -3\n"), *build_configs("tiny"), owner="s-x"),
     UserError, "at least 1"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_sentence_and_changes_nothing(case, precious, tmp_path,
                                                                model_and_tokenizer,
                                                                monkeypatch):
    name, call, error, needle = case
    store, run_id, folder = precious
    monkeypatch.delenv(classroom.ENV_CLASSROOM, raising=False)

    def room(text: str) -> RunStore:
        (tmp_path / "room.toml").write_text(text)
        monkeypatch.setenv(classroom.ENV_CLASSROOM, str(tmp_path / "room.toml"))
        return store  # limits must refuse before anything is written

    ctx = {"store": store, "run": run_id, "tmp": tmp_path, "files": _files(tmp_path),
           "mt": model_and_tokenizer, "room": room}
    before = snapshot(folder)
    with pytest.raises(error) as e:
        call(ctx)
    msg = str(e.value)
    assert isinstance(e.value, UserError)
    assert needle.lower() in msg.lower(), msg
    assert "Traceback" not in msg and len(msg) < 600, msg
    assert snapshot(folder) == before, f"{name} changed the runs folder"
    assert not (folder.parent / "outside").exists()


def test_catalogue_is_big_enough():
    assert len(CASES) >= 25


def _chattr(flag: str, *paths: Path) -> bool:
    exe = shutil.which("chattr")
    if exe is None:
        return False
    return subprocess.run([exe, flag, *map(str, paths)], capture_output=True).returncode == 0


def test_read_only_run_folder(tmp_path):
    """An immutable runs folder (chattr +i: root cannot write it either): opening the
    store says so in one sentence, and nothing in it changes."""
    folder = tmp_path / "runs"
    subprocess.run([sys.executable, "-c", "import sys; sys.path[:0] = sys.argv[1:3]; "
                    "from runs_fixtures import train_tiny_runs; "
                    "train_tiny_runs(sys.argv[3], steps=10, eval_interval=5)",
                    str(REPO), str(REPO / "tests"), str(folder / "llama_lab.db")],
                   check=True, cwd=REPO, timeout=300)  # in another process: no open handle
    con = sqlite3.connect(folder / "llama_lab.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for side in folder.glob("llama_lab.db-*"):
        side.unlink()
    before = snapshot(folder)
    targets = [folder, *folder.rglob("*")]
    if not _chattr("+i", *targets):
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE)")
    try:
        code = ("import sys\n"
                "from llama_core.errors import UserError\n"
                "from llama_core.lab.store import RunStore\n"
                "from llama_core.presets import build_configs\n"
                "try:\n"
                "    s = RunStore(sys.argv[1])\n"
                "    s.create_run(*build_configs('tiny'), owner='s-x')\n"
                "except UserError as e:\n"
                "    sys.exit(str(e))\n")
        r = subprocess.run([sys.executable, "-c", code, str(folder / "llama_lab.db")],
                           capture_output=True, text=True, cwd=REPO, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        assert r.returncode == 1 and "read-only" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        _chattr("-i", *targets)
    assert snapshot(folder) == before


def test_full_disk_fails_the_run_clearly_and_keeps_the_others(tmp_path):
    """A file-size quota (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG, as on a
    full disk) below the checkpoint's size: the run fails with the disk-full sentence,
    its metrics are kept, and the finished run beside it is untouched."""
    folder = tmp_path / "runs"
    db = folder / "llama_lab.db"
    (done,) = train_tiny_runs(db, steps=10, eval_interval=5)
    store = RunStore(db)
    model, train = build_configs("tiny", {**TINY, "steps": 20})
    victim = store.create_run(model, train)
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before_done = {k: v for k, v in snapshot(folder).items()
                   if k.startswith(done) or k in ("metrics", "samples")}
    ckpt = store.checkpoint_path(done).read_bytes()
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))\n"
            "from llama_core.lab.worker import execute_run\n"
            "sys.exit(execute_run(sys.argv[1], sys.argv[2]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(db), victim], capture_output=True,
                       text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1, r.stderr[-2000:]
    assert DISK_FULL_MESSAGE in r.stderr and "Traceback" not in r.stderr
    run = store.get_run(victim)
    assert (run.status, run.error) == ("failed", DISK_FULL_MESSAGE)
    assert run.steps == 20 and store.metrics(victim)  # metrics kept
    assert not list((folder / victim).glob("*.safetensors*"))  # no half checkpoint left
    assert store.checkpoint_path(done).read_bytes() == ckpt
    after = snapshot(folder)
    assert [m for m in after["metrics"] if done in m] == [
        m for m in before_done["metrics"] if done in m]
    assert store.get_run(done).status == "finished"


def test_execute_run_with_a_malicious_id_touches_nothing(precious, capsys):
    store, _, folder = precious
    before = snapshot(folder)
    assert execute_run(store.path, "../../etc/passwd") == 2
    assert "not a run id" in capsys.readouterr().err
    assert snapshot(folder) == before
