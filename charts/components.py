"""What each part of a model costs: parameters and FLOPs per token per component, and
every module's shapes, straight from llama_core.inspect's formulas (no model trained,
none built except on PyTorch's meta device)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from charts.palette import colour, legend_below
from llama_core import inspect as lc_inspect
from llama_core.config import ModelConfig, model_from_dict
from llama_core.errors import UserError
from llama_core.lab.plain_text import plotly_literal


def config_of(model_config: dict | ModelConfig | None) -> ModelConfig | None:
    """A stored model config as a ModelConfig; None for an old or damaged row."""
    if isinstance(model_config, ModelConfig):
        return model_config
    try:
        return model_from_dict(model_config)
    except (UserError, TypeError):
        return None


def train_flops_per_token(model_config: dict | ModelConfig | None) -> float | None:
    """Training FLOPs per token (3 x forward) of a stored config; None if it is not a
    valid config."""
    cfg = config_of(model_config)
    if cfg is None:
        return None
    return float(lc_inspect.flops_per_token(cfg)["training_flops_per_token"])


# --- One model, as Build & train shows it -------------------------------------------

# (key, what a student reads, which param_formula / flops_per_token entries it covers)
PARTS = [
    ("embedding", "token embedding", "embedding", None),
    ("positions", "position table", "positions", None),
    ("attention_projections", "attention q,k,v,o", "attention", "attention_projections"),
    ("attention_scores", "attention scores", None, "attention_scores"),
    ("feed_forward", "feed-forward", "feed_forward", "feed_forward"),
    ("norms", "norms", "norms", None),
    ("head", "output head", "head", "head"),
]


def parameter_table(cfg: ModelConfig) -> pd.DataFrame:
    """One row per part of the model: parameters (scalars), share of all parameters,
    and forward FLOPs per token (None for element-wise parts, which the count leaves
    out), then a total row."""
    params = lc_inspect.param_formula(cfg)
    flops = lc_inspect.flops_per_token(cfg)
    total = params["total"]
    rows = []
    for key, label, p_key, f_key in PARTS:
        p = params[p_key] if p_key else 0
        rows.append({"part": key, "component": label, "parameters": p,
                     "share": p / total if total else 0.0,
                     "forward FLOPs per token": flops[f_key] if f_key else None})
    rows.append({"part": "total", "component": "total", "parameters": total, "share": 1.0,
                 "forward FLOPs per token": flops["forward_total"]})
    return pd.DataFrame(rows)


def shapes_table(model_config: dict, batch_size: int) -> pd.DataFrame:
    """llama_core.inspect.module_shapes for one (batch_size, context_window) batch,
    computed on PyTorch's meta device: shapes propagate exactly as on the CPU, but no
    weights are allocated and no arithmetic is done, so it is instant for any size."""
    import torch

    from llama_core.model import Llama

    cfg = model_from_dict(model_config)
    with torch.device("meta"):
        model = Llama(cfg)
    idx = torch.zeros((batch_size, cfg.context_window), dtype=torch.long, device="meta")
    df = lc_inspect.module_shapes(model, idx)
    return df.rename(columns={"input_shape": "input shape", "output_shape": "output shape"})


# --- Several variants, as Ablations shows them --------------------------------------

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
    per variant."""
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
    fig = legend_below(go.Figure(), "variant", "parameters (scalars)", height=380)
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
