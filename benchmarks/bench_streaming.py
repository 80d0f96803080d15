"""What the dashboard's live view costs training: metrics streaming, progress and stop
checks, measured with them on and off.

    LLAMA_LAB_DATA=/path/to/folder python benchmarks/bench_streaming.py
    python benchmarks/bench_streaming.py --presets classroom --steps 400 --repeats 5

"on" is what the worker hands train(): every step's loss stored in a run store (SQLite)
by on_progress four times a second, the store's stop flag read by should_stop (at most
every STOP_POLL_S), each evaluation stored by on_eval, and the terminal's progress
bar. "off" is train() with none of them. Runs alternate off, on, off, on ... so the
machine's load hits both alike; the table gives median steps per second of each and
the difference in percent. Because a busy machine makes two runs differ by more than
the hooks cost, each "on" run also times the hooks themselves (seconds spent inside
on_progress, should_stop and on_eval, divided by the run's wall time): that share is
the overhead, measured without noise from the other runs.

Everything goes to a temporary folder; the threads default to 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from llama_core.corpora import load_corpus  # noqa: E402
from llama_core.errors import UserError  # noqa: E402
from llama_core.lab.store import RunStore  # noqa: E402
from llama_core.lab.worker import _stop_flag  # noqa: E402
from llama_core.presets import build_configs  # noqa: E402
from llama_core.training import as_trained, train  # noqa: E402


class Timed:
    """A hook that adds the seconds spent inside it to ``self.seconds``."""

    def __init__(self, hook):
        self.hook, self.seconds, self.calls = hook, 0.0, 0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.hook(*args)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def one_run(store: RunStore, model_cfg, train_cfg, corpus, streamed: bool) -> dict:
    """One training run with the worker's hooks (streamed) or none; steps/s and, when
    streamed, the share of the wall time spent inside the hooks."""
    run_id = store.create_run(model_cfg, train_cfg, pid=os.getpid())
    hooks = {}
    if streamed:
        hooks = {"on_eval": Timed(lambda r: store.add_metric(run_id, r)),
                 "on_progress": Timed(lambda p: store.add_step_losses(run_id, p["losses"])),
                 "should_stop": Timed(_stop_flag(store, run_id))}
    result = train(model_cfg, dataclasses.replace(train_cfg), corpus, progress=streamed,
                   **hooks)
    out = {"steps_per_s": result.steps / result.wall_s}
    if streamed:
        out["hook_share"] = sum(h.seconds for h in hooks.values()) / result.wall_s
        out["calls"] = {name: h.calls for name, h in hooks.items()}
    return out


def measure(preset: str, steps: int, repeats: int, threads: int, corpus, store) -> dict:
    model_cfg, train_cfg = build_configs(preset, {
        "steps": steps, "time_budget": None, "eval_interval": max(steps // 2, 1),
        "eval_batches": 2, "sample_chars": 0, "threads": threads, "device": "cpu"})
    model_cfg = as_trained(model_cfg, train_cfg, corpus)
    runs = {"off": [], "on": []}
    for _ in range(repeats):
        for kind in runs:
            runs[kind].append(one_run(store, model_cfg, train_cfg, corpus, kind == "on"))
    off = statistics.median(r["steps_per_s"] for r in runs["off"])
    on = statistics.median(r["steps_per_s"] for r in runs["on"])
    return {"preset": preset, "steps": steps, "repeats": repeats,
            "off_steps_per_s": round(off, 2), "on_steps_per_s": round(on, 2),
            "difference_pct": round(100 * (off - on) / off, 2),
            "hook_share_pct": round(100 * statistics.median(
                r["hook_share"] for r in runs["on"]), 3),
            "hook_calls": runs["on"][-1]["calls"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["classroom", "nanogpt-cpu"])
    parser.add_argument("--steps", type=int, default=300, help="per run (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.threads) < 1:
        print("error: --steps, --repeats and --threads take whole numbers of at least 1.",
              file=sys.stderr)
        return 2
    try:
        corpus = load_corpus("tinyshakespeare")
    except UserError:
        corpus = load_corpus("shakespeare")
    folder = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    try:
        store = RunStore(folder / "llama_lab.db")
        print(f"corpus {corpus.name}; {args.threads} threads; load before "
              f"{os.getloadavg()[0]:.1f}")
        print("| preset | steps/s off | steps/s on | difference | time inside the hooks |")
        print("|---|---:|---:|---:|---:|")
        for preset in args.presets:
            r = measure(preset, args.steps, args.repeats, args.threads, corpus, store)
            print(f"| {preset} | {r['off_steps_per_s']:.1f} | {r['on_steps_per_s']:.1f} | "
                  f"{r['difference_pct']:+.1f}% | {r['hook_share_pct']:.2f}% "
                  f"(calls {r['hook_calls']}) |", flush=True)
        print(f"load after {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
