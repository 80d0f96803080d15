"""The Rotary page's figures about length: RoPE's frequencies stretched by scaling
(linear and llama3) against the unscaled ones, and a trained model's loss at each
position when it reads 2x or 4x the context it was trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.palette import LOSS_UNIT, colour, titled
from llama_core.lab.plain_text import plotly_literal

SCALING_COLOURS = {"unscaled": colour(0), "linear": colour(1), "llama3": colour(2)}
READING_DASH = {"unscaled": "solid", "linear": "dash", "llama3": "dot"}


def scaled_frequencies_figure(freqs: dict[str, np.ndarray], original: int,
                              high_freq_factor: float, low_freq_factor: float) -> go.Figure:
    """Left: radians per position of each pair, unscaled and scaled (log). Right: the
    scaled frequency as a share of the unscaled one. Dotted lines mark the llama3 band
    edges: the wavelengths original / high_freq_factor (pairs faster than it are kept) and
    original / low_freq_factor (pairs slower are divided), as frequencies 2 pi / wavelength."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("frequency of each pair",
                                        "scaled ÷ unscaled frequency"))
    base = freqs["unscaled"]
    pairs = np.arange(len(base))
    for name, f in freqs.items():
        style = dict(color=SCALING_COLOURS.get(name, colour(3)), width=3,
                     dash=READING_DASH.get(name, "solid"))
        fig.add_trace(go.Scatter(x=pairs, y=f, mode="lines+markers", name=name, line=style,
                                 legendgroup=name,
                                 hovertemplate="pair %{x}: %{y:.3g} rad/position"
                                               "<extra>" + name + "</extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=pairs, y=f / base, mode="lines+markers", name=name,
                                 line=style, legendgroup=name, showlegend=False,
                                 hovertemplate="pair %{x}: × %{y:.3f}<extra>" + name
                                               + "</extra>"), row=1, col=2)
    # Band edges, drawn as lines (the caption names them): plotly places a line's
    # annotation on a log axis at the wrong height, so none is attached.
    for wavelength in (original / high_freq_factor, original / low_freq_factor):
        fig.add_hline(y=2 * np.pi / wavelength, line_dash="dot", line_color="#555",
                      row=1, col=1)
    fig.update_xaxes(title_text="pair i (dimensions 2i, 2i+1)")
    fig.update_yaxes(type="log", title_text="radians per position (log)", row=1, col=1)
    fig.update_yaxes(title_text="share of the unscaled frequency", rangemode="tozero",
                     row=1, col=2)
    titled(fig, "RoPE scaling: which pairs slow down", 470)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                      margin=dict(l=70, r=30, t=90, b=110))
    return fig


def length_figure(frame: pd.DataFrame, trained_context: int, factor: int) -> go.Figure:
    """Loss per position, one line per (run, reading): ``frame`` has columns run,
    reading, position, loss (nats per character). A dashed line marks the trained
    context; a line that stops there is a learned table with no rows past it."""
    fig = go.Figure()
    runs = list(dict.fromkeys(frame["run"]))
    for i, run in enumerate(runs):
        for reading, part in frame[frame["run"] == run].groupby("reading", sort=False):
            name = f"{plotly_literal(run)}, {reading}"
            fig.add_trace(go.Scatter(
                x=part["position"], y=part["loss"], mode="lines", name=name,
                line=dict(color=colour(i), width=2.5, dash=READING_DASH.get(reading, "solid")),
                hovertemplate="position %{x}: %{y:.3f} nats<extra>" + name + "</extra>"))
    fig.add_vline(x=trained_context - 0.5, line_dash="dash", line_color="#555",
                  annotation_text=f"trained context ({trained_context})",
                  annotation_position="top left")
    fig.update_xaxes(title_text="position in the window (characters from its start)",
                     range=[-0.5, factor * trained_context - 0.5])
    fig.update_yaxes(title_text=f"loss ({LOSS_UNIT})")
    titled(fig, f"Loss at each position, reading {factor}× the trained context", 500)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
                      margin=dict(l=70, r=30, t=90, b=130))
    return fig
