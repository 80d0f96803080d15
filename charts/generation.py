"""Generation step by step: the most likely next characters at one step and the one
the sampler drew (in orange)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from charts.characters import char_label, visible_text
from charts.palette import FONT_SIZE, TICK_FONT, colour, titled
from llama_core.lab.plain_text import plotly_literal

CHOSEN = colour(1)  # the palette's orange: the character drawn
OTHER = colour(0)


def next_char_bars(step: pd.DataFrame, title: str) -> go.Figure:
    """The most likely next characters at one step (columns character, probability,
    chosen), the one drawn in orange."""
    chars = [char_label(c) for c in step["character"]]
    colours = [CHOSEN if c else OTHER for c in step["chosen"]]
    fig = go.Figure(go.Bar(
        x=chars, y=step["probability"], marker_color=colours,
        text=[f"{p:.2f}" if p >= 0.005 else "" for p in step["probability"]],
        textposition="outside",
        textfont=dict(size=TICK_FONT + 1),
        hovertemplate="'%{x}': probability %{y:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", title=dict(text="next character"),
                     tickmode="array", tickvals=chars, ticktext=chars,
                     tickfont=dict(size=FONT_SIZE + 2))
    fig.update_yaxes(title=dict(text="probability"), range=[0, 1.12])
    return titled(fig, title, 400)


TITLE_CHARS = 30  # a title line that fits a half-width chart at 1280 px (~34 characters)


def step_figure(run: str, prompt: str, text: str, table: pd.DataFrame,
                step: int) -> go.Figure:
    """:func:`next_char_bars` for one step of a generation (``text`` continuing
    ``prompt``, ``table`` its per-step probabilities), titled with the run (a label,
    shortened to fit), the characters just before the step and the one drawn."""
    rows = table[table["step"] == step]
    # The text before the step: the prompt and the tokens drawn so far (a character each,
    # or a byte-pair token of several).
    drawn_before = table[table["chosen"] & (table["step"] < step)].sort_values("step")
    before = (prompt + "".join(drawn_before["character"]))[-6:]
    drawn = rows[rows["chosen"]]["character"].iloc[0]
    run = run if len(run) <= TITLE_CHARS else run[:TITLE_CHARS - 1] + "…"
    title = (f"{plotly_literal(run)}<br>step {step}: after "
             f"“{plotly_literal(visible_text(before))}” drew “{char_label(drawn)}”")
    return next_char_bars(rows, title)
