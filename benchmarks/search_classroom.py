"""The search behind the classroom preset: which shape, batch and learning rate reach
the lowest validation loss in 60 seconds on two CPU cores, on tinyshakespeare.

    LLAMA_LAB_DATA=/path/to/folder python benchmarks/search_classroom.py
    python benchmarks/search_classroom.py --only preset lr3e-3 --seeds 0 1 2
    python benchmarks/search_classroom.py --list

Each candidate is the classroom preset with a few fields changed; each is trained with
the preset's 60 s time budget (evaluations inside it, as the dashboard runs it) once per
seed, one run at a time in this process with 2 threads, and the table gives each seed's
final validation loss (the run's own last evaluation, as the dashboard shows it), their
median, the steps reached and the machine's load. A loaded machine does less work in
60 s, so compare rows of one run of this script only, and read the load beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from llama_core.corpora import load_corpus  # noqa: E402
from llama_core.errors import UserError  # noqa: E402
from llama_core.presets import build_configs  # noqa: E402
from llama_core.training import train  # noqa: E402

PRESET = "classroom"
# name -> fields changed from the preset (shape, batch, learning rate)
CANDIDATES = {
    "preset": {},
    "lr3e-3": {"lr": 3e-3, "min_lr": 3e-4},
    "batch32-lr3e-3": {"batch_size": 32, "lr": 3e-3, "min_lr": 3e-4},
    "batch32-lr4e-3": {"batch_size": 32, "lr": 4e-3, "min_lr": 4e-4},
    "context64-batch8": {"context_window": 64, "batch_size": 8},
    "context64-batch16-lr3e-3": {"context_window": 64, "batch_size": 16, "lr": 3e-3,
                                 "min_lr": 3e-4},
    "3-layers": {"n_layers": 3},
    "3-layers-width160": {"n_layers": 3, "d_model": 160},
    "width160-heads4": {"d_model": 160},
    "3-layers-lr3e-3": {"n_layers": 3, "lr": 3e-3, "min_lr": 3e-4},
    "3-layers-context64-batch8": {"n_layers": 3, "context_window": 64, "batch_size": 8},
    "3-layers-context64-batch8-lr3e-3": {"n_layers": 3, "context_window": 64,
                                         "batch_size": 8, "lr": 3e-3, "min_lr": 3e-4},
}


def run_one(overrides: dict, seed: int, budget: float, threads: int, corpus) -> dict:
    model_cfg, train_cfg = build_configs(PRESET, {**overrides, "seed": seed,
                                                  "time_budget": budget, "threads": threads,
                                                  "sample_chars": 0, "device": "cpu"})
    result = train(model_cfg, train_cfg, corpus)
    return {"val": result.final_val_loss, "steps": result.steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES),
                        help="candidates to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--list", action="store_true", help="print the candidates and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, fields in CANDIDATES.items():
            print(f"{name}: {fields or 'the preset as it is'}")
        return 0
    try:
        corpus = load_corpus("tinyshakespeare")
    except UserError as e:
        print(f"error: {e} The search is made on tinyshakespeare.", file=sys.stderr)
        return 2
    names = args.only or list(CANDIDATES)
    print(f"classroom search: {args.budget:g} s per run, {args.threads} threads, seeds "
          f"{args.seeds}, load before {os.getloadavg()[0]:.1f}", flush=True)
    print("| candidate | changed | val loss per seed | median | steps (median) | load |")
    print("|---|---|---|---:|---:|---:|", flush=True)
    for name in names:
        runs = [run_one(CANDIDATES[name], seed, args.budget, args.threads, corpus)
                for seed in args.seeds]
        vals = [r["val"] for r in runs]
        fields = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in CANDIDATES[name].items()) or "-"
        print(f"| {name} | {fields} | {', '.join(f'{v:.3f}' for v in vals)} | "
              f"{statistics.median(vals):.3f} | "
              f"{statistics.median(r['steps'] for r in runs):.0f} | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
