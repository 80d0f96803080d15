"""Real finished runs for page tests: tiny models trained in this process into a
temporary run store, through the same execute_run path the job manager uses."""

from __future__ import annotations

import os
import time
from pathlib import Path

from llama_core.presets import build_configs
from llama_core.lab.worker import execute_run
from llama_core.lab.store import RunStore
from llama_core.training import as_trained

TINY = {"steps": 30, "eval_interval": 10, "eval_batches": 2, "sample_chars": 40,
        "threads": 1, "batch_size": 8, "context_window": 16, "d_model": 32,
        "n_layers": 2, "n_heads": 2}


def train_tiny_runs(db_path: str | Path, variants: dict[str, dict] | None = None,
                    seeds=(0,), group: str | None = None, owner: str | None = None,
                    **overrides) -> list[str]:
    """Train one tiny run per (variant, seed); return their ids in that order.

    ``variants`` maps a run name to its config changes (default: one baseline)."""
    store = RunStore(db_path)
    ids = []
    for name, changes in (variants or {"baseline": {}}).items():
        for seed in seeds:
            model, train = build_configs("tiny", {**TINY, **overrides, **changes,
                                                  "seed": seed})
            run_id = store.create_run(as_trained(model, train), train, name=name, group=group,
                                      owner=owner, pid=os.getpid())
            assert execute_run(store.path, run_id) == 0, store.get_run(run_id).error
            ids.append(run_id)
    return ids


def trained_store(tmp_path_factory, name: str, variants: dict[str, dict]):
    """A fresh runs folder holding one tiny finished run per variant: (folder, {variant
    name: run id}), for a module's page tests."""
    folder = tmp_path_factory.mktemp(name)
    ids = train_tiny_runs(folder / "llama_lab.db", variants)
    return folder, dict(zip(variants, ids))


def wait_for(predicate, timeout: float = 120, what: str = "condition", poll: float = 0.05):
    """Poll until predicate() is truthy and return its value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
