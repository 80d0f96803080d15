"""Numbers the Attention, Rotary and Generate pages need that llama_core.inspect does
not (yet) give: the prompt cut to a context window, uniform-attention baselines for the
per-head statistics, the seeded prefix of a shifted prompt, and generation that keeps
each step's next-character probabilities.

Pure: torch, numpy and pandas only, no streamlit; a model is never changed (eval mode
and the training flag are restored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from llama_core import inspect as I
from llama_core.errors import UnknownCharactersError, UserError
from llama_core.model import Llama, sample_next


def check_prompt(tokenizer, prompt: str) -> None:
    """Raise the user-facing error for an empty prompt or one with unknown characters."""
    if not prompt:
        raise UserError("Type at least one character of prompt.")
    unknown = tokenizer.unknown(prompt)
    if unknown:
        raise UnknownCharactersError(unknown)


def fit_prompt(prompt: str, context_window: int) -> tuple[str, bool]:
    """The prompt as the model reads it: its last ``context_window`` characters (the
    tokenizer is character-level), and whether it was cut."""
    if len(prompt) > context_window:
        return prompt[-context_window:], True
    return prompt, False


# --- Attention ---------------------------------------------------------------------

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


@dataclass
class AttentionResult:
    """Attention of one run on one prompt, with the statistics per (layer, head)."""

    text: str               # the characters the model read (the prompt, maybe cut)
    truncated: bool
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
    text, cut = fit_prompt(prompt, model.cfg.context_window)
    maps = I.attention_maps(model, tokenizer, text)
    return AttentionResult(text, cut, maps, I.attention_entropy(maps),
                           I.mean_attended_distance(maps), I.future_attention_mass(maps))


# --- Rotary ------------------------------------------------------------------------

def shift_prefix(vocab_size: int, shift: int, seed: int = 0) -> list[int]:
    """The ``shift`` random token ids that ``inspect.rope_invariance`` puts before the
    prompt (same seeded draw), so the page can draw exactly the logits it compares."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (shift,), generator=gen).tolist()


@dataclass
class ShiftResult:
    prefix: str           # the characters put before the prompt
    base: np.ndarray      # (H, P, P) layer-0 logits of the prompt at positions 0..P-1
    moved: np.ndarray     # (H, P, P) the same block with the prompt at shift..shift+P-1
    max_change: float     # inspect.rope_invariance: max |moved - base| over heads, logits


def shifted_logits(model: Llama, tokenizer, prompt: str, shift: int,
                   seed: int = 0) -> ShiftResult:
    """Layer-0 attention logits of a prompt, and of the same prompt moved ``shift``
    positions later; the headline number is ``inspect.rope_invariance``'s."""
    ids = tokenizer.encode(prompt)
    prefix = shift_prefix(model.cfg.vocab_size, shift, seed)
    base = I.layer0_logits(model, ids)[0]
    moved = I.layer0_logits(model, prefix + ids)[0][:, shift:, shift:]
    change = I.rope_invariance(model, ids, shift, seed=seed)
    return ShiftResult(tokenizer.decode(prefix), base, moved, change)


# --- Generation with the probabilities of every step -------------------------------

def sampling_probs(logits: torch.Tensor, temperature: float,
                   top_k: int | None) -> torch.Tensor:
    """The distribution ``model.sample_next`` draws from (after temperature and top-k),
    (B, vocab). At temperature 0 the draw is the most likely character; the plain
    softmax is returned so the bars still show how sure the model was."""
    if temperature <= 0:
        return logits.softmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits.softmax(-1)


def generate_with_probs(model: Llama, tokenizer, prompt: str, length: int,
                        temperature: float = 0.8, top_k: int | None = None,
                        seed: int = 0, top: int = 10) -> tuple[str, pd.DataFrame]:
    """Continue ``prompt`` by ``length`` characters exactly as
    ``llama_core.train.generate_text`` does (same seed, same text), keeping for each
    step the ``top`` most likely next characters.

    Returns the generated text and a long table with columns step (1 = first
    generated character), rank, character, probability (0..1, the distribution the
    sampler drew from), chosen (bool: the character drawn; it is always listed, even
    when outside the top). Raises UserError for an empty prompt or unknown characters.
    """
    check_prompt(tokenizer, prompt)
    if not np.isfinite(temperature) or temperature < 0:
        raise UserError(f"temperature must be 0 or more, not {temperature!r}.")
    if top_k is not None and top_k < 1:
        raise UserError(f"top_k must be at least 1, not {top_k!r}.")
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    cw = model.cfg.context_window
    rows = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for step in range(1, length + 1):
                logits = model(idx[:, -cw:])[:, -1, :].float()
                probs = sampling_probs(logits, temperature, top_k)[0].cpu()
                next_id = sample_next(logits, temperature, top_k, gen)
                chosen = int(next_id[0, 0])
                k = min(top, probs.numel())
                values, ids = probs.topk(k)
                listed = ids.tolist()
                pairs = list(zip(listed, values.tolist()))
                if chosen not in listed:
                    pairs.append((chosen, float(probs[chosen])))
                for rank, (i, p) in enumerate(pairs, start=1):
                    rows.append((step, rank, tokenizer.decode([i]), p, i == chosen))
                idx = torch.cat((idx, next_id.to(device)), dim=1)
    finally:
        model.train(was_training)
    text = tokenizer.decode(idx[0, -length:].tolist()) if length else ""
    table = pd.DataFrame(rows, columns=["step", "rank", "character", "probability",
                                        "chosen"])
    return text, table
