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


# The width a table may take without scrolling sideways on a 1280-px screen with the
# sidebar open (the main column is about 735 px wide there).
TABLE_WIDTH_PX = 700
MIN_COLUMN_PX = 80


def fitted_columns(columns, fixed: dict[str, int]) -> dict:
    """column_config for st.dataframe that fits the table in TABLE_WIDTH_PX: the
    ``fixed`` columns at their widths, the rest sharing what is left (a header cut to
    fit is shown whole in its tooltip)."""
    rest = [c for c in columns if c not in fixed]
    share = max(MIN_COLUMN_PX, (TABLE_WIDTH_PX - sum(fixed.values())) // max(len(rest), 1))
    return {c: st.column_config.Column(width=fixed.get(c, share), help=md_literal(str(c)))
            for c in columns}


def grid(count: int, per_row: int = 2) -> list:
    """``count`` side-by-side places, at most ``per_row`` to a row: four charts four
    across are too narrow to read at 1280 px, so they go two by two."""
    places = []
    for start in range(0, count, per_row):
        places.extend(st.columns(per_row)[:min(per_row, count - start)])
    return places


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
