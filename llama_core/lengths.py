"""Reading past the trained length: a model trained at context T, evaluated at 2T or 4T.

RoPE has no table of positions to run out of: the same weights can be read at any
length, with the rotary frequencies as trained (positions the model never saw turn its
pairs to angles it never met) or stretched by ``rope_scaling`` (linear position
interpolation, or Llama 3.1's frequency-band rule with the trained T as its original
context). A model without positions reads any length too. Learned positions cannot: their
table has T rows, so nothing exists to add at position T and beyond; ``longer_reader``
says so in one sentence instead of inventing a row.

Losses are cross-entropy in nats per token (per character for Llama Lab's corpora),
averaged over the same random windows of a text for every reading, so the readings of
one model differ only in how they place positions.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .config import ModelConfig
from .errors import UserError
from .model import Llama, dropout_off, eval_mode

# How a RoPE model can be read at `factor` times its trained context.
READINGS = {
    "unscaled": "RoPE as trained (positions it never saw)",
    "linear": "linear scaling (position interpolation)",
    "llama3": "llama3 scaling (Llama 3.1's frequency bands)",
}


def scaling_for(kind: str, factor: float, trained_context: int) -> dict | None:
    """The ``rope_scaling`` dictionary that stretches a model trained at
    ``trained_context`` positions by ``factor``: None for "unscaled"; llama3 with Llama
    3.1's low/high frequency factors (1 and 4) and the trained context as original."""
    if kind == "unscaled" or factor == 1:
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "llama3":
        return {"rope_type": "llama3", "factor": float(factor), "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": trained_context}
    raise UserError(f"A reading is one of {', '.join(READINGS)}, not {kind!r}.")


def readings_for(cfg: ModelConfig) -> list[str]:
    """The readings that mean something for this model: all three for RoPE; for learned
    or no positions only "unscaled" (there are no frequencies to scale)."""
    return list(READINGS) if cfg.pos == "rope" and cfg.attention else ["unscaled"]


def longer_reader(model: Llama, length: int, kind: str = "unscaled") -> Llama:
    """The same weights in a model built for ``length`` positions, with the rotary
    frequencies of reading ``kind``. Refuses, in one sentence, learned positions past
    their table and scaling a model that has no rotary frequencies."""
    cfg = model.cfg
    if cfg.pos == "learned" and length > cfg.context_window:
        raise UserError(f"Learned positions cannot go past their table: it has "
                        f"{cfg.context_window} rows, one per trained position, so there is "
                        f"no vector to add at position {cfg.context_window} or later.")
    if kind != "unscaled" and kind not in readings_for(cfg):
        raise UserError(f"Only a RoPE model's frequencies can be scaled; this model has "
                        f"pos={cfg.pos}, so read it unscaled.")
    scaling = scaling_for(kind, length / cfg.context_window, cfg.context_window)
    if length == cfg.context_window and scaling is None:
        return model
    longer = Llama(dataclasses.replace(cfg, context_window=length, rope_scaling=scaling))
    longer.load_state_dict(model.state_dict())
    return longer.to(next(model.parameters()).device).eval()


def length_windows(ids: torch.Tensor, length: int, count: int, seed: int = 0
                   ) -> torch.Tensor:
    """``count`` random windows of ``length + 1`` tokens from ``ids`` (1-D), the same for
    the same seed: inputs are the first ``length``, targets the last ``length``."""
    if len(ids) <= length + 1:
        raise UserError(f"The text has {len(ids):,} tokens, too few for windows of "
                        f"{length + 1}; use a longer text or a smaller length.")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(ids) - length - 1, (count,), generator=gen)
    return ids[starts.unsqueeze(1) + torch.arange(length + 1)]


@torch.no_grad()
def loss_per_position(model: Llama, windows: torch.Tensor, batch_size: int = 16
                      ) -> np.ndarray:
    """Mean cross-entropy (nats per token) at each position 0 .. L-1 over windows
    (N, L + 1), the model predicting token t + 1 from tokens 0 .. t; no dropout."""
    total = torch.zeros(windows.shape[1] - 1, dtype=torch.float64)
    device = next(model.parameters()).device
    with eval_mode(model), dropout_off(model):
        for chunk in windows.split(batch_size):
            chunk = chunk.to(device)
            logits = model(chunk[:, :-1]).float()
            losses = F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")
            total += losses.sum(0).double().cpu()
    return (total / len(windows)).numpy()


def length_losses(model: Llama, ids: torch.Tensor, factor: int, count: int = 32,
                  seed: int = 0) -> pd.DataFrame:
    """Loss per position for every reading ``readings_for`` the model allows, over the
    same ``count`` windows of ``factor`` x its trained context taken from ``ids`` (a
    held-out text as token ids).

    Columns: ``reading`` (a READINGS key), ``position`` (0-based), ``loss`` (nats per
    token), ``seen`` (whether training reached that position). A learned-positions model
    past its table gets its trained positions only (the same windows, cut to the table),
    so its curve stops where its table ends.
    """
    cfg = model.cfg
    if not isinstance(factor, int) or factor < 1:
        raise UserError(f"The length factor must be a whole number of at least 1, not "
                        f"{factor!r}.")
    length = factor * cfg.context_window
    windows = length_windows(ids, length, count, seed)
    frames = []
    for kind in readings_for(cfg):
        if cfg.pos == "learned":
            reader, part = model, windows[:, :cfg.context_window + 1]
        else:
            reader, part = longer_reader(model, length, kind), windows
        losses = loss_per_position(reader, part)
        frames.append(pd.DataFrame({"reading": kind, "position": np.arange(len(losses)),
                                    "loss": losses,
                                    "seen": np.arange(len(losses)) < cfg.context_window}))
    return pd.concat(frames, ignore_index=True)
