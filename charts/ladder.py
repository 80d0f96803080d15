"""The ladder's chart and table: each rung's curve from the class set and from a
student's own runs (one colour per rung, the class set dotted beside yours), and our
numbers per rung. ``titles`` maps each ladder preset, in rung order, to the title a
student reads ("3. + one RoPE attention head, no mask")."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from charts.bands import BAND_COLUMNS, half_width, seed_bands, seed_curves
from charts.palette import colour
from llama_core import inspect as lc_inspect
from llama_core.presets import build_configs

CLASS_SET = "class set"
YOURS = "yours"


def rung_bands(sources: Sequence[tuple[str, Sequence, pd.DataFrame]],
               titles: dict[str, str], x: str,
               left_out: str | None = None) -> pd.DataFrame:
    """charts.bands.seed_bands of validation loss, one variant per rung and source.

    ``sources`` are (suffix, runs, their metrics frame), e.g. the class set's and the
    student's; each variant is named "<rung title> · <suffix>", in rung order.
    ``left_out`` names a rung to leave out (the one that reads the answer)."""
    frames = []
    for suffix, runs, metrics in sources:
        curves = seed_curves(runs, metrics)
        curves["variant"] = curves["variant"].map(lambda n: f"{titles[n]} · {suffix}")
        frames.append(curves)
    if not frames:
        return pd.DataFrame(columns=BAND_COLUMNS)
    curves = pd.concat(frames, ignore_index=True)
    if left_out:
        curves = curves[~curves["variant"].str.startswith(f"{titles[left_out]} · ")]
    order = sorted(curves["variant"].unique(), key=lambda v: (v.split(".")[0], v))
    curves["variant"] = pd.Categorical(curves["variant"], order)
    curves = curves.sort_values(["variant", "step"])
    curves["variant"] = curves["variant"].astype(str)
    return seed_bands(curves, x, "val_loss")


def rung_styles(titles: dict[str, str], dotted_class_set: bool) -> dict[str, dict]:
    """band_figure styles: a rung's colour for both its sources, the class set dotted
    when the student's own runs are drawn beside it."""
    styles = {}
    for i, title in enumerate(titles.values()):
        styles[f"{title} · {CLASS_SET}"] = {"color": colour(i),
                                            **({"dash": "dot"} if dotted_class_set else {})}
        styles[f"{title} · {YOURS}"] = {"color": colour(i)}
    return styles


def _text(value, spec: str) -> str:
    return "—" if value is None or value != value else format(value, spec)


def rung_table(class_runs: Sequence, live: dict, titles: dict[str, str]) -> pd.DataFrame:
    """Per rung, indexed by its title: parameters, steps, the class set's final
    validation loss (mean ± 95% CI over its seeds) and speed, and, with ``live`` (rung
    -> the student's newest run of it), the student's loss and run. Numbers as text."""
    by_rung: dict[str, list] = {}
    for r in class_runs:
        by_rung.setdefault(r.name, []).append(r)
    rows = []
    for rung, title in titles.items():
        model, _ = build_configs(rung)
        rs = [r for r in by_rung.get(rung, []) if r.final_val_loss is not None]
        vals = [r.final_val_loss for r in rs]
        hw = half_width(vals)
        mine = live.get(rung)
        steps = rs[0].steps if rs else None
        rows.append({
            "rung": title,
            "parameters": f"{rs[0].params if rs else lc_inspect.param_formula(model)['total']:,}",
            "steps": "—" if steps is None or steps != steps else f"{int(steps):,}",
            "val loss, class set (mean ± 95% CI)": (
                "—" if not vals else f"{sum(vals) / len(vals):.3f}"
                + ("" if hw != hw else f" ± {hw:.3f}") + f" (n={len(vals)})"),
            "val loss, yours": _text(None if mine is None else mine.final_val_loss, ".3f"),
            "your run": "" if mine is None else f"{mine.id} · {mine.status} · "
                                                f"{mine.steps} steps",
            "tokens/s (class set, 1 thread)": _text(
                sum(r.tokens_per_s or 0 for r in rs) / len(rs) if rs else None, ",.0f"),
        })
    table = pd.DataFrame(rows)
    if not live:
        table = table.drop(columns=["val loss, yours", "your run"])
    return table.set_index("rung")
