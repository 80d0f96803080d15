"""The dashboard's shared state: one job manager per server, the run store it owns,
and small helpers every page uses.

Streamlit reruns a page's script on every click, in a thread per browser session, and
forgets session state on reload. So nothing long-lived lives in a session: the job
manager is a process-wide resource shared by every session (thread-safe by design), and
the SQLite run store is the only truth pages read.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import streamlit as st

from llama_core.errors import UserError
from llama_core.jobs import JobManager
from llama_core.runs import Run, RunStore, default_runs_dir


@st.cache_resource(show_spinner=False)
def _manager_for(runs_dir: str) -> JobManager:
    limit = os.environ.get("LLAMA_LAB_MAX_CONCURRENT")
    return JobManager(None, max_concurrent=int(limit) if limit and limit.isdigit() else None)


def job_manager() -> JobManager:
    """The server's one JobManager for the run store in $LLAMA_LAB_RUNS (or runs/).

    Keyed by that folder so tests that point it elsewhere get their own manager."""
    return _manager_for(str(default_runs_dir()))


def store() -> RunStore:
    return job_manager().store


def owner_id() -> str:
    """An id for this browser session, recorded as the owner of the runs it starts."""
    if "owner" not in st.session_state:
        st.session_state["owner"] = "s-" + uuid.uuid4().hex[:10]
    return st.session_state["owner"]


def run_label(run: Run) -> str:
    """How a run is named in pickers and legends: id, name and seed."""
    return f"{run.id} · {run.name} · seed {run.seed} · {run.status}"


@contextmanager
def user_errors():
    """Show a user's mistake as one st.error sentence instead of a traceback."""
    try:
        yield
    except UserError as e:
        st.error(str(e))


ACTIVE = ("queued", "running")
