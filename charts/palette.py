"""How every chart looks and what its axes mean: one palette, the sizes a classroom
projector needs, and the one table of x axes and loss metrics with their units.

Loss is in nats per character (the cross-entropy of a character model, natural log);
tokens are characters seen in training; seconds are wall-clock training time; FLOPs
are tokens x training FLOPs per token.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import get_colorscale

LOSS_UNIT = "nats per character"

# x-axis key -> (short name for a picker, axis title with its unit)
X_AXES: dict[str, tuple[str, str]] = {
    "step": ("steps", "training step"),
    "tokens": ("tokens", "tokens seen (characters)"),
    "seconds": ("seconds", "training time (s)"),
    "flops": ("FLOPs", "training compute (FLOPs)"),
}
HOVER_FORMAT = {"step": ",.0f", "tokens": ",.0f", "seconds": ".1f", "flops": ".3s"}
METRICS: dict[str, str] = {"val_loss": "validation loss", "train_loss": "training loss",
                           "val_bpc": "validation loss"}  # the same loss, in bits per char
# Each metric's unit. A loss is per token: per character for a character run; runs with
# different tokenizers compare only in bits per character (log2, per character of text).
METRIC_UNITS = {"val_loss": LOSS_UNIT, "train_loss": LOSS_UNIT,
                "val_bpc": "bits per character"}
TOKEN_LOSS_UNIT = "nats per token"
BASELINE_MARK = "★"

# Okabe-Ito, a palette that stays distinct for colour-blind eyes (yellow left out: it
# vanishes on a white projector screen), then a few darker extras for long comparisons.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#8C564B", "#7F7F7F", "#17BECF", "#B15928", "#6A3D9A")
TRAIN_COLOUR = PALETTE[0]
VAL_COLOUR = PALETTE[1]
# Explicit lists: the attention grid skips plotly.py's validation, which is what turns
# a name into a list, and plotly.js's own "Blues" is a different, reversed palette.
PROB_SCALE = get_colorscale("Blues")
DIFF_SCALE = get_colorscale("RdBu_r")

FONT_SIZE = 16
TICK_FONT = 13
INK = "#111418"  # the theme's text colour: axis text must not fade to grey on a projector


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def placeholder(fig: go.Figure, text: str) -> go.Figure:
    """An empty chart that says why it is empty, in place of blank axes."""
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper",
                       showarrow=False, font=dict(size=FONT_SIZE + 2, color="#555"))
    fig.update_xaxes(range=[0, 1], showticklabels=False)
    fig.update_yaxes(range=[0, 1], showticklabels=False)
    return fig


def legend_below(fig: go.Figure, x_title: str, y_title: str, height: int) -> go.Figure:
    """The look of the sweep pages' charts: many variants, so the legend goes below."""
    fig.update_layout(height=height, font=dict(size=FONT_SIZE),
                      margin=dict(l=10, r=10, t=30, b=10), hovermode="x unified",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0,
                                  xanchor="left", font=dict(size=FONT_SIZE - 1)))
    fig.update_xaxes(title=dict(text=x_title), showgrid=True, exponentformat="SI")
    fig.update_yaxes(title=dict(text=y_title), showgrid=True)
    return fig


def titled(fig: go.Figure, title: str, height: int) -> go.Figure:
    """The look of the Attention, Rotary and Generate figures: a title that says what
    is drawn, on white."""
    fig.update_layout(
        title=dict(text=title, font=dict(size=FONT_SIZE + 3), x=0, xanchor="left"),
        height=height, font=dict(size=FONT_SIZE), template="plotly_white",
        margin=dict(l=70, r=30, t=90, b=70), hoverlabel=dict(font_size=FONT_SIZE))
    return fig


def plot_config(filename: str) -> dict:
    """Plotly options for a chart on a page: the modebar always shown (the classroom
    config's toolbarMode=viewer hides Streamlit's menu, not Plotly's), and its camera
    button saves a PNG at twice the screen resolution under ``filename``."""
    return {"displayModeBar": True, "displaylogo": False,
            "modeBarButtonsToRemove": ["lasso2d", "select2d"],
            "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}}
