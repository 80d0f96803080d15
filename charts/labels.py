"""How a run and a model are named in pickers, legends, headers and captions. Names
are returned as typed: each medium escapes them (charts for Plotly, ui for Markdown)."""

from __future__ import annotations

from llama_core.config import ModelConfig
from llama_core.lab.hf_runs import imported_from


def short_label(run) -> str:
    """A run in legends and column headers: its id and name (ids are what URLs hold)."""
    name = str(run.name)
    return f"{run.id} · {name if len(name) <= 40 else name[:39] + '…'}"


def chip_label(run) -> str:
    """A run in a multiselect's chips, where space is short: name first (shortened),
    then seed and id (runs share names; the id tells them apart)."""
    name = str(run.name)
    return f"{name if len(name) <= 24 else name[:23] + '…'} · {origin(run)} · {run.id}"


def run_label(run) -> str:
    """A run in pickers and lists: id, name, seed (or "imported") and status."""
    return f"{run.id} · {run.name} · {origin(run)} · {run.status}"


def origin(run) -> str:
    """Where a run's weights came from, in two words: "seed 3" for a run trained here,
    "imported" for a model imported from Hugging Face (it has no seed of ours)."""
    if imported_from(run) is not None:
        return "imported"
    return f"seed {run.seed}" if run.seed is not None else "no seed"


def describe(cfg: ModelConfig) -> str:
    """The parts of a model a student looks into (attention, positions), in one line."""
    if not cfg.attention:
        return f"{cfg.n_layers} layers, no attention, context {cfg.context_window}"
    parts = [f"{cfg.n_layers} layers × {cfg.n_heads} heads", f"pos={cfg.pos}",
             "causal" if cfg.causal else "no causal mask",
             f"context {cfg.context_window}"]
    if cfg.bug != "none":
        parts.append(f"bug: {cfg.bug}")
    return ", ".join(parts)
