"""The Inference page's figures and tables: generation speed with and without the KV
cache, where the time goes (prefill, decode), cache memory per token for a trained run
beside the real Llamas, and multi-head, grouped-query and multi-query attention side by
side. Pure Plotly/pandas; the numbers come from llama_core (cache_speed, memory,
real_models)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.palette import FONT_SIZE, colour, titled
from llama_core.lab.plain_text import plotly_literal

KIB = 1024
RUN_SOURCE = "this run's config"
MODE_COLOURS = {True: colour(0), False: colour(1)}


def speed_figure(steps: pd.DataFrame, parts: pd.DataFrame, model_name: str,
                 unit: str = "characters") -> go.Figure:
    """Left: tokens per second against tokens generated, one line per mode. Right:
    prefill and decode seconds per mode, stacked. ``unit`` is what a token of the model
    is ("characters" or "tokens")."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.14,
                        subplot_titles=("speed as the text grows",
                                        "where the time goes"))
    for cached, frame in steps.groupby("cached", sort=False):
        fig.add_trace(go.Scatter(
            x=frame["tokens"], y=frame["tokens_per_s"], mode="lines+markers",
            marker=dict(size=4), name=str(frame["mode"].iloc[0]),
            line=dict(color=MODE_COLOURS[bool(cached)], width=3),
            hovertemplate="%{x} tokens generated: %{y:,.0f} tokens/s<extra></extra>"),
            row=1, col=1)
    labels = [str(m) for m in parts["mode"]]
    for part, name, opacity in (("prefill_s", "prefill (prompt + first token)", 1.0),
                                ("decode_s", "decode (every later token)", 0.55)):
        fig.add_trace(go.Bar(
            x=labels, y=parts[part] * 1000, name=name, opacity=opacity,
            marker_color=[MODE_COLOURS[bool(c)] for c in parts["cached"]],
            marker_pattern_shape="" if part == "prefill_s" else "/",
            hovertemplate="%{x}: %{y:,.1f} ms<extra>" + name + "</extra>"),
            row=1, col=2)
    fig.update_layout(barmode="stack",
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    fig.update_xaxes(title_text="tokens generated so far"
                     + (" (characters)" if unit == "characters" else ""), row=1, col=1)
    fig.update_yaxes(title_text="tokens per second", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="time (ms)", rangemode="tozero", row=1, col=2)
    titled(fig, f"Generation speed of {plotly_literal(model_name)}, greedy, one sequence",
           470)
    fig.update_layout(margin=dict(l=70, r=30, t=90, b=120))
    return fig


def cache_memory_frame(run_rows: list[dict], real: pd.DataFrame,
                       names: list[str]) -> pd.DataFrame:
    """One row per model: layers, KV heads, head size, bytes per value, context and KiB
    of KV cache per token (2 x layers x KV heads x head size x bytes), with its source;
    ``run_rows`` first, then the real models in ``names`` (rows of real_models_frame,
    at 2 bytes per value)."""
    rows = list(run_rows)
    for _, m in real[real["name"].isin(names)].iterrows():
        rows.append({"model": m["name"], "layers": m["n_layers"], "KV heads": m["n_kv_heads"],
                     "query heads": m["n_heads"], "head size": m["head_dim"],
                     "bytes per value": 2, "context": m["context"],
                     "cache_bytes_per_token": m["cache_bytes_per_token"],
                     "source": m["source"]})
    frame = pd.DataFrame(rows)
    frame["KiB per token"] = frame["cache_bytes_per_token"] / KIB
    frame["full context bytes"] = frame["cache_bytes_per_token"] * frame["context"]
    return frame


def cache_memory_figure(frame: pd.DataFrame) -> go.Figure:
    """KiB of KV cache per token, one bar per model, on a log axis (a classroom model and
    Llama 2 7B differ by hundreds of times)."""
    names = [plotly_literal(str(n)) for n in frame["model"]]
    ours = frame["source"] == RUN_SOURCE
    fig = go.Figure(go.Bar(
        y=names, x=frame["KiB per token"], orientation="h",
        marker_color=[colour(0) if o else colour(2) for o in ours],
        text=[f"{v:,.1f} KiB" for v in frame["KiB per token"]], textposition="outside",
        cliponaxis=False,
        hovertemplate="%{y}: %{x:,.2f} KiB per token<extra></extra>"))
    fig.update_xaxes(type="log", title_text="KV cache per token of one sequence (KiB, log scale)")
    fig.update_yaxes(autorange="reversed", title_text="")
    titled(fig, "KV cache memory per token: 2 · layers · KV heads · head size · bytes", 420)
    fig.update_layout(margin=dict(l=150, r=90, t=90, b=70), showlegend=False)
    return fig


def kinds_figure(table: pd.DataFrame) -> go.Figure:
    """Multi-head, grouped-query and multi-query side by side: final validation loss,
    cache per token and cached decode speed, one panel each (rows of ``table``: kind,
    val_loss, cache_kib, decode_tokens_per_s)."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.1,
                        subplot_titles=("final validation loss", "KV cache per token",
                                        "decode speed with the cache"))
    panels = (("val_loss", "nats per character", ".3f"), ("cache_kib", "KiB per token", ".2f"),
              ("decode_tokens_per_s", "tokens per second", ",.0f"))
    labels = [str(k) for k in table["kind"]]
    for col, (field, unit, fmt) in enumerate(panels, start=1):
        values = table[field]
        fig.add_trace(go.Bar(
            x=labels, y=values, marker_color=[colour(i) for i in range(len(table))],
            text=[("—" if v != v else format(v, fmt)) for v in values],
            textposition="outside", cliponaxis=False, showlegend=False,
            hovertemplate="%{x}: %{y:" + fmt + "} " + unit + "<extra></extra>"),
            row=1, col=col)
        fig.update_yaxes(title_text=unit, rangemode="tozero", row=1, col=col)
    titled(fig, "Multi-head, grouped-query and multi-query attention, same shape and seed",
           440)
    fig.update_layout(font=dict(size=FONT_SIZE - 1))
    return fig
