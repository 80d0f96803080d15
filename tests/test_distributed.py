"""torchrun with 2 CPU processes (gloo) gives the same curve as one process with the
same global batch: DistributedDataParallel averages the two halves' gradients."""

import json
import os
import subprocess
import sys
from pathlib import Path

from llama_core.lab.store import RunStore

REPO = Path(__file__).resolve().parent.parent
SETS = ["eval_interval=10", "eval_batches=2", "sample_chars=0", "threads=1", "batch_size=8",
        "context_window=16", "d_model=32", "n_layers=2", "n_heads=2", "warmup_steps=5"]


def train(launcher: list[str], runs_dir: Path) -> dict:
    env = dict(os.environ, LLAMA_LAB_RUNS=str(runs_dir), PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([*launcher, "-m", "llama_core", "train", "--preset", "tiny",
                           "--steps", "30", "--set", *SETS, "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines()
              if any(w in line for w in ("Error", "error", "terminate", "what()", "abort"))]
    assert proc.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + proc.stderr[-1500:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one = train([sys.executable], tmp_path)
    two = train([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", "2"], tmp_path)
    assert two["device"] == "2 x cpu" and two["tokens"] == one["tokens"]
    store = RunStore(tmp_path / "llama_lab.db")
    curve_one = [(m["step"], m["train_loss"], m["val_loss"]) for m in store.metrics(one["run_id"])]
    curve_two = [(m["step"], m["train_loss"], m["val_loss"]) for m in store.metrics(two["run_id"])]
    assert [c[0] for c in curve_one] == [c[0] for c in curve_two] == [10, 20, 30]
    for (_, t1, v1), (_, t2, v2) in zip(curve_one, curve_two):
        assert abs(t1 - t2) < 1e-4 and abs(v1 - v2) < 1e-4
    # only rank 0 recorded a run
    assert len(store.list_runs()) == 2
