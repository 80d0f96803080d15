"""Loss curves: one run's training and validation loss, and several runs against each
other, on any x axis of charts.palette.X_AXES. Fonts and line widths are sized to be
read from the back of a classroom."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go

from charts.components import train_flops_per_token
from charts.labels import short_label
from charts.units import tokenizer_of
from charts.palette import (BASELINE_MARK, FONT_SIZE, HOVER_FORMAT, INK, LOSS_UNIT,
                            METRIC_UNITS, METRICS, TOKEN_LOSS_UNIT, TRAIN_COLOUR, VAL_COLOUR,
                            X_AXES, colour, placeholder)
from llama_core.lab.plain_text import plotly_literal

HEIGHT = 460
MAX_POINTS = 2000  # per curve; more would switch plotly to WebGL and slow the page


def curve_frame(metrics: Sequence[dict] | pd.DataFrame,
                train_flops_per_token: float | None = None) -> pd.DataFrame:
    """A run's metric rows as a frame with every x column the charts offer.

    ``flops`` is tokens x ``train_flops_per_token`` (NaN when that is unknown)."""
    cols = ["step", "tokens", "seconds", "train_loss", "val_loss", "tokens_per_s"]
    df = pd.DataFrame(list(metrics) if not isinstance(metrics, pd.DataFrame) else metrics)
    for c in cols:
        if c not in df.columns:
            df[c] = float("nan")
    extras = df["extra"] if "extra" in df.columns else [None] * len(df)
    df = df[cols].copy()
    df["val_bpc"] = [e.get("val_bpc") if isinstance(e, dict) else None for e in extras]
    cols.append("val_bpc")
    for c in cols:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df = df.sort_values("step", kind="stable").reset_index(drop=True)
    df["flops"] = (df["tokens"] * float(train_flops_per_token)
                   if train_flops_per_token else float("nan"))
    return df


def run_series(runs: Sequence, metrics: pd.DataFrame) -> list[dict]:
    """:func:`compare_figure`'s series for ``runs``, from the run store's metrics frame
    (every run's rows, with a ``run_id`` column): each run's curve with its FLOPs and
    its tokenizer. A character run stored before bits per character were reported gets
    them from its loss (one token is one character: loss / ln 2)."""
    out = []
    for r in runs:
        frame = curve_frame(metrics[metrics["run_id"] == r.id],
                            train_flops_per_token(r.model_config))
        tokenizer = tokenizer_of(r)
        if tokenizer == "char":
            frame["val_bpc"] = frame["val_bpc"].fillna(frame["val_loss"] / math.log(2))
        out.append({"run_id": r.id, "label": short_label(r), "frame": frame,
                    "tokenizer": tokenizer})
    return out


def metric_unit(metric: str, tokenizers: Iterable[str] = ("char",)) -> str:
    """The unit of ``metric`` for runs with these tokenizers: a loss is per character
    only when every run reads characters."""
    if metric != "val_bpc" and any(t != "char" for t in tokenizers):
        return TOKEN_LOSS_UNIT
    return METRIC_UNITS[metric]


def downsample(df: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most ``max_points`` rows, evenly spaced, always keeping the last one."""
    n = len(df)
    if n <= max_points:
        return df
    stride = math.ceil(n / max_points)
    keep = list(range(0, n, stride))
    if keep[-1] != n - 1:
        keep.append(n - 1)
    return df.iloc[keep]


def check_axes(x: str, metric: str = "val_loss") -> None:
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")


def loss_layout(fig: go.Figure, x: str, y_title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        height=height,
        font=dict(size=FONT_SIZE),
        margin=dict(l=10, r=10, t=40, b=10),
        hovermode="x unified",
        legend=dict(font=dict(size=FONT_SIZE - 1, color=INK)),
    )
    title_font = dict(size=FONT_SIZE + 2, color=INK)
    tick_font = dict(size=FONT_SIZE - 1, color=INK)
    fig.update_xaxes(title=dict(text=X_AXES[x][1], font=title_font), tickfont=tick_font,
                     exponentformat="SI", showgrid=True, rangemode="tozero")
    fig.update_yaxes(title=dict(text=y_title, font=title_font), tickfont=tick_font,
                     showgrid=True, tickformat=".2f")
    return fig


def run_curves_figure(frame: pd.DataFrame, x: str = "step", vocab_size: int | None = None,
                      empty_text: str = "No evaluation yet.") -> go.Figure:
    """Training and validation loss of one run against ``x``.

    With ``vocab_size``, a dotted line marks ln(vocab): the loss of guessing every
    character with equal probability, where every model starts."""
    check_axes(x)
    fig = go.Figure()
    loss_layout(fig, x, f"loss ({LOSS_UNIT})")
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0,
                                  xanchor="left"))
    df = downsample(frame)
    if df.empty or df[["train_loss", "val_loss"]].isna().all().all():
        return placeholder(fig, empty_text)
    for metric, col, dash in (("train_loss", TRAIN_COLOUR, "dot"),
                              ("val_loss", VAL_COLOUR, "solid")):
        d = df[df[metric].notna() & df[x].notna()]
        fig.add_trace(go.Scatter(
            x=d[x], y=d[metric], name=METRICS[metric], mode="lines+markers",
            line=dict(color=col, width=3, dash=dash), marker=dict(size=8),
            hovertemplate=f"{METRICS[metric]}: %{{y:.3f}} nats/char<extra></extra>",
        ))
    fig.update_xaxes(hoverformat=HOVER_FORMAT[x])
    mark_guessing(fig, vocab_size)
    return fig


def mark_guessing(fig: go.Figure, vocab_size: int | None) -> float | None:
    """A dotted line at ln(vocab): the loss of guessing every character with equal
    probability, where every model starts. Returns that loss (None without a
    vocabulary)."""
    if not vocab_size or vocab_size <= 1:
        return None
    guess = math.log(vocab_size)
    fig.add_hline(y=guess, line=dict(color="#888", dash="dot", width=2),
                  annotation=dict(text=f"random guessing: ln {vocab_size} = {guess:.2f}",
                                  font=dict(size=FONT_SIZE - 2, color="#555")),
                  annotation_position="top right")
    return guess


def compare_figure(series: Iterable[dict], x: str = "step", metric: str = "val_loss",
                   baseline: str | None = None) -> go.Figure:
    """Several runs' ``metric`` against ``x``, one trace per run, in series order.

    Each series is ``{"run_id", "label", "frame"}`` (frame from :func:`curve_frame`);
    labels are plain text (escaped here for Plotly).
    The baseline run is drawn thick and on top, its name marked with a star; the others
    thinner. Trace names are the labels; each trace's ``meta`` is its run id."""
    check_axes(x, metric)
    fig = go.Figure()
    series = list(series)
    unit = metric_unit(metric, [s.get("tokenizer", "char") for s in series])
    loss_layout(fig, x, f"{METRICS[metric]} ({unit})", height=HEIGHT + 40)
    if not series:
        return placeholder(fig, "Pick runs to compare.")
    traces = []
    for i, s in enumerate(series):
        df = downsample(s["frame"])
        d = df[df[metric].notna() & df[x].notna()]
        is_base = s["run_id"] == baseline
        label = plotly_literal(s["label"])  # a run's name is whatever its owner typed
        name = f"{BASELINE_MARK} {label}" if is_base else label
        traces.append((is_base, go.Scatter(
            x=d[x], y=d[metric], name=name, meta=s["run_id"], mode="lines+markers",
            line=dict(color=colour(i), width=6 if is_base else 3),
            marker=dict(size=9 if is_base else 6),
            opacity=1.0 if is_base or baseline is None else 0.85,
            hovertemplate=f"%{{y:.3f}} {unit}<extra>{plotly_literal(s['label'][:40])}"
                          "</extra>",
        )))
    # Baseline last, so it is drawn on top of the others; legend keeps series order.
    for rank, (is_base, trace) in enumerate(traces):
        trace.legendrank = 1000 + rank
    for is_base, trace in sorted(traces, key=lambda t: t[0]):
        fig.add_trace(trace)
    fig.update_layout(hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0,
                                  xanchor="left",
                                  title=dict(text=f"{BASELINE_MARK} = baseline  "
                                             if baseline else "", side="left",
                                             font=dict(size=FONT_SIZE - 1, color=INK))),
                      margin=dict(l=10, r=10, t=20, b=10))
    fig.update_xaxes(hoverformat=HOVER_FORMAT[x])
    return fig
