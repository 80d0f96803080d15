"""Text in, text out: a trained model continues a prompt, one token at a time.

``Llama.generate`` works on token ids; this is the same draw seen through the run's
tokenizer (characters, or byte pairs), reproducible from a seed. Training uses it for the samples at each
evaluation, the pages for what a run writes. ``timed_generate`` measures the same loop
with and without the KV cache, prefill and decode apart (the Inference page and
benchmarks/bench_generate.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .model import Llama, check_sampling, eval_mode
from .tokenizer import Tokenizer


def generate_text(model: Llama, tokenizer: Tokenizer, prompt: str, max_new_chars: int,
                  temperature: float = 0.8, top_k: int | None = None, seed: int = 0,
                  use_cache: bool = True) -> str:
    """Continue ``prompt`` by ``max_new_chars`` tokens (characters, for a character
    model); the same seed gives the same
    text, with or without the KV cache. Unknown characters in the prompt raise
    UnknownCharactersError naming them; an empty prompt starts from the vocabulary's
    first character, which is not returned."""
    check_sampling(temperature, top_k)
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt) if prompt else [0]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        out = model.generate(idx, max_new_chars, temperature, top_k, gen, use_cache)
    return tokenizer.decode(out[0, len(ids) if prompt else 1:].tolist())


@dataclass(frozen=True)
class TimedGeneration:
    """One generation and where its time went. ``prefill_s`` is the first step (the
    prompt read, the first token drawn), ``decode_s`` every later step, in seconds;
    ``marks`` the seconds from the start to the end of each step."""

    ids: torch.Tensor  # (B, T + new_tokens): the prompt and what was drawn
    new_tokens: int
    marks: np.ndarray

    @property
    def prefill_s(self) -> float:
        return float(self.marks[0])

    @property
    def decode_s(self) -> float:
        return float(self.marks[-1] - self.marks[0])

    @property
    def seconds(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def tokens_per_s(self) -> float:
        """New tokens (all sequences of the batch) per second, prefill included."""
        return self.new_tokens * self.ids.shape[0] / self.seconds if self.seconds else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second of the steps after the first."""
        steps = (self.new_tokens - 1) * self.ids.shape[0]
        return steps / self.decode_s if self.decode_s > 0 else 0.0


def timed_generate(model: Llama, idx: torch.Tensor, max_new_tokens: int,
                   use_cache: bool = True, temperature: float = 0.0,
                   top_k: int | None = None,
                   generator: torch.Generator | None = None) -> TimedGeneration:
    """Generate ``max_new_tokens`` after idx (B, T) in eval mode, timing the first step
    apart from the rest; greedy by default, so the cached and uncached runs give the
    same ids to compare."""
    check_sampling(temperature, top_k)
    if max_new_tokens < 1:
        raise ValueError("timed_generate needs at least one new token to time.")
    sync = torch.cuda.synchronize if idx.is_cuda else (lambda: None)
    drawn, marks = [], []
    with eval_mode(model):
        sync()
        start = time.perf_counter()
        for next_id, _ in model.sample_steps(idx, max_new_tokens, temperature, top_k,
                                             generator, use_cache):
            drawn.append(next_id)
            sync()
            marks.append(time.perf_counter() - start)
    return TimedGeneration(torch.cat([idx, *drawn], dim=1), max_new_tokens,
                           np.array(marks))
