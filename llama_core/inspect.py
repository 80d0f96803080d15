"""Look inside a model: parameter and FLOP accounting, rotary tables, attention maps,
shapes and invariance checks (the probes built on them for each pitfall are in
probes.py).

Every function is pure (it never changes a model's weights or training flag, and leaves
the global random state as it found it) and returns numpy arrays, plain dicts or pandas
DataFrames for the dashboard to draw. Units are in each name or docstring: parameter
counts are numbers of scalars, FLOPs are floating-point operations (a multiply-add is
2), angles are radians, distances are token positions, entropies are nats, logits are
the model's unnormalised log-probabilities.

A tokenizer here is anything with ``encode(str) -> list[int]`` and ``decode(list[int])
-> str``, such as ``llama_core.data.CharTokenizer``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .config import ModelConfig, validate_model
from .errors import UserError
from .memory import kv_cache_bytes
from .model import Llama, eval_mode, rope_frequencies

COMPONENTS = ("embedding", "positions", "attention", "feed_forward", "norms", "head")


# --- Parameter and FLOP accounting -------------------------------------------------

def param_formula(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts (scalars) per component, from the model contract's rules alone.

    No biases; an embedding and a head of vocab x d each, the head counted 0 when
    ``tie_embeddings`` makes it the embedding's own matrix; learned positions add a
    (context_window x d) table; attention is wq, wk, wv, wo per layer
    (``attention_matrices``: 4 d^2 for multi-head, less with fewer key/value heads);
    SwiGLU has three d x hidden matrices, GELU/ReLU two, with hidden = ``cfg.ffn_hidden``;
    every RMSNorm/LayerNorm is one weight vector of d (LayerNorm has no bias),
    ``norm="none"`` costs nothing; ``attention=False`` drops both the attention and its
    norm.
    """
    validate_model(cfg)
    d, L = cfg.d_model, cfg.n_layers
    per_norm = d if cfg.norm in ("rmsnorm", "layernorm") else 0
    norms_per_layer = 2 if cfg.attention else 1
    counts = {
        "embedding": cfg.vocab_size * d,
        "positions": cfg.context_window * d if cfg.pos == "learned" else 0,
        "attention": L * sum(attention_matrices(cfg).values()) if cfg.attention else 0,
        "feed_forward": L * (3 if cfg.ffn == "swiglu" else 2) * d * cfg.ffn_hidden,
        "norms": (L * norms_per_layer + 1) * per_norm,
        "head": 0 if cfg.tie_embeddings else d * cfg.vocab_size,
    }
    counts["total"] = sum(counts.values())
    return counts


def attention_matrices(cfg: ModelConfig) -> dict[str, int]:
    """Parameters (scalars) of one layer's attention matrices: wq and wo are d x d; wk
    and wv are d x (n_kv_heads x head_dim), so grouped-query attention shrinks those two
    by n_heads / n_kv_heads (multi-query: to one head's width)."""
    d, kv = cfg.d_model, cfg.kv_heads * cfg.head_dim
    return {"wq": d * d, "wk": d * kv, "wv": d * kv, "wo": d * d}


def kv_cache_per_token(cfg: ModelConfig, bytes_per_value: int = 2) -> dict[str, float]:
    """What a KV cache holds per token of one sequence, in bytes (2 per value in 16-bit,
    4 in float32): ``bytes`` for this model's n_kv_heads, ``multi_head_bytes`` for the
    same shape with every head (what repeat_kv before caching would hold), and
    ``saving``, their ratio (n_heads / n_kv_heads)."""
    validate_model(cfg)
    mha = dataclasses.replace(cfg, n_kv_heads=None)
    ours, full = kv_cache_bytes(cfg, 1, bytes_per_value=bytes_per_value), kv_cache_bytes(
        mha, 1, bytes_per_value=bytes_per_value)
    return {"bytes": float(ours), "multi_head_bytes": float(full),
            "saving": full / ours if ours else 1.0}


def _component_of(name: str) -> str:
    """Which component a parameter belongs to, from its (Meta-style) name."""
    parts = name.split(".")
    owner = parts[-2] if len(parts) >= 2 else parts[0]
    if owner.endswith("norm"):  # attention_norm, ffn_norm, the final norm
        return "norms"
    if parts[0] == "tok_embeddings":
        return "embedding"
    if parts[0] == "pos_embeddings":
        return "positions"
    if parts[0] == "output":
        return "head"
    if "attention" in parts:
        return "attention"
    if "feed_forward" in parts:
        return "feed_forward"
    raise ValueError(f"parameter {name!r} belongs to no known component; "
                     f"teach inspect._component_of about it")


def param_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameter counts (scalars) per component, counted from the built model's
    ``named_parameters`` - the measurement that ``param_formula`` must agree with."""
    counts = {c: 0 for c in COMPONENTS}
    for name, p in model.named_parameters():
        counts[_component_of(name)] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def flops_per_token(cfg: ModelConfig) -> dict[str, float]:
    """Forward FLOPs per token per component (a multiply-add counts 2), and training.

    Matrix multiplies cost 2 x their parameters per token: ``attention_projections``
    (wq, wk, wv, wo: smaller wk, wv with fewer key/value heads), ``feed_forward`` and
    ``head`` (d x vocab, whether or not it is tied to the embedding).
    ``attention_scores`` is q.k and the weighted sum of values, 2 * 2 * T * d per layer with T = context_window: it counts
    the full T x T square even though a causal mask discards half of it, like nanoGPT's
    and PaLM's estimate (6N + 12 L d T for training). The embedding lookup, norms,
    softmax and rotations are element-wise and left out (they are a few percent).
    ``training_flops_per_token`` is 3 x ``forward_total`` (backward costs twice the
    forward).
    """
    p = param_formula(cfg)
    d, L, T = cfg.d_model, cfg.n_layers, cfg.context_window
    out = {
        "attention_projections": 2.0 * p["attention"],
        "attention_scores": 2.0 * 2.0 * T * d * L if cfg.attention else 0.0,
        "feed_forward": 2.0 * p["feed_forward"],
        "head": 2.0 * d * cfg.vocab_size,
    }
    out["forward_total"] = sum(out.values())
    out["training_flops_per_token"] = 3.0 * out["forward_total"]
    return out


# --- Rotary embeddings -------------------------------------------------------------

def rope_frequency_table(head_dim: int, theta: float = 10000.0, off_by_one: bool = False,
                         scaling: dict | None = None) -> pd.DataFrame:
    """One row per rotated pair: ``freq_rad_per_pos`` = theta^(-2i/head_dim) radians per
    position (the model's own ``rope_frequencies``), and ``wavelength_positions`` =
    2 pi / freq, the positions a pair takes to turn once. ``off_by_one`` shows the bug;
    ``scaling`` (a ``rope_scaling`` dictionary) gives the stretched frequencies."""
    _check_head_dim(head_dim)
    freqs = rope_frequencies(head_dim, theta, off_by_one, scaling).double().numpy()
    return pd.DataFrame({
        "pair": np.arange(len(freqs)),
        "freq_rad_per_pos": freqs,
        "wavelength_positions": 2 * math.pi / freqs,
    })


def rope_angles(head_dim: int, theta: float = 10000.0,
                positions: int | Iterable[int] = 64) -> np.ndarray:
    """Rotation angles in radians, shape (positions, pairs): position m, pair i turns by
    m * theta^(-2i/head_dim). ``positions`` is a count (0 .. n-1) or explicit positions.
    Not wrapped to (-pi, pi], so the linear growth with position stays visible."""
    _check_head_dim(head_dim)
    pos = np.arange(positions) if isinstance(positions, (int, np.integer)) else \
        np.asarray(list(positions), dtype=np.float64)
    freqs = rope_frequencies(head_dim, theta).double().numpy()
    return np.outer(pos.astype(np.float64), freqs)


def _rotate(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs (x[2i], x[2i+1]) by ``angles[i]`` radians (float64)."""
    a, b = x[0::2], x[1::2]
    c, s = np.cos(angles), np.sin(angles)
    out = np.empty_like(x)
    out[0::2] = a * c - b * s
    out[1::2] = a * s + b * c
    return out


def rope_relative_scores(head_dim: int, theta: float = 10000.0, max_distance: int = 32,
                         seed: int = 0,
                         query_positions: Sequence[int] | None = None) -> pd.DataFrame:
    """Why RoPE encodes relative position: one random query q and key k (N(0,1) entries,
    seeded), the dot product of q rotated at position m with k rotated at position n,
    for distances m - n = 0 .. max_distance and several absolute query positions m.

    Columns: query_pos, key_pos, distance (positions, m - n), score (the raw dot product,
    dimensionless, float64). Rows of equal distance have equal score whatever m is:
    rotations compose, R_m q . R_n k = q . R_(n-m) k.
    """
    _check_head_dim(head_dim)
    if max_distance < 0:
        raise UserError(f"max_distance must be at least 0, not {max_distance}.")
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal(head_dim), rng.standard_normal(head_dim)
    freqs = rope_frequencies(head_dim, theta).double().numpy()
    if query_positions is None:
        query_positions = [max_distance, max_distance + 10, max_distance + 100,
                           max_distance + 1000]
    rows = []
    for m in query_positions:
        qm = _rotate(q, m * freqs)
        for dist in range(max_distance + 1):
            n = m - dist
            rows.append((m, n, dist, float(qm @ _rotate(k, n * freqs))))
    return pd.DataFrame(rows, columns=["query_pos", "key_pos", "distance", "score"])


def _check_head_dim(head_dim: int) -> None:
    if not isinstance(head_dim, (int, np.integer)) or head_dim < 2 or head_dim % 2:
        raise UserError(f"RoPE rotates pairs, so head_dim must be an even number of at "
                        f"least 2, not {head_dim!r}.")


# --- Running a model without side effects ------------------------------------------

@contextlib.contextmanager
def quiet(model: nn.Module, seed: int | None = None):
    """Eval mode, no gradients, and the global RNG restored afterwards; the model's
    training flag is put back too: what keeps every look inside a model pure. With
    ``seed``, the RNG is seeded so a dropout-at-eval model draws the same masks each
    time the block is entered with the same seed."""
    device = _device(model)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        with eval_mode(model), torch.no_grad():
            yield


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def token_ids(model: Llama, idx) -> torch.Tensor:
    """Token ids as a (B, T) int64 tensor on the model's device."""
    t = torch.as_tensor(idx, dtype=torch.long)
    if t.dim() == 1:
        t = t[None]
    return t.to(_device(model))


def random_ids(vocab: int, shape, gen: torch.Generator) -> torch.Tensor:
    """Token ids drawn uniformly from ``gen``: test inputs that leave the global random
    state alone."""
    return torch.randint(0, vocab, shape, generator=gen)


def _encode(model: Llama, tokenizer, prompt: str, *, keep_last: bool) -> torch.Tensor:
    if not prompt:
        raise UserError("Type at least one character of prompt.")
    # Token ids themselves too: a byte-pair prompt cut to the window may not decode and
    # re-encode to the same ids.
    ids = list(tokenizer.encode(prompt)) if isinstance(prompt, str) else list(prompt)
    cw = model.cfg.context_window
    if len(ids) > cw:
        if not keep_last:
            raise UserError(f"The prompt is {len(ids)} characters but this model reads at "
                            f"most {cw}; shorten it.")
        ids = ids[-cw:]
    return token_ids(model, ids)


def _require_attention(model: Llama) -> None:
    if not model.cfg.attention:
        raise UserError("This model has no attention layers (attention=false), so there "
                        "are no attention maps; switch attention on.")


# --- Attention maps and their statistics -------------------------------------------

def attention_maps(model: Llama, tokenizer, prompt: str) -> list[np.ndarray]:
    """Softmax attention probabilities for ``prompt``: one float32 (H, T, T) array per
    layer, rows = query positions, columns = key positions, each row summing to 1.
    Empty for a model without attention. The prompt must fit the context window."""
    idx = _encode(model, tokenizer, prompt, keep_last=False)
    with quiet(model, seed=0):
        _, maps = model(idx, return_attention=True)
    return [m[0].float().cpu().numpy() for m in maps]


def layer0_logits(model: Llama, idx) -> np.ndarray:
    """Layer 0's attention logits q.k / sqrt(head_dim) before mask and softmax, shape
    (B, H, T, T) float32, rows = query positions. ``idx`` is (T,) or (B, T) token ids."""
    _require_attention(model)
    idx = token_ids(model, idx)
    with quiet(model):
        layer = model.layers[0]
        s = layer.attention.scores(layer.attention_norm(model.embed(idx)), model.freqs_cis)
    return s.float().cpu().numpy()


def _per_layer(probs) -> list[np.ndarray]:
    """Accept a list with one (H, T, T) or (B, H, T, T) array/tensor per layer (what
    ``attention_maps`` or ``model(idx, return_attention=True)`` give), or one stacked
    (L, H, T, T) array; return float64 arrays shaped (B, H, T, T)."""
    if isinstance(probs, (np.ndarray, torch.Tensor)):
        probs = list(probs)
    out = []
    for p in probs:
        a = p.detach().float().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p)
        a = a.astype(np.float64)
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"attention maps are (H, T, T) or (B, H, T, T), not {a.shape}")
        out.append(a)
    return out


def _row_stat(probs, per_row) -> np.ndarray:
    """Apply ``per_row`` (B, H, T, T) -> (B, H, T) to each layer, average over batch and
    query rows: (layers, heads)."""
    layers = _per_layer(probs)
    if not layers:
        return np.zeros((0, 0))
    return np.stack([per_row(p).mean(axis=(0, 2)) for p in layers])


def attention_entropy(probs) -> np.ndarray:
    """Mean over query rows of -sum_k p log p, in nats, shape (layers, heads).
    0 = every query looks at one key; log(T) would be uniform over all T keys
    (under a causal mask row q can reach at most log(q + 1))."""
    def per_row(p):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, -p * np.log(p), 0.0)
        return terms.sum(-1)
    return _row_stat(probs, per_row)


def mean_attended_distance(probs) -> np.ndarray:
    """Mean over query rows of sum_k p(q, k) |q - k|, in positions, shape (layers,
    heads): how far back (or forward) a head looks on average."""
    def per_row(p):
        T = p.shape[-1]
        dist = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
        return (p * dist).sum(-1)
    return _row_stat(probs, per_row)


def future_attention_mass(probs) -> np.ndarray:
    """Fraction (0..1) of attention on keys after the query, averaged over query rows,
    shape (layers, heads). Zero for a correct causal model; non-zero with causal=False or
    the mask_ones bug."""
    def per_row(p):
        T = p.shape[-1]
        future = np.triu(np.ones((T, T), dtype=bool), 1)
        return np.where(future, p, 0.0).sum(-1)
    return _row_stat(probs, per_row)


# --- Shapes and predictions --------------------------------------------------------

def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        return str(tuple(x.shape))
    if isinstance(x, (tuple, list)):
        for item in x:
            if isinstance(item, torch.Tensor):
                return str(tuple(item.shape))
    return ""


def module_shapes(model: Llama, idx) -> pd.DataFrame:
    """Every module with its input and output shape for one batch, in the order the
    forward pass enters them: the 'check dimensions at each layer' habit.

    Columns name, type, input_shape, output_shape (tensor shapes as strings, first
    tensor of a tuple), params (scalars held directly by the module, so the column sums
    to the model's total), note. A module the forward pass never enters is listed under
    its parent with empty shapes and a note saying so. Containers (ModuleList) are left
    out.
    """
    idx = token_ids(model, idx)
    rows: dict[str, dict] = {}
    handles = []

    counted: set[int] = set()  # a tied head's weight is the embedding's: count it once

    def own_params(module):
        fresh = [p for p in module.parameters(recurse=False) if id(p) not in counted]
        counted.update(id(p) for p in fresh)
        return sum(p.numel() for p in fresh)

    def pre(name):
        def fn(module, args):
            rows.setdefault(name or "(model)", dict(
                name=name or "(model)", type=type(module).__name__, input_shape=_shape(args),
                output_shape="", params=own_params(module), note=""))
        return fn

    def post(name):
        def fn(module, args, output):
            rows[name or "(model)"]["output_shape"] = _shape(output)
        return fn

    modules = [(n, m) for n, m in model.named_modules() if not isinstance(m, nn.ModuleList)]
    for name, module in modules:
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    try:
        with quiet(model, seed=0):
            model(idx)
    finally:
        for h in handles:
            h.remove()
    ordered = list(rows.values())
    for name, module in modules:
        if (name or "(model)") in rows:
            continue
        note = ("its rate is handed to the fused attention kernel"
                if name.endswith("attention.dropout")
                else "not entered by this forward pass")
        row = dict(name=name, type=type(module).__name__, input_shape="", output_shape="",
                   params=own_params(module), note=note)
        parent = name.rsplit(".", 1)[0]
        at = next((i for i, r in enumerate(ordered) if r["name"] == parent), len(ordered) - 1)
        while at + 1 < len(ordered) and ordered[at + 1]["note"]:  # after earlier siblings
            at += 1
        ordered.insert(at + 1, row)
    if model.output.weight is model.tok_embeddings.weight:
        head = next(r for r in ordered if r["name"] == "output")
        head["note"] = "tied: its weight is tok_embeddings.weight, counted there"
    if model.pos_embeddings is not None:
        at = next(i for i, r in enumerate(ordered) if r["name"] == "tok_embeddings")
        ordered[0]["params"] -= model.pos_embeddings.numel()  # counted on its own row
        ordered.insert(at + 1, dict(
            name="pos_embeddings", type="Parameter", input_shape="",
            output_shape=str(tuple(model.pos_embeddings[: idx.shape[1]].shape)),
            params=model.pos_embeddings.numel(),
            note="learned position table; its first T rows are added to the token "
                 "embedding"))
    return pd.DataFrame(ordered, columns=["name", "type", "input_shape", "output_shape",
                                          "params", "note"])


def next_token_probs(model: Llama, tokenizer, prompt: str, top: int = 10) -> pd.DataFrame:
    """The ``top`` most likely next characters after ``prompt`` with their probability
    (0..1), most likely first. Columns character, token_id, probability. A prompt longer
    than the context window is cut to its last context_window characters, as generation
    does."""
    idx = _encode(model, tokenizer, prompt, keep_last=True)
    with quiet(model, seed=0):
        logits = model(idx)[0, -1].float()
    probs = logits.softmax(-1).cpu()
    top = max(1, min(int(top), probs.numel()))
    values, ids = probs.topk(top)
    return pd.DataFrame({
        "character": [tokenizer.decode([i]) for i in ids.tolist()],
        "token_id": ids.tolist(),
        "probability": values.double().numpy(),
    })


# --- Invariance checks -------------------------------------------------------------

def causal_leak(model: Llama, length: int, position: int, seed: int = 0,
                batch: int = 4) -> float:
    """Largest |change| in logits at positions 0..position when every token after
    ``position`` is replaced by a different one (``batch`` random sequences, seeded).

    0 (to float rounding) for a correct causal model; clearly positive with causal=False,
    norm_over_sequence or mask_ones. Both passes draw identical dropout masks, so a
    dropout-at-eval model does not read as a leak. Units: logits.
    """
    cw = model.cfg.context_window
    if not 1 <= length <= cw:
        raise UserError(f"length must be between 1 and the context window {cw}, "
                        f"not {length}.")
    if not 0 <= position < length - 1:
        raise UserError(f"position must leave at least one later token: between 0 and "
                        f"{length - 2}, not {position}.")
    vocab = model.cfg.vocab_size
    gen = torch.Generator().manual_seed(seed)
    a = random_ids(vocab, (batch, length), gen)
    b = a.clone()
    shift = torch.randint(1, vocab, (batch, length - position - 1), generator=gen)
    b[:, position + 1:] = (a[:, position + 1:] + shift) % vocab  # every later token differs
    a, b = token_ids(model, a), token_ids(model, b)
    with quiet(model, seed=seed):
        la = model(a)
    with quiet(model, seed=seed):
        lb = model(b)
    return float((la[:, : position + 1] - lb[:, : position + 1]).abs().max())


@dataclass(frozen=True)
class RopeInvariance:
    """What ``rope_invariance`` compared. Logits are layer 0's attention logits
    q.k / sqrt(head_dim) before mask and softmax, float32, rows = query positions and
    columns = key positions, both counted within the prompt (0..P-1)."""

    prefix_ids: list[int]  # the ``shift`` seeded random tokens put before the prompt
    base: np.ndarray       # (H, P, P) logits with the prompt at positions 0..P-1
    moved: np.ndarray      # (H, P, P) the same block with the prompt at shift..shift+P-1
    max_abs_diff: float    # max |moved - base| over every head, query and key (logits)


def rope_invariance(model: Llama, prompt_ids, shift: int, seed: int = 0) -> RopeInvariance:
    """Layer 0's attention logits between the prompt's tokens with the prompt at
    positions 0..P-1 and the same prompt at positions shift..shift+P-1, and the max
    |difference| (logits) between the two blocks.

    The shifted copy is ``shift`` random tokens (seeded) followed by the prompt. Layer 0's
    logits between two prompt tokens depend only on those tokens and, with RoPE, on their
    distance; so the (P x P) block of the shifted logits at rows and columns
    shift..shift+P-1 must equal the unshifted block: ``max_abs_diff`` is ~0 (float
    rounding, about 1e-6). Learned positions make it clearly positive, because each
    token's vector carries its absolute position; norm_over_sequence also breaks it (the
    prefix changes the shared RMS). ``pos="none"`` and the rope_unrotated bug are
    trivially invariant - they carry no position at all - so pair this with
    ``probes.probe_rope_unrotated``. Unlike a Toeplitz check this works on any prompt,
    not only a constant one.
    """
    _require_attention(model)
    ids = torch.as_tensor(prompt_ids, dtype=torch.long).flatten().cpu()
    P, cw = ids.numel(), model.cfg.context_window
    if P < 1:
        raise UserError("rope_invariance needs at least one prompt token.")
    if shift < 0 or shift + P > cw:
        raise UserError(f"shift + prompt length ({shift} + {P}) must fit the context "
                        f"window {cw}, with shift at least 0.")
    gen = torch.Generator().manual_seed(seed)
    prefix = random_ids(model.cfg.vocab_size, (shift,), gen)
    base = layer0_logits(model, ids[None])[0]
    moved = layer0_logits(model, torch.cat((prefix, ids))[None])[0]
    block = moved[:, shift:shift + P, shift:shift + P]
    diff = float(np.abs(block.astype(np.float64) - base).max())
    return RopeInvariance(prefix.tolist(), base, block.copy(), diff)
