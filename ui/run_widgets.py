"""What the Build & train and Compare pages show about runs and configs.

The table builders here are pure (runs and configs in, pandas out) so they are tested
without a browser; the few streamlit helpers at the end only draw what they return.
Units are in every column name: loss in nats per character, seconds, tokens
(characters), FLOPs, parameters (scalars).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import fields
from typing import Any, Sequence

import pandas as pd

from llama_core.config import ModelConfig, TrainConfig, model_from_dict
from llama_core.errors import UserError
from llama_core import inspect as lc_inspect

MODEL_ORDER = [f.name for f in fields(ModelConfig)]
TRAIN_ORDER = [f.name for f in fields(TrainConfig)]


def short_label(run) -> str:
    """A run in legends and column headers: its id and name (ids are what URLs hold)."""
    name = str(run.name)
    return f"{run.id} · {name if len(name) <= 40 else name[:39] + '…'}"


def train_flops_per_token(model_config: dict | ModelConfig) -> float | None:
    """Training FLOPs per token (3 x forward) for a stored config; None if it is not a
    valid config (an old or damaged row)."""
    try:
        cfg = (model_config if isinstance(model_config, ModelConfig)
               else model_from_dict(model_config))
        return float(lc_inspect.flops_per_token(cfg)["training_flops_per_token"])
    except (UserError, TypeError):
        return None


# --- The model being built ----------------------------------------------------------

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
    out), then a total row. Straight from llama_core.inspect's formulas: no model is
    built."""
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


# --- Several runs -------------------------------------------------------------------

def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def differing_fields(runs: Sequence) -> pd.DataFrame:
    """Only the config fields whose values are not the same in every run.

    Rows: ``setting`` (field name), ``part`` (model or train), then one column per run
    (its short label) with the value as text. Fields follow ModelConfig's then
    TrainConfig's order; a field missing from a run reads "—"."""
    runs = list(runs)
    out = []
    for part, attr, order in (("model", "model_config", MODEL_ORDER),
                              ("train", "train_config", TRAIN_ORDER)):
        configs = [getattr(r, attr) or {} for r in runs]
        keys = list(order) + sorted({k for c in configs for k in c} - set(order))
        for key in keys:
            values = [c.get(key) for c in configs]
            if all(key not in c for c in configs):
                continue
            shown = [_show(v) for v in values]
            if len(set(shown)) > 1:
                out.append({"setting": key, "part": part,
                            **{short_label(r): s for r, s in zip(runs, shown)}})
    columns = ["setting", "part"] + [short_label(r) for r in runs]
    return pd.DataFrame(out, columns=columns)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def final_metrics_table(runs: Sequence, baseline: str | None = None,
                        latest: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per run: its final numbers, and its final validation loss minus the
    baseline's (negative = better than the baseline).

    A run still training has no final numbers yet: ``latest`` (run id -> its newest
    metric row) fills them in, and ``status`` says it is not over."""
    latest = latest or {}
    base = next((r for r in runs if r.id == baseline), None)

    def val(r):
        v = _num(r.final_val_loss)
        if v is None and r.id in latest:
            v = _num(latest[r.id].get("val_loss"))
        return v

    base_val = val(base) if base is not None else None
    rows = []
    for r in runs:
        last = latest.get(r.id, {})
        v = val(r)
        train_loss = _num(r.final_train_loss)
        if train_loss is None:
            train_loss = _num(last.get("train_loss"))
        wall = _num(r.wall_s)
        if wall is None:
            wall = _num(last.get("seconds"))
        rate = _num(r.tokens_per_s)
        if rate is None:
            rate = _num(last.get("tokens_per_s"))
        delta = None if v is None or base_val is None else v - base_val
        rows.append({
            "run": r.id, "name": r.name, "status": r.status,
            "baseline": r.id == baseline,
            "final val loss (nats/char)": v,
            "Δ val loss vs baseline (nats/char)": 0.0 if r.id == baseline and v is not None
            else delta,
            "final train loss (nats/char)": train_loss,
            "steps": int(r.steps or last.get("step") or 0),
            "tokens": int(r.tokens or last.get("tokens") or 0),
            "wall time (s)": wall,
            "tokens/s": rate,
            "parameters": r.params,
            "seed": r.seed,
        })
    return pd.DataFrame(rows)


# Rows of the side-by-side table: (column of final_metrics_table, how to show a value)
_SIDE_BY_SIDE = [
    ("status", str),
    ("final val loss (nats/char)", lambda v: f"{v:.3f}"),
    ("Δ val loss vs baseline (nats/char)", lambda v: f"{v:+.3f}"),
    ("final train loss (nats/char)", lambda v: f"{v:.3f}"),
    ("steps", lambda v: f"{int(v):,}"),
    ("tokens", lambda v: f"{int(v):,}"),
    ("wall time (s)", lambda v: f"{v:,.1f}"),
    ("tokens/s", lambda v: f"{v:,.0f}"),
    ("parameters", lambda v: f"{int(v):,}"),
    ("seed", lambda v: str(int(v))),
]


def side_by_side(table: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """:func:`final_metrics_table` turned on its side for reading runs against each
    other: one row per number (``metric``, with its unit), one column per run (headed
    ``labels[run id]``), values as text; "—" where unknown."""
    out = {"metric": [name for name, _ in _SIDE_BY_SIDE]}
    for _, row in table.iterrows():
        col = []
        for name, fmt in _SIDE_BY_SIDE:
            v = row.get(name)
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            col.append("—" if missing else fmt(v))
        out[labels.get(row["run"], row["run"])] = col
    return pd.DataFrame(out)


def seed_only_difference(diff: pd.DataFrame) -> bool:
    """True when the chosen runs differ in their seed and nothing else that matters."""
    settings = set(diff["setting"])
    return bool(settings) and settings <= {"seed", "threads", "device"} and "seed" in settings


# --- A live run ---------------------------------------------------------------------

def live_progress(run, last: dict | None, now: float | None = None) -> dict:
    """Where a running run is, estimated between evaluations.

    The store gets a metric row only at each evaluation, so between two of them the
    step is extrapolated from the last row's training rate and the time since it was
    written (run start + its ``seconds``). Returns fraction (0..1), step (estimated),
    total_steps, eta_s (None while unknown), tokens_per_s, elapsed_s and budget_s."""
    now = time.time() if now is None else now
    tc = run.train_config or {}
    total = int(tc.get("steps") or 1)
    budget = _num(tc.get("time_budget"))
    tokens_per_step = int(tc.get("batch_size") or 1) * int(
        (run.model_config or {}).get("context_window") or 1)
    elapsed = max(0.0, now - run.started) if run.started else 0.0
    step = float(last["step"]) if last else 0.0
    rate = _num(last.get("tokens_per_s")) if last else None
    steps_per_s = rate / tokens_per_step if rate else None
    if last and steps_per_s:
        since = max(0.0, elapsed - (_num(last.get("seconds")) or 0.0))
        step = min(float(total), step + since * steps_per_s)
    frac = step / total
    eta = (total - step) / steps_per_s if steps_per_s else None
    if budget:
        frac = max(frac, min(elapsed / budget, 1.0))
        left = max(budget - elapsed, 0.0)
        eta = left if eta is None else min(eta, left)
    return {"fraction": max(0.0, min(frac, 1.0)), "step": int(step), "total_steps": total,
            "eta_s": eta, "tokens_per_s": rate, "elapsed_s": elapsed, "budget_s": budget}


def duration(seconds: float | None) -> str:
    """'0.4 s', '45 s', '3 min 05 s', '1 h 02 min'; '—' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 9.95:
        return f"{round(seconds, 1):g} s"  # a tiny run should not read "0 s"
    s = int(round(seconds))
    if s < 100:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def rough_duration(seconds: float | None) -> str:
    """An estimate, short enough for a metric tile: '45 s', '12 min', '2.7 h'."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    if seconds < 99.5 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def si(x: float | None, unit: str = "") -> str:
    """1234567 -> '1.23 M' (with unit); '—' when unknown."""
    if x is None:
        return "—"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}".rstrip()
    return f"{x:.3g} {unit}".rstrip()


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
