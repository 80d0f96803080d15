"""``python -m llama_core runs ...`` and ``python -m llama_core sweep ...``: the run store
and paired sweeps from a terminal, in plain text or JSON.

Every command that reads the store first marks runs whose process has died as
interrupted, so a killed ``train`` never stays "running". Commands on several ids act
on all of them or on none (the store checks every id first). Text meant for a person
passes through ``terminal_text``: a run's name cannot send escape codes to a terminal.
"""

from __future__ import annotations

import json
import sys

from ..sweeps import (STANDARD_VARIANTS, parse_variant, plan_sweep, submit_plan, summarize,
                       wait_for)
from ...errors import UserError
from ..plain_text import terminal_text

LIST_COLUMNS = ("id", "name", "status", "seed", "steps", "final_val_loss", "wall_s", "device")


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


def say(text, file=None) -> None:
    """Print a line for a person, control characters shown as escapes."""
    print(terminal_text(text), file=file)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return terminal_text(value)


def print_table(rows: list[dict], columns: list[str] | tuple[str, ...]) -> None:
    columns = [terminal_text(c) for c in columns]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def cmd_runs(args) -> int:
    if args.action in ("check", "recover"):
        return _check_or_recover(args)
    store = _store(args)
    if args.action == "list":
        runs = store.list_runs(status=args.status, group=args.group, limit=args.limit)
        rows = [r.to_dict() for r in runs]
        if args.json:
            print(json.dumps(rows, default=str))
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
            print(json.dumps(out if len(out) > 1 else out[0], default=str))
        else:
            for d in out:
                metrics = d.pop("metrics")
                for k, v in d.items():
                    say(f"{k:>16}: {json.dumps(v) if isinstance(v, dict) else _cell(v)}")
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
        _report(store.request_stops(args.ids), args.json, "stop requested")
        return 0
    if args.action == "delete":
        deleted = store.delete_runs(args.ids, force=args.force)
        _report({run_id: "deleted" for run_id in deleted}, args.json, "deleted")
        return 0
    raise UserError(f"Unknown action {args.action!r}.")  # pragma: no cover


def _report(result: dict, as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(result))
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
            print(json.dumps({"path": path, "ok": not problems, "problems": problems}))
            return 0 if not problems else 2
        if problems:
            raise UserError(check_message(path, problems))
        say(check_message(path, problems))
        return 0
    if not args.output:
        raise UserError("`runs recover` needs -o NEW.db, the new file to copy the readable "
                        "runs into.")
    result = recover_store(path, args.output)
    if args.json:
        print(json.dumps(result))
    else:
        say(f"Recovered {result['runs']} run(s), {result['metrics']} metric rows and "
            f"{result['samples']} samples from {path} (left unchanged) into "
            f"{result['output']}; use it with --db {result['output']}, or move it into "
            "the place of the damaged file.")
    return 0


def cmd_sweep(args) -> int:
    from . import _key_values
    from ..jobs import JobManager

    base = _key_values(args.set)
    if args.corpus:
        base["corpus"] = args.corpus
    if args.steps is not None:
        base["steps"] = str(args.steps)
    if args.time_budget is not None:
        base["time_budget"] = str(args.time_budget)
    if args.device:
        base["device"] = args.device
    variants = [parse_variant(v) for v in (args.variant or [])]
    if args.standard:
        variants += [dict(v) for v in STANDARD_VARIANTS.values()]
    if not variants:
        raise UserError("Give at least one --variant key=value (or --standard).")
    seeds = list(range(args.seed, args.seed + args.seeds))
    plan = plan_sweep(args.preset, base, variants, seeds)
    manager = JobManager(args.db, max_concurrent=args.parallel)
    try:
        group, ids = submit_plan(manager, plan, group=args.group)
        if not args.json:
            print(f"sweep {group}: {len(ids)} runs queued ({len(plan) // len(seeds)} "
                  f"variants x {len(seeds)} seeds, {manager.max_concurrent} at a time)",
                  file=sys.stderr)
        if args.no_wait:
            if args.json:
                print(json.dumps({"group": group, "run_ids": ids}))
            return 0
        def progress(done: int, total: int) -> None:
            if not args.json:
                sys.stderr.write(f"\r{done}/{total} runs done ")
                sys.stderr.flush()

        wait_for(manager.store, ids, on_wait=progress)
        if not args.json:
            sys.stderr.write("\n")
    finally:
        manager.shutdown()
    runs = [manager.store.get_run(r) for r in ids]
    rows = summarize(runs)
    failed = [r for r in runs if r.status not in ("finished", "stopped")]
    if args.json:
        print(json.dumps({"group": group, "run_ids": ids, "summary": rows,
                          "not_finished": {r.id: r.error or r.status for r in failed}}))
    else:
        print_table([_summary_cells(r) for r in rows],
                    ("variant", "seeds", "params", "val loss", "vs baseline", "verdict"))
        for r in failed:
            say(f"{r.id} ({r.name}, seed {r.seed}) {r.status}: {r.error}", file=sys.stderr)
    return 0 if not failed else 1


def _summary_cells(row: dict) -> dict:
    def pm(mean, half):
        if mean is None:
            return "-"
        return f"{mean:.4f}" + ("" if half is None else f" ± {half:.4f}")
    return {"variant": row["variant"], "seeds": row["seeds"], "params": row["params"],
            "val loss": pm(row["mean"], row["ci95"]),
            "vs baseline": ("-" if row["diff_vs_baseline"] is None
                            else "%+.4f" % row["diff_vs_baseline"]
                            + ("" if row["diff_ci95"] is None else f" ± {row['diff_ci95']:.4f}")),
            "verdict": row["verdict"]}


def add_run_commands(sub) -> None:
    from . import add_config_flags

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

    sweep = sub.add_parser(
        "sweep", help="a baseline and variants over several seeds, paired",
        description="Queue a baseline and each variant once per seed (same seeds, so the "
                    "same batches and initial weights), wait, and print mean final "
                    "validation loss with 95%% intervals and the paired difference to "
                    "the baseline.")
    add_config_flags(sweep)
    sweep.add_argument("--variant", action="append", metavar="'KEY=VALUE ...'",
                       help="one variant: the changes from the baseline (repeatable)")
    sweep.add_argument("--standard", action="store_true",
                       help="add the standard single-modification variants: "
                            + ", ".join(STANDARD_VARIANTS))
    sweep.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    sweep.add_argument("--parallel", type=int, help="runs at once (default: fits the machine)")
    sweep.add_argument("--group", help="group id for the sweep's runs")
    sweep.add_argument("--no-wait", action="store_true", help="queue and return at once; the dashboard's job manager "
                            "(or a later sweep) runs the queue")
    sweep.add_argument("--db", help="run store database file")
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(func=cmd_sweep, seed=0)
