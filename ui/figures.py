"""Figures and tables onto a page, the way every page wants them: charts full width
with their modebar (and PNG download), and plain tables whose index is user text."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from charts.palette import plot_config
from ui.plain_text import md_literal


def show_chart(fig: go.Figure, key: str, filename: str) -> None:
    """Draw a figure with its modebar (and PNG download) always visible."""
    st.plotly_chart(fig, key=key, width="stretch", config=plot_config(filename))


def markdown_index(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its index (run names, variants, rungs) escaped: st.table reads
    Markdown in its cells, so a name shows as typed."""
    out = table.copy()
    out.index = pd.Index([md_literal(v) for v in table.index], name=table.index.name)
    return out


def show_table(table: pd.DataFrame) -> None:
    """A plain HTML table (readable from the back of a room, and by a screen reader),
    indexed by user text."""
    st.table(markdown_index(table))
