"""``python -m llama_core runs ...``: the run store from a terminal, in plain text or
JSON: list, show, export, stop, delete; check or recover a damaged database.

Every command that reads the store first marks runs whose process has died as
interrupted, so a killed ``train`` never stays "running". Commands on several ids act
on all of them or on none (the store checks every id first).
"""

from __future__ import annotations

import json
import sys

from ...errors import UserError
from .output import cell, print_result, print_table, say

LIST_COLUMNS = ("id", "name", "status", "seed", "steps", "final_val_loss", "wall_s", "device")


def add_runs_command(sub) -> None:
    runs = sub.add_parser("runs", help="list, show, export, stop or delete stored runs; "
                                       "check or recover a damaged run database")
    runs.add_argument("action", choices=["list", "show", "export", "stop", "delete", "check",
                                         "recover"])
    runs.add_argument("ids", nargs="*", help="run ids (see `runs list`)")
    runs.add_argument("--db", help="run store database file")
    runs.add_argument("--status", help="list only runs with this status")
    runs.add_argument("--group", help="list only runs of this sweep group")
    runs.add_argument("--limit", type=int, help="list at most this many runs")
    runs.add_argument("--format", choices=["csv", "json"], help="export format (default csv)")
    runs.add_argument("--output", "-o", help="export to this file instead of stdout; "
                                             "recover: the new database file")
    runs.add_argument("--force", action="store_true", help="delete even an active run")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)


def _store(args):
    """The store, with runs whose process has died marked interrupted first."""
    from ..store import RunStore, StoreDamaged, StoreError
    store = RunStore(args.db)
    try:
        store.mark_interrupted_orphans()
    except StoreDamaged:
        raise
    except StoreError:
        pass  # read-only or full: the runs can still be read, the next writer marks them
    return store


def cmd_runs(args) -> int:
    if args.action in ("check", "recover"):
        return _check_or_recover(args)
    store = _store(args)
    if args.action == "list":
        runs = store.list_runs(status=args.status, group=args.group, limit=args.limit)
        rows = [r.to_dict() for r in runs]
        if args.json:
            print_result(rows, True)
        elif rows:
            print_table(rows, LIST_COLUMNS)
        else:
            say(f"No runs in {store.path}.")
        return 0
    if not args.ids:
        raise UserError(f"`runs {args.action}` needs at least one run id; see `runs list`.")
    if args.action == "show":
        out = []
        for run_id in args.ids:
            d = store.get_run(run_id).to_dict()
            d["metrics"] = store.metrics(run_id)
            out.append(d)
        if args.json:
            print_result(out if len(out) > 1 else out[0], True)
        else:
            for d in out:
                metrics = d.pop("metrics")
                for k, v in d.items():
                    say(f"{k:>16}: {json.dumps(v) if isinstance(v, dict) else cell(v)}")
                if metrics:
                    print_table(metrics, ("step", "tokens", "seconds", "train_loss",
                                          "val_loss", "lr", "tokens_per_s"))
                print()
        return 0
    if args.action == "export":
        fmt = args.format or ("json" if args.json else "csv")
        text = store.export(args.ids, fmt)
        if args.output:
            from ..output_file import write_text_atomically
            write_text_atomically(args.output, text)
            say(f"wrote {len(args.ids)} run(s) to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if args.action == "stop":
        _report(store.request_stops(args.ids), args.json)
        return 0
    if args.action == "delete":
        deleted = store.delete_runs(args.ids, force=args.force)
        _report({run_id: "deleted" for run_id in deleted}, args.json)
        return 0
    raise UserError(f"Unknown action {args.action!r}.")  # pragma: no cover


def _report(result: dict, as_json: bool) -> None:
    """Each run's status after a command on several runs: one JSON object, or a line each."""
    if as_json:
        print_result(result, True)
    else:
        for run_id, status in result.items():
            say(f"{run_id}: {status}")


def _check_or_recover(args) -> int:
    """``runs check`` and ``runs recover``: they read the file without opening it as a
    store (a damaged file would be refused), and never write to it."""
    from ..store import default_runs_dir, DB_NAME
    from ..store_repair import check_message, check_store, recover_store
    path = args.db or str(default_runs_dir() / DB_NAME)
    if args.ids:
        raise UserError(f"`runs {args.action}` takes no run ids; name the file with --db.")
    if args.action == "check":
        problems = check_store(path)
        if args.json:
            print_result({"path": path, "ok": not problems, "problems": problems}, True)
            return 0 if not problems else 2
        if problems:
            raise UserError(check_message(path, problems))
        say(check_message(path, problems))
        return 0
    if not args.output:
        raise UserError("`runs recover` needs -o NEW.db, the new file to copy the readable "
                        "runs into.")
    result = recover_store(path, args.output)
    print_result(result, args.json,
                 f"Recovered {result['runs']} run(s), {result['metrics']} metric rows and "
                 f"{result['samples']} samples from {path} (left unchanged) into "
                 f"{result['output']}; use it with --db {result['output']}, or move it "
                 "into the place of the damaged file.")
    return 0
