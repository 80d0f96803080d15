"""Text in, text out: a trained model continues a prompt, one character at a time.

``Llama.generate`` works on token ids; this is the same draw seen through the
character tokenizer, reproducible from a seed. Training uses it for the samples at each
evaluation, the pages for what a run writes.
"""

from __future__ import annotations

import torch

from .data import CharTokenizer
from .model import Llama, check_sampling, eval_mode


def generate_text(model: Llama, tokenizer: CharTokenizer, prompt: str, max_new_chars: int,
                  temperature: float = 0.8, top_k: int | None = None, seed: int = 0) -> str:
    """Continue ``prompt`` by ``max_new_chars`` characters; the same seed gives the same
    text. Unknown characters in the prompt raise UnknownCharactersError naming them; an
    empty prompt starts from the vocabulary's first character, which is not returned."""
    check_sampling(temperature, top_k)
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt) if prompt else [0]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        out = model.generate(idx, max_new_chars, temperature, top_k, gen)
    return tokenizer.decode(out[0, len(ids) if prompt else 1:].tolist())
