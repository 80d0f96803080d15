"""Runs read against each other on Compare: the settings in which they differ, and
their final numbers beside a pinned baseline's. Units are in every row name: loss in
nats per character, seconds, tokens (characters), parameters (scalars)."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any, Sequence

import pandas as pd

from charts.labels import short_label
from charts.numbers import finite
from llama_core.config import ModelConfig, TrainConfig, is_llama
from llama_core.lab.hf_runs import imported_from

MODEL_ORDER = [f.name for f in fields(ModelConfig)]
TRAIN_ORDER = [f.name for f in fields(TrainConfig)]
def default_baseline(runs: Sequence) -> str | None:
    """The run a comparison is read against unless the user pins another: the first
    all-Llama run (the modifications are measured from it), else the first run; runs
    trained here before imported ones (an imported model has no curve to measure)."""
    runs = list(runs)
    runs = [r for r in runs if imported_from(r) is None] or runs
    return next((r.id for r in runs if is_llama(r.model_config or {})),
                runs[0].id if runs else None)


def runs_overview(runs: Sequence) -> pd.DataFrame:
    """Every run in one table, to find ids by name."""
    return pd.DataFrame([{"run": r.id, "name": r.name, "status": r.status,
                          # text: an imported run has no seed of ours
                          "seed": "imported" if imported_from(r) else
                          ("—" if r.seed is None else str(r.seed)),
                          "final val loss (nats/char)": r.final_val_loss, "steps": r.steps,
                          "wall time (s)": r.wall_s} for r in runs])


def latest_metrics(metrics: pd.DataFrame) -> dict[str, dict]:
    """Run id -> its newest metric row, from the run store's metrics frame: a running
    run's numbers so far."""
    return {run_id: rows.iloc[-1].to_dict()
            for run_id, rows in metrics.groupby("run_id", sort=False) if len(rows)}


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


def seed_only_difference(diff: pd.DataFrame) -> bool:
    """True when the chosen runs differ in their seed and nothing else that matters."""
    settings = set(diff["setting"])
    return bool(settings) and settings <= {"seed", "threads", "device"} and "seed" in settings


def final_metrics_table(runs: Sequence, baseline: str | None = None,
                        latest: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per run: its final numbers, and its final validation loss minus the
    baseline's (negative = better than the baseline).

    A run still training has no final numbers yet: ``latest`` (run id -> its newest
    metric row) fills them in, and ``status`` says it is not over."""
    latest = latest or {}
    base = next((r for r in runs if r.id == baseline), None)

    def val(r):
        v = finite(r.final_val_loss)
        if v is None and r.id in latest:
            v = finite(latest[r.id].get("val_loss"))
        return v

    base_val = val(base) if base is not None else None
    rows = []
    for r in runs:
        last = latest.get(r.id, {})
        v = val(r)
        train_loss = finite(r.final_train_loss)
        if train_loss is None:
            train_loss = finite(last.get("train_loss"))
        wall = finite(r.wall_s)
        if wall is None:
            wall = finite(last.get("seconds"))
        rate = finite(r.tokens_per_s)
        if rate is None:
            rate = finite(last.get("tokens_per_s"))
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
