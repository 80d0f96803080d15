"""What the KV cache buys at generation time, measured on one model.

Without a cache every new token reruns the whole text so far; with one, the prompt is
read once (prefill) and each later step reads only its new token (decode), attending to
the keys and values kept from before. ``cache_speed`` times the same greedy generation
(``generate.timed_generate``) both ways, step by step, so a page can draw tokens per second against how many tokens
have been generated, give prefill and decode time apart, and check that both ways wrote
the same ids. Past the context window every step reruns the window anyway, so lengths
stop at the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import UserError
from .generate import timed_generate
from .model import Llama, eval_mode

MODES = {True: "with the KV cache", False: "without a cache"}


@dataclass(frozen=True)
class CacheSpeed:
    """Both generations: ``steps`` has one row per (mode, generated tokens) with the
    seconds since the start and tokens per second so far; ``parts`` one row per mode with
    prefill and decode seconds; ``ids`` the ids each mode drew after the prompt."""

    steps: pd.DataFrame
    parts: pd.DataFrame
    ids: dict[bool, list[int]]

    @property
    def same_ids(self) -> bool:
        return self.ids[True] == self.ids[False]

    def speedup(self) -> float:
        """Cached over uncached tokens per second at the longest length."""
        last = self.steps.groupby("cached")["tokens_per_s"].last()
        return float(last[True] / last[False]) if last[False] else float("nan")


def most_new_tokens(model: Llama, prompt_len: int) -> int:
    """How many tokens fit after a prompt of ``prompt_len`` inside the context window."""
    return model.cfg.context_window - prompt_len


@torch.no_grad()
def cache_speed(model: Llama, prompt_ids: list[int], new_tokens: int,
                repeats: int = 3) -> CacheSpeed:
    """Generate ``new_tokens`` greedily after ``prompt_ids`` with and without the cache,
    ``repeats`` times each, interleaved, keeping each step's fastest time (the others
    were slowed by something else on the machine). Seconds are wall-clock on this
    process's torch threads; tokens per second count generated tokens only."""
    why = model.why_no_cache()
    if why:
        raise UserError(why)
    room = most_new_tokens(model, len(prompt_ids))
    if not 1 <= new_tokens <= room:
        raise UserError(f"Generate between 1 and {room} tokens: after a prompt of "
                        f"{len(prompt_ids)} the context window of "
                        f"{model.cfg.context_window} has room for {room}.")
    idx = torch.tensor([prompt_ids], dtype=torch.long,
                       device=next(model.parameters()).device)
    best: dict[bool, np.ndarray] = {}
    ids: dict[bool, list[int]] = {}
    with eval_mode(model):
        for _ in range(max(1, repeats)):
            for use_cache in (True, False):
                run = timed_generate(model, idx, new_tokens, use_cache)
                ids[use_cache] = run.ids[0, len(prompt_ids):].tolist()
                best[use_cache] = np.minimum(best.get(use_cache, run.marks), run.marks)
    rows, parts = [], []
    for use_cache, marks in best.items():
        n = np.arange(1, new_tokens + 1)
        rows.append(pd.DataFrame({"cached": use_cache, "mode": MODES[use_cache],
                                  "tokens": n, "seconds": marks, "tokens_per_s": n / marks}))
        parts.append({"cached": use_cache, "mode": MODES[use_cache],
                      "prefill_s": float(marks[0]), "decode_s": float(marks[-1] - marks[0]),
                      "decode_tokens_per_s": ((new_tokens - 1) / (marks[-1] - marks[0])
                                              if new_tokens > 1 else float("nan"))})
    return CacheSpeed(pd.concat(rows, ignore_index=True), pd.DataFrame(parts), ids)
