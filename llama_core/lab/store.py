"""The durable run store: every run's config, status, metrics and samples in SQLite
(and the names students give themselves in a classroom).

Why SQLite: the dashboard, the job manager and each training process are different
processes (and threads); the store is the one truth they all read and write. The
database is in WAL mode so readers never block the writer, with ``synchronous=NORMAL``
(durable across a crashed process, fast enough to flush a metric per evaluation). Each
thread and each process gets its own connection, and every write runs in
``BEGIN IMMEDIATE`` (a deferred transaction that upgrades to a write can fail with
SQLITE_BUSY no matter the timeout) with a retry, so concurrent writers wait their turn
instead of seeing "database is locked".

Layout: the runs folder (``$LLAMA_LAB_RUNS`` or ``<repo>/runs/``) holds ``llama_lab.db``
and one folder per run (``<runs>/<run id>/``) for files too big for a row: the
checkpoint ``model.safetensors`` and logs. ``RunStore(path)`` names the database file
directly (the command line's ``--db``); its folder is then the runs folder. Beside the
database, ``llama_lab.db-reserve`` holds a little disk space back: when the disk fills
up, the store gives it up to record how a run ended (failed: the disk is full) instead
of leaving it "running".

Before touching a file that already exists, the store opens it read-only and refuses
(``StoreError``) anything that is not a SQLite database or is someone else's database,
so a wrong ``--db`` can never damage a file. The schema is versioned with
``PRAGMA user_version`` and upgraded by the ordered ``MIGRATIONS``.

Every SQLite error the user can act on becomes one sentence in one place
(``_storage_error``): a damaged file (``StoreDamaged``: recover it with ``runs
recover``, see ``store_repair``), a full disk (``DiskFull``), a read-only or locked
file. A run's owner is its pid *and* that process's start time, so a run whose process
died is noticed even after the kernel gave its pid to another program.

Storage only: starting, queueing and stopping processes is ``llama_core.lab.jobs``, and
policy (who may queue or start what) is ``llama_core.lab.classroom``'s. The store offers
the transactions and counts it decides on: ``create_run(admit=...)`` shows an owner's
counts to an admission check inside the insert's transaction, and ``claim_next`` takes
the per-owner cap it is told.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import re
import secrets
import shutil
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import UserError
from .plain_text import spreadsheet_cell

REPO_ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "llama_lab.db"
ENV_RUNS = "LLAMA_LAB_RUNS"
SCHEMA_TABLE = "llama_lab_schema"  # marks a database as ours

STATUSES = ("queued", "running", "finished", "stopped", "failed", "interrupted", "diverged")
ACTIVE = ("queued", "running")
TERMINAL = ("finished", "stopped", "failed", "interrupted", "diverged")
# Ended with its numbers and model intact: trained to the end, or stopped and saved there.
COMPLETED = ("finished", "stopped")
RUN_ID_RE = re.compile(r"^[a-z0-9-]{1,40}$")
# A run holds one of the limited slots from the moment a process claims it until it ends;
# a queued run nobody has claimed yet is waiting for one.
_HOLDS_SLOT = "(status = 'running' OR (status = 'queued' AND pid IS NOT NULL))"
_WAITING = "(status = 'queued' AND pid IS NULL)"

METRIC_COLUMNS = ("step", "tokens", "seconds", "train_loss", "val_loss", "lr", "grad_norm",
                  "tokens_per_s")
RESULT_COLUMNS = ("final_train_loss", "final_val_loss", "steps", "tokens", "wall_s",
                  "tokens_per_s", "params", "device", "data_sha256", "checkpoint")

ORPHAN_MESSAGE = ("Its training process ended without saying how the run went (the server "
                  "or the process was stopped); the metrics up to then are kept, so start "
                  "a new run to finish it.")

_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (extended codes share the low byte)
_READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 8, 10, 11, 13, 14, 26
_WRITE_RETRIES = 8
CONNECT_TIMEOUT_S = 30.0
RESERVE_BYTES = 128 * 1024  # room for the last few writes once the disk is full


class StoreError(UserError):
    """The run database cannot be used: not SQLite, someone else's, or newer than us."""


class StoreDamaged(StoreError):
    """SQLite found the file corrupted (a damaged page, a truncated file)."""


class DiskFull(StoreError):
    """SQLite could not write because the disk (or a quota) is full."""


class RunNotFound(UserError):
    """No run has that id in this store."""


def damaged_message(path: str | os.PathLike, detail: str) -> str:
    """The one sentence for a damaged store: what happened and how to get the runs back."""
    return (f"The run database {path} is damaged ({detail}); copy every readable run into "
            f"a new file with `python -m llama_core runs recover --db {path} -o NEW.db` "
            "(`runs check` shows what is wrong).")


# --- Schema -----------------------------------------------------------------------

# MIGRATIONS[i] takes the schema from version i to version i + 1. Never edit a released
# entry; append a new one (ALTER TABLE ...) and the store upgrades old databases on open.
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("runs, metrics and samples", [
        f"""CREATE TABLE {SCHEMA_TABLE} (
            version INTEGER PRIMARY KEY,
            applied REAL NOT NULL,
            note TEXT NOT NULL)""",
        f"""CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            "group" TEXT,
            model_config TEXT NOT NULL,
            train_config TEXT NOT NULL,
            seed INTEGER,
            device TEXT,
            status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            error TEXT,
            owner TEXT,
            pid INTEGER,
            code_version TEXT,
            torch_version TEXT,
            data_sha256 TEXT,
            params INTEGER,
            final_train_loss REAL,
            final_val_loss REAL,
            steps INTEGER NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL DEFAULT 0,
            wall_s REAL,
            tokens_per_s REAL,
            checkpoint TEXT,
            stop_requested INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX runs_by_status ON runs (status, created)",
        'CREATE INDEX runs_by_group ON runs ("group")',
        "CREATE INDEX runs_by_owner ON runs (owner)",
        """CREATE TABLE metrics (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            tokens INTEGER,
            seconds REAL,
            train_loss REAL,
            val_loss REAL,
            lr REAL,
            grad_norm REAL,
            tokens_per_s REAL,
            extra TEXT,
            PRIMARY KEY (run_id, step)) WITHOUT ROWID""",
        """CREATE TABLE samples (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (run_id, step)) WITHOUT ROWID""",
    ]),
    ("student names shown to the teacher", [
        """CREATE TABLE students (
            owner TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            updated REAL NOT NULL) WITHOUT ROWID""",
    ]),
    ("when the owning process started, so a reused pid is not taken for it", [
        "ALTER TABLE runs ADD COLUMN pid_start TEXT",
    ]),
    ("every training step's loss, for the live curve", [
        """CREATE TABLE step_losses (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            seconds REAL,
            loss REAL,
            PRIMARY KEY (run_id, step)) WITHOUT ROWID""",
    ]),
]
SCHEMA_VERSION = len(MIGRATIONS)
STUDENT_NAME_MAX = 40


# --- Values -----------------------------------------------------------------------

@dataclass
class Run:
    """One row of ``runs``, with the configs parsed back into dicts."""

    id: str
    name: str
    group: str | None
    model_config: dict
    train_config: dict
    seed: int | None
    device: str | None
    status: str
    created: float
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    owner: str | None = None
    pid: int | None = None
    code_version: str | None = None
    torch_version: str | None = None
    data_sha256: str | None = None
    params: int | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    steps: int = 0
    tokens: int = 0
    wall_s: float | None = None
    tokens_per_s: float | None = None
    checkpoint: str | None = None
    stop_requested: bool = False

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def holds_slot(self) -> bool:
        """Running, or claimed by a process that is starting it (``_HOLDS_SLOT``)."""
        return self.status == "running" or (self.status == "queued" and self.pid is not None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # Dict-style reads too, so callers may treat a run as the plain record it is.
    def __getitem__(self, key: str) -> Any:
        if key not in RUN_COLUMNS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in RUN_COLUMNS else default


RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(Run))
_RUN_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in RUN_COLUMNS) + " FROM runs"


def _row_to_run(row: tuple) -> Run:
    d = dict(zip(RUN_COLUMNS, row))
    d["model_config"] = json.loads(d["model_config"])
    d["train_config"] = json.loads(d["train_config"])
    d["stop_requested"] = bool(d["stop_requested"])
    return Run(**d)


def check_run_id(run_id: Any) -> str:
    """Refuse anything but a short lowercase id, so an id can name a folder safely."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        shown = repr(run_id)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UserError(f"{shown} is not a run id; use the id shown by "
                        "`python -m llama_core runs list` (lowercase letters, digits, '-').")
    return run_id


def _unique_ids(run_ids: Iterable[str]) -> list[str]:
    """Checked ids, each once, in the order given (at least one)."""
    ids = list(dict.fromkeys(check_run_id(r) for r in (
        [run_ids] if isinstance(run_ids, str) else run_ids)))
    if not ids:
        raise UserError("Name at least one run id; see `python -m llama_core runs list`.")
    return ids


def new_run_id() -> str:
    return "r" + secrets.token_hex(4)


def default_runs_dir() -> Path:
    env = os.environ.get(ENV_RUNS)
    return Path(env).expanduser() if env else REPO_ROOT / "runs"


_code_version: str | None = None


def code_version() -> str:
    """``git describe`` of the checkout (without taking git's index lock), else the
    package version: enough to tell which code produced a run."""
    global _code_version
    if _code_version is None:
        version = None
        if (REPO_ROOT / ".git").exists():
            try:
                out = subprocess.run(
                    ["git", "describe", "--always", "--tags", "--dirty"], cwd=REPO_ROOT,
                    capture_output=True, text=True, timeout=5,
                    env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
                if out.returncode == 0 and out.stdout.strip():
                    version = "git:" + out.stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
        if version is None:
            try:
                from importlib.metadata import version as pkg_version
                version = "llama_core " + pkg_version("llama_core")
            except Exception:
                version = "unknown"
        _code_version = version
    return _code_version


def _installed_torch_version() -> str | None:
    """Torch's version without importing torch (the store must stay light)."""
    try:
        from importlib.metadata import version as pkg_version
        return pkg_version("torch")
    except Exception:
        return None


def _as_dict(cfg: Any) -> dict:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    if isinstance(cfg, dict):
        return dict(cfg)
    raise TypeError(f"expected a config dataclass or dict, got {type(cfg).__name__}")


def _finite_or_none(x: Any) -> float | None:
    """SQLite would store NaN as NULL anyway; say so explicitly."""
    if x is None:
        return None
    x = float(x)
    return x if not math.isnan(x) else None


def _is_busy(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def pid_alive(pid: int | None) -> bool:
    """True while a process with this pid exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3]
        return state not in (b"Z", b"X")
    except (OSError, ValueError):
        return True


PROC = Path("/proc")
_boot_id: str | None = None


def process_start(pid: int | None) -> str | None:
    """When process ``pid`` started, as a token to compare: this boot's id and the start
    time in clock ticks (field 22 of /proc/<pid>/stat). None where /proc cannot tell
    (no such process, or no /proc on this system)."""
    global _boot_id
    if not pid or pid <= 0:
        return None
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])  # fields 3.. after "(comm)"
    except (OSError, ValueError, IndexError):
        return None
    if _boot_id is None:
        try:
            _boot_id = (PROC / "sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            _boot_id = ""
    return f"{_boot_id}:{ticks}"


def owner_alive(pid: int | None, started: str | None) -> bool:
    """Is the process that claimed a run still the one running under ``pid``? A pid
    alive with another start time belongs to a newer program: the owner is gone.
    Without a recorded start (older rows, no /proc) the pid alone decides."""
    if not pid_alive(pid):
        return False
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started


# A connection inherited through fork() must never be used or closed in the child
# (SQLite's rule: closing it could checkpoint or unlink the WAL under the parent). The
# child keeps it referenced and pinned, so not even interpreter exit frees it.
_inherited_connections: list[sqlite3.Connection] = []


def _abandon(conn: sqlite3.Connection) -> None:
    _inherited_connections.append(conn)
    try:
        import ctypes
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
    except Exception:
        pass


# --- The store --------------------------------------------------------------------

class RunStore:
    """Runs, metrics and samples in one SQLite file; safe to share across threads and
    to open from many processes at once."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            self.runs_dir = default_runs_dir()
            self.path = self.runs_dir / DB_NAME
        else:
            self.path = Path(path).expanduser()
            if self.path.is_dir():
                raise StoreError(f"{self.path} is a folder; pass the database file inside "
                                 f"it (for example {self.path / DB_NAME}).")
            self.runs_dir = self.path.parent
        self.path = self.path.absolute()
        self.runs_dir = self.runs_dir.absolute()
        self._local = threading.local()
        self._checked_pid: int | None = None
        self._check_lock = threading.Lock()
        self._connect()  # fail now, in the caller's hands, if the file is not ours

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- connections --

    def _check_existing_file(self) -> None:
        """Look at an existing file read-only and refuse it unless it is our database."""
        p = self.path
        if not p.exists():
            return
        if not p.is_file():
            raise StoreError(f"{p} is not a file; pass a path for the run database "
                             f"(for example runs/{DB_NAME}).")
        if p.stat().st_size == 0:
            return  # an empty file is an empty SQLite database
        # Only SQLite itself may open the file: closing a descriptor we opened would
        # silently drop the POSIX locks of this process's live connections to it (the
        # classic way to corrupt a SQLite database). A non-database fails the query.
        not_sqlite = StoreError(f"{p} is not a Llama Lab run database (it is not SQLite); "
                                "pass another --db path or move that file away.")
        try:
            ro = sqlite3.connect(p.as_uri() + "?mode=ro", uri=True, timeout=CONNECT_TIMEOUT_S)
        except sqlite3.Error as e:
            raise StoreError(f"{p} cannot be opened ({e}); check its permissions or pass "
                             "another --db path.") from None
        try:
            tables = {r[0] for r in ro.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = ro.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            known = self._storage_error(e, opening=True)
            if known is not None:
                raise known from None
            if isinstance(e, sqlite3.OperationalError):  # readable, but no way to use it
                raise StoreError(f"{p} cannot be opened ({e}): the file or its folder is "
                                 "read-only or locked; make the runs folder writable for "
                                 "the server, or pass another --db path.") from None
            raise not_sqlite from None
        finally:
            ro.close()
        if tables and SCHEMA_TABLE not in tables:
            raise StoreError(f"{p} is a SQLite database that belongs to something else "
                             "(it has no Llama Lab tables); pass another --db path.")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{p} was written by a newer Llama Lab (schema {version}, this "
                             f"one knows {SCHEMA_VERSION}); update Llama Lab to open it.")

    def _connect(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if conn is not None:  # we are a forked child: leave the parent's connection be
            _abandon(conn)
            local.conn = None
        with self._check_lock:
            first = self._checked_pid != os.getpid()
            if first:  # once per process: look before touching, then upgrade the schema
                self._check_existing_file()
                self.runs_dir.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(str(self.path), timeout=CONNECT_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=True)
            except sqlite3.Error as e:
                raise StoreError(f"The run database {self.path} cannot be opened ({e}); "
                                 "check the folder's permissions or pass another --db "
                                 "path.") from None
            try:
                self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                if first:
                    self._migrate(conn)
                    self._checked_pid = os.getpid()
                    self._keep_reserve()
            except BaseException as e:
                conn.close()
                if isinstance(e, sqlite3.DatabaseError):
                    raise self._storage_error(e, opening=True) or StoreError(
                        f"{self.path} is not a usable Llama Lab run database ({e}); pass "
                        "another --db path.") from None
                raise
        local.conn, local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    @staticmethod
    def _retry(fn: Callable[[], Any]) -> Any:
        """Run ``fn``, retrying with jittered backoff while SQLite says busy/locked.

        The connection's busy timeout already waits for most locks; this covers the
        cases SQLite reports at once (a WAL recovery, a schema change under us)."""
        for attempt in range(_WRITE_RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or attempt == _WRITE_RETRIES - 1:
                    raise
                time.sleep(min(2.0, 0.01 * 2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    @contextmanager
    def _tx(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One transaction; on any error (a failed COMMIT too) it is rolled back, unless
        SQLite already did (it does on a full disk or an I/O error)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error says more
            raise

    def _storage_error(self, e: sqlite3.Error, opening: bool = False) -> StoreError | None:
        """The one sentence for a database problem the user can act on (damaged file,
        full disk, read-only, locked, failing disk); None for anything else (a
        constraint the caller handles, or a bug in Llama Lab)."""
        code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(e).lower()
        p = self.path
        if code == _CORRUPT or "malformed" in text:
            return StoreDamaged(damaged_message(p, str(e)))
        if code == _NOTADB or "not a database" in text:
            if opening:
                return StoreError(f"{p} is not a Llama Lab run database (it is not SQLite); "
                                  "pass another --db path or move that file away.")
            return StoreDamaged(damaged_message(p, str(e)))
        if code == _FULL or "disk is full" in text:
            return DiskFull(f"The run database {p} could not be written because the disk "
                            "is full; free some space (runs already saved are kept).")
        if code == _READONLY or "readonly" in text or "read-only" in text:
            return StoreError(f"The run database {p} is read-only, so nothing can be saved; "
                              "make the runs folder writable for the server.")
        if code == _IOERR or "disk i/o" in text:
            return StoreError(f"The run database {p} could not be read or written ({e}): the "
                              "disk is full or failing; free some space or check the disk "
                              "(runs already saved are kept).")
        if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
            return StoreError(f"The run database {p} stayed locked by another program for "
                              "too long; close whatever holds it and try again.")
        return None

    def _write(self, fn: Callable[[sqlite3.Connection], Any], essential: bool = False) -> Any:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retried when busy.
        ``essential`` (how a run ended): on a full disk, give up the reserve and retry."""
        conn = self._connect()

        def attempt():
            with self._tx(conn):
                return fn(conn)
        try:
            return self._retry(attempt)
        except sqlite3.DatabaseError as e:
            known = self._storage_error(e)
            if known is None:
                raise
            if isinstance(known, DiskFull) and essential and self._release_reserve():
                return self._write(fn)
            raise known from None

    def _reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + "-reserve")

    def _keep_reserve(self) -> None:
        """Hold ``RESERVE_BYTES`` of disk beside the database (best effort: a read-only
        or full folder simply has none). Random bytes, so no filesystem compresses
        them away."""
        reserve = self._reserve_path()
        if reserve.exists():
            return
        try:
            with open(reserve, "xb") as f:
                f.write(os.urandom(RESERVE_BYTES))
        except FileExistsError:
            pass
        except OSError:
            try:
                reserve.unlink(missing_ok=True)
            except OSError:
                pass

    def _release_reserve(self) -> bool:
        """Free the reserve for an essential write; False when there is none left."""
        try:
            self._reserve_path().unlink()
            return True
        except OSError:
            return False

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = self._connect()
        try:
            return self._retry(lambda: conn.execute(sql, args).fetchall())
        except sqlite3.DatabaseError as e:
            known = self._storage_error(e)
            if known is None:
                raise
            raise known from None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return

        def upgrade(c: sqlite3.Connection) -> None:
            v = c.execute("PRAGMA user_version").fetchone()[0]  # another process may
            if v == 0:                                           # have just done it
                tables = [r[0] for r in c.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")]
                if tables:
                    raise StoreError(f"{self.path} is a SQLite database that belongs to "
                                     "something else; pass another --db path.")
            for i in range(v, SCHEMA_VERSION):
                note, statements = MIGRATIONS[i]
                for sql in statements:
                    c.execute(sql)
                c.execute(f"INSERT INTO {SCHEMA_TABLE} (version, applied, note) "
                          "VALUES (?, ?, ?)", (i + 1, time.time(), note))
                c.execute(f"PRAGMA user_version = {i + 1}")

        def attempt():
            with self._tx(conn):
                upgrade(conn)
        self._retry(attempt)

    # -- paths --

    def run_dir(self, run_id: str, create: bool = False) -> Path:
        """The folder for a run's files (checkpoint, logs)."""
        d = self.runs_dir / check_run_id(run_id)
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return d

    def checkpoint_path(self, run_id: str) -> Path | None:
        """Absolute path of the run's stored checkpoint, or None if it has none."""
        run = self.get_run(run_id)
        if not run.checkpoint:
            return None
        p = Path(run.checkpoint)
        return p if p.is_absolute() else self.runs_dir / p

    # -- runs --

    def create_run(self, model_cfg: Any, train_cfg: Any, name: str | None = None,
                   group: str | None = None, owner: str | None = None,
                   pid: int | None = None,
                   admit: Callable[[int, int], None] | None = None) -> str:
        """Add a queued run and return its id.

        ``pid`` claims the run for a process that will execute it itself (the command
        line's in-process ``train``), so no job manager starts it too. ``admit(holding,
        waiting)`` is called inside the insert's transaction with the owner's runs
        holding a slot and runs waiting for one; it raises to refuse the run, and then
        nothing is written (the classroom's per-student caps: two tabs cannot both take
        the last place)."""
        model = _as_dict(model_cfg)
        train = _as_dict(train_cfg)
        if group is not None and (not isinstance(group, str) or not RUN_ID_RE.match(group)):
            raise UserError(f"{group!r} is not a group id; use up to 40 lowercase letters, "
                            "digits and '-'.")
        if name is None:
            name = _default_name(model)
        name = str(name).strip()[:200] or _default_name(model)
        owner = None if owner is None else str(owner)[:200]
        row = dict(name=name, group=group, model_config=json.dumps(model, sort_keys=True),
                   train_config=json.dumps(train, sort_keys=True), seed=train.get("seed"),
                   device=train.get("device"), status="queued", created=time.time(),
                   owner=owner, pid=pid, pid_start=process_start(pid),
                   code_version=code_version(),
                   torch_version=_installed_torch_version())

        def insert(c, run_id):
            if admit is not None:
                admit(*c.execute(
                    f"SELECT COALESCE(SUM({_HOLDS_SLOT}), 0), COALESCE(SUM({_WAITING}), 0) "
                    "FROM runs WHERE owner IS ?", (owner,)).fetchone())
            c.execute('INSERT INTO runs (id, ' + ", ".join(f'"{k}"' for k in row)
                      + ") VALUES (?" + ", ?" * len(row) + ")", (run_id, *row.values()))

        for _ in range(20):
            run_id = new_run_id()
            try:
                self._write(lambda c: insert(c, run_id))
                return run_id
            except sqlite3.IntegrityError:
                continue  # the 1-in-4-billion id clash: draw again
        raise RuntimeError("could not draw a fresh run id")

    def get_run(self, run_id: str) -> Run:
        rows = self._read(_RUN_SELECT + " WHERE id = ?", (check_run_id(run_id),))
        if not rows:
            raise RunNotFound(f"There is no run {run_id!r} in {self.path}; check the id "
                              "with `python -m llama_core runs list`.")
        return _row_to_run(rows[0])

    def list_runs(self, status: str | Iterable[str] | None = None, group: str | None = None,
                  owner: str | None = None, limit: int | None = None,
                  oldest_first: bool = False) -> list[Run]:
        """Runs matching every filter given, newest first (or oldest first)."""
        where, args = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                if s not in STATUSES:
                    raise UserError(f"{s!r} is not a run status; use one of "
                                    f"{', '.join(STATUSES)}.")
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += statuses
        if group is not None:
            where.append('"group" = ?')
            args.append(group)
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        sql = _RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        order = "ASC" if oldest_first else "DESC"
        sql += f" ORDER BY created {order}, rowid {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [_row_to_run(r) for r in self._read(sql, tuple(args))]

    def claim_next(self, pid: int, limit: int | None = None,
                   per_owner: int | None = None) -> str | None:
        """Atomically give the next unclaimed queued run to ``pid`` if fewer than
        ``limit`` runs hold a slot; return its id, or None.

        Fair across owners (students): the next run belongs to the owner with
        the fewest runs holding a slot, then to the owner served longest ago (whose
        latest run started earliest, or never), then it is the oldest of that owner's
        queued runs. So one student's ten queued runs take turns with a classmate's
        one instead of going first. Runs without an owner form one owner and keep
        first-in, first-out order among themselves. ``per_owner`` skips owners who
        already hold that many slots (runs without an owner are never skipped)."""
        if not self._read(f"SELECT 1 FROM runs WHERE {_WAITING} LIMIT 1"):
            return None  # the common case, answered without taking the write lock
        started = process_start(pid)

        def claim(c):
            if limit is not None:
                holding = c.execute(
                    f"SELECT COUNT(*) FROM runs WHERE {_HOLDS_SLOT}").fetchone()[0]
                if holding >= limit:
                    return None
            row = c.execute(
                "WITH holding AS (SELECT owner, COUNT(*) AS n FROM runs WHERE "
                f"{_HOLDS_SLOT} GROUP BY owner), "
                "served AS (SELECT owner, MAX(COALESCE(started, created)) AS t FROM runs "
                "WHERE pid IS NOT NULL OR started IS NOT NULL GROUP BY owner) "
                "SELECT q.id FROM runs q "
                "LEFT JOIN holding h ON h.owner IS q.owner "
                "LEFT JOIN served s ON s.owner IS q.owner "
                "WHERE q.status = 'queued' AND q.pid IS NULL "
                "AND (? IS NULL OR q.owner IS NULL OR COALESCE(h.n, 0) < ?) "
                "ORDER BY COALESCE(h.n, 0), COALESCE(s.t, 0), q.created, q.rowid LIMIT 1",
                (per_owner, per_owner)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE runs SET pid = ?, pid_start = ? WHERE id = ?",
                      (pid, started, row[0]))
            return row[0]
        return self._write(claim)

    # -- students --

    def set_student_name(self, owner: str, name: str) -> str:
        """Remember the name a student typed, for the Teacher page; an empty name forgets
        it. Returns the name as stored (whitespace collapsed)."""
        if not isinstance(owner, str) or not owner.strip():
            raise UserError("A student name needs the student's id; reload the page.")
        name = " ".join(str(name).split())
        if len(name) > STUDENT_NAME_MAX:
            raise UserError(f"A name can be at most {STUDENT_NAME_MAX} characters, not "
                            f"{len(name)}; use a shorter one.")
        if not name.isprintable():
            raise UserError("A name cannot contain control characters; type it again.")
        owner = owner[:200]

        def write(c):
            if name:
                c.execute("INSERT INTO students (owner, name, updated) VALUES (?, ?, ?) "
                          "ON CONFLICT (owner) DO UPDATE SET name = excluded.name, "
                          "updated = excluded.updated", (owner, name, time.time()))
            else:
                c.execute("DELETE FROM students WHERE owner = ?", (owner,))
        self._write(write)
        return name

    def student_names(self) -> dict[str, str]:
        """Every student's chosen name, by owner id."""
        return dict(self._read("SELECT owner, name FROM students"))

    def set_pid(self, run_id: str, pid: int | None) -> None:
        """Hand a claimed run to the process that executes it (or release it: None)."""
        started = process_start(pid)
        self._write(lambda c: c.execute(
            "UPDATE runs SET pid = ?, pid_start = ? WHERE id = ? AND status IN "
            "('queued', 'running')", (pid, started, check_run_id(run_id))))

    def mark_running(self, run_id: str, pid: int, device: str | None,
                     torch_version: str | None = None) -> bool:
        """Queued -> running. False when the run is no longer queued (already started
        elsewhere, or stopped while it waited): the caller must not train it."""
        check_run_id(run_id)
        started = process_start(pid)

        def mark(c):
            cur = c.execute(
                "UPDATE runs SET status = 'running', pid = ?, pid_start = ?, "
                "device = COALESCE(?, device), torch_version = COALESCE(?, torch_version), "
                "started = ? WHERE id = ? AND status = 'queued'",
                (pid, started, device, torch_version, time.time(), run_id))
            if cur.rowcount == 0 and c.execute("SELECT 1 FROM runs WHERE id = ?",
                                               (run_id,)).fetchone() is None:
                raise RunNotFound(f"There is no run {run_id!r} in {self.path}; check the "
                                  "id with `python -m llama_core runs list`.")
            return cur.rowcount == 1
        return self._write(mark)

    def add_metric(self, run_id: str, record: dict) -> None:
        """Store one evaluation (and its sample, if the record has one) in one commit.

        Keys beyond the metric columns, ``sample`` and ``extra`` go into ``extra``, so
        nothing the trainer reports is dropped. The run's ``steps``/``tokens`` follow."""
        check_run_id(run_id)
        record = dict(record)
        sample = record.pop("sample", None)
        extra = record.pop("extra", None)
        rest = {k: v for k, v in record.items() if k not in METRIC_COLUMNS}
        if rest:
            extra = {**(extra or {}), **rest}
        if "step" not in record:
            raise ValueError("a metric record needs a 'step'")
        values = [int(record["step"]),
                  None if record.get("tokens") is None else int(record["tokens"])]
        values += [_finite_or_none(record.get(k)) for k in METRIC_COLUMNS[2:]]
        extra_json = None if extra is None else json.dumps(extra, default=_json_default)

        def add(c):
            try:
                c.execute("INSERT OR REPLACE INTO metrics (run_id, " + ", ".join(METRIC_COLUMNS)
                          + ", extra) VALUES (?" + ", ?" * (len(METRIC_COLUMNS) + 1) + ")",
                          (run_id, *values, extra_json))
            except sqlite3.IntegrityError:
                raise RunNotFound(f"There is no run {run_id!r} to add metrics to; it may "
                                  "have been deleted.") from None
            if sample is not None:
                c.execute("INSERT OR REPLACE INTO samples (run_id, step, text) "
                          "VALUES (?, ?, ?)", (run_id, values[0], str(sample)))
            c.execute("UPDATE runs SET steps = MAX(steps, ?), tokens = MAX(tokens, ?) "
                      "WHERE id = ?", (values[0], values[1] or 0, run_id))
        self._write(add)

    def add_step_losses(self, run_id: str, rows: Iterable[tuple]) -> None:
        """Store a batch of per-step training losses, ``(step, seconds, loss)`` each, in
        one commit: the trainer hands them over a few times a second, so the live curve
        gets every step for one small write per batch. The run's ``steps`` follows."""
        check_run_id(run_id)
        values = [(run_id, int(step), _finite_or_none(seconds), _finite_or_none(loss))
                  for step, seconds, loss in rows]
        if not values:
            return

        def add(c):
            try:
                c.executemany("INSERT OR REPLACE INTO step_losses (run_id, step, seconds, "
                              "loss) VALUES (?, ?, ?, ?)", values)
            except sqlite3.IntegrityError:
                raise RunNotFound(f"There is no run {run_id!r} to add losses to; it may "
                                  "have been deleted.") from None
            c.execute("UPDATE runs SET steps = MAX(steps, ?) WHERE id = ?",
                      (max(v[1] for v in values), run_id))
        self._write(add)

    def step_losses(self, run_id: str, since_step: int | None = None) -> list[tuple]:
        """A run's per-step training losses in step order: ``(step, seconds, loss)``,
        loss None where it was not a finite number."""
        sql = "SELECT step, seconds, loss FROM step_losses WHERE run_id = ?"
        args: tuple = (check_run_id(run_id),)
        if since_step is not None:
            sql += " AND step > ?"
            args += (int(since_step),)
        return self._read(sql + " ORDER BY step", args)

    def finish_run(self, run_id: str, status: str, result: dict | None = None,
                   error: str | None = None) -> bool:
        """Record how a run ended. Only an unfinished run (queued, running, or marked
        interrupted while its process was in fact alive) changes; returns whether it did,
        so a late or duplicate report never overwrites a recorded outcome."""
        check_run_id(run_id)
        if status not in TERMINAL:
            raise ValueError(f"finish_run needs a final status ({', '.join(TERMINAL)}), "
                             f"not {status!r}")
        sets = {"status": status, "finished": time.time(), "error": error}
        for key in RESULT_COLUMNS:
            if result and result.get(key) is not None:
                value = result[key]
                if key == "checkpoint":
                    value = self._relative(value)
                elif key in ("final_train_loss", "final_val_loss", "wall_s", "tokens_per_s"):
                    value = _finite_or_none(value)
                elif key in ("steps", "tokens", "params"):
                    value = int(value)
                sets[key] = value

        def finish(c):
            cur = c.execute(
                "UPDATE runs SET " + ", ".join(f'"{k}" = ?' for k in sets)
                + " WHERE id = ? AND status IN ('queued', 'running', 'interrupted')",
                (*sets.values(), run_id))
            if cur.rowcount == 0 and c.execute("SELECT 1 FROM runs WHERE id = ?",
                                               (run_id,)).fetchone() is None:
                raise RunNotFound(f"There is no run {run_id!r} in {self.path}; check the "
                                  "id with `python -m llama_core runs list`.")
            return cur.rowcount == 1
        return self._write(finish, essential=True)

    def _existing(self, c: sqlite3.Connection, run_ids: list[str], what: str) -> dict:
        """Inside a transaction: every run's (status, pid, pid_start), or RunNotFound
        naming every missing id, so a command on several runs acts on all or none."""
        marks = ", ".join("?" * len(run_ids))
        rows = {r[0]: r[1:] for r in c.execute(
            f"SELECT id, status, pid, pid_start FROM runs WHERE id IN ({marks})",
            tuple(run_ids))}
        missing = [r for r in run_ids if r not in rows]
        if missing:
            shown = ", ".join(repr(r) for r in missing[:5]) + (" ..." if len(missing) > 5
                                                               else "")
            none = f", so none of the {len(run_ids)} runs was {what}" if len(run_ids) > 1 else ""
            raise RunNotFound(f"There is no run {shown} in {self.path}{none}; check the "
                              "id with `python -m llama_core runs list`.")
        return rows

    def request_stop(self, run_id: str) -> str:
        """Ask a run to stop; return its status afterwards. A run still waiting in the
        queue is stopped at once; a running one stops at its next step."""
        return self.request_stops([run_id])[run_id]

    def request_stops(self, run_ids: Iterable[str]) -> dict[str, str]:
        """``request_stop`` for several runs in one transaction: if any id is unknown,
        none is stopped. Returns each run's status afterwards."""
        ids = _unique_ids(run_ids)

        def req(c):
            rows = self._existing(c, ids, "stopped")
            out = {}
            for run_id in ids:
                status = rows[run_id][0]
                if status == "queued":
                    c.execute("UPDATE runs SET status = 'stopped', stop_requested = 1, "
                              "finished = ?, error = 'Stopped before it started.' "
                              "WHERE id = ?", (time.time(), run_id))
                    status = "stopped"
                elif status == "running":
                    c.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))
                out[run_id] = status
            return out
        return self._write(req)

    def stop_requested(self, run_id: str) -> bool:
        rows = self._read("SELECT stop_requested FROM runs WHERE id = ?",
                          (check_run_id(run_id),))
        return bool(rows and rows[0][0])

    def delete_runs(self, run_ids: Iterable[str], force: bool = False) -> list[str]:
        """Delete several runs in one transaction, all or none: every id must exist and
        no run may still have a live process. Without ``force`` a queued or running run
        is refused too (stop it first). Returns the ids deleted."""
        ids = _unique_ids(run_ids)
        nothing = " (nothing was deleted)" if len(ids) > 1 else ""

        def delete(c):
            rows = self._existing(c, ids, "deleted")
            for run_id in ids:
                status, pid, started = rows[run_id]
                if status == "running" and owner_alive(pid, started):
                    raise UserError(f"Run {run_id} is still running; stop it before "
                                    f"deleting it{nothing}.")
                if status == "queued" and pid is not None and owner_alive(pid, started):
                    raise UserError(f"Run {run_id} is starting; stop it before deleting "
                                    f"it{nothing}.")
                if status in ACTIVE and not force:
                    raise UserError(f"Run {run_id} is {status}; stop it first or pass "
                                    f"--force{nothing}.")
            marks = ", ".join("?" * len(ids))
            for table, key in (("metrics", "run_id"), ("samples", "run_id"),
                               ("step_losses", "run_id"), ("runs", "id")):
                c.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", tuple(ids))
        self._write(delete)
        for run_id in ids:
            d = self.run_dir(run_id)
            if d.resolve().parent == self.runs_dir.resolve() and d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
        return ids

    def mark_interrupted_orphans(self, skip_pids: Iterable[int] = ()) -> list[str]:
        """Runs marked running whose process is gone become 'interrupted' (metrics kept);
        queued runs claimed by a process that died go back to the queue. A process is
        gone when its pid is free or now belongs to a program started at another time.
        ``skip_pids``: processes the caller watches itself (and will report on more
        precisely)."""
        skip = set(skip_pids)
        owned = [(rid, status, pid, started) for rid, status, pid, started in self._read(
            f"SELECT id, status, pid, pid_start FROM runs WHERE {_HOLDS_SLOT}")
            if pid not in skip]
        gone = [o for o in owned if not owner_alive(o[2], o[3])]
        if not gone:
            return []
        now = time.time()

        def mark(c):
            marked = []
            for rid, status, pid, started in gone:
                if status == "running":
                    cur = c.execute(
                        "UPDATE runs SET status = 'interrupted', finished = ?, error = ? "
                        "WHERE id = ? AND status = 'running' AND pid IS ? AND pid_start IS ?",
                        (now, ORPHAN_MESSAGE, rid, pid, started))
                    if cur.rowcount:
                        marked.append(rid)
                else:
                    c.execute("UPDATE runs SET pid = NULL, pid_start = NULL WHERE id = ? "
                              "AND status = 'queued' AND pid = ? AND pid_start IS ?",
                              (rid, pid, started))
            return marked
        return self._write(mark, essential=True)

    # -- metrics and samples --

    def metrics(self, run_id: str, since_step: int | None = None) -> list[dict]:
        """A run's metric rows in step order (``extra`` parsed)."""
        sql = ("SELECT step, " + ", ".join(METRIC_COLUMNS[1:]) + ", extra FROM metrics "
               "WHERE run_id = ?")
        args: tuple = (check_run_id(run_id),)
        if since_step is not None:
            sql += " AND step > ?"
            args += (int(since_step),)
        out = []
        for row in self._read(sql + " ORDER BY step", args):
            d = dict(zip(METRIC_COLUMNS + ("extra",), row))
            d["extra"] = None if d["extra"] is None else json.loads(d["extra"])
            out.append(d)
        return out

    def samples(self, run_id: str) -> list[dict]:
        rows = self._read("SELECT step, text FROM samples WHERE run_id = ? ORDER BY step",
                          (check_run_id(run_id),))
        return [{"step": s, "text": t} for s, t in rows]

    def metrics_frame(self, run_ids: Iterable[str]):
        """Metrics of several runs as one pandas DataFrame (run_id, step, ...)."""
        import pandas as pd
        ids = [check_run_id(r) for r in ([run_ids] if isinstance(run_ids, str) else run_ids)]
        cols = ["run_id", *METRIC_COLUMNS, "extra"]
        if not ids:
            return pd.DataFrame(columns=cols)
        rows = self._read(
            "SELECT run_id, " + ", ".join(METRIC_COLUMNS) + ", extra FROM metrics WHERE "
            f"run_id IN ({', '.join('?' * len(ids))}) ORDER BY run_id, step", tuple(ids))
        df = pd.DataFrame(rows, columns=cols)
        for c in METRIC_COLUMNS[1:]:  # all-None columns would otherwise be 'object'
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        # Read from the rows, not the frame: pandas 3 stores a column of text and None
        # as strings with NaN for the None.
        df["extra"] = [None if row[-1] is None else json.loads(row[-1]) for row in rows]
        return df

    # -- export --

    def export(self, run_ids: Iterable[str], fmt: str = "csv") -> str:
        """Runs as text: ``csv`` is one row per metric with the run's name, group and
        config flattened in; ``json`` is a list of runs with metrics and samples. Every
        run is read before anything is written, and no CSV cell can act as a formula."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        runs = [self.get_run(r) for r in ids]
        if fmt == "json":
            out = []
            for run in runs:
                d = run.to_dict()
                d["metrics"] = self.metrics(run.id)
                d["samples"] = self.samples(run.id)
                out.append(d)
            return json.dumps(out, indent=1, default=_json_default)
        if fmt != "csv":
            raise UserError(f"Cannot export as {fmt!r}; choose csv or json.")
        model_keys = sorted({k for r in runs for k in r.model_config})
        train_keys = sorted({k for r in runs for k in r.train_config})
        header = (["run_id", "name", "group", "status", "seed", "device"]
                  + [f"model.{k}" for k in model_keys] + [f"train.{k}" for k in train_keys]
                  + list(METRIC_COLUMNS))
        buf = io.StringIO()
        plain = csv.writer(buf, lineterminator="\n")
        # csv quotes a cell only for the "\n" that ends its rows, but a bare "\r" ends a
        # row in a spreadsheet too (and the cell after it would start a fresh line):
        # rows holding one are written fully quoted.
        quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)

        def put(row: list) -> None:
            row = [spreadsheet_cell(v) for v in row]
            cr = any(isinstance(v, str) and "\r" in v for v in row)
            (quoted if cr else plain).writerow(row)
        put(header)
        for run in runs:
            fixed = ([run.id, run.name, run.group or "", run.status, run.seed, run.device]
                     + [run.model_config.get(k, "") for k in model_keys]
                     + [run.train_config.get(k, "") for k in train_keys])
            for m in self.metrics(run.id):
                put(fixed + ["" if m[k] is None else m[k] for k in METRIC_COLUMNS])
        return buf.getvalue()

    # -- helpers --

    def _relative(self, p: Any) -> str:
        p = Path(p)
        try:
            return p.absolute().relative_to(self.runs_dir).as_posix()
        except ValueError:
            return str(p)


def _default_name(model: dict) -> str:
    parts = [model.get("norm", "?"), model.get("pos", "?"), model.get("ffn", "?")]
    if model.get("attention") is False:
        parts = [model.get("norm", "?"), "no-attention", model.get("ffn", "?")]
    return (f"{'/'.join(str(p) for p in parts)} "
            f"L{model.get('n_layers', '?')} d{model.get('d_model', '?')}")


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
