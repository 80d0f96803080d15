"""``python -m llama_core classset build|show|verify``: the ready-made class set from a
terminal (``llama_core.lab.classset`` builds and verifies it)."""

from __future__ import annotations

from .. import classset
from .output import print_result, say


def add_classset_command(sub) -> None:
    p = sub.add_parser(
        "classset", help="build, show or verify the ready-made class set (data/classset/)",
        description="build: train the ladder, every single-modification ablation, the "
                    "depth-8 health comparison and the pitfall comparisons through the "
                    "sweep path and write them small into data/classset/. show: list "
                    "its groups. verify: retrain one record and compare.")
    p.add_argument("action", choices=["build", "show", "verify"])
    p.add_argument("--only", action="append", metavar="SECTION[,SECTION]",
                   help=f"build only these sections: {', '.join(classset.SECTIONS)}")
    p.add_argument("--out", help="class-set folder (default data/classset/)")
    p.add_argument("--parallel", type=int, help="runs at once (default: one per core)")
    p.add_argument("--db", help="keep the training runs in this run store "
                                "(default: a temporary one)")
    p.add_argument("--run", help="verify: the record to retrain (default the cheapest)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_classset)


def cmd_classset(args) -> int:
    if args.action == "build":
        sections = [s for part in (args.only or []) for s in part.split(",") if s]
        manifest = classset.build(args.out, sections or None, parallel=args.parallel,
                                  db=args.db)
        if args.json:
            print_result(manifest, True)
        return 0
    if args.action == "verify":
        return _verify(args)
    cs = classset.load(args.out)
    rows = [{"group": g, "runs": n,
             "title": classset.GROUPS[g].title if g in classset.GROUPS else ""}
            for g, n in cs.groups().items()]
    if args.json:
        print_result({"folder": str(cs.folder), "manifest": cs.manifest, "groups": rows},
                     True)
    else:
        if not rows:
            say(f"No class set in {cs.folder}; build it with `{classset.COMMAND}`.")
        for r in rows:
            say(f"{r['group']:<20} {r['runs']:>3} runs  {r['title']}")
    return 0


def _verify(args) -> int:
    """Retrain one record; exit 1 unless it reproduces (same steps, losses within 1e-6)."""
    report = classset.verify(args.run, args.out)
    print_result(report, args.json,
                 f"{report['run_id']} ({report['name']}, seed {report['seed']}): "
                 f"{report['evaluations']} evaluations retrained in {report['wall_s']} s, "
                 f"largest loss difference {report['max_abs_loss_difference']:.3g} "
                 f"(CPU {report['this_cpu_capability']}, record made on "
                 f"{report['stored_cpu_capability']})")
    return 0 if report["same_steps"] and report["max_abs_loss_difference"] <= 1e-6 else 1
