"""Generation that keeps what the model offered at every step: the text, and a table of
the most likely next tokens with their probabilities, the drawn one marked.

Why beside ``generate.generate_text`` and not inside it: the table costs a top-k and
Python rows per step, which plain generation should not pay; both drive the same
sampling loop (``Llama.sample_steps``) with the same seed, so they give the same text.
"""

from __future__ import annotations

import pandas as pd
import torch

from .model import Llama, check_sampling, eval_mode
from .prompts import check_prompt


def generate_with_probs(model: Llama, tokenizer, prompt: str, length: int,
                        temperature: float = 0.8, top_k: int | None = None,
                        seed: int = 0, top: int = 10) -> tuple[str, pd.DataFrame]:
    """Continue ``prompt`` by ``length`` tokens exactly as
    ``llama_core.generate.generate_text`` does (same seed, same text), keeping for each
    step the ``top`` most likely next tokens.

    Returns the generated text and a long table with columns step (1 = first
    generated token), rank, character (the token's text), probability (0..1, the
    distribution the sampler drew from), chosen (bool: the token drawn; it is always
    listed, even when outside the top). Raises UserError for an empty prompt or unknown
    characters. The model's weights and training flag are left as they were.
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
    most likely tokens, then the one drawn if it is not among them."""
    values, ids = probs.topk(min(top, probs.numel()))
    listed = ids.tolist()
    pairs = list(zip(listed, values.tolist()))
    if chosen not in listed:
        pairs.append((chosen, float(probs[chosen])))
    return [(step, rank, tokenizer.token_text(i), p, i == chosen)
            for rank, (i, p) in enumerate(pairs, start=1)]
