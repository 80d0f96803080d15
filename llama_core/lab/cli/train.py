"""``python -m llama_core train``: train one model in this process and record it in the
run store, or execute a run a job manager queued (``--run-id``)."""

from __future__ import annotations

import os

from ...config import MODEL_FIELDS, TRAIN_FIELDS
from ...presets import PRESETS, build_configs
from .output import print_result
from .parser import add_config_flags, config_overrides

RESULT_KEYS = ("run_id", "status", "error", "final_val_loss", "final_train_loss", "steps",
               "tokens", "wall_s", "tokens_per_s", "params", "device", "checkpoint")


def add_train_command(sub) -> None:
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


def cmd_train(args) -> int:
    from .. import classroom
    from ..jobs import admit
    from ..store import RunStore
    from ..worker import execute_run

    store = RunStore(args.db)
    if int(os.environ.get("RANK", "0")) > 0:
        return _train_helper_rank(args, store)
    if args.run_id:  # a job the manager queued: the configs are in the store
        return execute_run(store.path, args.run_id, progress=not args.json)
    model_cfg, train_cfg = admit(*build_configs(args.preset, config_overrides(args)))
    from ...training import as_trained
    model_cfg = as_trained(model_cfg, train_cfg)  # a bad corpus fails before a run exists
    run_id = classroom.create_run(store, model_cfg, train_cfg, name=args.name,
                                  pid=os.getpid())
    code = execute_run(store.path, run_id, progress=not args.json)
    run = store.get_run(run_id)
    result = {k: run.get(k) for k in RESULT_KEYS if k != "run_id"}
    result["run_id"] = run_id
    if args.json:
        print_result(result, True)
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
        model_cfg, train_cfg = build_configs(args.preset, config_overrides(args))
    train(model_cfg, train_cfg)
    return 0


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)
