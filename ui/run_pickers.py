"""Pickers for the runs a page looks into (Attention, Rotary, Generate, Inference),
kept in the URL (``?run=ID&run=ID``) so Build & train or Compare can link straight to a
run, and carried between those pages in this session."""

from __future__ import annotations

import streamlit as st

from charts.labels import run_label
from llama_core.errors import UserError
from llama_core.lab.store import Run
from ui.checkpoints import load_run
from ui.errors import show_error
from ui.plain_text import md_literal

RUN_PARAM = "run"
MEMORY = "inspect_last_runs"  # this session's last choice, carried between the pages


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


def pick_trained_run(runs: list[Run], *, key: str, label: str, none_picked: str):
    """:func:`pick_run`, then its trained model: (run, model, tokenizer). The page ends
    here, saying why, while no run is picked or its checkpoint cannot be read."""
    run = pick_run(runs, key=key, label=label)
    if run is None:
        st.info(none_picked)
        st.stop()
    try:
        model, tokenizer, _ = load_run(run)
    except UserError as e:
        show_error(e)
        st.stop()
    return run, model, tokenizer
