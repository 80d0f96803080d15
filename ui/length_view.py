"""The Rotary page's length view, computed once per (checkpoint, factor) for the whole
server: a trained run read at a multiple of its context on its own corpus's held-out
text (llama_core.lengths), under the one slot for model work."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from llama_core.corpora import load_corpus
from llama_core.errors import UserError
from llama_core.lab.hf_runs import imported_from
from llama_core.lab.store import Run
from llama_core.lengths import length_losses
from ui.checkpoints import checkpoint_file, inspectable_runs, load_run, torch_turn

WINDOWS = 32  # windows averaged per position: enough to see a trend, quick on a CPU


@st.cache_data(max_entries=32, show_spinner=False)
def _losses(path: str, mtime_ns: int, run_id: str, factor: int) -> pd.DataFrame:
    run = next(r for r in inspectable_runs() if r.id == run_id)
    model, tokenizer, _ = load_run(run)
    corpus = load_corpus(run.train_config.get("corpus", "shakespeare"))
    if corpus.tokenizer != tokenizer:
        raise UserError(f"Run {run.id}'s corpus has changed since it was trained, so its "
                        "held-out text cannot be read with its tokenizer; pick another run.")
    with torch_turn():
        return length_losses(model, corpus.val, factor, count=WINDOWS)


def length_frame(run: Run, factor: int) -> pd.DataFrame:
    """length_losses for a run on its corpus's validation split, at ``factor`` x its
    context; a UserError (no checkpoint, corpus gone) for the page to show."""
    path = checkpoint_file(run)
    if path is None:
        raise UserError(f"Run {run.id} has no checkpoint any more (deleted?); pick another.")
    if imported_from(run):
        raise UserError(f"Run {run.id} was imported, not trained here, so it has no "
                        "held-out text of its own to read at longer lengths; pick a run "
                        "trained here.")
    return _losses(str(path), path.stat().st_mtime_ns, run.id, int(factor))
