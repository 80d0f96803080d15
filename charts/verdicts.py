"""The verdict table of a paired sweep, as a student reads it: mean final validation
loss ± 95% CI, the paired difference to the baseline ± 95% CI and the verdict in
words, with a warning beside any model that can see the future (its low loss is a
leak, not a win)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from llama_core.lab.store import COMPLETED
from llama_core.lab.sweeps import BASELINE
from llama_core.pitfalls import LEAKY_BUGS


def leaks(run) -> bool:
    """A model that can see the future (no causal mask, or a leaking bug)."""
    m = getattr(run, "model_config", None) or {}
    return bool((m.get("attention", True) and m.get("causal") is False)
                or m.get("bug") in LEAKY_BUGS)


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


def _pm(mean, half, fmt: str = ".3f", sign: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = format(mean, ("+" if sign else "") + fmt)
    return text if half is None else f"{text} ± {format(half, fmt)}"


def summary_frame(rows: list[dict], runs: Sequence) -> pd.DataFrame:
    """``llama_core.lab.sweeps.summarize`` rows with what a student compares beside
    them: parameters (and their difference to the baseline), mean training time and
    speed, and a note on leaks and bugs. Only runs that summarize counts (finished or
    stopped, with a loss) give times and speeds."""
    by_label: dict[str, list] = {}
    for r in runs:
        if r.status in COMPLETED and r.final_val_loss is not None:
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
    """The summary indexed by variant, every number as text: for a plain table that
    can be read from the back of a room, and by a screen reader."""
    def fmt(value, spec):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return format(value, spec)
    out = table.copy()
    specs = {"parameters": ",.0f", "Δ parameters": "+,.0f",
             "time (s)": ".1f", "tokens/s": ",.0f"}
    for col, spec in specs.items():
        if col in out:
            out[col] = [fmt(v, spec) for v in out[col]]
    if "note" in out and not out["note"].astype(bool).any():
        out = out.drop(columns=["note"])
    return out.set_index("variant")
