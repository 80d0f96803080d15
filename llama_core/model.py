"""Llama, one modification at a time.

Read this file beside Meta's ``llama/model.py``: the same names (tok_embeddings, layers,
attention.wq/wk/wv/wo, feed_forward.w1/w2/w3, attention_norm, ffn_norm, norm, output), the
same pre-norm block ``h = x + attention(attention_norm(x))``, ``out = h +
feed_forward(ffn_norm(h))``, a final norm, an untied output head and no biases anywhere.

What Meta hard-codes is a choice here, and each choice is a class: a field of ModelConfig
picks one from a registry (NORMS, POSITIONS, FEED_FORWARDS, ATTENTIONS, BLOCKS), so
``print(model)`` names what was swapped and no forward method asks the config anything.
The classic implementation bugs (``ModelConfig.bug``) are swaps too: BUG_SWAPS replaces one
correct class by a subclass that gets one method wrong. ``choose_parts`` is the one place
where a config becomes classes.

The later Llamas' parts have Meta's names too: grouped-query attention (``n_kv_heads``,
``repeat_kv``), the KV cache written at ``start_pos`` (``make_cache``, ``KVCache`` with
``cache_k``/``cache_v``), a tied output head (``tie_embeddings``) and Llama 3.1's scaled
rotary frequencies (``rope_scaling``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, validate_model
from .errors import UserError
from .pitfalls import NO_BUG


# --- Normalisation (ModelConfig.norm) ----------------------------------------------

class RMSNorm(nn.Module):
    """norm=rmsnorm (Llama): scale each token's vector to unit root-mean-square, then by a
    learned weight.

    No mean subtraction and no bias, unlike LayerNorm. Computed in float32 whatever the
    input dtype, because the mean of squares underflows in half precision.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        # x / sqrt(mean(x^2) + eps) over each token's d_model values
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype == torch.float32:
            # the same arithmetic as below, with the weight inside: one call forward,
            # and on a CPU a backward written out (RMSNormFunction)
            return rms_norm(x, self.weight, self.eps)
        return self._norm(x.float()).type_as(x) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps:g}"


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension. PyTorch's own
    rms_norm on a GPU (fused kernels both ways); on a CPU, RMSNormFunction."""
    if x.device.type == "cpu" and torch.is_grad_enabled():
        return RMSNormFunction.apply(x, weight, eps)
    return F.rms_norm(x, (x.shape[-1],), weight, eps=eps)


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm with its derivative written out, because on a CPU PyTorch builds the
    backward of rms_norm from a dozen small elementwise steps. With r = rsqrt(mean(x^2) +
    eps), x_hat = x * r and g the gradient of the output, g_hat = g * weight:

        d x      = r * (g_hat - x_hat * mean(g_hat * x_hat))   (per token)
        d weight = sum over tokens of g * x_hat

    Six operations instead of about fifteen; tests compare it with autograd's gradient
    of the formula."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        x_hat = x * r
        ctx.save_for_backward(x_hat, r, weight)
        return x_hat * weight

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x_hat, r, weight = ctx.saved_tensors
        g_hat = g * weight
        mean_dot = torch.linalg.vecdot(g_hat, x_hat).unsqueeze(-1) / x_hat.shape[-1]
        dx = torch.addcmul(g_hat, x_hat, mean_dot, value=-1.0).mul_(r)
        dweight = (g * x_hat).sum(tuple(range(g.dim() - 1)))
        return dx, dweight, None


class RMSNormOverSequence(RMSNorm):
    """BUG norm_over_sequence: one root-mean-square for the whole (sequence, width)
    block instead of one per token (the 'Llama from scratch' write-up's RMSNorm), so a
    later token changes how every earlier one is scaled and the future leaks."""

    no_cache_because = ("This model's RMSNorm spans the whole sequence, so every new "
                        "token rescales the earlier ones and their keys and values "
                        "cannot be cached.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean((-2, -1), keepdim=True) + self.eps)
        return x32.type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """norm=layernorm (the 2017 Transformer): subtract each token's mean, divide by its
    standard deviation. Without the bias, so it has exactly RMSNorm's parameters and the
    two differ only in subtracting the mean."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__(dim, eps=eps, bias=False)


# --- Positions (ModelConfig.pos) ---------------------------------------------------

def rope_frequencies(head_dim: int, theta: float = 10000.0, off_by_one: bool = False,
                     scaling: dict | None = None) -> torch.Tensor:
    """``freq_i = theta ** (-2i / head_dim)`` for i = 0 .. head_dim/2 - 1, in radians per
    position, in float64. Pair 0 turns fastest (1 rad per position), the last pair
    slowest. ``off_by_one`` is the rope_off_by_one bug's formula, for pages that draw it;
    ``scaling`` is a ``rope_scaling`` dictionary (see ``scale_frequencies``)."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    if off_by_one:  # the classic slip: i - 1 for i, so pair 0 turns faster than 1 rad
        i = i - 1
    freqs = theta ** (-2.0 * i / head_dim)
    return scale_frequencies(freqs, scaling) if scaling else freqs


def scale_frequencies(freqs: torch.Tensor, scaling: dict) -> torch.Tensor:
    """Rotary frequencies stretched to read a longer context, by Hugging Face's
    ``rope_scaling`` rules (transformers' modeling_rope_utils):

    - ``linear`` (position interpolation, Chen et al. 2023): every frequency divided by
      ``factor``, the same as dividing every position by it.
    - ``llama3`` (Llama 3.1): with wavelength w = 2 pi / freq and original context L,
      pairs with w < L / high_freq_factor (fast, local detail) stay; pairs with
      w > L / low_freq_factor (slow, long range) are divided by ``factor``; between, with
      s = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor), freq' =
      (1 - s) freq / factor + s freq.
    """
    kind, factor = scaling.get("rope_type"), scaling.get("factor", 1.0)
    if kind == "linear":
        return freqs / factor
    if kind != "llama3":  # "default": no scaling
        return freqs
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    wavelength = 2 * math.pi / freqs
    smooth = (original / wavelength - low) / (high - low)
    blended = (1 - smooth) * freqs / factor + smooth * freqs
    out = torch.where(wavelength > original / low, freqs / factor, blended)
    return torch.where(wavelength < original / high, freqs, out)


def rope_table(head_dim: int, length: int, theta: float = 10000.0,
               off_by_one: bool = False, scaling: dict | None = None) -> torch.Tensor:
    """``exp(i * m * freq_j)`` for every position m < length and pair j, as complex64
    of shape (length, head_dim/2): Meta's ``precompute_freqs_cis``.

    Angles are formed in float64 so long contexts keep their precision.
    """
    freqs = rope_frequencies(head_dim, theta, off_by_one, scaling)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), freqs)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2j], x[2j+1]) of each head by their angles.

    x: (..., head_dim); freqs_cis: complex (..., head_dim/2), each position's row lined up
    with x's positions by broadcasting: (T, head_dim/2) for x (..., T, head_dim), (T, 1,
    head_dim/2) for heads (B, T, heads, head_dim). Each pair is read as the complex
    number x[2j] + i x[2j+1] and multiplied by exp(i m freq_j): a rotation by m * freq_j
    radians, as in Meta's ``apply_rotary_emb``.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * freqs_cis).flatten(-2).type_as(x)


class NoPositions(nn.Module):
    """pos=none: nothing tells the model where a token is; attention sees a bag of
    tokens, and only the causal mask hints at order.

    A positions class has two sides. As a module inside Attention it gets queries or
    keys (B, T, heads, head_dim) of the positions start_pos .. start_pos + T - 1 and may
    rotate them; its ``learned_table`` and ``rotation_table`` give the tables Llama owns
    (``pos_embeddings``, ``freqs_cis``).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()

    @staticmethod
    def learned_table(cfg: ModelConfig) -> nn.Parameter | None:
        """The table added to the token embeddings, or None."""
        return None

    @staticmethod
    def rotation_table(cfg: ModelConfig) -> torch.Tensor | None:
        """The rotary table attention rotates queries and keys by, or None."""
        return None

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor | None,
                start_pos: int = 0) -> torch.Tensor:
        return x


class LearnedPositions(NoPositions):
    """pos=learned (GPT-2): one trained vector per position, ``Llama.pos_embeddings``,
    added to the token embedding; attention itself leaves queries and keys alone."""

    @staticmethod
    def learned_table(cfg: ModelConfig) -> nn.Parameter:
        return nn.Parameter(torch.zeros(cfg.context_window, cfg.d_model))

    def extra_repr(self) -> str:
        return "added to tok_embeddings, not here"


class RoPE(NoPositions):
    """pos=rope (Llama): rotate each pair of query and key dimensions by an angle that
    grows with the position, so a query-key score depends on their distance only."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.theta = cfg.rope_theta
        self.scaling = cfg.rope_scaling

    @staticmethod
    def rotation_table(cfg: ModelConfig) -> torch.Tensor:
        return rope_table(cfg.head_dim, cfg.context_window, cfg.rope_theta,
                          scaling=cfg.rope_scaling)

    def at_positions(self, freqs_cis: torch.Tensor, start_pos: int, length: int):
        """The table's rows for the positions start_pos .. start_pos + length - 1: each
        token turns by its absolute position, also one decoded after a cached prefix."""
        return freqs_cis[start_pos: start_pos + length]

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor,
                start_pos: int = 0) -> torch.Tensor:
        rows = self.at_positions(freqs_cis, start_pos, x.shape[1])
        return apply_rope(x, rows[:, None])  # one row per position, for every head

    def extra_repr(self) -> str:
        scaled = f", scaling={dict(self.scaling)}" if self.scaling else ""
        return f"theta={self.theta:g}{scaled}"


class RoPEOffByOne(RoPE):
    """BUG rope_off_by_one: the table's frequencies use i - 1 for i, so pair 0 turns
    faster than one radian per position and every pair is shifted to its neighbour's."""

    @staticmethod
    def rotation_table(cfg: ModelConfig) -> torch.Tensor:
        return rope_table(cfg.head_dim, cfg.context_window, cfg.rope_theta, off_by_one=True,
                          scaling=cfg.rope_scaling)


class RoPEUnrotated(RoPE):
    """BUG rope_unrotated: the rotary table is computed, then queries and keys are passed
    on unrotated, so the model has no notion of position despite pos=rope."""

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor,
                start_pos: int = 0) -> torch.Tensor:
        return x


class RoPEAtZero(RoPE):
    """BUG rope_at_zero: each call rotates its tokens as if they began at position 0, so
    a token decoded after a cached prefix turns by 0 instead of its own position. A
    whole sequence at once is still right (training cannot see it); cached generation
    drifts from uncached."""

    def at_positions(self, freqs_cis: torch.Tensor, start_pos: int, length: int):
        return freqs_cis[:length]


class RoPEOnHuggingFaceRows(RoPE):
    """BUG hf_without_permutation: each head's dimensions are rotated in Hugging Face's
    row order (the even dimensions first, then the odd: what its checkpoints store for
    rotate_half) as if they were Meta's adjacent pairs. The same arithmetic as loading
    a Hugging Face checkpoint without transformers' permutation (hf.from_hf_rows): each
    rotary pair mixes two dimensions the weights never paired."""

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor,
                start_pos: int = 0) -> torch.Tensor:
        head_dim = x.shape[-1]
        hf_rows = torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))
        return super().forward(x[..., hf_rows.to(x.device)], freqs_cis, start_pos)


# --- Dropout (ModelConfig.dropout) -------------------------------------------------

class Dropout(nn.Dropout):
    """Dropout that can also tell fused attention the rate to use now: ``p`` while
    training, 0 in eval mode (a rate of 0 draws no random numbers)."""

    def rate(self) -> float:
        return self.p if self.training else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.rate()
        return F.dropout(x, p, training=p > 0)


class DropoutAtEval(Dropout):
    """BUG dropout_at_eval: the rate ignores eval mode, so validation loss is noisy and
    worse and generation varies even at temperature 0."""

    def rate(self) -> float:
        return self.p


# --- Attention (ModelConfig.causal) ------------------------------------------------

def future_mask(T: int, device: torch.device, keys: int | None = None) -> torch.Tensor:
    """(T, keys) booleans, True where the key comes after the query. Keys default to the
    T queries themselves (True above the diagonal); with a cache, the T queries are the
    last T of the ``keys`` positions."""
    keys = T if keys is None else keys
    return torch.ones(T, keys, dtype=torch.bool, device=device).triu(keys - T + 1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Meta's ``repeat_kv``: every key/value head copied n_rep times, side by side, so
    query head h reads key/value head h // n_rep. x is (B, n_kv_heads, T, head_dim)
    here (Meta's layout has heads on dim 2); the result (B, n_kv_heads * n_rep, T,
    head_dim) is a view that copies nothing when n_rep is 1."""
    if n_rep == 1:
        return x
    B, n_kv_heads, T, head_dim = x.shape
    return x[:, :, None].expand(B, n_kv_heads, n_rep, T, head_dim).reshape(
        B, n_kv_heads * n_rep, T, head_dim)


class LayerCache:
    """One attention layer's keys and values for generation, ``cache_k`` and ``cache_v``
    (batch, heads, max_len, head_dim) each, written at ``start_pos`` as in Meta's
    Attention. They are made at the first write with the heads they are given: a
    correct model writes n_kv_heads, before ``repeat_kv``."""

    def __init__(self, batch_size: int, max_len: int):
        self.batch_size, self.max_len = batch_size, max_len
        self.cache_k: torch.Tensor | None = None
        self.cache_v: torch.Tensor | None = None

    def update(self, k: torch.Tensor, v: torch.Tensor, start_pos: int):
        """Write this call's keys and values (B, heads, T, head_dim) at start_pos and
        return every cached one up to the last written, (B, heads, start_pos + T,
        head_dim)."""
        B, heads, T, head_dim = k.shape
        if self.cache_k is None:
            shape = (self.batch_size, heads, self.max_len, head_dim)
            self.cache_k, self.cache_v = k.new_zeros(shape), v.new_zeros(shape)
        end = start_pos + T
        self.cache_k[:B, :, start_pos:end] = k
        self.cache_v[:B, :, start_pos:end] = v
        return self.cache_k[:B, :, :end], self.cache_v[:B, :, :end]


class KVCache:
    """Keys and values of every layer, so a decoding step runs only its new token.

    ``length`` is how many positions hold keys and values; the next call starts there
    (or earlier, overwriting). ``nbytes`` is the memory held: 2 (keys and values) x
    layers x heads cached x head_dim x max_len x batch x bytes per value.
    """

    def __init__(self, n_layers: int, batch_size: int, max_len: int):
        self.batch_size, self.max_len = batch_size, max_len
        self.layers = [LayerCache(batch_size, max_len) for _ in range(n_layers)]
        self.length = 0

    def tensors(self) -> list[torch.Tensor]:
        return [t for c in self.layers for t in (c.cache_k, c.cache_v) if t is not None]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    @property
    def heads(self) -> int | None:
        """Key/value heads held per layer (None before the first write)."""
        return next((t.shape[1] for t in self.tensors()), None)

    def bytes_per_token(self) -> float:
        """Memory per cached position of one sequence, in bytes."""
        return self.nbytes / (self.max_len * self.batch_size)


class Attention(nn.Module):
    """causal=True (Llama): multi-head self-attention in which each query sees only its
    own and earlier keys; ``positions`` rotates queries and keys (RoPE) or leaves them.

    Grouped-query attention as Meta's: n_kv_heads key/value heads (wk, wv are
    d_model x n_kv_heads * head_dim), each shared by n_heads / n_kv_heads query heads
    through ``repeat_kv``; n_kv_heads = n_heads is multi-head attention, 1 multi-query.

    The softmax runs in PyTorch's fused ``scaled_dot_product_attention``, which never
    forms the (T, T) probabilities. While ``capture`` holds a list (``capture_attention``
    sets it), the same arithmetic runs step by step instead and each call appends its
    probabilities (B, H, T, keys), rows = queries, to that list.
    """

    is_causal = True  # what the fused kernel is told
    fused = True      # whether the fused kernel computes what ``mask`` describes
    no_cache_because = ""  # why a KV cache cannot reproduce this attention ("" = it can)

    def __init__(self, cfg: ModelConfig, parts: Parts):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.kv_heads
        self.n_rep = cfg.n_heads // cfg.kv_heads  # query heads per key/value head
        self.head_dim = cfg.head_dim
        kv_dim = self.n_kv_heads * self.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.wk = nn.Linear(cfg.d_model, kv_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, kv_dim, bias=False)
        self.wo = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.positions = parts.positions(cfg)
        self.dropout = parts.dropout(cfg.dropout)  # on the attention probabilities
        self.capture: list[torch.Tensor] | None = None

    def qkv(self, x: torch.Tensor, freqs_cis: torch.Tensor | None, start_pos: int = 0):
        """Queries (B, n_heads, T, head_dim), keys and values (B, n_kv_heads, T,
        head_dim) of the positions start_pos .. start_pos + T - 1, q and k rotated.

        As in Meta's code, queries and keys are rotated while heads are still
        (B, T, heads, head_dim), the layout the projections give, and only then
        transposed for attention: rotated after the transpose, every gradient had to be
        copied back across it (6% of a training step at the nanogpt-cpu shape).
        """
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q = self.positions(q, freqs_cis, start_pos)
        k = self.positions(k, freqs_cis, start_pos)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def keys_values(self, k: torch.Tensor, v: torch.Tensor, cache: LayerCache | None,
                    start_pos: int):
        """The keys and values the queries attend to, (B, n_heads, keys, head_dim): with
        a cache, the cached earlier positions and these; the cache holds them before
        ``repeat_kv``, n_kv_heads per layer: the memory grouped-query attention saves."""
        if cache is not None:
            k, v = cache.update(k, v, start_pos)
        return repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)

    def logits(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``q . k / sqrt(head_dim)``: (B, H, T, T), rows = queries, columns = keys."""
        return (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)

    def scores(self, x: torch.Tensor, freqs_cis=None) -> torch.Tensor:
        """Attention logits of input x before any mask: (B, H, T, T), rows are query
        positions, columns key positions."""
        q, k, _ = self.qkv(x, freqs_cis)
        return self.logits(q, repeat_kv(k, self.n_rep))

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """-inf on every future key, so the softmax gives it exactly zero weight."""
        return logits.masked_fill(
            future_mask(logits.shape[-2], logits.device, logits.shape[-1]), float("-inf"))

    def fused_mask(self, T: int, keys: int, device: torch.device) -> dict:
        """What the fused kernel is told. Queries and keys at the same positions: is_causal.
        With a cache the T queries are the last of the keys, so the causal mask is aligned
        to the end (one query may see every key)."""
        if T == keys:
            return {"is_causal": self.is_causal}
        if T == 1 or not self.is_causal:
            return {}
        return {"attn_mask": ~future_mask(T, device, keys)}

    def forward(self, x: torch.Tensor, freqs_cis=None, cache: LayerCache | None = None,
                start_pos: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x, freqs_cis, start_pos)
        k, v = self.keys_values(k, v, cache, start_pos)
        if self.fused and self.capture is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout.rate(),
                                                 **self.fused_mask(T, k.shape[-2], x.device))
        else:
            probs = self.mask(self.logits(q, k)).softmax(dim=-1)
            if self.capture is not None:
                self.capture.append(probs)
            out = self.dropout(probs) @ v
        return self.wo(out.transpose(1, 2).reshape(B, T, C))

    def extra_repr(self) -> str:
        kv = f", n_kv_heads={self.n_kv_heads}" if self.n_kv_heads != self.n_heads else ""
        return f"n_heads={self.n_heads}{kv}, head_dim={self.head_dim}"


class RepeatKVBeforeCache(Attention):
    """BUG repeat_kv_before_cache: keys and values are repeated for every query head
    before they are cached, so the cache holds n_heads heads per layer, as much as
    multi-head attention's: the outputs are right and grouped-query attention saves no
    memory."""

    def keys_values(self, k: torch.Tensor, v: torch.Tensor, cache: LayerCache | None,
                    start_pos: int):
        k, v = repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)
        if cache is not None:
            k, v = cache.update(k, v, start_pos)
        return k, v


class BidirectionalAttention(Attention):
    """causal=False (BERT-style): no mask, every query sees every key, the future
    included. A language model trained this way reads the answer."""

    is_causal = False
    no_cache_because = ("This model attends to later tokens too (causal=false), so the "
                        "keys and values of earlier tokens change as text is added and "
                        "cannot be cached.")

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


class MaskAddedAsOnes(Attention):
    """BUG mask_ones: the causal mask is added as ones instead of -inf, so future keys
    get a bonus of 1 instead of zero weight. The fused kernel would mask correctly, so
    this class always takes the step-by-step path."""

    fused = False
    no_cache_because = ("This model's mask lets tokens see later ones, so the keys and "
                        "values of earlier tokens change as text is added and cannot be "
                        "cached.")

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + future_mask(logits.shape[-2], logits.device,
                                    logits.shape[-1]).to(logits.dtype)


@contextlib.contextmanager
def capture_attention(model: nn.Module):
    """Make every Attention in ``model`` keep its softmax probabilities while the block
    runs: yields a list to which each forward pass appends one (B, H, T, T) tensor per
    layer, in layer order, rows = queries, columns = keys. Probabilities are taken
    before attention dropout and keep their autograd graph."""
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    before = [a.capture for a in attentions]
    maps: list[torch.Tensor] = []
    for a in attentions:
        a.capture = maps
    try:
        yield maps
    finally:
        for a, previous in zip(attentions, before):
            a.capture = previous


# --- Feed-forward (ModelConfig.ffn) ------------------------------------------------

class SwiGLU(nn.Module):
    """ffn=swiglu (Llama; Meta's ``FeedForward``): ``w2(silu(w1 x) * w3 x)``, a gated
    unit whose hidden width is 2/3 of 4d so its three matrices cost about two of 4d."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)
        self.w3 = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MLP(nn.Module):
    """ffn=gelu (GPT-2): ``w2(gelu(w1 x))``, two matrices, hidden width 4d."""

    activation = nn.GELU

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)
        self.act = self.activation()
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act(self.w1(x)))


class ReLUMLP(MLP):
    """ffn=relu (the 2017 Transformer): ``w2(relu(w1 x))``."""

    activation = nn.ReLU


# --- Blocks (ModelConfig.attention) ------------------------------------------------

class Block(nn.Module):
    """attention=True: one pre-norm transformer block. Attention, then feed-forward, each
    on a normalised copy of the residual stream, its output dropped out and added back:
    ``h = x + attention(attention_norm(x))``, ``out = h + feed_forward(ffn_norm(h))``."""

    def __init__(self, cfg: ModelConfig, parts: Parts):
        super().__init__()
        self.attention = parts.attention(cfg, parts)
        self.attention_norm = parts.norm(cfg.d_model, cfg.norm_eps)
        self.feed_forward = parts.feed_forward(cfg)
        self.ffn_norm = parts.norm(cfg.d_model, cfg.norm_eps)
        self.dropout = parts.dropout(cfg.dropout)  # on each branch before it is added

    def forward(self, x: torch.Tensor, freqs_cis=None, cache: LayerCache | None = None,
                start_pos: int = 0) -> torch.Tensor:
        h = x + self.dropout(self.attention(self.attention_norm(x), freqs_cis, cache,
                                            start_pos))
        return h + self.dropout(self.feed_forward(self.ffn_norm(h)))


class FeedForwardBlock(nn.Module):
    """attention=False (the ladder's first rung): the feed-forward half of a block only,
    ``out = x + feed_forward(ffn_norm(x))``. Tokens never look at each other."""

    def __init__(self, cfg: ModelConfig, parts: Parts):
        super().__init__()
        self.attention = None
        self.attention_norm = None
        self.feed_forward = parts.feed_forward(cfg)
        self.ffn_norm = parts.norm(cfg.d_model, cfg.norm_eps)
        self.dropout = parts.dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, freqs_cis=None, cache: LayerCache | None = None,
                start_pos: int = 0) -> torch.Tensor:
        return x + self.dropout(self.feed_forward(self.ffn_norm(x)))


# --- From a config to classes ------------------------------------------------------

NORMS = {"rmsnorm": RMSNorm, "layernorm": LayerNorm, "none": nn.Identity}
POSITIONS = {"rope": RoPE, "learned": LearnedPositions, "none": NoPositions}
FEED_FORWARDS = {"swiglu": SwiGLU, "gelu": MLP, "relu": ReLUMLP}
ATTENTIONS = {True: Attention, False: BidirectionalAttention}  # by ModelConfig.causal
BLOCKS = {True: Block, False: FeedForwardBlock}                # by ModelConfig.attention

# The bugs built into the model (pitfalls.BUILT_IN tells each one's story): bug name ->
# (the part it replaces, the buggy subclass).
BUG_SWAPS = {
    "norm_over_sequence": ("norm", RMSNormOverSequence),
    "dropout_at_eval": ("dropout", DropoutAtEval),
    "rope_unrotated": ("positions", RoPEUnrotated),
    "rope_off_by_one": ("positions", RoPEOffByOne),
    "mask_ones": ("attention", MaskAddedAsOnes),
    "rope_at_zero": ("positions", RoPEAtZero),
    "repeat_kv_before_cache": ("attention", RepeatKVBeforeCache),
    "hf_without_permutation": ("positions", RoPEOnHuggingFaceRows),
}


@dataclasses.dataclass(frozen=True)
class Parts:
    """The class each part of a model is built from; ``choose_parts`` makes one."""

    block: type[nn.Module]
    attention: type[Attention]
    positions: type[NoPositions]
    norm: type[nn.Module]
    feed_forward: type[nn.Module]
    dropout: type[Dropout]


def choose_parts(cfg: ModelConfig) -> Parts:
    """The one place where a config's choices become classes: one registry look-up per
    field, then the named bug, if any, swaps its part for the buggy subclass."""
    parts = Parts(block=BLOCKS[cfg.attention], attention=ATTENTIONS[cfg.causal],
                  positions=POSITIONS[cfg.pos], norm=NORMS[cfg.norm],
                  feed_forward=FEED_FORWARDS[cfg.ffn], dropout=Dropout)
    if cfg.bug != NO_BUG:
        part, buggy = BUG_SWAPS[cfg.bug]
        parts = dataclasses.replace(parts, **{part: buggy})
    return parts


# --- The model ---------------------------------------------------------------------

class Llama(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size).

    ``model(idx, return_attention=True)`` also returns one (B, H, T, T) tensor of softmax
    probabilities per layer (rows = query positions, columns = key positions).
    ``model(idx, cache=cache, start_pos=n)`` reads the tokens at positions n .. n + T - 1
    and attends to the n before them from ``cache`` (``make_cache``).
    """

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        self.cfg = validate_model(cfg)
        parts = choose_parts(cfg)
        # PyTorch's default initialisers draw from the global generator; init_weights
        # overwrites every value, so keep the global stream (dropout's) untouched.
        with torch.random.fork_rng(devices=[]):
            self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.pos_embeddings = parts.positions.learned_table(cfg)
            self.dropout = parts.dropout(cfg.dropout)  # on the embeddings
            self.layers = nn.ModuleList(parts.block(cfg, parts) for _ in range(cfg.n_layers))
            self.norm = parts.norm(cfg.d_model, cfg.norm_eps)
            self.output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.tie_output_to_embedding()
        table = parts.positions.rotation_table(cfg) if cfg.attention else None
        self.register_buffer("freqs_cis", table, persistent=False)
        self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Initialise each parameter from its own generator, seeded by (seed, name).

        So two variants built with the same seed start with identical values in every
        parameter they share (same name and shape): a paired ablation changes one thing.
        Matrices get N(0, 0.02) like GPT-2, output projections of each residual branch
        scaled by 1/sqrt(2 * n_layers); norm weights start at one.
        """
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
                continue
            gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            std = 0.02
            if name.endswith(("wo.weight", "w2.weight")):
                std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
            value = torch.randn(param.shape, generator=gen) * std
            param.copy_(value.to(param.device, param.dtype))

    def tie_output_to_embedding(self) -> None:
        """tie_embeddings: the output head is the token embedding's own matrix (vocab x
        d_model either way), one parameter under one name, tok_embeddings.weight. A
        checkpoint stores it once; loading fills the head from it."""
        self.output.weight = self.tok_embeddings.weight

        def drop_head(module, state_dict, prefix, local_metadata):
            state_dict.pop(prefix + "output.weight", None)

        def fill_head(module, state_dict, prefix, *args):
            if prefix + "tok_embeddings.weight" in state_dict:
                state_dict[prefix + "output.weight"] = state_dict[prefix + "tok_embeddings.weight"]

        self.register_state_dict_post_hook(drop_head)
        self.register_load_state_dict_pre_hook(fill_head)

    def forward(self, idx: torch.Tensor, return_attention: bool = False,
                cache: KVCache | None = None, start_pos: int = 0):
        if return_attention:
            with capture_attention(self) as maps:
                return self.logits(idx, cache, start_pos), maps
        return self.logits(idx, cache, start_pos)

    def logits(self, idx: torch.Tensor, cache: KVCache | None = None,
               start_pos: int = 0) -> torch.Tensor:
        """The forward pass: token ids (B, T) at positions start_pos .. start_pos + T - 1
        -> logits (B, T, vocab_size); with a cache, the earlier positions' keys and
        values are read from it and these are written into it."""
        self.check_positions(idx, cache, start_pos)
        x = self.dropout(self.embed(idx, start_pos))
        caches = cache.layers if cache is not None else [None] * len(self.layers)
        for layer, layer_cache in zip(self.layers, caches):
            x = layer(x, self.freqs_cis, layer_cache, start_pos)
        if cache is not None:
            cache.length = start_pos + idx.shape[1]
        return self.output(self.norm(x))

    def check_positions(self, idx: torch.Tensor, cache: KVCache | None,
                        start_pos: int) -> None:
        """Refuse, in one sentence, positions past the context window (no table holds
        them) or a cache that cannot take these tokens."""
        T, cw = idx.shape[1], self.cfg.context_window
        if start_pos < 0:
            raise UserError(f"start_pos must be 0 or more, not {start_pos}.")
        if start_pos + T > cw:
            raise UserError(f"Positions {start_pos} to {start_pos + T - 1} go past the "
                            f"context_window of {cw} tokens this model was built for; "
                            f"give it at most the last {cw} tokens.")
        if cache is None:
            return
        if start_pos > cache.length:
            raise UserError(f"start_pos ({start_pos}) must not skip positions: the cache "
                            f"holds {cache.length}, so start at {cache.length} or before.")
        if start_pos + T > cache.max_len or idx.shape[0] > cache.batch_size:
            raise UserError(f"This cache holds {cache.batch_size} sequence(s) of "
                            f"{cache.max_len} tokens, too few for {idx.shape[0]} of "
                            f"{start_pos + T}; make a larger one with make_cache.")

    def embed(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """The residual stream entering layer 0 (token embedding plus any learned
        position), also for probes that look at one layer on its own."""
        x = self.tok_embeddings(idx)
        if self.pos_embeddings is not None:
            x = x + self.pos_embeddings[start_pos: start_pos + idx.shape[1]]
        return x

    def why_no_cache(self) -> str | None:
        """Why a KV cache cannot give this model's logits (one sentence per reason), or
        None when it can: only a model whose earlier tokens never see later ones can
        keep their keys and values."""
        reasons = dict.fromkeys(getattr(m, "no_cache_because", "") for m in self.modules())
        return " ".join(r for r in reasons if r) or None

    def make_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences of up to ``max_len`` tokens
        (default and at most the context window); it takes memory at its first write."""
        why = self.why_no_cache()
        if why:
            raise UserError(why)
        cw = self.cfg.context_window
        max_len = cw if max_len is None else max_len
        if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= cw:
            raise UserError(f"A cache holds at most the context window: max_len must be "
                            f"a whole number from 1 to {cw}, not {max_len!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size must be a whole number of at least 1, not "
                            f"{batch_size!r}.")
        return KVCache(len(self.layers), batch_size, max_len)

    def extra_repr(self) -> str:
        lines = []
        if self.pos_embeddings is not None:
            lines.append(f"pos_embeddings: {tuple(self.pos_embeddings.shape)} learned, "
                         f"added to tok_embeddings")
        if self.freqs_cis is not None:
            lines.append(f"freqs_cis: {tuple(self.freqs_cis.shape)} rotary table")
        return "\n".join(lines)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def sample_steps(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                     top_k: int | None = None, generator: torch.Generator | None = None,
                     use_cache: bool = True):
        """Sample ``max_new_tokens`` continuations of idx (B, T) one step at a time: the
        one sampling loop, which ``generate`` and the dashboard's Generate page share.

        Yields, per step, ``(next_id, probs)``: the ids drawn (B, 1) and the distribution
        they were drawn from (B, vocab), as ``sampling_probs`` gives it (the plain softmax
        at temperature 0, where the draw is the argmax). The model is run in whatever
        mode it is in: wrap the loop in ``eval_mode(model)`` to sample without dropout.

        Each step reads at most the last ``context_window`` tokens (the window slides).
        With ``use_cache`` the first step runs the prompt (prefill) and each later one only
        its new token, reading the earlier keys and values from a KV cache; once the text
        outgrows the window every step reruns the last ``context_window`` tokens, exactly
        what the uncached loop does, so from there on the cache gains nothing. A model that
        cannot be cached (``why_no_cache``) always runs uncached.
        """
        cw = self.cfg.context_window
        cache = None
        if use_cache and self.why_no_cache() is None:
            cache = self.make_cache(idx.shape[0], cw)
        cached = 0  # tokens of idx whose keys and values the cache holds
        for _ in range(max_new_tokens):
            if cache is not None and idx.shape[1] <= cw:
                logits = self(idx[:, cached:], cache=cache, start_pos=cached)
                cached = idx.shape[1]
            else:
                logits = self(idx[:, -cw:])
            logits = logits[:, -1, :].float()
            next_id, probs = sample_with_probs(logits, temperature, top_k, generator)
            idx = torch.cat((idx, next_id), dim=1)
            yield next_id, probs

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True):
        """Sample ``max_new_tokens`` continuations of idx (B, T) and return idx with them
        appended, (B, T + max_new_tokens). temperature 0 is greedy. A generator makes the
        draw reproducible. ``use_cache`` gives the same ids, faster (``sample_steps``)."""
        steps = self.sample_steps(idx, max_new_tokens, temperature, top_k, generator,
                                  use_cache)
        return torch.cat([idx, *(next_id for next_id, _ in steps)], dim=1)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run a block in eval mode (no dropout) and give the model back its training flag
    afterwards, even when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def dropout_off(model: nn.Module):
    """Run a block with every dropout rate at 0, the dropout_at_eval bug's too, in any
    mode: for measurements that must show the weights rather than noise and must not
    draw from the random stream training goes on with."""
    dropouts = [m for m in model.modules() if isinstance(m, Dropout)]
    rates = [m.p for m in dropouts]
    for m in dropouts:
        m.p = 0.0
    try:
        yield model
    finally:
        for m, p in zip(dropouts, rates):
            m.p = p


def check_sampling(temperature: float, top_k: int | None) -> None:
    """Refuse, in one sentence, sampler settings that would crash or mean nothing."""
    if not math.isfinite(temperature) or temperature < 0:
        raise UserError(f"temperature must be 0 or more, not {temperature!r}.")
    if top_k is not None and top_k < 1:
        raise UserError(f"top_k must be at least 1, not {top_k!r}.")


def sampling_probs(logits: torch.Tensor, temperature: float,
                   top_k: int | None) -> torch.Tensor:
    """The distribution ``sample_with_probs`` draws from, (B, vocab) -> (B, vocab):
    ``softmax(logits / temperature)`` with every logit below the k-th largest of its row
    set to -inf first when top_k is given. At temperature 0 the draw is the argmax; the
    plain softmax is returned so a reader still sees how sure the model was."""
    if temperature <= 0:
        return logits.softmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits.softmax(dim=-1)


def sample_with_probs(logits: torch.Tensor, temperature: float, top_k: int | None,
                      generator: torch.Generator | None):
    """One token per row from the last position's logits (B, vocab): the ids (B, 1) and
    the ``sampling_probs`` they were drawn from (B, vocab)."""
    probs = sampling_probs(logits, temperature, top_k)
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True), probs
    if generator is not None and probs.device.type != generator.device.type:
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device), probs
    return torch.multinomial(probs, 1, generator=generator), probs
