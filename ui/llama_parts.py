"""The later Llama parts as controls show them: key/value heads named by the attention
kind they make (multi-head, grouped-query, multi-query), and RoPE scaling as a kind and
a factor turned into Hugging Face's rope_scaling dictionary and back. Pure helpers
shared by Build & train, Start and Inference."""

from __future__ import annotations

from llama_core.config import divisors

SCALING_KINDS = {"none": "none", "linear": "linear (position interpolation)",
                 "llama3": "llama3 (Llama 3.1's bands)"}
# Llama 3.1's published low/high frequency factors (its config.json's rope_scaling).
LLAMA3_LOW, LLAMA3_HIGH = 1.0, 4.0


def attention_kind(n_heads: int, kv_heads: int | None) -> str:
    """multi-head (every query head has its own keys and values), multi-query (one
    key/value head for all) or grouped-query (between)."""
    kv = n_heads if kv_heads is None else kv_heads
    if kv == n_heads:
        return "multi-head"
    return "multi-query" if kv == 1 else "grouped-query"


def kv_label(n_heads: int, kv_heads: int) -> str:
    """A KV-heads option as a student reads it: the number and what it makes."""
    kind = attention_kind(n_heads, kv_heads)
    if kind == "grouped-query":
        return f"{kv_heads}: grouped ({n_heads // kv_heads} query heads share each)"
    if kind == "multi-query" and n_heads > 1:
        return "1: multi-query (all query heads share one)"
    return f"{kv_heads}: multi-head (one per query head)"


def kv_choices(n_heads: int) -> list[int]:
    """The KV-head counts a model with ``n_heads`` query heads can have (the divisors),
    multi-head first."""
    return sorted(divisors(max(1, int(n_heads))), reverse=True)


def kv_field(n_heads: int, kv_heads: int | None) -> int | None:
    """The config's n_kv_heads for a choice: None for multi-head (the default, so a
    multi-head run's config and records stay as they always were)."""
    return None if kv_heads is None or kv_heads == n_heads else int(kv_heads)


def kind_variants(n_heads: int) -> dict[str, int | None]:
    """One n_kv_heads per attention kind for ``n_heads`` query heads: multi-head (None),
    grouped-query (a quarter of the heads as Llama 3 8B and 70B, else half, when that
    divides) and multi-query (1); a kind the head count cannot make is left out."""
    out: dict[str, int | None] = {"multi-head": None}
    middle = [k for k in (n_heads // 4, n_heads // 2)
              if 1 < k < n_heads and n_heads % k == 0]
    if middle:
        out["grouped-query"] = middle[0]
    if n_heads > 1:
        out["multi-query"] = 1
    return out


def scaling_dict(kind: str, factor: float, context: int) -> dict | None:
    """rope_scaling for a control's kind and factor: llama3 takes Llama 3.1's low and
    high frequency factors and the model's context as the original context."""
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "llama3":
        return {"rope_type": "llama3", "factor": float(factor),
                "low_freq_factor": LLAMA3_LOW, "high_freq_factor": LLAMA3_HIGH,
                "original_max_position_embeddings": int(context)}
    return None


def scaling_controls(scaling) -> tuple[str, float]:
    """(kind, factor) for the controls from a config's rope_scaling."""
    if not scaling:
        return "none", 4.0
    return str(scaling.get("rope_type", "none")), float(scaling.get("factor", 4.0))
