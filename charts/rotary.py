"""Rotary position embeddings drawn: each pair's frequency and wavelength, one pair
turning with position, the rotated score against distance, and a trained model's
layer-0 logits before and after its prompt is moved. Units: radians per position,
positions, logits."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.characters import KEY_TITLE, MAP_NOTE, QUERY_TITLE, char_ticks
from charts.palette import DIFF_SCALE, FONT_SIZE, TICK_FONT, colour, titled


def rope_spectrum(tables: Mapping[str, pd.DataFrame],
                  context_window: int | None = None) -> go.Figure:
    """Frequency (radians per position) and wavelength (positions) of every rotated
    pair, one line per setting (e.g. two thetas), on log-scale y axes side by side."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "how fast each pair turns", "positions per full turn"))
    for i, (label, df) in enumerate(tables.items()):
        dash = "dot" if "bug" in label else "solid"
        common = dict(x=df["pair"], mode="lines+markers", name=label, legendgroup=label,
                      line=dict(color=colour(i), dash=dash, width=3), marker=dict(size=7))
        fig.add_trace(go.Scatter(y=df["freq_rad_per_pos"], **common,
                                 hovertemplate="pair %{x}: %{y:.4g} rad per position"
                                               "<extra>" + label + "</extra>"), 1, 1)
        fig.add_trace(go.Scatter(y=df["wavelength_positions"], showlegend=False, **common,
                                 hovertemplate="pair %{x}: one turn every %{y:.4g} "
                                               "positions<extra>" + label + "</extra>"), 1, 2)
    # Reference lines as traces: shapes and annotations on a log axis take log10 values.
    pairs = max(len(df) for df in tables.values())
    lines = [(1, 1.0, "1 rad per position", "bottom left")]
    if context_window:
        lines.append((2, float(context_window), f"context window: {context_window} "
                      "positions", "bottom left"))
    for col, y, text, where in lines:
        fig.add_trace(go.Scatter(
            x=[0, pairs - 1], y=[y, y], mode="lines+text", text=["", text],
            textposition=where, textfont=dict(size=TICK_FONT, color="#495057"),
            line=dict(color="#495057", dash="dash", width=2), showlegend=False,
            hoverinfo="skip", name=text), 1, col)
    fig.update_xaxes(title=dict(text="pair i (dimensions 2i, 2i+1)"))
    fig.update_yaxes(type="log", title=dict(text="frequency (radians per position)"),
                     exponentformat="power", row=1, col=1)
    fig.update_yaxes(type="log", title=dict(text="wavelength (positions)"),
                     tickformat=",.0f", row=1, col=2)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    fig.update_annotations(font_size=FONT_SIZE)
    fig.update_layout(margin=dict(b=110))
    return titled(fig, "RoPE frequency spectrum: freq_i = θ^(−2i / d_head)", 500)


def rope_circles(items: Mapping[str, np.ndarray], pair: int) -> go.Figure:
    """One pair of dimensions turning with position: for each setting (label -> angles
    in radians, one per position 0..n-1) a unit circle with a numbered point per
    position, side by side."""
    n = len(items)
    titles = []
    for label, angles in items.items():
        step = float(angles[1] - angles[0]) if len(angles) > 1 else 0.0
        titles.append(f"{label}: {step:.3g} rad per position")
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=0.08)
    circle = np.linspace(0, 2 * np.pi, 181)
    for i, (label, angles) in enumerate(items.items(), start=1):
        pos = np.arange(len(angles))
        every = max(1, math.ceil(len(angles) / 16))
        fig.add_trace(go.Scatter(x=np.cos(circle), y=np.sin(circle), mode="lines",
                                 line=dict(color="#ced4da", width=2), hoverinfo="skip",
                                 showlegend=False), 1, i)
        fig.add_trace(go.Scatter(
            x=np.cos(angles), y=np.sin(angles), mode="lines+markers+text",
            name=label, showlegend=False,
            text=[str(m) if m % every == 0 else "" for m in pos], textposition="top right",
            textfont=dict(size=TICK_FONT),
            line=dict(color="#adb5bd", width=1),
            marker=dict(size=11, color=pos, colorscale="Viridis", showscale=i == n,
                        colorbar=dict(title=dict(text="position m"))),
            customdata=np.stack([pos, angles], axis=-1),
            hovertemplate=("position %{customdata[0]}: angle %{customdata[1]:.3f} rad"
                           "<extra>" + label + "</extra>")), 1, i)
        suffix = "" if i == 1 else str(i)
        fig.layout[f"xaxis{suffix}"].update(range=[-1.3, 1.3], zeroline=True,
                                            title=dict(text=f"dimension {2 * pair}"))
        fig.layout[f"yaxis{suffix}"].update(range=[-1.3, 1.3], zeroline=True,
                                            scaleanchor=f"x{suffix}",
                                            title=dict(text=f"dimension {2 * pair + 1}"))
    fig.update_annotations(font_size=FONT_SIZE)
    return titled(fig, f"Pair {pair} turning with position: the point at position m "
                       f"is rotated by m × freq_{pair}", 520)


def rope_relative(df: pd.DataFrame) -> go.Figure:
    """Score of a rotated query and key against their distance m - n, one line per
    absolute query position m: the lines coincide because the score depends on m - n
    only. Marker sizes shrink so every line stays visible on top of the others."""
    fig = go.Figure()
    groups = list(df.groupby("query_pos", sort=True))
    sizes = np.linspace(18, 6, len(groups)) if groups else []
    for i, ((m, part), size) in enumerate(zip(groups, sizes)):
        fig.add_trace(go.Scatter(
            x=part["distance"], y=part["score"], mode="lines+markers",
            name=f"query at position m = {m}",
            line=dict(color=colour(i), width=2),
            marker=dict(size=float(size), symbol="circle-open" if i % 2 == 0 else "circle",
                        line=dict(width=2)),
            hovertemplate=("m − n = %{x} positions<br>score %{y:.4f}<extra>m = "
                           + str(m) + "</extra>")))
    fig.update_xaxes(title=dict(text="relative distance m − n (positions)"))
    fig.update_yaxes(title=dict(text="score q_m · k_n (dot product)"))
    fig.update_layout(legend=dict(orientation="h", y=-0.22))
    return titled(fig, "q_m · k_n against the distance m − n: one curve for every m", 460)


def logit_pair(base: np.ndarray, moved: np.ndarray, chars: str, shift: int,
               head: int) -> go.Figure:
    """Layer-0 attention logits of one head for the prompt at positions 0..P-1 and
    moved to shift..shift+P-1, on one colour scale: rows = query, columns = key."""
    P = base.shape[-1]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        f"prompt at positions 0–{P - 1}", f"prompt at positions {shift}–{shift + P - 1}"))
    top = float(max(np.abs(base).max(), np.abs(moved).max())) or 1.0
    for col, z in ((1, base), (2, moved)):
        fig.add_trace(go.Heatmap(z=z, coloraxis="coloraxis",
                                 hovertemplate="query %{y} · key %{x}<br>logit %{z:.4f}"
                                               "<extra></extra>"), 1, col)
        suffix = "" if col == 1 else str(col)
        fig.layout[f"xaxis{suffix}"].update(**char_ticks(chars, 32),
                                            title=dict(text=KEY_TITLE), constrain="domain")
        fig.layout[f"yaxis{suffix}"].update(**char_ticks(chars, 32), autorange="reversed",
                                            title=dict(text=QUERY_TITLE),
                                            scaleanchor=f"x{suffix}", constrain="domain")
    fig.update_layout(coloraxis=dict(colorscale=DIFF_SCALE, cmin=-top, cmid=0, cmax=top,
                                     colorbar=dict(title=dict(text="logit"))))
    fig.update_annotations(font_size=FONT_SIZE)
    return titled(fig, f"Layer 0, head {head}: attention logits q·k/√head_dim before the "
                       f"mask<br><sup>{MAP_NOTE}; positions counted within the prompt"
                       f"</sup>", 520)
