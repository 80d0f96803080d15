"""Attention maps: every layer and head of a run as heatmaps (rows = query position,
columns = key position, the prompt's characters as tick labels), one head large, and
per-head statistics as bars. Units: probability, nats, positions."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from charts.characters import KEY_TITLE, MAP_NOTE, QUERY_TITLE, char_label, char_ticks
from charts.palette import DIFF_SCALE, FONT_SIZE, PROB_SCALE, TICK_FONT, colour, titled
from llama_core.lab.plain_text import plotly_literal


# Side-by-side maps must be drawn at the same size: fixed margins that do not grow
# for a colour scale (it sits inside the right margin whether shown or not), so two
# figures of the same height in equal columns get equal plot areas.
MAP_MARGIN = dict(l=70, r=110, t=90, b=70, autoexpand=False)
COLORBAR = dict(x=1.02, xanchor="left", thickness=16)


def _fixed_frame(fig: go.Figure) -> go.Figure:
    fig.update_layout(margin=MAP_MARGIN)
    return fig


def panel_size(heads: int, runs: int) -> int:
    """Pixels per heatmap panel so a grid fills its column on a 1400-pixel-wide screen
    (about 1000 pixels for the page, less margins and the colour scale)."""
    return int(min(230, max(80, (1000 / runs - 250) / heads)))


def shared_zmax(runs_maps: Sequence[Sequence[np.ndarray]]) -> float:
    """The top of one colour scale for several runs' maps: the largest weight any query
    but the first gives. Under the causal mask query 0 can only look at itself
    (probability 1), which would wash every other cell out to white."""
    return max(float(max(m[:, 1:].max() if m.shape[-1] > 1 else m.max() for m in maps))
               for maps in runs_maps)


def _masked(a: np.ndarray) -> np.ndarray:
    """Blank (NaN) the cells above the diagonal: keys a causal query cannot see."""
    out = a.astype(np.float32, copy=True)
    T = out.shape[-1]
    out[..., np.triu(np.ones((T, T), dtype=bool), 1)] = np.nan
    return out


def _grid_domains(n: int, gap: float) -> list[tuple[float, float]]:
    """n equal (start, end) spans of [0, 1] with ``gap`` between them, the last one
    ending at 1 exactly (float sums can pass it, which plotly refuses)."""
    size = (1.0 - gap * (n - 1)) / n
    return [(i * (size + gap), min(1.0, i * (size + gap) + size)) for i in range(n)]


def attention_grid(maps: Sequence[np.ndarray], chars: str | Sequence[str], title: str, *,
                   hide_future: bool = True, zmax: float | None = None,
                   difference: bool = False, panel_px: int | None = None,
                   show_scale: bool = True,
                   layers: Sequence[int] | None = None) -> go.Figure:
    """Every layer given (rows of panels, "layer l" in the query axis title) and head
    (columns of panels, "head h" above the top row) of one run as heatmaps. Inside
    each panel rows = query position, columns = key position, the prompt's characters
    as tick labels. ``hide_future`` leaves a causal model's masked
    cells blank (they are exactly 0). ``difference`` draws a signed map (run A - run B)
    on a diverging scale. ``layers`` names each map's layer (default 0, 1, ...): a deep
    model's page draws only some of its layers.

    Built as plain dicts (no per-panel plotly validation): a 6 x 8 grid through
    make_subplots costs about 0.7 s of the page's 1 s budget, this about 0.05 s.
    """
    L, H = len(maps), maps[0].shape[0]
    names = list(layers) if layers is not None else list(range(L))
    panel = panel_px or int(min(240, max(110, 640 / H)))
    height = 150 + L * (panel + 30)
    cols = _grid_domains(H, 0.03)
    rows = _grid_domains(L, min(0.12, 30 / height))[::-1]  # row 0 at the top
    top = max(float(np.nanmax(np.abs(m))) for m in maps) or 1.0
    zmax = zmax if zmax is not None else top
    ticks = char_ticks(chars, max(4, panel // 16))
    what = "difference" if difference else "probability"
    data, layout, notes = [], {}, []
    for l, layer in enumerate(maps):
        for h in range(H):
            n = l * H + h + 1
            suffix = "" if n == 1 else str(n)
            z = _masked(layer[h]) if hide_future and not difference else layer[h]
            data.append(dict(
                type="heatmap", z=z, coloraxis="coloraxis",
                name=f"layer {names[l]} head {h}",
                xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                hovertemplate=(f"query %{{y}} · key %{{x}}<br>{what} %{{z:.3f}}"
                               f"<extra>layer {names[l]} head {h}</extra>")))
            layout[f"xaxis{suffix}"] = dict(
                **ticks, domain=cols[h], anchor=f"y{suffix}", showticklabels=l == L - 1,
                title=dict(text="key" if l == L - 1 else None, standoff=4),
                constrain="domain", showgrid=False, zeroline=False)
            layout[f"yaxis{suffix}"] = dict(
                **ticks, domain=rows[l], anchor=f"x{suffix}", showticklabels=h == 0,
                autorange="reversed", scaleanchor=f"x{suffix}", constrain="domain",
                title=dict(text=f"<b>layer {names[l]}</b><br>query" if h == 0 else None,
                           standoff=4), showgrid=False, zeroline=False)
            if l == 0:
                notes.append(dict(text=f"<b>head {h}</b>", showarrow=False,
                                  xref="paper", yref="paper", x=sum(cols[h]) / 2,
                                  y=rows[0][1], xanchor="center", yanchor="bottom",
                                  yshift=4, font=dict(size=FONT_SIZE)))
    if difference:
        coloraxis = dict(colorscale=DIFF_SCALE, cmin=-zmax, cmid=0, cmax=zmax,
                         colorbar=dict(COLORBAR, title=dict(text="difference<br>(prob.)")))
    else:
        coloraxis = dict(colorscale=PROB_SCALE, cmin=0, cmax=zmax,
                         colorbar=dict(COLORBAR, title=dict(text="probability")))
    coloraxis["showscale"] = show_scale
    layout.update(coloraxis=coloraxis, plot_bgcolor="#e9ecef", annotations=notes)
    fig = go.Figure(dict(data=data, layout=layout), _validate=False)
    return _fixed_frame(titled(fig, f"{title}<br><sup>{MAP_NOTE}</sup>", height))


def map_height(length: int) -> int:
    """A one-head close-up's height for a ``length``-character prompt: about 13 pixels
    per character, so a full 64-character context stays readable on a projector."""
    return int(min(1050, max(560, 13 * length + 220)))


def attention_heatmap(a: np.ndarray, chars: str | Sequence[str], title: str, *,
                      hide_future: bool = True, zmax: float | None = None,
                      max_labels: int = 64,
                      height: int | None = None) -> go.Figure:
    """One head large, every character labelled (up to ``max_labels`` per axis):
    rows = query, columns = key; ``height`` defaults to :func:`map_height`. Close-ups
    side by side take one height, so that they are drawn at the same size."""
    T = a.shape[-1]
    z = _masked(a) if hide_future else a.astype(np.float32)
    labels = [char_label(c) for c in chars]
    custom = np.array([[(labels[q], labels[k]) for k in range(T)] for q in range(T)])
    fig = go.Figure(go.Heatmap(
        z=z, customdata=custom, colorscale=PROB_SCALE, zmin=0,
        zmax=zmax if zmax is not None else float(np.nanmax(z)) or 1.0,
        colorbar=dict(COLORBAR, title=dict(text="probability")),
        hovertemplate=("query %{y} '%{customdata[0]}' attends to key %{x} "
                       "'%{customdata[1]}'<br>probability %{z:.3f}<extra></extra>")))
    fig.update_xaxes(**char_ticks(chars, max_labels),
                     title=dict(text=KEY_TITLE + ": attended to"),
                     side="bottom", constrain="domain", showgrid=False, zeroline=False)
    fig.update_yaxes(**char_ticks(chars, max_labels),
                     title=dict(text=QUERY_TITLE + ": attending"),
                     autorange="reversed", scaleanchor="x", constrain="domain",
                     showgrid=False, zeroline=False)
    fig.update_layout(plot_bgcolor="#e9ecef")
    return _fixed_frame(titled(fig, f"{title}<br><sup>{MAP_NOTE}</sup>",
                               height or map_height(T)))


def head_labels(L: int, H: int) -> list[str]:
    return [f"L{l} H{h}" for l in range(L) for h in range(H)]


def head_bars(values: Mapping[str, np.ndarray], title: str, y_title: str, *,
              reference: Mapping[str, float] | None = None, percent: bool = False,
              height: int = 480) -> go.Figure:
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
    # The legend goes below the axis: above the plot it wraps into the title at half
    # width.
    fig.update_layout(barmode="group", bargap=0.25,
                      legend=dict(orientation="h", yanchor="top", y=-0.3, x=0,
                                  xanchor="left", font=dict(size=TICK_FONT)))
    fig.update_xaxes(title=dict(text="layer L, head H"), type="category",
                     tickfont=dict(size=TICK_FONT))
    fig.update_yaxes(title=dict(text=y_title), rangemode="tozero",
                     tickformat=".0%" if percent else None)
    if percent:
        fig.update_yaxes(range=[0, 1.1])
    return titled(fig, title, height)
