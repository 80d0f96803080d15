"""Build & train's controls follow the user: a reload shows the settings of the run in
the address, and Start's toggles arrive as query parameters.

Why: a reload is a new Streamlit session, so without this the controls fall back to the
preset while the panel above them shows a run trained with other settings; and the
parts a student picked on Start should be the parts they then train. Both are read once
per session (or per link) and never trusted: a value the page does not offer is ignored.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from llama_core.config import FFNS, NORMS, POSITIONS
from llama_core.errors import UserError
from ui.state import store

START_PARTS = {"norm": ("tr_norm", {k: k for k in NORMS}),
               "pos": ("tr_pos", {k: k for k in POSITIONS}),
               "ffn": ("tr_ffn", {k: k for k in FFNS}),
               "causal": ("tr_causal", {"on": True, "off": False})}


def start_params(norm: str, pos: str, ffn: str, causal: bool) -> dict[str, str]:
    """The query parameters Start's link carries for its four toggles."""
    return {"norm": norm, "pos": pos, "ffn": ffn, "causal": "on" if causal else "off"}


def restore_run_settings(run_id: str | None, fill: Callable[[dict], None]) -> None:
    """In a fresh session (a reload) with a run in the address, set the controls to that
    run's settings (``fill`` takes the config values), once."""
    ss = st.session_state
    if not run_id or "tr_norm" in ss or ss.get("tr_restored") == run_id:
        return
    ss["tr_restored"] = run_id
    try:
        run = store().get_run(run_id)
    except UserError:
        return  # the panel above says the run is unknown
    fill({**run.train_config, **run.model_config})
    if run.train_config.get("corpus"):
        ss["tr_corpus"] = run.train_config["corpus"]


def apply_start_parts() -> None:
    """Take Start's toggles from the address (once: they are removed from it)."""
    params = st.query_params
    for name, (key, allowed) in START_PARTS.items():
        value = params.get(name)
        if value is None:
            continue
        if value in allowed:
            st.session_state[key] = allowed[value]
        del params[name]
