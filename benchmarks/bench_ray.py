"""Twelve tiny runs through the local executor and through a local Ray instance.

    python benchmarks/bench_ray.py [--runs 12] [--parallel 2] [--rounds 2] [--json]

Both executors get the same job manager, the same ``--parallel`` slots and one thread
per run; each round submits ``--runs`` tiny runs (1 layer, 32 wide, context 16, 30
steps) at once and waits for all of them, executors taking turns round by round
(local, Ray, local, Ray, ...) so that whatever else the machine does falls on both.
Before a round the executor is ready: the local warm workers booted, Ray started and
connected (Ray's start-up is measured once, on its own).

What is printed, per round:

- total: from the first submit to the last run recorded as ended in the store;
- overhead per run: the slot-seconds that were not training, per run:
  ``(total x slots - sum of the runs' training seconds) / runs`` -- starting a process
  or a task, imports, shipping the corpus, reporting into the store, saving and bringing
  back the checkpoint, and any slot left idle;
- the load average (``os.getloadavg``) before and after, since the machine is shared.

Everything goes to a temporary folder; nothing touches runs/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llama_core.config import ModelConfig, TrainConfig  # noqa: E402
from llama_core.lab.jobs import JobManager  # noqa: E402

MODEL = ModelConfig(d_model=32, n_layers=1, n_heads=2, context_window=16)
TINY = TrainConfig(steps=30, eval_interval=10, eval_batches=2, batch_size=8, sample_chars=20)


def one_round(manager: JobManager, runs: int) -> dict:
    load_before = os.getloadavg()[0]
    t0 = time.time()
    ids = [manager.submit(MODEL, TINY, name=f"bench {i}") for i in range(runs)]
    for run_id in ids:
        status = manager.wait(run_id, timeout=600, poll=0.02)
        if status != "finished":
            raise RuntimeError(f"run {run_id} {status}: {manager.store.get_run(run_id).error}")
    recorded = [manager.store.get_run(r) for r in ids]
    total = max(r.finished for r in recorded) - t0
    training = sum(r.wall_s for r in recorded)
    return {"total_s": round(total, 2), "training_s": round(training, 2),
            "overhead_per_run_s": round((total * manager.max_concurrent - training) / runs, 3),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="rounds per executor, interleaved")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import ray
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        local = JobManager(Path(tmp) / "local.db", max_concurrent=args.parallel)
        t0 = time.perf_counter()
        cluster = JobManager(Path(tmp) / "ray.db", max_concurrent=args.parallel,
                             cluster="local")
        ray_start = time.perf_counter() - t0
        results: dict[str, list[dict]] = {"local": [], "ray": []}
        try:
            for _ in range(args.rounds):
                if not local.wait_ready(timeout=120):
                    raise RuntimeError("the warm workers did not get ready in 120 s")
                results["local"].append(one_round(local, args.runs))
                results["ray"].append(one_round(cluster, args.runs))
        finally:
            local.shutdown()
            cluster.shutdown()
        assert not ray.is_initialized()
    out = {"runs": args.runs, "parallel": args.parallel, "threads_per_run": 1,
           "cores": len(os.sched_getaffinity(0)), "ray_start_s": round(ray_start, 2),
           **results}
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{args.runs} tiny runs, {args.parallel} at a time, 1 thread each, "
          f"{out['cores']} cores; Ray start-up {out['ray_start_s']:.1f} s (once)")
    for name in ("local", "ray"):
        for i, r in enumerate(results[name], 1):
            print(f"  {name:5} round {i}: total {r['total_s']:6.1f} s, overhead per run "
                  f"{r['overhead_per_run_s']:5.2f} s (training {r['training_s']:.1f} "
                  f"slot-s in all), load {r['load_before']:.1f} -> {r['load_after']:.1f}")
        print(f"  {name:5} median: total {statistics.median(r['total_s'] for r in results[name]):.1f} s, "
              f"overhead per run "
              f"{statistics.median(r['overhead_per_run_s'] for r in results[name]):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
