"""Probes: one small experiment per pitfall signature, run on any model (fresh or
trained) to say whether that pitfall is in it.

Each probe returns a dict: ``fired`` (the signature is there), ``value`` (the measured
number, its unit in the probe's docstring), ``explanation`` (one or two sentences a
student reads) and ``applicable`` (False, with the reason, when the model has nothing
to check). Like everything in inspect.py, a probe is pure: weights, training flag and
the global random state are left as they were. ``pitfalls.PITFALLS`` names, for each
pitfall, the probes that show it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .inspect import (causal_leak, future_attention_mass, layer0_logits, quiet,
                      random_ids, token_ids)
from .memory import kv_cache_bytes
from .model import Llama, dropout_off


def _probe(fired: bool, value: float, explanation: str, applicable: bool = True) -> dict:
    return {"fired": bool(fired), "value": float(value), "explanation": explanation,
            "applicable": applicable}


def _not_applicable(why: str) -> dict:
    return _probe(False, float("nan"), why, applicable=False)


def _random_batch(model: Llama) -> torch.Tensor:
    """Two random sequences of up to 16 tokens, the same every time (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    shape = (2, min(16, model.cfg.context_window))
    return token_ids(model, random_ids(model.cfg.vocab_size, shape, gen))


LEAK_TOL = 1e-5  # logits; float32 rounding in a correct model is far below this


def probe_future_leak(model: Llama) -> dict:
    """Fires when later tokens change earlier logits (value: largest change, in logits).
    The signature of causal=False, norm_over_sequence and mask_ones."""
    length = min(model.cfg.context_window, 16)
    if length < 2:
        return _not_applicable("A context window of 1 has no future to leak.")
    position = length // 2 - 1
    leak = causal_leak(model, length, position)
    if leak > LEAK_TOL:
        why = (f"Changing the tokens after position {position} changed the logits at or "
               f"before it by up to {leak:.3g}: the model can see the future, so its "
               f"training loss is too good to be true.")
    else:
        why = (f"Changing the tokens after position {position} left the earlier logits "
               f"unchanged (largest change {leak:.1g}): nothing leaks from the future.")
    return _probe(leak > LEAK_TOL, leak, why)


def probe_dropout_at_eval(model: Llama) -> dict:
    """Fires when two eval-mode forward passes on the same input differ (value: largest
    difference, in logits): dropout left on at evaluation and generation."""
    if model.cfg.dropout == 0:
        return _not_applicable("This model has dropout 0, so there is no dropout to "
                               "leave on.")
    idx = _random_batch(model)
    with quiet(model, seed=0):
        diff = float((model(idx) - model(idx)).abs().max())
    if diff > 0:
        why = (f"Two evaluation passes over the same text gave logits up to {diff:.3g} "
               f"apart: dropout is still active at evaluation, so validation loss is "
               f"noisy and worse and generation varies even at temperature 0.")
    else:
        why = "Two evaluation passes over the same text agree exactly: dropout is off."
    return _probe(diff > 0, diff, why)


def probe_rope_unrotated(model: Llama) -> dict:
    """Fires when layer-0 logits of a constant input (one token repeated) are the same
    for every (query, key) pair, i.e. do not depend on relative position although the
    model claims RoPE (value: spread max - min of those logits, in logits)."""
    if not (model.cfg.attention and model.cfg.pos == "rope"):
        return _not_applicable("This model has no rotary embeddings to check.")
    T = min(model.cfg.context_window, 16)
    s = layer0_logits(model, torch.zeros(1, T, dtype=torch.long))[0].astype(np.float64)
    spread = float((s.max(axis=(1, 2)) - s.min(axis=(1, 2))).max())
    tol = 1e-6 * (1.0 + float(np.abs(s).max()))
    if spread <= tol:
        why = ("Repeating one token gives the same attention logit for every pair of "
               "positions: queries and keys are not rotated, so the model has no notion "
               "of position despite pos=rope.")
    else:
        why = (f"Repeating one token gives logits that vary by {spread:.3g} with the "
               f"distance between positions: the rotation reaches the scores.")
    return _probe(spread <= tol, spread, why)


def probe_rope_off_by_one(model: Llama) -> dict:
    """Fires when model.freqs_cis turns faster than 1 rad per position, or its pair 0
    does not turn by exactly 1 rad (theta^0): the ``i - 1`` for ``i`` slip. Value: the
    largest |angle| of freqs_cis[1] (radians per position, wrapped to [0, pi])."""
    if model.freqs_cis is None or model.freqs_cis.shape[0] < 2:
        return _not_applicable("This model has no rotary table with two positions to "
                               "check.")
    angles = torch.angle(model.freqs_cis[1]).double().abs().cpu()
    fastest = float(angles.max())
    fired = fastest > 1 + 1e-5 or abs(float(angles[0]) - 1.0) > 1e-5
    if fired:
        why = (f"The fastest rotary pair turns {fastest:.3f} rad per position (pair 0 "
               f"turns {float(angles[0]):.3f}); the formula theta^(-2i/head_dim) gives "
               f"exactly 1 rad for pair 0 and less for every other: the frequencies are "
               f"shifted by one.")
    else:
        why = "Pair 0 turns exactly 1 rad per position and every other pair slower."
    return _probe(fired, fastest, why)


def probe_mask_ones(model: Llama) -> dict:
    """Fires when a causal model's softmax attention puts weight above the diagonal
    (value: largest mean fraction of attention on future keys over layers and heads)."""
    if not (model.cfg.attention and model.cfg.causal):
        return _not_applicable("The mask check needs attention with causal=true; "
                               "without the mask, attending to the future is by design.")
    idx = _random_batch(model)
    with quiet(model, seed=0):
        _, maps = model(idx, return_attention=True)
    mass = float(future_attention_mass(maps).max())
    if mass > 0:
        why = (f"Up to {mass:.1%} of attention lands on future keys although causal=true: "
               f"the mask was added as ones instead of -inf, so 'masked' keys keep weight.")
    else:
        why = "No attention lands above the diagonal: the causal mask holds."
    return _probe(mass > 0, mass, why)


def probe_cache_drift(model: Llama) -> dict:
    """Fires when logits decoded one token at a time from a KV cache differ from the
    same text's logits computed at once (value: largest difference, in logits): a
    decoded token rotated at the wrong position, or anything else the cache gets wrong.
    Dropout is silenced, so only the weights speak."""
    why = model.why_no_cache()
    if why:
        return _not_applicable(why)
    length = min(model.cfg.context_window, 12)
    if length < 2:
        return _not_applicable("A context window of 1 leaves nothing to decode after a "
                               "cached prefix.")
    idx, prefix = _random_batch(model)[:, :length], length // 2
    with quiet(model, seed=0), dropout_off(model):
        whole = model(idx)
        cache = model.make_cache(idx.shape[0], length)
        steps = [model(idx[:, :prefix], cache=cache, start_pos=0)[:, -1]]
        steps += [model(idx[:, t:t + 1], cache=cache, start_pos=t)[:, -1]
                  for t in range(prefix, length)]
    decoded = torch.stack(steps, dim=1).float()
    drift = float((decoded - whole[:, prefix - 1:].float()).abs().max())
    tol = 1e-4 * (1.0 + float(whole.abs().max()))
    if drift > tol:
        why = (f"Decoding positions {prefix} to {length - 1} one at a time from the KV "
               f"cache gave logits up to {drift:.3g} away from computing the whole text at "
               f"once: the cached path treats a decoded token differently (a rotation at "
               f"the wrong position), so cached generation drifts from uncached.")
    else:
        why = (f"Decoding one token at a time from the KV cache gives the logits of the "
               f"whole text at once (largest difference {drift:.1g}, float rounding).")
    return _probe(drift > tol, drift, why)


def probe_cache_size(model: Llama) -> dict:
    """Fires when a KV cache holds more key/value heads than n_kv_heads (value: bytes
    per token it holds): repeat_kv done before caching, so grouped-query attention
    saves no memory."""
    why = model.why_no_cache()
    if why or not model.cfg.attention:
        return _not_applicable(why or "This model has no attention layers, so a KV "
                                      "cache has nothing to hold.")
    idx = _random_batch(model)[:1]
    with quiet(model, seed=0), dropout_off(model):
        cache = model.make_cache(1, idx.shape[1])
        model(idx, cache=cache, start_pos=0)
    held = cache.bytes_per_token()
    value_bytes = cache.tensors()[0].element_size()
    need = kv_cache_bytes(model.cfg, 1, bytes_per_value=value_bytes)
    cfg = model.cfg
    if held > need:
        why = (f"The cache holds {cache.heads} key/value heads per layer, {held:,.0f} bytes "
               f"per token, where n_kv_heads = {cfg.kv_heads} needs {need:,} bytes: keys and "
               f"values were repeated for every query head before caching, so it is as big "
               f"as multi-head attention's.")
    else:
        why = (f"The cache holds {cache.heads} key/value heads per layer, {held:,.0f} bytes "
               f"per token: n_kv_heads = {cfg.kv_heads} of {cfg.n_heads} query heads, "
               f"repeated only when attending.")
    return _probe(held > need, held, why)


def probe_rope_pairs(model: Llama) -> dict:
    """Fires when the rotation moves a dimension out of its own adjacent pair (value:
    the largest share of a unit vector's length that lands outside its pair, 0 to 1):
    the rotary pairs are not the ones the weights are laid out for, as when Hugging
    Face weights (rotate-half order) are loaded without transformers' permutation."""
    cfg = model.cfg
    if not (cfg.attention and cfg.pos == "rope") or model.freqs_cis is None:
        return _not_applicable("This model has no rotary embeddings to check.")
    head_dim, T = cfg.head_dim, min(cfg.context_window, 4)
    positions = model.layers[0].attention.positions
    device = model.freqs_cis.device
    units = torch.eye(head_dim, device=device)  # one unit vector per dimension, as heads
    # heads (1, T, head_dim, head_dim) in; out as (dimension in, position, dimension out)
    with torch.no_grad():
        out = positions(units[None, None].expand(1, T, head_dim, head_dim),
                        model.freqs_cis, 0)[0].transpose(0, 1).float()
    pair = torch.arange(head_dim, device=device) // 2
    outside = (pair[:, None] != pair[None, :]).float()[:, None, :]  # (dimension in, 1, out)
    leaked = (out.pow(2) * outside).sum(-1).sqrt()  # (dimension in, position)
    share = float(leaked.max())
    first = int(leaked.amax(dim=1).argmax())
    if share > 1e-6:
        lands = (out[first].pow(2).sum(0) > 1e-6).nonzero().flatten().tolist()
        why = (f"Rotating dimension {first} of a head moved it into dimensions "
               f"{', '.join(map(str, lands[:4]))}, outside its pair ({first // 2 * 2}, "
               f"{first // 2 * 2 + 1}): the rotation pairs dimensions the weights do not "
               f"pair, as when Hugging Face's rows are loaded without the permutation, so "
               f"attention reads positions wrong and the text is gibberish.")
    else:
        why = ("Every dimension stays within its adjacent pair when rotated: the rotary "
               "pairs are Meta's, the layout Llama Lab's weights are in.")
    return _probe(share > 1e-6, share, why)


PROBES = {
    "future_leak": probe_future_leak,
    "dropout_at_eval": probe_dropout_at_eval,
    "rope_unrotated": probe_rope_unrotated,
    "rope_off_by_one": probe_rope_off_by_one,
    "mask_ones": probe_mask_ones,
    "cache_drift": probe_cache_drift,
    "cache_size": probe_cache_size,
    "rope_pairs": probe_rope_pairs,
}


def run_probes(model: Llama) -> pd.DataFrame:
    """Every pitfall probe on one model: columns probe, fired, value, applicable,
    explanation (value units are in each probe's docstring)."""
    rows = [{"probe": name, **fn(model)} for name, fn in PROBES.items()]
    return pd.DataFrame(rows, columns=["probe", "fired", "value", "applicable",
                                       "explanation"])
