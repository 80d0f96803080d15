"""Paired runs over seeds as one curve per variant: the mean and its 95% band.

A "run" here is anything with the run store's fields (``llama_core.lab.store.Run``,
from the store or the class set): ``id``, ``name`` (the variant label), ``seed``,
``model_config``. One seed is not an experiment: the band is what makes a gap between
two curves mean something.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from charts.components import train_flops_per_token
from charts.palette import LOSS_UNIT, METRICS, X_AXES, colour, legend_below, placeholder, rgba
from llama_core.lab.plain_text import plotly_literal
from llama_core.lab.sweeps import BASELINE
from llama_core.stats import t_critical

HEIGHT = 480
BAND_COLUMNS = ["variant", "step", "x", "mean", "low", "high", "n"]


def variant_order(labels: Iterable[str]) -> list[str]:
    """Baseline first, then the variants in the order first seen."""
    labels = list(dict.fromkeys(labels))
    return sorted(labels, key=lambda s: (s != BASELINE, labels.index(s)))


def half_width(values: Sequence[float]) -> float:
    """95% t-interval half-width of the mean; NaN for fewer than two values."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n < 2:
        return float("nan")
    return t_critical(n - 1) * float(np.std(xs, ddof=1)) / math.sqrt(n)


def seed_curves(runs: Sequence, metrics: pd.DataFrame) -> pd.DataFrame:
    """Every run's evaluations as one long frame: variant, run_id, seed, step, tokens,
    seconds, flops, train_loss, val_loss (runs without metrics are left out)."""
    cols = ["variant", "run_id", "seed", "step", "tokens", "seconds", "flops",
            "train_loss", "val_loss"]
    parts = []
    for r in runs:
        m = metrics[metrics["run_id"] == r.id]
        if m.empty:
            continue
        fpt = train_flops_per_token(r.model_config)
        d = pd.DataFrame({
            "variant": r.name, "run_id": r.id, "seed": r.seed,
            "step": m["step"].astype(float).to_numpy(),
            "tokens": m["tokens"].astype(float).to_numpy(),
            "seconds": m["seconds"].astype(float).to_numpy(),
            "train_loss": m["train_loss"].astype(float).to_numpy(),
            "val_loss": m["val_loss"].astype(float).to_numpy(),
        })
        d["flops"] = d["tokens"] * fpt if fpt else float("nan")
        parts.append(d)
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def seed_bands(curves: pd.DataFrame, x: str = "step",
               metric: str = "val_loss") -> pd.DataFrame:
    """Per variant and evaluation step: the mean of ``metric`` over seeds, its 95%
    t-interval (low, high; NaN with one seed) and n. ``x`` is the mean over seeds of
    that step's x value (seeds differ in seconds, not in steps, tokens or FLOPs)."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    rows = []
    for variant in variant_order(curves["variant"]) if len(curves) else []:
        v = curves[curves["variant"] == variant]
        for step, g in v.groupby("step", sort=True):
            vals = g[metric].dropna().tolist()
            if not vals:
                continue
            mean = float(np.mean(vals))
            hw = half_width(vals)
            rows.append({"variant": variant, "step": step, "x": float(g[x].mean()),
                         "mean": mean, "low": mean - hw, "high": mean + hw,
                         "n": len(vals)})
    return pd.DataFrame(rows, columns=BAND_COLUMNS)


def band_figure(bands: pd.DataFrame, x: str = "step", metric: str = "val_loss",
                curves: pd.DataFrame | None = None, styles: dict | None = None,
                empty_text: str = "No evaluations yet.",
                height: int = HEIGHT) -> go.Figure:
    """Mean curve and a shaded 95% band over seeds per variant (baseline first and
    thickest). With ``curves``, each seed is drawn faintly too. ``styles`` maps a
    variant to line options (e.g. dash) and an optional legend ``name``. Variants are
    run names, plain text: escaped here for Plotly."""
    fig = legend_below(go.Figure(), X_AXES[x][1], f"{METRICS[metric]} ({LOSS_UNIT})",
                       height)
    if bands.empty:
        return placeholder(fig, empty_text)
    styles = styles or {}
    on_top = []
    for i, variant in enumerate(variant_order(bands["variant"])):
        b = bands[bands["variant"] == variant].sort_values("x")
        style = dict(styles.get(variant, {}))
        c = style.pop("color", colour(i))
        name = style.pop("name", variant)
        shown = plotly_literal(variant)  # run names are plain text, not Plotly markup
        n = int(b["n"].max())
        label = f"{plotly_literal(name)} ({n} seed{'s' if n != 1 else ''})"
        if n >= 2:
            fig.add_trace(go.Scatter(x=b["x"], y=b["high"], mode="lines",
                                     line=dict(width=0, color=c), showlegend=False,
                                     legendgroup=variant, hoverinfo="skip",
                                     name=f"{shown} upper"))
            fig.add_trace(go.Scatter(x=b["x"], y=b["low"], mode="lines",
                                     line=dict(width=0, color=c), fill="tonexty",
                                     fillcolor=rgba(c, 0.2), showlegend=False,
                                     legendgroup=variant, hoverinfo="skip",
                                     name=f"{shown} 95% band"))
        if curves is not None and n >= 2:
            for seed, s in curves[curves["variant"] == variant].groupby("seed"):
                s = s.sort_values("step")
                fig.add_trace(go.Scatter(x=s[x], y=s[metric], mode="lines",
                                         line=dict(width=1, color=c, dash="dot"),
                                         opacity=0.55, showlegend=False,
                                         legendgroup=variant, hoverinfo="skip",
                                         name=f"{shown} seed {seed}"))
        width = 5 if variant == BASELINE else 3
        mean = go.Scatter(
            x=b["x"], y=b["mean"], mode="lines+markers", name=label, legendgroup=variant,
            legendrank=1000 + i, line=dict(color=c, width=width, **style),
            marker=dict(size=6),
            hovertemplate=f"%{{y:.3f}} nats/char<extra>{plotly_literal(name[:40])}</extra>")
        if variant == BASELINE:
            on_top.append(mean)  # drawn last, so no variant hides it
        else:
            fig.add_trace(mean)
    for trace in on_top:
        fig.add_trace(trace)
    fig.update_xaxes(rangemode="tozero")
    return fig
