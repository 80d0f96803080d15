"""The live loss chart of one run: every training step's loss as light points, their
moving average as a bold line, and the validation loss at each evaluation.

Why both training curves: one batch is a small random sample, so a single step's loss
scatters; the average shows the trend, the points show that the scatter is real. The
average is centred (each step with the steps either side of it), so it does not lag a
falling loss; at the newest steps it has only the past to average. Validation loss is
measured on fixed held-out batches with dropout off, so it has no such scatter.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go

from charts.loss import check_axes, downsample, loss_layout, mark_guessing
from charts.palette import (HOVER_FORMAT, LOSS_UNIT, METRICS, TRAIN_COLOUR, VAL_COLOUR,
                            placeholder)

SMOOTH_STEPS = 21  # the moving average's window, in steps, centred on each step
RAW_NAME = "training loss, each step"
SMOOTH_NAME = METRICS["train_loss"]  # the bold line is what "training loss" means here
LIVE_HEIGHT = 380  # fits beside the run's status on a 1280 x 720 projector


def step_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """The store's ``(step, seconds, loss)`` rows as a frame, with the moving average
    of the ``SMOOTH_STEPS`` finite losses centred on each step in ``smooth``."""
    df = pd.DataFrame(list(rows), columns=["step", "seconds", "loss"]).astype("float64")
    df["smooth"] = df["loss"].rolling(SMOOTH_STEPS, min_periods=1, center=True).mean()
    return df


def live_loss_figure(steps: pd.DataFrame, evals: pd.DataFrame, x: str = "step",
                     vocab_size: int | None = None, height: int = LIVE_HEIGHT,
                     empty_text: str = "The curve starts at the first step.",
                     loss_unit: str = LOSS_UNIT) -> go.Figure:
    """One run's loss against ``x`` ("step" or "seconds").

    ``steps`` is :func:`step_frame`'s; ``evals`` is charts.loss.curve_frame of the
    run's evaluations. Traces, in order: the smoothed training loss ("training loss"),
    the validation loss, then every step's loss. A run without per-step rows (trained
    before they were kept) shows its evaluations' training loss as before. ``loss_unit``
    titles the y axis (nats per token for a byte-pair run)."""
    check_axes(x)
    fig = go.Figure()
    loss_layout(fig, x, f"loss ({loss_unit})", height=height)
    per = loss_unit.replace(" per ", "/").replace("character", "char")  # for hovers
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0,
                                  xanchor="left"), margin=dict(l=10, r=10, t=30, b=10))
    val = evals[evals["val_loss"].notna() & evals[x].notna()] if not evals.empty else evals
    has_steps = not steps.empty and steps["loss"].notna().any()
    if not has_steps and (val.empty and (evals.empty or evals["train_loss"].isna().all())):
        return placeholder(fig, empty_text)

    if has_steps:
        smooth = downsample(steps[steps[x].notna()])
        fig.add_trace(go.Scatter(
            x=smooth[x], y=smooth["smooth"], name=SMOOTH_NAME, mode="lines",
            line=dict(color=TRAIN_COLOUR, width=4),
            hovertemplate=f"average of {SMOOTH_STEPS} steps around it: %{{y:.3f}} "
                          f"{per}<extra></extra>"))
    else:
        train = evals[evals["train_loss"].notna() & evals[x].notna()]
        fig.add_trace(go.Scatter(
            x=train[x], y=train["train_loss"], name=SMOOTH_NAME, mode="lines+markers",
            line=dict(color=TRAIN_COLOUR, width=3, dash="dot"), marker=dict(size=8),
            hovertemplate=f"training loss: %{{y:.3f}} {per}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=val[x], y=val["val_loss"], name=METRICS["val_loss"], mode="lines+markers",
        line=dict(color=VAL_COLOUR, width=3), marker=dict(size=10),
        hovertemplate=f"validation loss: %{{y:.3f}} {per}<extra></extra>"))
    if has_steps:
        raw = downsample(steps[steps["loss"].notna() & steps[x].notna()])
        fig.add_trace(go.Scatter(
            x=raw[x], y=raw["loss"], name=RAW_NAME, mode="markers",
            marker=dict(color=TRAIN_COLOUR, size=4, opacity=0.3),
            hovertemplate=f"this step's batch: %{{y:.3f}} {per}<extra></extra>"))
        fig.data = (fig.data[2], fig.data[0], fig.data[1])  # points under the lines
    fig.update_xaxes(hoverformat=HOVER_FORMAT[x])
    guess = mark_guessing(fig, vocab_size)
    if guess is not None:
        top = _top(steps, val, guess)
        fig.update_yaxes(range=[0, top])
    return fig


def _top(steps: pd.DataFrame, val: pd.DataFrame, guess: float) -> float:
    """Room for random guessing and the curves, but a blow-up (hundreds of nats) is
    clipped at 3 x ln(vocab) so the learning part stays readable; hover shows it."""
    values = [guess]
    if not steps.empty:
        values.append(float(steps["loss"].max(skipna=True) or 0.0))
    if not val.empty:
        values.append(float(val["val_loss"].max()))
    top = max(v for v in values if v == v)
    return min(top, 3 * guess) * 1.08


def starting_line_figure(vocab_size: int, steps: int | None, loss_unit: str = LOSS_UNIT,
                         height: int = 260) -> go.Figure:
    """The live chart before Launch: empty axes with the line every curve starts at,
    ln(vocabulary), the loss of guessing each token with equal probability. (Drawn on
    the builder, it also has the browser load the chart library before the click, so
    the first point of a launched run is not kept waiting for it.)"""
    fig = go.Figure()
    loss_layout(fig, "step", f"loss ({loss_unit})", height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=30, b=10), showlegend=False)
    guess = mark_guessing(fig, vocab_size)
    if steps:  # a run on the clock has no step count to show
        fig.update_xaxes(range=[0, int(steps)])
    fig.update_yaxes(range=[0, 1.2 * guess] if guess else [0, 1])
    fig.add_annotation(text="Launch, and the training loss starts near this line",
                       x=0.5, y=0.35, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#555"))
    return fig
