"""Plotly figures for the Attention, Rotary and Generate pages.

Pure figure builders: numpy arrays and DataFrames in, ``go.Figure`` out, no streamlit.
Every chart names its units (probability, nats, positions, radians per position,
logits), and every attention map says which axis is the query and which the key:
rows = query position, columns = key position, the prompt's characters as tick labels.
Sized to be read on a classroom projector.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import get_colorscale
from plotly.subplots import make_subplots

from llama_core.lab.plain_text import plotly_literal
from ui.loss_charts import colour  # one palette for every chart

FONT = 16
TICK_FONT = 13
CHOSEN = colour(1)  # the palette's orange: the character drawn
OTHER = colour(0)
# Explicit lists: the grid skips plotly.py's validation, which is what turns a name into
# a list, and plotly.js's own "Blues" is a different, reversed palette.
PROB_SCALE = get_colorscale("Blues")
DIFF_SCALE = get_colorscale("RdBu_r")
QUERY_TITLE = "query position (row)"
KEY_TITLE = "key position (column)"
MAP_NOTE = "rows = query position, columns = key position"


def visible(c: str) -> str:
    """A character as it can be read on an axis: space, newline, tab made visible."""
    return {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}.get(c, c)


def visible_text(s: str) -> str:
    return "".join(visible(c) for c in s)


def char_label(c: str) -> str:
    """A prompt's or a model's character as a Plotly label: visible, and never read as
    Plotly markup (``<``, ``&``)."""
    return plotly_literal(visible(c))


def _style(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, font=dict(size=FONT + 3), x=0, xanchor="left"),
        height=height, font=dict(size=FONT), template="plotly_white",
        margin=dict(l=70, r=30, t=90, b=70), hoverlabel=dict(font_size=FONT))
    return fig


def _ticks(chars: str, max_labels: int) -> dict:
    """Tick positions and character labels for a T-long axis, thinned to at most
    ``max_labels`` labels so they stay readable."""
    T = len(chars)
    step = max(1, math.ceil(T / max_labels))
    vals = list(range(0, T, step))
    return dict(tickmode="array", tickvals=vals,
                ticktext=[char_label(chars[i]) for i in vals],
                tickfont=dict(size=TICK_FONT), tickangle=0)


def _masked(a: np.ndarray) -> np.ndarray:
    """Blank (NaN) the cells above the diagonal: keys a causal query cannot see."""
    out = a.astype(np.float32, copy=True)
    T = out.shape[-1]
    out[..., np.triu(np.ones((T, T), dtype=bool), 1)] = np.nan
    return out


# --- Attention ---------------------------------------------------------------------

def _grid_domains(n: int, gap: float) -> list[tuple[float, float]]:
    size = (1.0 - gap * (n - 1)) / n
    return [(i * (size + gap), i * (size + gap) + size) for i in range(n)]


def attention_grid(maps: Sequence[np.ndarray], chars: str, title: str, *,
                   hide_future: bool = True, zmax: float | None = None,
                   difference: bool = False, panel_px: int | None = None,
                   show_scale: bool = True) -> go.Figure:
    """Every layer (rows of panels, "layer l" in the query axis title) and head
    (columns of panels, "head h" above the top row) of one run as heatmaps. Inside each panel rows = query position, columns = key position, the
    prompt's characters as tick labels. ``hide_future`` leaves a causal model's masked
    cells blank (they are exactly 0). ``difference`` draws a signed map (run A - run B)
    on a diverging scale.

    Built as plain dicts (no per-panel plotly validation): a 6 x 8 grid through
    make_subplots costs about 0.7 s of the page's 1 s budget, this about 0.05 s.
    """
    L, H = len(maps), maps[0].shape[0]
    panel = panel_px or int(min(240, max(110, 640 / H)))
    height = 150 + L * (panel + 30)
    cols = _grid_domains(H, 0.03)
    rows = _grid_domains(L, min(0.12, 30 / height))[::-1]  # row 0 at the top
    top = max(float(np.nanmax(np.abs(m))) for m in maps) or 1.0
    zmax = zmax if zmax is not None else top
    ticks = _ticks(chars, max(4, panel // 16))
    what = "difference" if difference else "probability"
    data, layout, notes = [], {}, []
    for l, layer in enumerate(maps):
        for h in range(H):
            n = l * H + h + 1
            suffix = "" if n == 1 else str(n)
            z = _masked(layer[h]) if hide_future and not difference else layer[h]
            data.append(dict(
                type="heatmap", z=z, coloraxis="coloraxis", name=f"layer {l} head {h}",
                xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                hovertemplate=(f"query %{{y}} · key %{{x}}<br>{what} %{{z:.3f}}"
                               f"<extra>layer {l} head {h}</extra>")))
            layout[f"xaxis{suffix}"] = dict(
                **ticks, domain=cols[h], anchor=f"y{suffix}", showticklabels=l == L - 1,
                title=dict(text="key" if l == L - 1 else None, standoff=4),
                constrain="domain", showgrid=False, zeroline=False)
            layout[f"yaxis{suffix}"] = dict(
                **ticks, domain=rows[l], anchor=f"x{suffix}", showticklabels=h == 0,
                autorange="reversed", scaleanchor=f"x{suffix}", constrain="domain",
                title=dict(text=f"<b>layer {l}</b><br>query" if h == 0 else None,
                           standoff=4), showgrid=False, zeroline=False)
            if l == 0:
                notes.append(dict(text=f"<b>head {h}</b>", showarrow=False,
                                  xref="paper", yref="paper", x=sum(cols[h]) / 2,
                                  y=rows[0][1], xanchor="center", yanchor="bottom",
                                  yshift=4, font=dict(size=FONT)))
    if difference:
        coloraxis = dict(colorscale=DIFF_SCALE, cmin=-zmax, cmid=0, cmax=zmax,
                         colorbar=dict(title=dict(text="difference<br>(probability)")))
    else:
        coloraxis = dict(colorscale=PROB_SCALE, cmin=0, cmax=zmax,
                         colorbar=dict(title=dict(text="probability")))
    coloraxis["showscale"] = show_scale
    layout.update(coloraxis=coloraxis, plot_bgcolor="#e9ecef", annotations=notes)
    fig = go.Figure(dict(data=data, layout=layout), _validate=False)
    return _style(fig, f"{title}<br><sup>{MAP_NOTE}</sup>", height)


def attention_heatmap(a: np.ndarray, chars: str, title: str, *, hide_future: bool = True,
                      zmax: float | None = None, max_labels: int = 64,
                      height: int | None = None) -> go.Figure:
    """One head large, every character labelled (up to ``max_labels`` per axis):
    rows = query, columns = key. By default about 13 pixels per character, so a full
    64-character context stays readable on a projector."""
    T = a.shape[-1]
    z = _masked(a) if hide_future else a.astype(np.float32)
    labels = [char_label(c) for c in chars]
    custom = np.array([[(labels[q], labels[k]) for k in range(T)] for q in range(T)])
    fig = go.Figure(go.Heatmap(
        z=z, customdata=custom, colorscale=PROB_SCALE, zmin=0,
        zmax=zmax if zmax is not None else float(np.nanmax(z)) or 1.0,
        colorbar=dict(title=dict(text="probability")),
        hovertemplate=("query %{y} '%{customdata[0]}' attends to key %{x} "
                       "'%{customdata[1]}'<br>probability %{z:.3f}<extra></extra>")))
    fig.update_xaxes(**_ticks(chars, max_labels),
                     title=dict(text=KEY_TITLE + ": attended to"),
                     side="bottom", constrain="domain", showgrid=False, zeroline=False)
    fig.update_yaxes(**_ticks(chars, max_labels),
                     title=dict(text=QUERY_TITLE + ": attending"),
                     autorange="reversed", scaleanchor="x", constrain="domain",
                     showgrid=False, zeroline=False)
    fig.update_layout(plot_bgcolor="#e9ecef")
    return _style(fig, f"{title}<br><sup>{MAP_NOTE}</sup>",
                  height or int(min(1050, max(560, 13 * T + 220))))


def head_labels(L: int, H: int) -> list[str]:
    return [f"L{l} H{h}" for l in range(L) for h in range(H)]


def head_bars(values: Mapping[str, np.ndarray], title: str, y_title: str, *,
              reference: Mapping[str, float] | None = None, percent: bool = False,
              height: int = 400) -> go.Figure:
    """One bar per (layer, head), grouped by run; ``values`` maps a run's label (plain
    text, escaped here) to a (layers, heads) array. ``reference`` draws labelled dashed
    lines (e.g. uniform attention). Values are written on the bars while there are few
    enough to read."""
    fig = go.Figure()
    fmt = ".0%" if percent else ".2f"
    total = sum(v.size for v in values.values())
    for i, (run_label, v) in enumerate(values.items()):
        L, H = v.shape
        shown = plotly_literal(run_label)
        fig.add_trace(go.Bar(
            x=head_labels(L, H), y=v.ravel(), name=shown,
            marker_color=colour(i),
            text=[format(x, fmt) for x in v.ravel()] if total <= 16 else None,
            textposition="outside", textfont=dict(size=TICK_FONT),
            hovertemplate="%{x}: %{y:" + fmt + "}<extra>" + shown + "</extra>"))
    greys = ("#343a40", "#868e96")
    for j, (name, y) in enumerate((reference or {}).items()):
        x = head_labels(*next(iter(values.values())).shape)
        fig.add_trace(go.Scatter(
            x=[x[0], x[-1]], y=[y, y], mode="lines", name=name,
            line=dict(color=greys[j % 2], dash="dash", width=3),
            hovertemplate=name + ": %{y:.2f}<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.25,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0,
                                  font=dict(size=TICK_FONT)))
    fig.update_xaxes(title=dict(text="layer L, head H"), type="category",
                     tickfont=dict(size=TICK_FONT))
    fig.update_yaxes(title=dict(text=y_title), rangemode="tozero",
                     tickformat=".0%" if percent else None)
    if percent:
        fig.update_yaxes(range=[0, 1.1])
    fig = _style(fig, title, height)
    fig.update_layout(margin=dict(t=120))
    return fig


# --- Rotary ------------------------------------------------------------------------

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
    fig.update_annotations(font_size=FONT)
    fig.update_layout(margin=dict(b=110))
    return _style(fig, "RoPE frequency spectrum: freq_i = θ^(−2i / d_head)", 500)


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
    fig.update_annotations(font_size=FONT)
    return _style(fig, f"Pair {pair} turning with position: the point at position m "
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
    return _style(fig, "q_m · k_n against the distance m − n: one curve for every m", 460)


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
        fig.layout[f"xaxis{suffix}"].update(**_ticks(chars, 32),
                                            title=dict(text=KEY_TITLE), constrain="domain")
        fig.layout[f"yaxis{suffix}"].update(**_ticks(chars, 32), autorange="reversed",
                                            title=dict(text=QUERY_TITLE),
                                            scaleanchor=f"x{suffix}", constrain="domain")
    fig.update_layout(coloraxis=dict(colorscale=DIFF_SCALE, cmin=-top, cmid=0, cmax=top,
                                     colorbar=dict(title=dict(text="logit"))))
    fig.update_annotations(font_size=FONT)
    return _style(fig, f"Layer 0, head {head}: attention logits q·k/√head_dim before the "
                       f"mask<br><sup>{MAP_NOTE}; positions counted within the prompt"
                       f"</sup>", 520)


# --- Generation --------------------------------------------------------------------

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
    fig.update_xaxes(type="category", title=dict(text="next character (orange: drawn)"),
                     tickmode="array", tickvals=chars, ticktext=chars,
                     tickfont=dict(size=FONT + 2))
    fig.update_yaxes(title=dict(text="probability"), range=[0, 1.12])
    return _style(fig, title, 400)
