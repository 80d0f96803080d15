"""A comparison as one self-contained HTML file: interactive plotly loss curves (the
plotly library inlined, so the file opens offline and can be mailed or put on a class
page), the runs' numbers, the settings in which they differ, the full configs, the
pooled per-variant summary and the last generated sample of each run.

No streamlit here: the dashboard offers the bytes as a download, and the command line
or a notebook can write them to a file (``write_report``). Everything a student typed
(run names, owners, samples, errors) is shown as typed: HTML-escaped in the page, and
escaped for Plotly in the charts, whose labels read HTML tags of their own
(llama_core.lab.plain_text).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Iterable

import plotly.graph_objects as go

from .sweeps import summarize
from ..errors import UserError
from .plain_text import html_literal, plotly_literal
from .store import Run, RunStore, check_run_id

MAX_RUNS = 50
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#111418;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #dde3ea}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
td,th{border:1px solid #dde3ea;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:.6rem;white-space:pre-wrap;font-size:.85rem}
.diff{background:#fff3c4}.muted{color:#5a6472;font-size:.85rem}
"""


_e = html_literal


def _num(x, fmt: str = "{:.4f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return fmt.format(x)


def _table(header: list[str], rows: list[list[str]], classes: list[list[str]] | None = None
           ) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        out.append("<tr>")
        for j, cell in enumerate(row):
            cls = classes[i][j] if classes else ""
            out.append(f'<td class="{cls}">{cell}</td>' if cls else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def loss_figure(store: RunStore, runs: list[Run], metric: str = "val_loss") -> go.Figure:
    fig = go.Figure()
    for run in runs:
        rows = [m for m in store.metrics(run.id) if m.get(metric) is not None]
        fig.add_trace(go.Scatter(x=[m["step"] for m in rows], y=[m[metric] for m in rows],
                                 mode="lines+markers",
                                 name=plotly_literal(f"{run.id} · {run.name}"[:60])))
    fig.update_layout(title=f"{metric.replace('_', ' ')} by step", xaxis_title="step",
                      yaxis_title=metric.replace("_", " "), template="plotly_white",
                      height=460, legend=dict(orientation="h", y=-0.2))
    return fig


def differing_fields(runs: list[Run]) -> list[str]:
    """Config fields (model and training, seed excluded) whose values differ."""
    keys: list[str] = []
    for run in runs:
        for k in list(run.model_config) + list(run.train_config):
            if k not in keys:
                keys.append(k)
    out = []
    for k in keys:
        vals = {json.dumps(r.model_config.get(k, r.train_config.get(k)), sort_keys=True)
                for r in runs}
        if len(vals) > 1 and k != "seed":
            out.append(k)
    return out


def comparison_html(store: RunStore, run_ids: Iterable[str], title: str | None = None,
                    share_url: str | None = None, include_plotlyjs: bool | str = True) -> str:
    """The whole report as one HTML string (about 4 MB with plotly inlined)."""
    ids = [check_run_id(r) for r in dict.fromkeys(run_ids)]
    if not ids:
        raise UserError("Choose at least one run to put in the report.")
    if len(ids) > MAX_RUNS:
        raise UserError(f"A report holds at most {MAX_RUNS} runs; choose fewer.")
    runs = [store.get_run(r) for r in ids]
    title = title or f"Llama Lab comparison of {len(runs)} run(s)"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>",
             f"<p class='muted'>Made {_e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}"
             " by Llama Lab from its run store."]
    if share_url:  # a link only to a web address, never javascript: or data:
        link = str(share_url).lower().startswith(("http://", "https://"))
        parts.append(f" Live view: <a href='{_e(share_url)}'>{_e(share_url)}</a>" if link
                     else f" Live view: {_e(share_url)}")
    parts.append("</p>")

    parts.append("<h2>Loss curves</h2>")
    for i, metric in enumerate(("val_loss", "train_loss")):
        fig = loss_figure(store, runs, metric)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs if i == 0
                                 else False, div_id=f"loss-{metric}",
                                 config={"displaylogo": False}))

    parts.append("<h2>Numbers</h2>")
    header = ["run", "name", "owner", "seed", "status", "final val loss", "final train loss",
              "params", "steps", "tokens", "wall s", "device"]
    rows = [[_e(r.id), _e(r.name), _e(r.owner), _e(r.seed), _e(r.status),
             _num(r.final_val_loss), _num(r.final_train_loss), _num(r.params), _num(r.steps),
             _num(r.tokens), _num(r.wall_s, "{:.1f}"), _e(r.device)] for r in runs]
    parts.append(_table(header, rows))

    summary = summarize(runs)
    if summary:
        parts.append("<h2>Per variant (seeds pooled, 95% intervals)</h2>")
        parts.append(_table(
            ["variant", "seeds", "mean val loss", "± 95%", "vs baseline", "± 95%", "verdict"],
            [[_e(s["variant"]), _num(s["seeds"]), _num(s["mean"]), _num(s["ci95"]),
              _num(s["diff_vs_baseline"]), _num(s["diff_ci95"]), _e(s["verdict"])]
             for s in summary]))

    diff = differing_fields(runs)
    parts.append("<h2>Settings</h2>")
    parts.append("<p class='muted'>Highlighted rows differ between the runs"
                 + (f": {_e(', '.join(diff))}." if diff else " (none do, besides the seed).")
                 + "</p>")
    keys = []
    for r in runs:
        for k in list(r.model_config) + list(r.train_config):
            if k not in keys:
                keys.append(k)
    rows, classes = [], []
    for k in keys:
        vals = [r.model_config.get(k, r.train_config.get(k)) for r in runs]
        rows.append([_e(k)] + [_e(json.dumps(v)) for v in vals])
        classes.append(["diff" if k in diff else ""] * (len(runs) + 1))
    parts.append(_table(["setting"] + [r.id for r in runs], rows, classes))

    parts.append("<h2>Samples (the last one each run generated)</h2>")
    for r in runs:
        samples = store.samples(r.id)
        last = samples[-1] if samples else None
        parts.append(f"<h3>{_e(r.id)} · {_e(r.name)}"
                     + (f" <span class='muted'>step {_e(last['step'])}</span>" if last else "")
                     + "</h3>")
        parts.append(f"<pre>{_e(last['text']) if last else '(no sample)'}</pre>")
        if r.error:
            parts.append(f"<p class='muted'>{_e(r.error)}</p>")

    parts.append("<h2>Configs as JSON</h2><pre>"
                 + _e(json.dumps({r.id: {"model": r.model_config, "train": r.train_config}
                                  for r in runs}, indent=1, sort_keys=True)) + "</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(store: RunStore, run_ids: Iterable[str], path: str | Path, **kw) -> Path:
    p = Path(path)
    p.write_text(comparison_html(store, run_ids, **kw), encoding="utf-8")
    return p


__all__ = ["comparison_html", "write_report", "loss_figure", "differing_fields"]
