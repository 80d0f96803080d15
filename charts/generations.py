"""The Llama generations as a page shows them: the released models' shapes, one row
each, with the attention kind spelled out and where every number was read."""

from __future__ import annotations

import pandas as pd

COLUMNS = {"name": "model", "d_model": "width", "n_layers": "layers", "n_heads": "heads",
           "n_kv_heads": "KV heads", "attention_kind": "attention",
           "rope_theta": "RoPE theta", "context": "context (tokens)",
           "vocab_size": "vocabulary (tokens)", "tied": "tied head", "source": "source"}


def generations_table(real: pd.DataFrame) -> pd.DataFrame:
    """real_models_frame's rows as a table for a reader: numbers with thousands
    separators (they are shown as text, so a wide table stays readable), indexed by
    model."""
    out = real[list(COLUMNS)].rename(columns=COLUMNS).copy()
    for col in ("width", "layers", "heads", "KV heads", "context (tokens)",
                "vocabulary (tokens)"):
        out[col] = [f"{int(v):,}" for v in out[col]]
    out["RoPE theta"] = [f"{v:,.0f}" for v in out["RoPE theta"]]
    out["tied head"] = ["yes" if v else "no" for v in out["tied head"]]
    return out.set_index("model")
