"""A prompt's characters on a chart: made visible (a space or a new line must show),
never read as Plotly markup (``<``, ``&``), and thinned to stay readable on an axis.
Attention maps and logit maps share one reading: rows = query, columns = key."""

from __future__ import annotations

import math

from charts.palette import TICK_FONT
from llama_core.lab.plain_text import plotly_literal

QUERY_TITLE = "query position (row)"
KEY_TITLE = "key position (column)"
MAP_NOTE = "rows = query position, columns = key position"


def visible(c: str) -> str:
    """A character as it can be read on an axis: space, newline, tab made visible."""
    return {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}.get(c, c)


def visible_text(s: str) -> str:
    return "".join(visible(c) for c in s)


def char_label(c: str) -> str:
    """A prompt's or a model's character (or a byte-pair token of several, such as
    " the") as a Plotly label: visible, and never read as Plotly markup."""
    return plotly_literal(visible_text(c))


def char_ticks(chars, max_labels: int) -> dict:
    """Tick positions and labels for a T-long axis, one per character of a string or
    per token of a list of token texts, thinned to at most ``max_labels`` labels so
    they stay readable."""
    T = len(chars)
    step = max(1, math.ceil(T / max_labels))
    vals = list(range(0, T, step))
    return dict(tickmode="array", tickvals=vals,
                ticktext=[char_label(chars[i]) for i in vals],
                tickfont=dict(size=TICK_FONT), tickangle=0)
