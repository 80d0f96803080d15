"""Checking a run database, and copying what is still readable out of a damaged one.

A disk error, a full disk at the wrong moment or a file copied while it was written can
leave a damaged page or a truncated file behind. ``check_store`` asks SQLite's own
``PRAGMA integrity_check``; ``recover_store`` reads every run, metric, sample and
student name it still can into a fresh store. Both open the damaged file read-only
(``mode=ro``: SQLite never writes to it), so trying cannot make things worse.

Reading past damage: a table scan stops at the first bad page, so when a scan fails the
rows are read again in blocks of keys, and a block that fails key by key. Only the rows
stored on the damaged pages themselves are lost.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ..errors import UserError
from .store import (DB_NAME, RUN_ID_RE, SCHEMA_TABLE, STATUSES, RunStore, StoreError,
                   damaged_message)

BLOCK = 256  # keys per block when reading past damage
ROWID_GUESS = 100_000  # runs probed when even the largest rowid cannot be read


def _open_read_only(path: Path, past_truncation: bool = False) -> sqlite3.Connection:
    """The file through SQLite, read-only. ``past_truncation`` lets SQLite open a file
    shorter than its header says (it refuses by default), to read what is left."""
    if not path.is_file():
        raise UserError(f"There is no run database at {path}; pass the file with --db.")
    try:
        con = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise StoreError(f"{path} cannot be opened ({e}); check its permissions.") from None
    if past_truncation:
        con.execute("PRAGMA writable_schema = ON")  # read-only still: only relaxes checks
    return con


def check_store(path: str | Path) -> list[str]:
    """SQLite's integrity check of the database at ``path``: [] when it is sound, else
    the problems it found (at most 20)."""
    path = Path(path)
    con = _open_read_only(path)
    try:
        tables = {r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and SCHEMA_TABLE not in tables:
            raise StoreError(f"{path} is a SQLite database that belongs to something else "
                             "(it has no Llama Lab tables); pass another --db path.")
        rows = [r[0] for r in con.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as e:
        if "not a database" in str(e):
            raise StoreError(f"{path} is not a Llama Lab run database (it is not SQLite); "
                             "pass another --db path.") from None
        return [str(e)]
    finally:
        con.close()
    return [] if rows == ["ok"] else rows


def check_message(path: str | Path, problems: list[str]) -> str:
    """One sentence for ``runs check``."""
    if not problems:
        return f"{path} is a sound run database (SQLite's integrity check: ok)."
    more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return damaged_message(path, problems[0].strip().replace("\n", " ") + more)


def _rows(con: sqlite3.Connection, sql: str, args: tuple, key: str, hi: int) -> list[tuple]:
    """The rows of ``sql`` (a SELECT ending in a WHERE clause) for keys up to ``hi``,
    read past damaged pages: a scan, else blocks of keys, else key by key."""
    try:
        return con.execute(f"{sql} ORDER BY {key}", args).fetchall()
    except sqlite3.DatabaseError:
        pass
    rows: list[tuple] = []
    for lo in range(0, hi + 1, BLOCK):
        try:
            rows += con.execute(f"{sql} AND {key} BETWEEN ? AND ? ORDER BY {key}",
                                (*args, lo, lo + BLOCK - 1)).fetchall()
            continue
        except sqlite3.DatabaseError:
            pass
        for k in range(lo, lo + BLOCK):
            try:
                rows += con.execute(f"{sql} AND {key} = ?", (*args, k)).fetchall()
            except sqlite3.DatabaseError:
                pass
    return rows


def _largest(con: sqlite3.Connection, queries: list[tuple[str, tuple]]) -> int | None:
    """The largest answer any of ``queries`` still gives, None when none can."""
    best = None
    for sql, args in queries:
        try:
            value = con.execute(sql, args).fetchone()[0]
        except sqlite3.DatabaseError:
            continue
        if value is not None:
            best = max(best or 0, int(value))
    return best


def _whole(run: dict) -> bool:
    """Does a row read back from a damaged file still make a usable run?"""
    try:
        return (isinstance(run["id"], str) and bool(RUN_ID_RE.match(run["id"]))
                and run["status"] in STATUSES and isinstance(run["steps"], int)
                and isinstance(json.loads(run["model_config"]), dict)
                and isinstance(json.loads(run["train_config"]), dict))
    except (KeyError, TypeError, ValueError):
        return False


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return []


def recover_store(damaged: str | Path, output: str | Path) -> dict:
    """Copy every readable run (with its metrics and samples) and student name from the
    database ``damaged`` into a new store at ``output``; the damaged file is only read.
    Returns what was copied: runs, metrics, samples, students and output."""
    damaged, output = Path(damaged), Path(output)
    if output.is_dir():
        output = output / DB_NAME
    if output.exists() or output.is_symlink():
        raise UserError(f"{output} already exists; recover into a new file (-o NEW.db), "
                        "so nothing is overwritten.")
    if damaged.exists() and damaged.resolve() == output.resolve():
        raise UserError("Recover into a new file (-o NEW.db), not into the damaged one.")
    src = _open_read_only(damaged, past_truncation=True)
    try:
        run_cols = _columns(src, "runs")
        if not run_cols:
            raise StoreError(damaged_message(damaged, "not even its list of tables can be "
                                             "read, so no run can be recovered from it") +
                             " Restore it from a backup instead.")
        copied = _read_everything(src, run_cols)
    finally:
        src.close()

    new = RunStore(output)  # a fresh store, at the current schema
    new.close()
    dst = sqlite3.connect(output)
    try:
        keep = [c for c in _columns(dst, "runs") if c in run_cols]
        moved = damaged.absolute().parent != output.absolute().parent
        runs = []
        for row in copied["runs"]:
            run = dict(zip(run_cols, row))
            if moved and run.get("checkpoint") and not Path(run["checkpoint"]).is_absolute():
                run["checkpoint"] = str(damaged.absolute().parent / run["checkpoint"])
            runs.append(tuple(run[c] for c in keep))
        with dst:
            dst.executemany(f"INSERT OR IGNORE INTO runs ({', '.join(map(_quoted, keep))}) VALUES "
                            f"({', '.join('?' * len(keep))})", runs)
            for table in ("metrics", "samples", "students"):
                cols = copied[table + "_columns"]
                if cols and copied[table]:
                    dst.executemany(f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) "
                                    f"VALUES ({', '.join('?' * len(cols))})", copied[table])
        counts = {t: dst.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("runs", "metrics", "samples", "students")}
    finally:
        dst.close()
    return {"output": str(output), **counts}


def _quoted(column: str) -> str:
    return f'"{column}"'


def _read_everything(src: sqlite3.Connection, run_cols: list[str]) -> dict:
    hi = _largest(src, [("SELECT max(rowid) FROM runs", ()),
                        ("SELECT max(rowid) FROM runs INDEXED BY runs_by_status", ()),
                        ("SELECT max(rowid) FROM runs INDEXED BY runs_by_owner", ())])
    select = f"SELECT {', '.join(map(_quoted, run_cols))} FROM runs WHERE 1"
    runs = [r for r in _rows(src, select, (), "rowid", ROWID_GUESS if hi is None else hi)
            if _whole(dict(zip(run_cols, r)))]
    out: dict = {"runs": runs}
    id_at, steps_at = run_cols.index("id"), run_cols.index("steps")
    for table in ("metrics", "samples"):
        cols = _columns(src, table)
        out[table + "_columns"], out[table] = cols, []
        if not cols:
            continue
        select = f"SELECT {', '.join(cols)} FROM {table} WHERE run_id = ?"
        for run in runs:
            rid = run[id_at]
            hi = _largest(src, [(f"SELECT max(step) FROM {table} WHERE run_id = ?", (rid,))])
            hi = max(hi or 0, run[steps_at] or 0)
            out[table] += _rows(src, select, (rid,), "step", hi)
    cols = _columns(src, "students")
    out["students_columns"], out["students"] = cols, []
    if cols:
        try:
            out["students"] = src.execute(f"SELECT {', '.join(cols)} FROM students").fetchall()
        except sqlite3.DatabaseError:
            pass  # names are a convenience; the runs matter
    return out
