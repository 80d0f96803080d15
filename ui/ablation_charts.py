"""Tables and Plotly figures for the Ablations, Ladder and Pitfalls pages.

Pure functions of runs and metric frames (no streamlit), so they are tested without a
browser. A "run" here is anything with the run store's fields (``llama_core.lab.store.Run``,
from the store or the class set): ``id``, ``name`` (the variant label), ``seed``,
``model_config``, ``final_val_loss``... Units are in every axis and column: loss in
nats per character, steps, seconds of training, tokens (characters), FLOPs
(tokens x training FLOPs per token), parameters (scalars).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llama_core import inspect as lc_inspect
from llama_core.lab.sweeps import BASELINE
from llama_core.config import ModelConfig, model_from_dict
from llama_core.errors import UserError
from llama_core.stats import t_critical
from ui.loss_charts import colour  # one palette for every chart
from ui.plain_text import md_literal, plotly_literal

LOSS_UNIT = "nats per character"
X_AXES = {
    "step": ("steps", "training step"),
    "seconds": ("seconds", "training time (s)"),
    "flops": ("FLOPs", "training compute (FLOPs)"),
    "tokens": ("tokens", "tokens seen (characters)"),
}
METRICS = {"val_loss": "validation loss", "train_loss": "training loss"}
FONT_SIZE = 16
HEIGHT = 480


def rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def plot_config(filename: str) -> dict:
    """Plotly options for st.plotly_chart: the modebar always shown (the classroom
    config's toolbarMode=viewer hides Streamlit's menu, not Plotly's), and its camera
    button saves a PNG at twice the screen resolution under ``filename``."""
    return {"displayModeBar": True, "displaylogo": False,
            "modeBarButtonsToRemove": ["lasso2d", "select2d"],
            "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}}


def _layout(fig: go.Figure, x_title: str, y_title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(height=height, font=dict(size=FONT_SIZE),
                      margin=dict(l=10, r=10, t=30, b=10), hovermode="x unified",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0,
                                  xanchor="left", font=dict(size=FONT_SIZE - 1)))
    fig.update_xaxes(title=dict(text=x_title), showgrid=True, exponentformat="SI")
    fig.update_yaxes(title=dict(text=y_title), showgrid=True)
    return fig


def _placeholder(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper",
                       showarrow=False, font=dict(size=FONT_SIZE + 2, color="#555"))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


# --- Configs ------------------------------------------------------------------------

def config_of(run) -> ModelConfig | None:
    try:
        return model_from_dict(run.model_config)
    except (UserError, TypeError):
        return None


def train_flops_per_token(run) -> float | None:
    cfg = config_of(run)
    if cfg is None:
        return None
    return float(lc_inspect.flops_per_token(cfg)["training_flops_per_token"])


def leaks(run) -> bool:
    """A model that can see the future (no causal mask, or a leaking bug)."""
    m = getattr(run, "model_config", None) or {}
    return bool((m.get("attention", True) and m.get("causal") is False)
                or m.get("bug") in LEAKY_BUGS)


def variant_order(labels: Iterable[str]) -> list[str]:
    """Baseline first, then the variants in the order first seen."""
    labels = list(dict.fromkeys(labels))
    return sorted(labels, key=lambda s: (s != BASELINE, labels.index(s)))


# --- Mean and 95% band over seeds ---------------------------------------------------

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
        fpt = train_flops_per_token(r)
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
    return pd.DataFrame(rows, columns=["variant", "step", "x", "mean", "low", "high", "n"])


def band_figure(bands: pd.DataFrame, x: str = "step", metric: str = "val_loss",
                curves: pd.DataFrame | None = None, styles: dict | None = None,
                empty_text: str = "No evaluations yet.",
                height: int = HEIGHT) -> go.Figure:
    """Mean curve and a shaded 95% band over seeds per variant (baseline first and
    thickest). With ``curves``, each seed is drawn faintly too. ``styles`` maps a
    variant to line options (e.g. dash) and an optional legend ``name``. Variants are
    run names, plain text: escaped here for Plotly."""
    fig = _layout(go.Figure(), X_AXES[x][1], f"{METRICS[metric]} ({LOSS_UNIT})", height)
    if bands.empty:
        return _placeholder(fig, empty_text)
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


# --- The verdict table --------------------------------------------------------------

def _pm(mean, half, fmt: str = ".3f", sign: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = format(mean, ("+" if sign else "") + fmt)
    return text if half is None else f"{text} ± {format(half, fmt)}"


def summary_frame(rows: list[dict], runs: Sequence) -> pd.DataFrame:
    """``llama_core.lab.sweeps.summarize`` rows as the table a student reads: mean final
    validation loss ± 95% CI, paired Δ vs baseline ± 95% CI, the verdict in words,
    parameters (and their difference to the baseline), mean training time and speed."""
    by_label: dict[str, list] = {}
    for r in runs:
        if r.status in ("finished", "stopped") and r.final_val_loss is not None:
            by_label.setdefault(r.name, []).append(r)
    base_params = next((row["params"] for row in rows if row["variant"] == BASELINE), None)
    out = []
    for row in rows:
        rs = by_label.get(row["variant"], [])
        walls = [r.wall_s for r in rs if r.wall_s]
        speeds = [r.tokens_per_s for r in rs if r.tokens_per_s]
        p = row["params"]
        out.append({
            "variant": row["variant"],
            "seeds": row["seeds"],
            "val loss (mean ± 95% CI)": _pm(row["mean"], row["ci95"]),
            "Δ vs baseline (paired, ± 95% CI)": ("—" if row["variant"] == BASELINE else
                                                 _pm(row["diff_vs_baseline"],
                                                     row["diff_ci95"], sign=True)),
            "verdict": row["verdict"],
            "parameters": p,
            "Δ parameters": (None if p is None or base_params is None
                             or row["variant"] == BASELINE else p - base_params),
            "time (s)": float(np.mean(walls)) if walls else None,
            "tokens/s": float(np.mean(speeds)) if speeds else None,
            "note": leak_note(rs[0]) if rs else "",
        })
    return pd.DataFrame(out)


def summary_display(table: pd.DataFrame) -> pd.DataFrame:
    """The summary with every number as text, for st.table (plain HTML: readable from
    the back of a room, and by a screen reader)."""
    def fmt(value, spec):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return format(value, spec)
    out = table.copy()
    out["variant"] = [md_literal(v) for v in out["variant"]]  # st.table reads Markdown
    specs = {"parameters": ",.0f", "Δ parameters": "+,.0f",
             "time (s)": ".1f", "tokens/s": ",.0f"}
    for col, spec in specs.items():
        if col in out:
            out[col] = [fmt(v, spec) for v in out[col]]
    if "note" in out and not out["note"].astype(bool).any():
        out = out.drop(columns=["note"])
    return out.set_index("variant")


LEAKY_BUGS = ("norm_over_sequence", "mask_ones")


def leak_note(run) -> str:
    """A warning for a model that can see the future: its low loss is not a win."""
    m = getattr(run, "model_config", None) or {}
    if m.get("attention", True) and m.get("causal") is False:
        return "no causal mask: it reads the answer, so its low loss is a leak"
    if m.get("bug") in LEAKY_BUGS:
        return f"BUG {m['bug']}: the future leaks, so its loss is too good"
    if m.get("bug", "none") != "none":
        return f"BUG {m['bug']}"
    return ""


VERDICT_WORDS = {
    "better": "lower loss than the baseline, and the paired 95% interval excludes zero",
    "worse": "higher loss than the baseline, and the paired 95% interval excludes zero",
    "within seed noise": "the paired 95% interval includes zero: no difference shown",
}


# --- Parameters and FLOPs per component ---------------------------------------------

PARAM_ROWS = [("embedding", "token embedding"), ("positions", "learned positions"),
              ("attention", "attention (wq, wk, wv, wo)"), ("feed_forward", "feed-forward"),
              ("norms", "norm weights"), ("head", "output head"), ("total", "total")]
FLOP_ROWS = [("attention_projections", "attention projections"),
             ("attention_scores", "attention scores (q·k, weights·v)"),
             ("feed_forward", "feed-forward"), ("head", "output head"),
             ("forward_total", "forward total"),
             ("training_flops_per_token", "training (3 × forward)")]


def components_frame(configs: dict[str, ModelConfig]) -> pd.DataFrame:
    """Parameters per component and forward FLOPs per token per component, one column
    per variant, straight from llama_core.inspect's formulas."""
    rows = []
    params = {k: lc_inspect.param_formula(c) for k, c in configs.items()}
    flops = {k: lc_inspect.flops_per_token(c) for k, c in configs.items()}
    for key, label in PARAM_ROWS:
        rows.append({"quantity": "parameters", "component": label,
                     **{k: int(params[k][key]) for k in configs}})
    for key, label in FLOP_ROWS:
        rows.append({"quantity": "FLOPs per token", "component": label,
                     **{k: int(flops[k][key]) for k in configs}})
    return pd.DataFrame(rows)


def params_figure(configs: dict[str, ModelConfig]) -> go.Figure:
    """Stacked bars: each variant's parameters by component."""
    fig = _layout(go.Figure(), "variant", "parameters (scalars)", height=380)
    fig.update_layout(barmode="stack", hovermode="closest",
                      legend=dict(orientation="h", y=-0.35))
    labels = list(configs)
    params = {k: lc_inspect.param_formula(c) for k, c in configs.items()}
    ticks = [plotly_literal(k) for k in labels]  # variant names are plain text
    for i, (key, label) in enumerate(PARAM_ROWS[:-1]):
        values = [params[k][key] for k in labels]
        if not any(values):
            continue
        fig.add_trace(go.Bar(x=ticks, y=values, name=label, marker_color=colour(i),
                             hovertemplate="%{y:,} parameters<extra>" + label + "</extra>"))
    fig.update_xaxes(title=None)
    return fig


# --- Gradient and activation health -------------------------------------------------

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
        return _placeholder(fig, "No per-layer records in these runs.")
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
        return _placeholder(fig, "No per-layer records in these runs.")
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


# --- Records ------------------------------------------------------------------------

def records_frame(runs: Sequence) -> pd.DataFrame:
    """Everything needed to reproduce each run: its configs in short, seed, code
    version, torch version, device and the corpus's sha256."""
    rows = []
    for r in runs:
        m, t = r.model_config or {}, r.train_config or {}
        rows.append({
            "run": r.id, "variant": r.name, "seed": r.seed, "status": r.status,
            "model": (f"{m.get('norm')}/{m.get('pos')}/{m.get('ffn')}"
                      f"{'' if m.get('causal', True) else ' no-mask'}"
                      f"{'' if m.get('attention', True) else ' no-attention'}"
                      f"{'' if m.get('bug', 'none') == 'none' else ' BUG ' + m.get('bug')}"
                      f" L{m.get('n_layers')} d{m.get('d_model')} h{m.get('n_heads')}"
                      f" T{m.get('context_window')}"),
            "training": (f"{t.get('steps')} steps, batch {t.get('batch_size')}, "
                         f"lr {t.get('lr')}, {t.get('corpus')}"),
            "code version": r.code_version, "torch": r.torch_version,
            "device": r.device, "threads": t.get("threads"),
            "data sha256": (r.data_sha256 or "")[:12],
            "final val loss": r.final_val_loss,
        })
    return pd.DataFrame(rows)


def configs_json(runs: Sequence) -> list[dict]:
    """The configs of each run with what identifies the code and data it ran on."""
    return [{"run_id": r.id, "name": r.name, "group": r.group, "seed": r.seed,
             "model_config": r.model_config, "train_config": r.train_config,
             "code_version": r.code_version, "torch_version": r.torch_version,
             "device": r.device, "data_sha256": r.data_sha256, "params": r.params,
             "final_val_loss": r.final_val_loss} for r in runs]


# --- The few streamlit helpers the three pages share --------------------------------

def show_chart(fig: go.Figure, key: str, filename: str) -> None:
    """Draw a figure with its modebar (and PNG download) always visible."""
    import streamlit as st
    st.plotly_chart(fig, key=key, width="stretch", config=plot_config(filename))


def resubmit(runs: Sequence, owner: str | None = None, group: str | None = None
             ) -> tuple[str, list[str]]:
    """Queue the same configs again (same seeds, names) as a new group: a record
    re-run. Returns (group, run ids)."""
    from llama_core.lab.sweeps import new_group_id
    from ui import state

    manager = state.job_manager()
    group = group or new_group_id()
    ids = [manager.submit(r.model_config, r.train_config, name=r.name, group=group,
                          owner=owner) for r in runs]
    return group, ids


def export_buttons(source, runs: Sequence, stem: str, key: str) -> None:
    """Download the comparison: metrics as CSV, configs as JSON, everything as JSON."""
    import json

    import streamlit as st

    ids = [r.id for r in runs]
    a, b, c = st.columns(3)
    a.download_button("Metrics (CSV)", source.export(ids, "csv"), file_name=f"{stem}-metrics.csv",
                      mime="text/csv", key=f"{key}_csv", icon=":material/download:",
                      on_click="ignore")
    b.download_button("Configs (JSON)", json.dumps(configs_json(runs), indent=1, default=str),
                      file_name=f"{stem}-configs.json", mime="application/json",
                      key=f"{key}_cfg", icon=":material/download:", on_click="ignore")
    c.download_button("Everything (JSON)", source.export(ids, "json"),
                      file_name=f"{stem}-runs.json", mime="application/json",
                      key=f"{key}_json", icon=":material/download:", on_click="ignore")
