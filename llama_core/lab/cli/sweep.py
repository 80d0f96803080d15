"""``python -m llama_core sweep ...``: a baseline and variants over several seeds,
queued through a job manager, waited for, and summarised as paired differences."""

from __future__ import annotations

import sys

from ...errors import UserError
from ..store import COMPLETED
from ..sweeps import (STANDARD_VARIANTS, parse_variant, plan_sweep, submit_plan, summarize,
                      variants_for, wait_for)
from .output import print_result, print_table, say
from .parser import add_config_flags, config_overrides


DESCRIPTION = ("Queue a baseline and each variant once per seed (same seeds, so the same "
               "batches and initial weights), wait, and print mean final validation loss "
               "with 95%% intervals and the paired difference to the baseline.")


def add_sweep_command(sub) -> None:
    sweep = sub.add_parser("sweep", help="a baseline and variants over several seeds, paired",
                           description=DESCRIPTION)
    add_config_flags(sweep)
    sweep.add_argument("--variant", action="append", metavar="'KEY=VALUE ...'",
                       help="one variant: the changes from the baseline (repeatable)")
    sweep.add_argument("--standard", action="store_true",
                       help="add the standard single-modification variants: "
                            + ", ".join(STANDARD_VARIANTS))
    sweep.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    sweep.add_argument("--parallel", type=int, help="runs at once (default: fits the machine)")
    sweep.add_argument("--group", help="group id for the sweep's runs")
    sweep.add_argument("--no-wait", action="store_true",
                       help="queue and return at once; the dashboard's job manager "
                            "(or a later sweep) runs the queue")
    sweep.add_argument("--cluster", metavar="ADDRESS",
                       help="train on a Ray cluster: HOST:PORT of its head node, or 'local' "
                            "to start Ray on this machine (default: $LLAMA_LAB_CLUSTER, "
                            "else local processes); the store stays here")
    sweep.add_argument("--db", help="run store database file")
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(func=cmd_sweep, seed=0)


def cmd_sweep(args) -> int:
    from ..jobs import JobManager

    base = config_overrides(args)  # its seed is replaced by each run's own
    variants = [parse_variant(v) for v in (args.variant or [])]
    if args.standard:
        variants += list(variants_for(args.preset, base).values())  # fitted to the preset
    if not variants:
        raise UserError("Give at least one --variant key=value (or --standard).")
    seeds = list(range(args.seed, args.seed + args.seeds))
    plan = plan_sweep(args.preset, base, variants, seeds)
    manager = JobManager(args.db, max_concurrent=args.parallel, cluster=args.cluster)
    try:
        group, ids = submit_plan(manager, plan, group=args.group)
        if not args.json:
            where = "" if manager.cluster is None else f" on {manager.cluster.address}"
            print(f"sweep {group}: {len(ids)} runs queued ({len(plan) // len(seeds)} "
                  f"variants x {len(seeds)} seeds, {manager.max_concurrent} at a time{where})",
                  file=sys.stderr)
        if args.no_wait:
            if args.json:
                print_result({"group": group, "run_ids": ids}, True)
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
    failed = [r for r in runs if r.status not in COMPLETED]
    if args.json:
        print_result({"group": group, "run_ids": ids, "summary": rows,
                      "not_finished": {r.id: r.error or r.status for r in failed}}, True)
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
