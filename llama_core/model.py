"""Llama, one modification at a time.

The model follows Meta's reference ``llama/model.py``: token embedding, a stack of
pre-norm blocks ``h = x + attention(attention_norm(x))``, ``out = h + feed_forward(
ffn_norm(h))``, a final norm and an untied output head, no biases anywhere. Every Llama
choice can be swapped for its predecessor (RMSNorm -> LayerNorm or nothing, RoPE ->
learned positions or nothing, SwiGLU -> GELU or ReLU, causal mask off), and the classic
implementation bugs can be switched on by name (``ModelConfig.bug``) to see what they do.
Module names match Meta's, so a reader can hold the two files side by side.
"""

from __future__ import annotations

import contextlib
import math
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, validate_model
from .errors import UserError


# --- Normalisation -----------------------------------------------------------------

class RMSNorm(nn.Module):
    """Scale each token's vector to unit root-mean-square, then by a learned weight.

    No mean subtraction and no bias, unlike LayerNorm. Computed in float32 whatever the
    input dtype, because the mean of squares underflows in half precision.
    """

    def __init__(self, dim: int, eps: float = 1e-5, over_sequence: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        # The bug from the write-ups: one RMS for the whole (sequence, width) block, so a
        # later token changes how every earlier token is scaled - the future leaks.
        self.over_sequence = over_sequence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        if self.over_sequence:
            normed = xf * torch.rsqrt(xf.pow(2).mean((-2, -1), keepdim=True) + self.eps)
        else:  # x / sqrt(mean(x^2) + eps), PyTorch's fused kernel for the same formula
            normed = F.rms_norm(xf, (xf.shape[-1],), eps=self.eps)
        return normed.type_as(x) * self.weight


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps,
                       over_sequence=cfg.bug == "norm_over_sequence")
    if cfg.norm == "layernorm":
        # No bias, so LayerNorm and RMSNorm have the same parameters and differ only in
        # subtracting the mean.
        return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)
    return nn.Identity()


# --- Rotary position embedding -----------------------------------------------------

def rope_frequencies(head_dim: int, theta: float = 10000.0,
                     off_by_one: bool = False) -> torch.Tensor:
    """``freq_i = theta ** (-2i / head_dim)`` for i = 0 .. head_dim/2 - 1, in radians per
    position, in float64. Pair 0 turns fastest (1 rad per position), the last pair
    slowest."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    if off_by_one:  # the classic slip: i - 1 for i, so pair 0 turns faster than 1 rad
        i = i - 1
    return theta ** (-2.0 * i / head_dim)


def rope_table(head_dim: int, length: int, theta: float = 10000.0,
               off_by_one: bool = False) -> torch.Tensor:
    """``exp(i * m * freq_j)`` for every position m < length and pair j, as complex64
    of shape (length, head_dim/2): Meta's ``precompute_freqs_cis``.

    Angles are formed in float64 so long contexts keep their precision.
    """
    freqs = rope_frequencies(head_dim, theta, off_by_one)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), freqs)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2j], x[2j+1]) of each head by their angles.

    x: (B, H, T, head_dim); freqs_cis: (T, head_dim/2) complex. Each pair is read as the
    complex number x[2j] + i x[2j+1] and multiplied by exp(i m freq_j): a rotation by
    m * freq_j radians, as in Meta's ``apply_rotary_emb``.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * freqs_cis).flatten(-2).type_as(x)


# --- Attention ---------------------------------------------------------------------

class Attention(nn.Module):
    """Multi-head self-attention with rotary positions on queries and keys."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        self.causal = cfg.causal
        self.bug = cfg.bug
        self.use_rope = cfg.pos == "rope"
        self.dropout = cfg.dropout
        self.wq = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.wo = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def qkv(self, x: torch.Tensor, freqs_cis: torch.Tensor | None):
        """Queries, keys and values per head, each (B, H, T, head_dim), q and k rotated.

        The three projections run as one matrix multiply (faster at small widths); the
        parameters stay three matrices wq, wk, wv as in Meta's code.
        """
        B, T, _ = x.shape
        w = torch.cat((self.wq.weight, self.wk.weight, self.wv.weight))
        qkv = F.linear(x, w).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        qk, v = qkv[:2], qkv[2]
        if self.use_rope and self.bug != "rope_unrotated":
            qk = apply_rope(qk, freqs_cis[:T])
        return qk[0], qk[1], v

    def scores(self, x: torch.Tensor, freqs_cis=None) -> torch.Tensor:
        """Attention logits ``q . k / sqrt(head_dim)`` before any mask: (B, H, T, T),
        rows are query positions, columns key positions."""
        q, k, _ = self.qkv(x, freqs_cis)
        return (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)

    def forward(self, x: torch.Tensor, freqs_cis=None, return_attention: bool = False,
                dropout_on: bool = False):
        B, T, C = x.shape
        q, k, v = self.qkv(x, freqs_cis)
        p = self.dropout if dropout_on else 0.0
        if return_attention or self.bug == "mask_ones":
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if self.causal:
                future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
                if self.bug == "mask_ones":  # adds +1 to the future: it still gets weight
                    att = att + future.to(att.dtype)
                else:
                    att = att.masked_fill(future, float("-inf"))
            att = att.softmax(dim=-1)
            probs = att
            att = F.dropout(att, p, training=p > 0)
            out = att @ v
        else:
            probs = None
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        out = out.transpose(1, 2).reshape(B, T, C)
        return self.wo(out), probs


# --- Feed-forward ------------------------------------------------------------------

class FeedForward(nn.Module):
    """SwiGLU ``w2(silu(w1 x) * w3 x)`` or the classic ``w2(act(w1 x))`` with GELU/ReLU."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.ffn
        hidden = cfg.ffn_hidden
        self.w1 = nn.Linear(cfg.d_model, hidden, bias=False)
        self.w2 = nn.Linear(hidden, cfg.d_model, bias=False)
        self.w3 = nn.Linear(cfg.d_model, hidden, bias=False) if self.kind == "swiglu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            # w1 and w3 run as one matrix multiply; the parameters stay two matrices.
            gate, up = F.linear(x, torch.cat((self.w1.weight, self.w3.weight))).chunk(2, -1)
            return self.w2(F.silu(gate) * up)
        act = F.gelu if self.kind == "gelu" else F.relu
        return self.w2(act(self.w1(x)))


# --- Block and model ---------------------------------------------------------------

class Block(nn.Module):
    """One pre-norm transformer block: attention then feed-forward, each on a normalised
    copy of the residual stream and added back to it."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dropout = cfg.dropout
        self.attention = Attention(cfg) if cfg.attention else None
        self.attention_norm = make_norm(cfg) if cfg.attention else None
        self.feed_forward = FeedForward(cfg)
        self.ffn_norm = make_norm(cfg)

    def forward(self, x, freqs_cis=None, return_attention=False, dropout_on=False):
        probs = None
        p = self.dropout if dropout_on else 0.0
        if self.attention is not None:
            a, probs = self.attention(self.attention_norm(x), freqs_cis, return_attention,
                                      dropout_on)
            x = x + F.dropout(a, p, training=p > 0)
        x = x + F.dropout(self.feed_forward(self.ffn_norm(x)), p, training=p > 0)
        return x, probs


class Llama(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size).

    ``model(idx, return_attention=True)`` also returns one (B, H, T, T) tensor of softmax
    probabilities per layer (rows = query positions, columns = key positions).
    """

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        self.cfg = validate_model(cfg)
        # PyTorch's default initialisers draw from the global generator; init_weights
        # overwrites every value, so keep the global stream (dropout's) untouched.
        with torch.random.fork_rng(devices=[]):
            self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.pos_embeddings = (nn.Parameter(torch.zeros(cfg.context_window, cfg.d_model))
                                   if cfg.pos == "learned" else None)
            self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
            self.norm = make_norm(cfg)
            self.output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.attention and cfg.pos == "rope":
            table = rope_table(cfg.head_dim, cfg.context_window, cfg.rope_theta,
                               off_by_one=cfg.bug == "rope_off_by_one")
            self.register_buffer("freqs_cis", table, persistent=False)
        else:
            self.freqs_cis = None
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

    def forward(self, idx: torch.Tensor, return_attention: bool = False):
        B, T = idx.shape
        if T > self.cfg.context_window:
            raise ValueError(f"sequence length {T} exceeds context_window "
                             f"{self.cfg.context_window}")
        dropout_on = self.cfg.dropout > 0 and (self.training or
                                                self.cfg.bug == "dropout_at_eval")
        p = self.cfg.dropout if dropout_on else 0.0
        x = self.tok_embeddings(idx)
        if self.pos_embeddings is not None:
            x = x + self.pos_embeddings[:T]
        x = F.dropout(x, p, training=p > 0)
        maps = []
        for layer in self.layers:
            x, probs = layer(x, self.freqs_cis, return_attention, dropout_on)
            if return_attention and probs is not None:
                maps.append(probs)
        logits = self.output(self.norm(x))
        return (logits, maps) if return_attention else logits

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """The residual stream entering layer 0 (token embedding plus any learned
        position), for probes that look at one layer on its own."""
        x = self.tok_embeddings(idx)
        if self.pos_embeddings is not None:
            x = x + self.pos_embeddings[: idx.shape[1]]
        return x

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def sample_steps(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                     top_k: int | None = None, generator: torch.Generator | None = None):
        """Sample ``max_new_tokens`` continuations of idx (B, T) one step at a time: the
        one sampling loop, which ``generate`` and the dashboard's Generate page share.

        Yields, per step, ``(next_id, probs)``: the ids drawn (B, 1) and the distribution
        they were drawn from (B, vocab), as ``sampling_probs`` gives it (the plain softmax
        at temperature 0, where the draw is the argmax). Each step reads at most the last
        ``context_window`` tokens. The model is run in whatever mode it is in: wrap the loop
        in ``eval_mode(model)`` to sample without dropout.
        """
        for _ in range(max_new_tokens):
            context = idx[:, -self.cfg.context_window:]
            logits = self(context)[:, -1, :].float()
            next_id, probs = sample_with_probs(logits, temperature, top_k, generator)
            idx = torch.cat((idx, next_id), dim=1)
            yield next_id, probs

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None):
        """Sample ``max_new_tokens`` continuations of idx (B, T) and return idx with them
        appended, (B, T + max_new_tokens). temperature 0 is greedy. A generator makes the
        draw reproducible."""
        steps = self.sample_steps(idx, max_new_tokens, temperature, top_k, generator)
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
