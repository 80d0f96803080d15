"""Numbers the Attention, Rotary and Generate pages need that llama_core.inspect does
not (yet) give: the prompt cut to a context window, uniform-attention baselines for the
per-head statistics, and the table of each generation step's next-character
probabilities (the sampling loop itself is ``Llama.sample_steps``). Library code by
nature (torch, numpy, pandas): it belongs in llama_core once the library takes it.

Pure: torch, numpy and pandas only, no streamlit; a model is never changed (eval mode
and the training flag are restored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from llama_core import inspect as I
from llama_core.data import CharTokenizer
from llama_core.errors import UnknownCharactersError, UserError
from llama_core.model import Llama, check_sampling, eval_mode


def check_prompt(tokenizer, prompt: str) -> None:
    """Raise the user-facing error for an empty prompt or one with unknown characters."""
    if not prompt:
        raise UserError("Type at least one character of prompt.")
    unknown = tokenizer.unknown(prompt)
    if unknown:
        raise UnknownCharactersError(unknown)


def fit_tokens(tokenizer, prompt: str, context_window: int
               ) -> tuple[list[int], list[str], bool]:
    """The prompt as the model reads it, token by token: its last ``context_window``
    token ids, each token's text (a character, or a byte-pair token such as " the") for
    the axes, and whether it was cut."""
    ids = list(tokenizer.encode(prompt))
    cut = len(ids) > context_window
    ids = ids[-context_window:]
    return ids, [tokenizer.token_text(i) for i in ids], cut


def token_unit(tokenizer) -> str:
    """What one token of this tokenizer is called in the pages' sentences."""
    return "characters" if isinstance(tokenizer, CharTokenizer) else "tokens"


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


def uniform_references(readings: list[tuple[int, bool]]) -> dict[str, dict[str, float]]:
    """The dashed "uniform attention" lines for the chosen runs, one per distinct
    (characters read, mask on) among ``readings``, named by what tells them apart."""
    baselines = {(T, masked): uniform_baselines(T, masked) for T, masked in readings}
    if len(baselines) == 1:
        return {"uniform attention": next(iter(baselines.values()))}
    if len({T for T, _ in baselines}) == 1:
        return {f"uniform, {'causal' if m else 'no mask'}": b
                for (_, m), b in baselines.items()}
    return {f"uniform, {T} characters{'' if m else ', no mask'}": b
            for (T, m), b in baselines.items()}


@dataclass
class AttentionResult:
    """Attention of one run on one prompt, with the statistics per (layer, head)."""

    text: str               # the characters the model read (the prompt, maybe cut)
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


# --- Generation with the probabilities of every step -------------------------------

def generate_with_probs(model: Llama, tokenizer, prompt: str, length: int,
                        temperature: float = 0.8, top_k: int | None = None,
                        seed: int = 0, top: int = 10) -> tuple[str, pd.DataFrame]:
    """Continue ``prompt`` by ``length`` characters exactly as
    ``llama_core.generate.generate_text`` does (same seed, same text), keeping for each
    step the ``top`` most likely next characters.

    Returns the generated text and a long table with columns step (1 = first
    generated character), rank, character, probability (0..1, the distribution the
    sampler drew from), chosen (bool: the character drawn; it is always listed, even
    when outside the top). Raises UserError for an empty prompt or unknown characters.
    """
    check_prompt(tokenizer, prompt)
    check_sampling(temperature, top_k)
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    drawn, rows = [], []
    with eval_mode(model):
        steps = model.sample_steps(idx, length, temperature, top_k, gen)
        for step, (next_id, probs) in enumerate(steps, start=1):
            chosen = int(next_id[0, 0])
            drawn.append(chosen)
            rows += _step_rows(tokenizer, step, probs[0].cpu(), chosen, top)
    text = tokenizer.decode(drawn)
    table = pd.DataFrame(rows, columns=["step", "rank", "character", "probability",
                                        "chosen"])
    return text, table


def _step_rows(tokenizer, step: int, probs: torch.Tensor, chosen: int,
               top: int) -> list[tuple]:
    """One step's table rows (step, rank, character, probability, chosen): the ``top``
    most likely characters, then the one drawn if it is not among them."""
    values, ids = probs.topk(min(top, probs.numel()))
    listed = ids.tolist()
    pairs = list(zip(listed, values.tolist()))
    if chosen not in listed:
        pairs.append((chosen, float(probs[chosen])))
    return [(step, rank, tokenizer.token_text(i), p, i == chosen)
            for rank, (i, p) in enumerate(pairs, start=1)]
