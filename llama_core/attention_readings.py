"""One run's attention on one prompt, ready to draw: the maps of every layer and head,
each head's statistics, and the uniform-attention baselines those statistics are read
against.

Why the baselines: an entropy of 2.3 nats means nothing alone; beside the entropy of a
head that spreads evenly over the keys it can see, it says whether the head chooses.
The baselines are computed with the same inspect functions as the real heads, so the
two can only differ by what the head learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import inspect as I
from .errors import UserError
from .model import Llama
from .prompts import check_prompt, fit_tokens, token_unit


def uniform_attention(T: int, causal: bool) -> np.ndarray:
    """The attention a head would have with no preference: each query spreads evenly
    over the keys it can see. Shape (1, T, T), rows = queries, each row summing to 1."""
    visible = np.tril(np.ones((T, T))) if causal else np.ones((T, T))
    return (visible / visible.sum(-1, keepdims=True))[None]


def uniform_baselines(T: int, causal: bool) -> dict[str, float]:
    """Entropy (nats) and mean attended distance (positions) of uniform attention over
    the visible keys, computed with the same inspect functions as the real heads."""
    u = [uniform_attention(T, causal)]
    return {"entropy": float(I.attention_entropy(u)[0, 0]),
            "distance": float(I.mean_attended_distance(u)[0, 0])}


def uniform_references(readings: list[tuple[int, bool]], unit: str = "characters"
                       ) -> dict[str, dict[str, float]]:
    """The dashed "uniform attention" lines for the chosen runs, one per distinct
    (tokens read, mask on) among ``readings``, named by what tells them apart; ``unit``
    is what a token is called ("characters" or "tokens")."""
    baselines = {(T, masked): uniform_baselines(T, masked) for T, masked in readings}
    if len(baselines) == 1:
        return {"uniform attention": next(iter(baselines.values()))}
    if len({T for T, _ in baselines}) == 1:
        return {f"uniform, {'causal' if m else 'no mask'}": b
                for (_, m), b in baselines.items()}
    return {f"uniform, {T} {unit}{'' if m else ', no mask'}": b
            for (T, m), b in baselines.items()}


@dataclass
class AttentionResult:
    """Attention of one run on one prompt, with the statistics per (layer, head)."""

    text: str               # the text the model read (the prompt, maybe cut)
    truncated: bool
    tokens: list[str]       # each position's token as text, for the axes (len T)
    unit: str               # what a token is called: "characters" or "tokens"
    maps: list[np.ndarray]  # one (H, T, T) float32 array per layer, rows = queries
    entropy: np.ndarray     # (layers, heads), nats
    distance: np.ndarray    # (layers, heads), positions
    future: np.ndarray      # (layers, heads), fraction 0..1 on keys after the query


def attention_for(model: Llama, tokenizer, prompt: str) -> AttentionResult:
    """Attention maps and per-head statistics for a prompt, cut to the context window.
    Raises UserError for an empty prompt, unknown characters or a model without
    attention."""
    check_prompt(tokenizer, prompt)
    if not model.cfg.attention:
        raise UserError("This run has no attention layers (attention=false), so there "
                        "are no attention maps to draw; pick a run with attention.")
    ids, tokens, cut = fit_tokens(tokenizer, prompt, model.cfg.context_window)
    maps = I.attention_maps(model, tokenizer, ids)
    return AttentionResult(tokenizer.decode(ids), cut, tokens, token_unit(tokenizer), maps,
                           I.attention_entropy(maps),
                           I.mean_attended_distance(maps), I.future_attention_mass(maps))
