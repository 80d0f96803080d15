"""How truthful the time estimate before Launch is, and what streaming every step's loss
costs training.

Run by hand on a quiet machine (nothing else training; `uptime` says the load):

    python benchmarks/bench_estimates.py [--only estimates|streaming]

1. Estimates: ten different configurations (the tiny preset with one thing changed:
   depth, width, context, batch, steps, evaluation interval, feed-forward, attention off,
   a time budget). For each, the dashboard's estimate (llama_core.speed.timed_estimate
   with the job manager's thread count: timed steps of the shape plus evaluations and
   start-up), then the actual time from JobManager.submit to the run's end with a warm
   worker ready, as a student's click would see it. Prints a Markdown table with the
   ratio actual / estimate.
2. Streaming: steps per second of train() with on_progress storing every step's loss in
   a run store (as the worker does) and with no on_progress, interleaved three times
   each, on the tiny shape and on the classroom shape; prints the medians and the
   overhead in percent.

Everything goes to a temporary folder; nothing touches runs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_core.corpora import load_corpus  # noqa: E402
from llama_core.lab.jobs import JobManager  # noqa: E402
from llama_core.lab.store import RunStore  # noqa: E402
from llama_core.presets import build_configs  # noqa: E402
from llama_core.speed import timed_estimate  # noqa: E402
from llama_core.training import as_trained, train  # noqa: E402

CONFIGS = {
    "tiny (200 steps)": {},
    "4 layers": {"n_layers": 4},
    "width 128": {"d_model": 128},
    "context 64": {"context_window": 64},
    "batch 32": {"batch_size": 32},
    "600 steps": {"steps": 600},
    "evaluate every 20": {"eval_interval": 20},
    "GELU feed-forward": {"ffn": "gelu"},
    "no attention": {"attention": False},
    "15 s time budget": {"steps": 1_000_000, "time_budget": 15.0},
}


def estimates() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-estimates-"))
    manager = JobManager(folder / "llama_lab.db")
    print(f"one slot, {manager.threads} threads per run; load {os.getloadavg()[0]:.1f}")
    rows = []
    try:
        for name, changes in CONFIGS.items():
            model, train_cfg = build_configs("tiny", changes)
            model = as_trained(model, train_cfg)
            guess = timed_estimate(model, train_cfg, "cpu", manager.threads)["seconds"]
            manager.wait_ready(60)
            t0 = time.monotonic()
            run_id = manager.submit(model, train_cfg)
            manager.wait(run_id, timeout=3600, poll=0.02)
            actual = time.monotonic() - t0
            rows.append((name, guess, actual))
            print(f"{name}: estimate {guess:.1f} s, actual {actual:.1f} s", flush=True)
    finally:
        manager.shutdown(stop_runs=True)
    print(f"\nload after: {os.getloadavg()[0]:.1f}\n")
    print("| configuration | estimate (s) | actual (s) | actual / estimate |")
    print("|---|---:|---:|---:|")
    for name, guess, actual in rows:
        print(f"| {name} | {guess:.1f} | {actual:.1f} | {actual / guess:.2f} |")


def streaming(repeats: int = 3, steps: int = 300, threads: int | None = None) -> None:
    corpus = load_corpus("shakespeare")
    folder = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    store = RunStore(folder / "llama_lab.db")
    threads = threads or max(1, (len(os.sched_getaffinity(0)) or 1))
    for preset in ("tiny", "classroom"):
        model, train_cfg = build_configs("tiny" if preset == "tiny" else "classroom", {
            "steps": steps, "time_budget": None, "eval_interval": 10**6,
            "sample_chars": 0, "threads": threads})
        model = as_trained(model, train_cfg, corpus)
        rates = {"streamed": [], "not streamed": []}
        for _ in range(repeats):
            for kind in rates:
                run_id = store.create_run(model, train_cfg, pid=os.getpid())
                hook = ((lambda p, r=run_id: store.add_step_losses(r, p["losses"]))
                        if kind == "streamed" else None)
                result = train(model, dataclasses.replace(train_cfg), corpus,
                               on_progress=hook)
                rates[kind].append(result.steps / result.wall_s)
        on, off = (statistics.median(rates[k]) for k in ("streamed", "not streamed"))
        print(f"{preset}: {off:.1f} steps/s without streaming, {on:.1f} with "
              f"(overhead {100 * (off - on) / off:+.1f}%; runs {rates})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["estimates", "streaming"])
    parser.add_argument("--steps", type=int, default=300, help="per streaming run")
    parser.add_argument("--repeats", type=int, default=3, help="streaming runs of each kind")
    parser.add_argument("--threads", type=int, help="per streaming run (default: every core)")
    args = parser.parse_args()
    if args.only != "streaming":
        estimates()
    if args.only != "estimates":
        streaming(args.repeats, args.steps, args.threads)
