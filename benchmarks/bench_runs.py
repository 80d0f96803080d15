"""How fast a run starts reporting, and how many metric rows the run store takes.

Run by hand on a quiet machine (nothing else training):

    python benchmarks/bench_runs.py [--repeats 10] [--cold-repeats 3] [--json]

1. Submit to first stored metric: a JobManager (one slot, warm workers on) gets a tiny
   run (1 layer, 32 wide, context 16, first evaluation after 10 steps); the time from
   ``submit`` until the first metric row is readable in the store. Each repeat waits
   until the previous run has finished and a warm worker is ready again, so it measures
   the steady state a student sees when clicking "train". The median of ``--repeats``.
   The same with ``warm=False`` (plain ``python -m llama_core train --run-id``) shows
   what the warm workers save.
2. Store write throughput: 4 processes each add metric rows (one transaction per row,
   exactly as a training process does at each evaluation, with a sample every 10th
   row) to one database at once; total rows / wall seconds, beside a single writer.

Everything goes to a temporary folder; nothing touches runs/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llama_core.config import ModelConfig, TrainConfig  # noqa: E402
from llama_core.lab.jobs import JobManager  # noqa: E402
from llama_core.lab.store import RunStore  # noqa: E402

MODEL = ModelConfig(d_model=32, n_layers=1, n_heads=2, context_window=16)
TINY = TrainConfig(steps=30, eval_interval=10, eval_batches=2, batch_size=8, sample_chars=20)


def time_to_first_metric(db: Path, repeats: int, warm: bool) -> list[float]:
    times = []
    manager = JobManager(db, max_concurrent=1, warm=warm)
    try:
        for _ in range(repeats):
            if warm and not manager.wait_ready(timeout=120):
                raise RuntimeError("the warm worker did not get ready in 120 s")
            t0 = time.perf_counter()
            run_id = manager.submit(MODEL, TINY)
            while not manager.store.metrics(run_id):
                time.sleep(0.002)
            times.append(time.perf_counter() - t0)
            status = manager.wait(run_id, timeout=300)
            if status != "finished":
                raise RuntimeError(f"run {run_id} {status}: {manager.store.get_run(run_id).error}")
    finally:
        manager.shutdown()
    return times


def _writer(path: str, rows: int, barrier) -> float:
    store = RunStore(path)
    run_id = store.create_run(MODEL, TINY)
    store.mark_running(run_id, 0, "cpu")
    record = {"tokens": 0, "seconds": 0.0, "train_loss": 2.0, "val_loss": 2.1, "lr": 1e-3,
              "grad_norm": 0.5, "tokens_per_s": 1e4,
              "extra": {"grad_norm_per_layer": [0.1] * 4, "residual_rms_per_layer": [1.0] * 4}}
    barrier.wait()
    t0 = time.perf_counter()
    for step in range(rows):
        store.add_metric(run_id, {**record, "step": step,
                                  "sample": "To be, or not to be" if step % 10 == 0 else None})
    return time.perf_counter() - t0


def write_throughput(db: Path, writers: int, rows: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as mgr:
        barrier = mgr.Barrier(writers + 1)
        with ctx.Pool(writers) as pool:
            results = [pool.apply_async(_writer, (str(db), rows, barrier))
                       for _ in range(writers)]
            barrier.wait()
            t0 = time.perf_counter()
            per_writer = [r.get(timeout=600) for r in results]
            wall = time.perf_counter() - t0
    store = RunStore(db)
    stored = sum(len(store.metrics(r.id)) for r in store.list_runs())
    assert stored == writers * rows, (stored, writers * rows)
    return {"writers": writers, "rows": writers * rows, "wall_s": round(wall, 3),
            "rows_per_s": round(writers * rows / wall), "slowest_writer_s": round(max(per_writer), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="warm submits to time (median)")
    ap.add_argument("--cold-repeats", type=int, default=3,
                    help="cold submits to time, 0 to skip")
    ap.add_argument("--rows", type=int, default=2000, help="metric rows per writer")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        tmp = Path(tmp)
        warm = time_to_first_metric(tmp / "warm.db", args.repeats, warm=True)
        cold = (time_to_first_metric(tmp / "cold.db", args.cold_repeats, warm=False)
                if args.cold_repeats else [])
        four = write_throughput(tmp / "four.db", 4, args.rows)
        one = write_throughput(tmp / "one.db", 1, args.rows)
    result = {
        "first_metric_warm_s": {"median": round(statistics.median(warm), 3),
                                "min": round(min(warm), 3), "max": round(max(warm), 3),
                                "n": len(warm)},
        "first_metric_cold_s": ({"median": round(statistics.median(cold), 3),
                                 "min": round(min(cold), 3), "max": round(max(cold), 3),
                                 "n": len(cold)} if cold else None),
        "store_write_4_processes": four,
        "store_write_1_process": one,
    }
    if args.json:
        print(json.dumps(result))
    else:
        w = result["first_metric_warm_s"]
        print(f"submit -> first stored metric, warm worker: median {w['median']:.3f} s "
              f"(min {w['min']:.3f}, max {w['max']:.3f}, n={w['n']})")
        if cold:
            c = result["first_metric_cold_s"]
            print(f"submit -> first stored metric, cold process: median {c['median']:.3f} s "
                  f"(min {c['min']:.3f}, max {c['max']:.3f}, n={c['n']})")
        for r in (four, one):
            print(f"store writes, {r['writers']} process(es): {r['rows_per_s']:,} metric rows/s "
                  f"({r['rows']:,} rows in {r['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
