"""What must be true before Launch is pressed: the run is admitted (valid, within the
classroom's caps, and its estimated memory fits this machine), and a run estimated to
take more than an hour has been confirmed.

Why before: a config that cannot fit would be refused only after the click, and one
that takes hours would hold a training slot before anyone noticed. The same check the
job manager makes at submit (JobManager.admit) runs here, so the page and the manager
never disagree.
"""

from __future__ import annotations

import streamlit as st

from charts.numbers import rough_duration
from llama_core.config import ModelConfig, TrainConfig
from llama_core.errors import UserError
from ui.estimates import run_estimate
from ui.plain_text import md_literal
from ui.state import job_manager

CONFIRM_ABOVE_S = 3600.0


def launch_guard(model: ModelConfig, train: TrainConfig) -> str | None:
    """None when Launch may be pressed; else the sentence saying why not (also shown
    above the button). Draws the confirmation box for a run of more than an hour."""
    try:
        job_manager().admit(model, train)
    except UserError as e:
        st.warning(md_literal(e))
        return str(e)
    seconds = run_estimate(model, train)["seconds"]
    if seconds > CONFIRM_ABOVE_S:
        if not st.checkbox(f"Yes, train for {rough_duration(seconds)} (more than an hour "
                           "of this machine)", key="tr_confirm_long"):
            return ("This run is estimated at more than an hour: tick the box above to "
                    "confirm, or train fewer steps or a smaller model.")
    return None
