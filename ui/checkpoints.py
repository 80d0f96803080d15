"""Trained models for the pages that look into them: which runs have a checkpoint, and
each checkpoint loaded once per server, with one slot for model work at a time."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
import torch

from llama_core.checkpoint import load_checkpoint
from llama_core.errors import UserError
from llama_core.lab.store import Run
from ui.state import store

INSPECTABLE = ("finished", "stopped", "interrupted")  # ended, with a checkpoint kept
NO_RUNS = ("No finished run to look into yet: train one on the Build & train page (the "
           "tiny preset takes a few seconds), then come back here.")

# One forward pass at a time across sessions: the cached models are shared, and two
# cores gain nothing from running two at once.
_TORCH = threading.Lock()


@contextmanager
def torch_turn():
    """Hold the server's one slot for model work, on one torch thread.

    These models are small: on the 2-core machine, with a training process or another
    session busy, torch's two-thread pool spends its time waiting for a core (measured:
    generating 100 characters took 9 s on two threads, 0.4-0.7 s on one)."""
    with _TORCH:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def checkpoint_file(run: Run) -> Path | None:
    if not run.checkpoint:
        return None
    p = Path(run.checkpoint)
    p = p if p.is_absolute() else store().runs_dir / p
    return p if p.is_file() else None


def inspectable_runs() -> list[Run]:
    """Runs that ended with a checkpoint (finished, stopped or interrupted), newest
    first."""
    return [r for r in store().list_runs(status=INSPECTABLE) if checkpoint_file(r)]


@st.cache_resource(max_entries=8, show_spinner=False)
def _load(path: str, mtime_ns: int):
    return load_checkpoint(Path(path), "cpu")


def load_run(run: Run):
    """(model, tokenizer, info) of a run's checkpoint on the CPU, loaded once per
    server for each (run, checkpoint modification time). A damaged or vanished file
    raises UserError (one sentence) for the page to show; a refusal is not cached, so
    a repaired file loads on the next rerun."""
    p = checkpoint_file(run)
    try:
        mtime_ns = p.stat().st_mtime_ns if p else None
    except OSError:
        mtime_ns = None
    if mtime_ns is None:
        raise UserError(f"Run {run.id} has no checkpoint any more (deleted?); pick "
                        "another run.")
    return _load(str(p), mtime_ns)
