"""What a page says instead of what it would draw: a user's mistake as one st.error
sentence, never a traceback, or what is missing before there is anything to draw.

A UserError's sentence is written for a terminal too and may quote what a user typed (a
name, a prompt, a value from the address), so it is shown as plain text, never Markdown.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable

import streamlit as st

from llama_core.errors import UserError
from ui.plain_text import md_literal


def show_error(message) -> None:
    """A UserError's sentence (or any message) in st.error as plain text."""
    st.error(md_literal(message))


def require(value, message: str) -> None:
    """End the page here, saying ``message``, while ``value`` is empty (no run picked,
    no prompt typed)."""
    if not value:
        st.info(message)
        st.stop()


@contextmanager
def user_errors():
    """Show a user's mistake as one st.error sentence instead of a traceback."""
    try:
        yield
    except UserError as e:
        show_error(e)


def each_run(runs: list, compute: Callable) -> dict[str, Any]:
    """``compute(run)`` for each run, by run id. A run whose compute raises UserError is
    left out, and its sentence shown once per distinct message; the run ids are named
    only when the chosen runs disagree (e.g. different corpora know different
    characters)."""
    results, errors = {}, {}
    for run in runs:
        try:
            results[run.id] = compute(run)
        except UserError as e:
            errors.setdefault(str(e), []).append(run)
    for message, failed in errors.items():
        if len(errors) > 1:
            st.error(f"{', '.join(r.id for r in failed)}: {md_literal(message)}")
        else:
            show_error(message)
    return results
