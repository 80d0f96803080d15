"""A classroom at a glance, for the Teacher page: every run in brief with its owner,
and what the class found, pooled into one distribution per variant (a table, and a box
plot with each run as a dot). Losses are in nats per character."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go

from charts.palette import colour
from llama_core.lab.hf_runs import imported_from
from llama_core.lab.plain_text import plotly_literal


def brief(run) -> str:
    """A run's shape, its modifications and its length (or, for an imported model,
    where it came from: it was not trained here), in one line."""
    m, t = run.model_config, run.train_config
    record = imported_from(run)
    length = (f", imported from {record.get('source')}"
              if record is not None else f", {t.get('steps')} steps"
              + (f", {t.get('time_budget'):g} s" if t.get("time_budget") else ""))
    return (f"{m.get('n_layers')}×{m.get('d_model')} ctx {m.get('context_window')} "
            f"{m.get('norm')}/{m.get('pos')}/{m.get('ffn')}"
            + ("" if m.get("causal", True) else " non-causal") + length)


def who(owner: str | None, names: dict[str, str]) -> str:
    """A run's owner as the teacher reads it: the name the student gave, and their id."""
    if owner is None:
        return "(command line)"
    return f"{names[owner]} ({owner})" if owner in names else owner


def room_frame(runs: Sequence, names: dict[str, str]) -> pd.DataFrame:
    """Every run in the room: owner, status, config in brief (its steps included), final
    validation loss, error; few enough columns to fit a 1280-px screen."""
    return pd.DataFrame([{
        "id": r.id, "owner": who(r.owner, names), "name": r.name, "seed": r.seed,
        "status": r.status, "config": brief(r), "val loss (nats/char)": r.final_val_loss,
        "error": r.error or ""} for r in runs])


ROOM_WIDTHS = {"id": 85, "owner": 95, "name": 95, "seed": 45, "status": 70, "config": 210,
               "val loss (nats/char)": 80}


def _number(x, fmt: str = ".4f") -> str:
    """A table cell: the value in nats/char to 4 decimals, or — when there is none."""
    return "—" if x is None else format(x, fmt)


FINDINGS_VARIANT = "variant (the settings that differ)"


def findings_frame(rows: list[dict]) -> pd.DataFrame:
    """llama_core.lab.classroom.class_findings rows as a table, numbers as text: each
    variant by the settings that set it apart, the names students gave its runs, and
    how many runs and seeds its mean pools."""
    return pd.DataFrame({
        FINDINGS_VARIANT: [r["settings"] for r in rows],
        "named": [r["names"] for r in rows],
        "runs": [r["runs"] for r in rows],
        "seeds": [r["seeds"] for r in rows],
        "mean val loss (nats/char)": [_number(r["mean"]) for r in rows],
        "± 95%": [_number(r["ci95"]) for r in rows],
        "vs baseline (nats/char)": [_number(r["diff_vs_baseline"], "+.4f") for r in rows],
        "± 95% (diff)": [_number(r["diff_ci95"]) for r in rows],
        "verdict": [r["verdict"] for r in rows]})


def _short(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def findings_figure(rows: list[dict], names: dict[str, str]) -> go.Figure:
    """One box per variant of its runs' final validation losses, every run a dot that
    names its owner (names are plain text, escaped here for Plotly)."""
    fig = go.Figure()
    for i, row in enumerate(rows):
        group = row["members"]
        fig.add_trace(go.Box(y=[r.final_val_loss for r in group],
                             name="<br>".join(plotly_literal(_short(part)) for part
                                              in row["settings"].split(", ")),
                             boxpoints="all", jitter=0.4, pointpos=0,
                             marker_color=colour(i), line_color=colour(i),
                             text=[plotly_literal(f"{r.id} · {who(r.owner, names)} · "
                                                  f"seed {r.seed}") for r in group],
                             hoverinfo="y+text"))
    fig.update_xaxes(tickangle=0)
    fig.update_layout(yaxis_title="final validation loss (nats/char)",
                      xaxis_title="variant (every dot is one run)", template="plotly_white",
                      height=380, showlegend=False, margin=dict(t=20))
    return fig
