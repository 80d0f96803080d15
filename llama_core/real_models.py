"""The real Llamas' shapes, each row with where its numbers come from.

The classroom presets ``llama-1`` ... ``llama-3.2`` (presets.py) copy what changed between
these generations at a size a laptop trains; this table is what they are copied from,
for pages that set a trained run beside the real thing (cache memory per token, the
attention kind, theta, context). Numbers are the released configs, not guesses: Hugging
Face config.json of Meta's checkpoints (``hidden_size``, ``num_hidden_layers``,
``num_attention_heads``, ``num_key_value_heads``, ``max_position_embeddings``,
``vocab_size``, ``rope_theta``, ``tie_word_embeddings``) and, for Llama 1, which had no
such file from Meta, its paper and Meta's reference code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from .memory import cache_bytes_per_token


@dataclass(frozen=True)
class RealModel:
    """One released model. ``context`` is the positions it was released for (Llama 3.2's
    131,072 are reached with llama3 RoPE scaling from 8,192); ``source`` names where
    every number of the row was read."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    context: int
    vocab_size: int
    rope_theta: float
    tied: bool
    source: str

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def attention_kind(self) -> str:
        if self.n_kv_heads == self.n_heads:
            return "multi-head"
        return "multi-query" if self.n_kv_heads == 1 else "grouped-query"

    def cache_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        """KV cache per token: 2 x layers x KV heads x head size x bytes (2 in 16-bit)."""
        return cache_bytes_per_token(self.n_layers, self.n_kv_heads, self.head_dim,
                                     bytes_per_value)


_HF = "config.json of meta-llama/{} on the Hugging Face Hub"

REAL_MODELS: list[RealModel] = [
    RealModel("Llama 1 7B", 4096, 32, 32, 32, 2048, 32000, 10000.0, False,
              "Touvron et al. 2023, LLaMA (arXiv:2302.13971), Table 2 and its 32k-token "
              "tokenizer; 2k context as Touvron et al. 2023, Llama 2 (arXiv:2307.09288), "
              "Table 1; theta 10,000 in Meta's llama/model.py precompute_freqs_cis"),
    RealModel("Llama 2 7B", 4096, 32, 32, 32, 4096, 32000, 10000.0, False,
              _HF.format("Llama-2-7b-hf")),
    RealModel("Llama 2 70B", 8192, 80, 64, 8, 4096, 32000, 10000.0, False,
              _HF.format("Llama-2-70b-hf")),
    RealModel("Llama 3 8B", 4096, 32, 32, 8, 8192, 128256, 500000.0, False,
              _HF.format("Meta-Llama-3-8B")),
    RealModel("Llama 3 70B", 8192, 80, 64, 8, 8192, 128256, 500000.0, False,
              _HF.format("Meta-Llama-3-70B")),
    RealModel("Llama 3.2 1B", 2048, 16, 32, 8, 131072, 128256, 500000.0, True,
              _HF.format("Llama-3.2-1B") + " (rope_scaling llama3, factor 32, from 8,192)"),
]


def real_model(name: str) -> RealModel:
    return next(m for m in REAL_MODELS if m.name == name)


def real_models_frame(bytes_per_value: int = 2) -> pd.DataFrame:
    """The table for a page: every field, head_dim, attention_kind and
    ``cache_bytes_per_token`` (bytes, at ``bytes_per_value`` per value: 2 = 16-bit)."""
    rows = [{**asdict(m), "head_dim": m.head_dim, "attention_kind": m.attention_kind,
             "cache_bytes_per_token": m.cache_bytes_per_token(bytes_per_value)}
            for m in REAL_MODELS]
    return pd.DataFrame(rows)
