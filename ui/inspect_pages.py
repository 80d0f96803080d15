"""What the Attention, Rotary and Generate pages share: which runs can be looked into,
the chosen runs kept in the URL (``?run=ID&run=ID``, so Build & train or Compare can
link straight to a run), and checkpoints loaded once per server.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
import torch

from llama_core.errors import UserError
from llama_core.lab.store import Run
from llama_core.training import load_checkpoint
from ui.plain_text import md_literal
from ui.state import run_label, store

RUN_PARAM = "run"
MEMORY = "inspect_last_runs"  # this session's last choice, carried between the pages
INSPECTABLE = ("finished", "stopped", "interrupted")
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


def short_label(run: Run) -> str:
    return f"{run.id} · {run.name}"


def describe(cfg) -> str:
    """The parts of a model a student cares about here, in one line."""
    if not cfg.attention:
        return f"{cfg.n_layers} layers, no attention, context {cfg.context_window}"
    parts = [f"{cfg.n_layers} layers × {cfg.n_heads} heads", f"pos={cfg.pos}",
             "causal" if cfg.causal else "no causal mask",
             f"context {cfg.context_window}"]
    if cfg.bug != "none":
        parts.append(f"bug: {cfg.bug}")
    return ", ".join(parts)


def _wanted(by_id: dict[str, Run], most: int, newest: int) -> list[str]:
    """The runs a page opens with: ``?run=`` in the URL, else this session's last
    choice on another inspect page (at most ``most`` of either), else the ``newest``
    newest runs."""
    wanted = [i for i in st.query_params.get_all(RUN_PARAM) if i in by_id]
    if not wanted:
        wanted = [i for i in st.session_state.get(MEMORY, []) if i in by_id]
    return list(dict.fromkeys(wanted))[:most] or list(by_id)[:newest]


def _say_missing(by_id: dict[str, Run]) -> None:
    """Name the runs a link asked for that cannot be shown (no checkpoint yet)."""
    missing = [i for i in st.query_params.get_all(RUN_PARAM) if i and i not in by_id]
    if missing:  # values from the page address: shown as typed, shortened
        named = md_literal(", ".join(missing), limit=120)
        st.info(f"Run {named} has no finished checkpoint here (still training, failed "
                "or deleted), so it is not in the list.")


def _remember(ids: list[str], memory: bool = True) -> None:
    if ids:
        st.query_params[RUN_PARAM] = ids
        if memory:
            st.session_state[MEMORY] = ids
    elif RUN_PARAM in st.query_params:
        del st.query_params[RUN_PARAM]


def pick_runs(runs: list[Run], *, key: str, max_runs: int, default_count: int = 1,
              label: str = "Runs") -> list[Run]:
    """A multiselect of runs, seeded from ``?run=`` in the URL (else this session's
    last choice, else the newest runs) and written back to the URL."""
    by_id = {r.id: r for r in runs}
    if key in st.session_state:  # drop runs deleted since the last rerun
        st.session_state[key] = [i for i in st.session_state[key] if i in by_id][:max_runs]
    else:
        _say_missing(by_id)
        st.session_state[key] = _wanted(by_id, max_runs, default_count)
    chosen = st.multiselect(label, list(by_id), key=key, max_selections=max_runs,
                            format_func=lambda i: run_label(by_id[i]))
    _remember(chosen)
    return [by_id[i] for i in chosen]


def pick_run(runs: list[Run], *, key: str, label: str = "Run") -> Run | None:
    """One run (or none), seeded and kept in the URL like ``pick_runs``."""
    by_id = {r.id: r for r in runs}
    if st.session_state.get(key) not in by_id:
        _say_missing(by_id)
        st.session_state[key] = _wanted(by_id, 1, 1)[0]
    chosen = st.selectbox(label, list(by_id), key=key, placeholder="choose a run",
                          format_func=lambda i: run_label(by_id[i]))
    _remember([chosen] if chosen else [], memory=False)
    return by_id.get(chosen) if chosen else None


def show_errors(errors: dict[str, list[Run]]) -> None:
    """One st.error per distinct message; the run ids are named only when the chosen
    runs disagree (e.g. different corpora know different characters). A message is
    plain text (it may quote a prompt), never Markdown."""
    many = len(errors) > 1
    for message, runs in errors.items():
        if many:
            st.error(f"{', '.join(r.id for r in runs)}: {md_literal(message)}")
        else:
            st.error(md_literal(message))
