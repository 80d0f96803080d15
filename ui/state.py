"""The dashboard's shared state: per server, the one job manager and the run store it
owns; per browser, who is here (a student's id, the teacher's key) and what they may
control.

Streamlit reruns a page's script on every click, in a thread per browser session, and
forgets session state on reload. So nothing long-lived lives in a session: the job
manager is a process-wide resource shared by every session (thread-safe by design), and
the SQLite run store is the only truth pages read.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import uuid

import streamlit as st

from llama_core.corpora import is_offered, load_corpus
from llama_core.errors import UserError
from llama_core.lab import classroom
from llama_core.lab.jobs import JobManager
from llama_core.lab.store import Run, RunStore, default_runs_dir


@st.cache_resource(show_spinner=False)
def _manager_for(runs_dir: str) -> JobManager:
    limit = os.environ.get("LLAMA_LAB_MAX_CONCURRENT")
    return JobManager(None, max_concurrent=int(limit) if limit and limit.isdigit() else None,
                      offered_corpora_only=True)


def job_manager() -> JobManager:
    """The server's one JobManager for the run store in $LLAMA_LAB_RUNS (or runs/).

    Keyed by that folder so tests that point it elsewhere get their own manager."""
    return _manager_for(str(default_runs_dir()))


def store() -> RunStore:
    return job_manager().store


_warmed: set[tuple[str, str]] = set()


def warm_corpus(name: str, tokenizer: str) -> None:
    """Read and tokenize, in the background and once per server, the corpus a Launch
    would train on, so the click does not wait for it (0.4 s for characters, seconds for
    a learned byte-pair vocabulary). Only corpora the dashboard offers; any error is
    left for Launch to report."""
    if (name, tokenizer) in _warmed or not is_offered(name):
        return
    _warmed.add((name, tokenizer))
    threading.Thread(target=_load_quietly, args=(name, tokenizer), daemon=True,
                     name="warm-corpus").start()


def _load_quietly(name: str, tokenizer: str) -> None:
    with contextlib.suppress(UserError, OSError):
        load_corpus(name, tokenizer)


STUDENT_COOKIE = "llama_lab_student"
_STUDENT_ID = re.compile(r"s-[0-9a-f]{10}")


def owner_id() -> str:
    """Who is training: one id per browser, recorded as the owner of the runs it starts.

    Streamlit forgets a session on reload, so the id also lives in a cookie (written by
    remember_owner). A reload or a second tab is then the same student, and the
    classroom's per-student caps hold; a shared link carries no identity with it."""
    if "owner" not in st.session_state:
        given = st.context.cookies.get(STUDENT_COOKIE)
        st.session_state["owner"] = (given if isinstance(given, str)
                                     and _STUDENT_ID.fullmatch(given)
                                     else "s-" + uuid.uuid4().hex[:10])
    return st.session_state["owner"]


def remember_owner() -> None:
    """Store owner_id() in the browser's cookie unless it came from there already.

    Streamlit cannot set cookies from Python; one line of JavaScript, run once per
    session, does. The id is ours (s- and 10 hex digits), never user input."""
    owner = owner_id()
    if st.context.cookies.get(STUDENT_COOKIE) == owner or st.session_state.get("_remembered"):
        return
    st.session_state["_remembered"] = True
    st.html(f"<script>document.cookie = '{STUDENT_COOKIE}={owner}; path=/; "
            f"max-age=2592000; SameSite=Lax';</script>", unsafe_allow_javascript=True)


def name_box() -> None:
    """A classroom's sidebar field where a student tells the teacher who they are.

    Stored in the run store under owner_id(), so it follows the student across reloads
    and pages, and the Teacher page shows it beside their runs."""
    owner = owner_id()
    if "student_name" not in st.session_state:
        st.session_state["student_name"] = store().student_names().get(owner, "")

    def save() -> None:
        try:
            st.session_state["student_name"] = store().set_student_name(
                owner, st.session_state["student_name"])
        except UserError as e:
            st.session_state["student_name_error"] = str(e)

    st.text_input("Your name, for the teacher", key="student_name", max_chars=40,
                  on_change=save, placeholder="optional")
    error = st.session_state.pop("student_name_error", None)
    if error:
        st.error(error)


def is_teacher() -> bool:
    """Whether this browser session has given the classroom's teacher key (on the
    Teacher page). Only then may it stop other students' runs."""
    settings = classroom.current()
    return bool(settings is not None and settings.teacher_key
                and settings.teacher_ok(st.session_state.get("teacher_key_given")))


def may_control(run: Run) -> bool:
    """Whether this browser may stop or delete the run: its owner, or the teacher.
    Everyone else sees it read-only."""
    return run.owner == owner_id() or is_teacher()


def stop_run(run_id: str) -> str:
    """Stop a run on behalf of this browser; refused when the run is someone else's."""
    return job_manager().stop(run_id, on_behalf_of=None if is_teacher() else owner_id())
