"""The command line: ``python -m llama_core train|sweep|runs|corpus``.

Every subcommand can answer in JSON (``--json``) for scripts. A user's mistake prints
one line on stderr and exits 2; there is no traceback for anything the user can fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .parser import SentenceParser
from ...config import TRAIN_FIELDS, MODEL_FIELDS
from ...presets import PRESETS, build_configs
from ...errors import UserError
from ..plain_text import terminal_text

EXIT_USER_ERROR = 2


def _key_values(pairs: list[list[str]] | None) -> dict[str, str]:
    """``--set a=1 b=2 --set c=3`` -> {"a": "1", "b": "2", "c": "3"}."""
    out: dict[str, str] = {}
    for pair in [p for group in (pairs or []) for p in group]:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes key=value, not {pair!r}.")
        out[key.strip()] = value
    return out


def _configs_from_args(args) -> tuple:
    overrides = _key_values(args.set)
    for flag, key in (("corpus", "corpus"), ("steps", "steps"), ("time_budget", "time_budget"),
                      ("device", "device"), ("seed", "seed")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = str(value)
    return build_configs(args.preset, overrides)


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=None, default=str))
    elif isinstance(obj, str):
        print(obj)
    else:
        print(json.dumps(obj, indent=2, default=str))


# --- train -------------------------------------------------------------------------

RESULT_KEYS = ("run_id", "status", "error", "final_val_loss", "final_train_loss", "steps",
               "tokens", "wall_s", "tokens_per_s", "params", "device", "checkpoint")


def cmd_train(args) -> int:
    from ..jobs import execute_run
    from ..store import RunStore

    store = RunStore(args.db)
    if int(os.environ.get("RANK", "0")) > 0:
        return _train_helper_rank(args, store)
    if args.run_id:  # a job the manager queued: the configs are in the store
        return execute_run(store.path, args.run_id, progress=not args.json)
    model_cfg, train_cfg = _configs_from_args(args)
    from .. import classroom
    classroom.check_limits(model_cfg, train_cfg)  # before the corpus is opened
    from ...memory import check_fits
    check_fits(model_cfg, train_cfg)  # before anything big is read or built
    from ...training import as_trained
    model_cfg = as_trained(model_cfg, train_cfg)  # a bad corpus fails before a run exists
    run_id = store.create_run(model_cfg, train_cfg, name=args.name, pid=os.getpid())
    code = execute_run(store.path, run_id, progress=not args.json)
    run = store.get_run(run_id)
    result = {k: run.get(k) for k in RESULT_KEYS if k != "run_id"}
    result["run_id"] = run_id
    if args.json:
        _print(result, True)
    else:
        print(f"run {run_id}: {run['status']}, validation loss "
              f"{_fmt(run.get('final_val_loss'))} after {run.get('steps')} steps "
              f"({_fmt(run.get('wall_s'), '.1f')} s, {_fmt(run.get('tokens_per_s'), ',.0f')} "
              f"tokens/s, {run.get('params'):,} parameters)" if run.get("params") else
              f"run {run_id}: {run['status']}")  # execute_run printed any error
    return code


def _train_helper_rank(args, store) -> int:
    """Under torchrun, ranks above 0 train their share of each batch and report
    nothing: rank 0 owns the run record, the metrics and the checkpoint."""
    from ...config import model_from_dict, train_from_dict
    from ...training import train

    if args.run_id:
        run = store.get_run(args.run_id)
        model_cfg, train_cfg = model_from_dict(run.model_config), train_from_dict(run.train_config)
    else:
        model_cfg, train_cfg = _configs_from_args(args)
    train(model_cfg, train_cfg)
    return 0


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


# --- corpus ------------------------------------------------------------------------

def cmd_corpus(args) -> int:
    from ... import corpora

    if args.action == "list":
        rows = [vars(c) if not hasattr(c, "_asdict") else c._asdict()
                for c in corpora.list_corpora()]
        rows = [dict(name=r["name"], description=r["description"], available=r["available"],
                     chars=r["chars"]) for r in rows]
        if args.json:
            _print(rows, True)
        else:
            for r in rows:
                chars = f"{r['chars']:,} characters" if r["chars"] else "not available here"
                print(terminal_text(f"{r['name']:<16} {chars:<24} {r['description']}"))
        return 0
    corpus = corpora.load_corpus(args.name)
    info = {"name": corpus.name, "chars": len(corpus.text),
            "vocab_size": corpus.tokenizer.vocab_size, "train_tokens": len(corpus.train),
            "val_tokens": len(corpus.val), "sha256": corpus.sha256}
    _print(info, args.json)
    return 0


# --- the parser --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = SentenceParser(  # a mistake in the arguments is one sentence
        prog="python -m llama_core",
        description="Llama Lab: build Llama one modification at a time and train it.")
    sub = parser.add_subparsers(dest="command", required=True)

    fields = ", ".join(sorted(MODEL_FIELDS | TRAIN_FIELDS))
    train = sub.add_parser("train", help="train one model and record it in the run store",
                           epilog=f"Fields for --set: {fields}. Presets: {', '.join(PRESETS)}.")
    add_config_flags(train)
    train.add_argument("--name", help="a label for the run")
    train.add_argument("--run-id", help="execute a run already queued in the store")
    train.add_argument("--db", help="run store database file (default: runs/llama_lab.db "
                                    "or $LLAMA_LAB_RUNS/llama_lab.db)")
    train.add_argument("--json", action="store_true", help="print one JSON object at the end")
    train.set_defaults(func=cmd_train)

    corpus = sub.add_parser("corpus", help="list corpora or build and describe one")
    corpus.add_argument("action", choices=["list", "build"])
    corpus.add_argument("name", nargs="?", default="shakespeare",
                        help="corpus name or path to a UTF-8 text file")
    corpus.add_argument("--json", action="store_true")
    corpus.set_defaults(func=cmd_corpus)

    from .runs import add_run_commands
    add_run_commands(sub)
    from ..classset import add_classset_command; add_classset_command(sub)  # noqa: E702
    return parser


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"start from a preset: {', '.join(PRESETS)}")
    p.add_argument("--set", nargs="+", action="append", metavar="KEY=VALUE",
                   help="set any ModelConfig or TrainConfig field, e.g. --set norm=layernorm")
    p.add_argument("--corpus", help="shakespeare (built in), tinyshakespeare, or a text file")
    p.add_argument("--steps", type=int, help="number of optimizer steps (a cap when a "
                                             "time budget is given)")
    p.add_argument("--time-budget", type=float, help="train for this many seconds")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {terminal_text(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
