"""Gradient and activation health, layer by layer: each layer's gradient norm and the
residual stream's RMS after it, from the per-layer records every evaluation stores.
A norm spans orders of magnitude, so means are geometric and axes logarithmic."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from charts.bands import half_width, variant_order
from charts.palette import FONT_SIZE, colour, placeholder, rgba
from llama_core.lab.plain_text import plotly_literal
from llama_core.lab.sweeps import BASELINE


def health_frame(runs: Sequence, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run, step and layer: gradient norm of the layer's parameters (last backward
    pass before the evaluation) and the residual stream's RMS after the layer."""
    rows = []
    names = {r.id: (r.name, r.seed) for r in runs}
    for _, m in metrics.iterrows():
        extra = m.get("extra")
        if not isinstance(extra, dict) or m["run_id"] not in names:
            continue
        grads = extra.get("grad_norm_per_layer") or []
        rms = extra.get("residual_rms_per_layer") or []
        variant, seed = names[m["run_id"]]
        for layer in range(max(len(grads), len(rms))):
            rows.append({"variant": variant, "run_id": m["run_id"], "seed": seed,
                         "step": int(m["step"]), "layer": layer,
                         "grad_norm": grads[layer] if layer < len(grads) else None,
                         "residual_rms": rms[layer] if layer < len(rms) else None})
    return pd.DataFrame(rows, columns=["variant", "run_id", "seed", "step", "layer",
                                       "grad_norm", "residual_rms"])


HEALTH = {"grad_norm": "gradient norm of the layer's weights",
          "residual_rms": "residual stream RMS after the layer"}


def geometric_band(values: Sequence[float]) -> tuple[float, float, float]:
    """Geometric mean of positive values and its 95% band, computed on their logs (a
    norm spans orders of magnitude and is never negative, so its band must not be)."""
    logs = [math.log(v) for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not logs:
        return float("nan"), float("nan"), float("nan")
    m = float(np.mean(logs))
    hw = half_width(logs)
    if math.isnan(hw):
        return math.exp(m), float("nan"), float("nan")
    return math.exp(m), math.exp(m - hw), math.exp(m + hw)


def last_step(health: pd.DataFrame) -> pd.DataFrame:
    last = health.groupby("run_id")["step"].transform("max")
    return health[health["step"] == last]


def depth_summary(health: pd.DataFrame) -> pd.DataFrame:
    """Per variant, in numbers: how much the residual stream's RMS grows from the first
    layer to the last at the end of training, and the gradient norm of the first and
    last layer at the first and last evaluation (geometric means over seeds)."""
    rows = []
    for variant in variant_order(health["variant"]):
        v = health[health["variant"] == variant]
        top = int(v["layer"].max())
        first = v[v["step"] == v.groupby("run_id")["step"].transform("min")]
        end = last_step(v)

        def gm(frame, layer, key):
            return geometric_band(frame[frame["layer"] == layer][key].tolist())[0]
        rows.append({
            "variant": variant, "layers": top + 1,
            "residual RMS growth, first → last layer (end)":
                gm(end, top, "residual_rms") / gm(end, 0, "residual_rms"),
            "grad norm, first layer (first eval)": gm(first, 0, "grad_norm"),
            "grad norm, last layer (first eval)": gm(first, top, "grad_norm"),
            "grad norm, first layer (end)": gm(end, 0, "grad_norm"),
            "grad norm, last layer (end)": gm(end, top, "grad_norm"),
        })
    return pd.DataFrame(rows)


def depth_profile_figure(health: pd.DataFrame, step: int | None = None) -> go.Figure:
    """Two panels against layer index: gradient norm and residual RMS at one step
    (default each run's last), geometric mean over seeds with a 95% band, one line per
    variant. Log scale: gradients that vanish or explode span orders of magnitude."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(HEALTH.values()),
                        horizontal_spacing=0.1)
    fig.update_layout(height=420, font=dict(size=FONT_SIZE), hovermode="x unified",
                      margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25, x=0))
    if health.empty:
        return placeholder(fig, "No per-layer records in these runs.")
    h = last_step(health) if step is None else health[health["step"] == step]
    for i, variant in enumerate(variant_order(h["variant"])):
        v = h[h["variant"] == variant]
        c = colour(i)
        shown = plotly_literal(variant)  # run names are plain text, not Plotly markup
        for col, key in enumerate(HEALTH, start=1):
            stats = v.groupby("layer")[key].apply(lambda s: geometric_band(s.tolist()))
            layers = stats.index.to_numpy()
            mean = np.array([t[0] for t in stats])
            low = np.array([t[1] for t in stats])
            high = np.array([t[2] for t in stats])
            if not np.isnan(low).all():
                fig.add_trace(go.Scatter(x=layers, y=high, mode="lines",
                                         line=dict(width=0, color=c), showlegend=False,
                                         hoverinfo="skip"), row=1, col=col)
                fig.add_trace(go.Scatter(x=layers, y=low, mode="lines",
                                         line=dict(width=0, color=c), fill="tonexty",
                                         fillcolor=rgba(c, 0.2), showlegend=False,
                                         hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(x=layers, y=mean, mode="lines+markers",
                                     name=shown, legendgroup=variant, showlegend=col == 1,
                                     line=dict(color=c, width=4 if variant == BASELINE else 3),
                                     hovertemplate="%{y:.3g}<extra>"
                                     + plotly_literal(variant[:30]) + "</extra>"),
                          row=1, col=col)
    fig.update_xaxes(title_text="layer (0 = nearest the input)", dtick=1)
    fig.update_yaxes(type="log")
    return fig


def health_over_steps_figure(health: pd.DataFrame, variants: Sequence[str],
                             key: str = "grad_norm") -> go.Figure:
    """One panel per variant (side by side, same y scale): ``key`` per layer over
    training steps, mean over seeds, layers coloured from light (first) to dark
    (last)."""
    variants = list(variants)
    fig = make_subplots(rows=1, cols=max(1, len(variants)), shared_yaxes=True,
                        subplot_titles=[plotly_literal(v) for v in variants] or [""],
                        horizontal_spacing=0.05)
    fig.update_layout(height=400, font=dict(size=FONT_SIZE), hovermode="closest",
                      margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25, x=0, title="layer "))
    if health.empty or not variants:
        return placeholder(fig, "No per-layer records in these runs.")
    n_layers = int(health["layer"].max()) + 1
    shades = _sequential(n_layers)
    for col, variant in enumerate(variants, start=1):
        v = health[health["variant"] == variant]
        for layer in range(n_layers):
            g = v[v["layer"] == layer].groupby("step")[key].mean()
            if g.empty:
                continue
            fig.add_trace(go.Scatter(x=g.index, y=g.to_numpy(), mode="lines+markers",
                                     name=str(layer), legendgroup=str(layer),
                                     showlegend=col == 1,
                                     line=dict(color=shades[layer], width=2),
                                     marker=dict(size=5),
                                     hovertemplate=f"layer {layer}: %{{y:.3g}}<extra>"
                                     f"{plotly_literal(variant[:30])}</extra>"),
                          row=1, col=col)
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(type="log", title_text=HEALTH[key], col=1)
    return fig


def _sequential(n: int) -> list[str]:
    """n blues from light to dark (layer 0 light)."""
    lo, hi = np.array([158, 202, 225]), np.array([8, 48, 107])
    if n <= 1:
        return ["#08306b"]
    return ["#%02x%02x%02x" % tuple(int(v) for v in lo + (hi - lo) * i / (n - 1))
            for i in range(n)]
