"""The model contract (DESIGN.md), checked against independent reference formulas.

Every reference here is re-typed from the formula or from Meta's llama/model.py, never
taken from llama_core, so a slip in the model makes a test fail. Models are tiny so the
whole file runs in seconds on two CPU cores.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from llama_core import model as M
from llama_core.config import BUGS, ModelConfig
from llama_core.pitfalls import BUILT_IN
from llama_core.model import (Llama, RMSNorm, RMSNormFunction, apply_rope,
                               rope_frequencies, rope_table)

NORMS, POSES, FFNS = ("rmsnorm", "layernorm", "none"), ("rope", "learned", "none"), \
    ("swiglu", "gelu", "relu")
COMBOS = list(itertools.product(NORMS, POSES, FFNS))
TINY = dict(vocab_size=13, context_window=12, d_model=16, n_layers=2, n_heads=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def random_ids(cfg: ModelConfig, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, length), generator=g)


# --- Independent references --------------------------------------------------------

def meta_precompute_freqs_cis(dim: int, end: int, theta: float) -> torch.Tensor:
    """Meta's precompute_freqs_cis, re-typed in float64 (their code uses float32)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim))
    t = torch.arange(end, dtype=torch.float64)
    freqs = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(freqs), freqs)  # complex128


def meta_apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor):
    """Meta's apply_rotary_emb with its (B, T, H, D) layout and reshape_for_broadcast."""
    xq_ = torch.view_as_complex(xq.double().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.double().reshape(*xk.shape[:-1], -1, 2))
    shape = [d if i in (1, xq_.ndim - 1) else 1 for i, d in enumerate(xq_.shape)]
    fc = freqs_cis.view(*shape)
    return torch.view_as_real(xq_ * fc).flatten(3), torch.view_as_real(xk_ * fc).flatten(3)


def rotation_matrix(head_dim: int, m: int, theta: float) -> torch.Tensor:
    """Block-diagonal (D, D) matrix of 2x2 rotations [[cos, -sin], [sin, cos]], pair i
    turned by m * theta^(-2i/D): RoPE written without complex numbers."""
    R = torch.zeros(head_dim, head_dim, dtype=torch.float64)
    for i in range(head_dim // 2):
        a = m * theta ** (-2.0 * i / head_dim)
        c, s = math.cos(a), math.sin(a)
        R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[c, -s], [s, c]],
                                                             dtype=torch.float64)
    return R


def rms_reference(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.double()
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.double()


def causal_mask_softmax(scores: torch.Tensor) -> torch.Tensor:
    T = scores.shape[-1]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)


# --- Rotary embeddings -------------------------------------------------------------

@pytest.mark.parametrize("head_dim,theta", [(16, 10000.0), (32, 10000.0), (8, 500.0)])
def test_rope_frequencies_follow_the_formula(head_dim, theta):
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    expected = theta ** (-2 * i / head_dim)
    got = rope_frequencies(head_dim, theta)
    assert got.shape == (head_dim // 2,)
    torch.testing.assert_close(got.double(), expected, rtol=1e-7, atol=0)
    assert got[0] == 1.0  # pair 0 turns exactly one radian per position


def meta_precompute_freqs_cis_float32(dim: int, end: int, theta: float) -> torch.Tensor:
    """Meta's precompute_freqs_cis exactly as they type it, in float32."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
    t = torch.arange(end, dtype=torch.float32)
    freqs = torch.outer(t, freqs).float()
    return torch.polar(torch.ones_like(freqs), freqs)


@pytest.mark.parametrize("head_dim,T", [(8, 64), (16, 12), (32, 64), (64, 64)])
def test_rope_table_equals_metas_precompute_freqs_cis(head_dim, T):
    ours = rope_table(head_dim, T, 10000.0)
    assert ours.dtype == torch.complex64 and ours.shape == (T, head_dim // 2)
    ref = meta_precompute_freqs_cis(head_dim, T, 10000.0)
    torch.testing.assert_close(ours.to(torch.complex128), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("head_dim,T", [(64, 256), (32, 2048)])
def test_rope_table_long_contexts_at_least_as_precise_as_metas_float32(head_dim, T):
    """Beyond ~100 positions neither reaches 1e-6: the frequencies are float32, so the
    angle at position m is off by up to m * freq * 2^-24. Ours must stay within that
    bound and no worse than Meta's own float32 code."""
    exact = meta_precompute_freqs_cis(head_dim, T, 10000.0)
    ours = (rope_table(head_dim, T, 10000.0).to(torch.complex128) - exact).abs()
    metas = (meta_precompute_freqs_cis_float32(head_dim, T, 10000.0).to(torch.complex128)
             - exact).abs()
    angles = torch.outer(torch.arange(T, dtype=torch.float64),
                         10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64)
                                     / head_dim))
    bound = angles * 2.0 ** -24 + 1e-7
    assert torch.all(ours <= bound)
    assert ours.max() <= metas.max()


def test_apply_rope_equals_meta_and_rotation_matrices():
    B, T, H, D, theta = 2, 24, 3, 16, 10000.0
    g = torch.Generator().manual_seed(1)
    xq = torch.randn(B, T, H, D, generator=g)
    xk = torch.randn(B, T, H, D, generator=g)
    # The model works in (B, H, T, D); Meta in (B, T, H, D).
    q = apply_rope(xq.transpose(1, 2), rope_table(D, T, theta)).transpose(1, 2)
    k = apply_rope(xk.transpose(1, 2), rope_table(D, T, theta)).transpose(1, 2)
    mq, mk = meta_apply_rotary_emb(xq, xk, meta_precompute_freqs_cis(D, T, theta))
    torch.testing.assert_close(q.double(), mq, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(k.double(), mk, rtol=1e-6, atol=1e-6)
    # The same rotation as explicit 2x2 blocks, position by position.
    for m in range(T):
        R = rotation_matrix(D, m, theta)
        torch.testing.assert_close(q[:, m].double(), xq[:, m].double() @ R.T,
                                   rtol=1e-6, atol=1e-6)
    # Rotations compose, so scores depend on m - n only: <R_m q, R_n k> = <q, R_(n-m) k>.
    qv, kv = xq[0, 0, 0].double(), xk[0, 0, 0].double()
    for m, n in [(5, 2), (20, 17), (3, 3), (2, 9)]:
        lhs = (rotation_matrix(D, m, theta) @ qv) @ (rotation_matrix(D, n, theta) @ kv)
        rhs = qv @ (rotation_matrix(D, n - m, theta) @ kv)
        assert abs(float(lhs - rhs)) < 1e-12


def test_apply_rope_keeps_dtype_and_norms():
    x = torch.randn(1, 2, 8, 16).to(torch.bfloat16)
    y = apply_rope(x, rope_table(16, 8))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float().norm(dim=-1), x.float().norm(dim=-1),
                               rtol=2e-2, atol=0)  # a rotation keeps lengths


# --- Normalisation -----------------------------------------------------------------

def test_rmsnorm_matches_formula():
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=g))
    x = torch.randn(3, 5, 16, generator=g) * 3 + 1
    torch.testing.assert_close(norm(x).double(), rms_reference(x, norm.weight, 1e-5),
                               rtol=1e-6, atol=1e-6)
    # Per token: scaling one token leaves the others untouched.
    x2 = x.clone()
    x2[:, 4] *= 100
    torch.testing.assert_close(norm(x2)[:, :4], norm(x)[:, :4])


def test_rmsnorm_written_out_backward_equals_autograd_of_the_formula():
    # RMSNormFunction's hand-written derivative against autograd's, in float64
    # (gradcheck: against finite differences too) and in float32 inside a model step.
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 5, 8, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
    w = torch.randn(8, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, 1e-5), (x, w))
    upstream = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(RMSNormFunction.apply(x, w, 1e-5), (x, w), upstream)
    reference = torch.autograd.grad(rms_reference(x, w, 1e-5), (x, w), upstream)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=g))
    x32 = (torch.randn(4, 7, 16, generator=g) * 2).requires_grad_()
    norm(x32).pow(2).sum().backward()
    x64 = x32.detach().double().requires_grad_()
    w64 = norm.weight.detach().double().requires_grad_()
    rms_reference(x64, w64, 1e-5).pow(2).sum().backward()
    torch.testing.assert_close(x32.grad.double(), x64.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-4)
    # Without gradients (evaluation, generation) PyTorch's one-call rms_norm runs.
    with torch.no_grad():
        torch.testing.assert_close(norm(x32), rms_reference(x32.double(), w64, 1e-5).float())


def test_rmsnorm_computes_in_float32_for_low_precision_inputs():
    norm = RMSNorm(64, eps=1e-5)
    g = torch.Generator().manual_seed(0)
    x32 = torch.randn(4, 64, generator=g) * 5
    xb = x32.to(torch.bfloat16)
    expected = (xb.float() * torch.rsqrt(xb.float().pow(2).mean(-1, keepdim=True) + 1e-5)
                ).to(torch.bfloat16) * norm.weight
    assert torch.equal(norm(xb), expected)
    # In float16, activations of a few hundred square past 65504 to inf; computed in
    # float32 they still come out with unit RMS instead of zeros.
    big = (torch.randn(4, 64, generator=g) * 400).to(torch.float16)
    naive = big * torch.rsqrt(big.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert torch.all(naive == 0)  # what computing in float16 would give
    rms = norm(big).float().pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones(4), rtol=0, atol=2e-3)


def test_layernorm_has_no_bias_and_same_parameters_as_rmsnorm():
    ln, rms = Llama(tiny(norm="layernorm")), Llama(tiny(norm="rmsnorm"))
    norms = [m for m in ln.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * TINY["n_layers"] + 1
    assert all(m.bias is None for m in norms)
    assert {n: p.shape for n, p in ln.named_parameters()} == \
        {n: p.shape for n, p in rms.named_parameters()}
    # And it subtracts the mean, unlike RMSNorm.
    x = torch.randn(2, 3, 16) + 5
    ref = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False,
                                                            keepdim=True) + 1e-5)
    torch.testing.assert_close(norms[0](x), ref, rtol=1e-5, atol=1e-5)


def test_pre_norm_structure_each_norm_its_own_module():
    model = Llama(tiny(n_layers=2))
    norms = []
    for block in model.layers:
        assert isinstance(block.attention_norm, RMSNorm)
        assert isinstance(block.ffn_norm, RMSNorm)
        norms += [block.attention_norm, block.ffn_norm]
    assert isinstance(model.norm, RMSNorm)
    norms.append(model.norm)
    assert len({id(n) for n in norms}) == len(norms)
    # Give every norm a distinct weight so a swapped norm would change the result.
    with torch.no_grad():
        for k, n in enumerate(norms):
            n.weight.copy_(1 + 0.1 * k + 0.01 * torch.arange(16.0))
    idx = random_ids(model.cfg, 2, 10)
    model.eval()
    with torch.no_grad():
        x = model.tok_embeddings(idx)
        for block in model.layers:
            h = x + block.attention(block.attention_norm(x), model.freqs_cis)
            x = h + block.feed_forward(block.ffn_norm(h))
        expected = model.output(model.norm(x))
        torch.testing.assert_close(model(idx), expected, rtol=1e-5, atol=1e-6)


def test_attention_false_has_no_attention_and_no_attention_norm():
    model = Llama(tiny(attention=False))
    for block in model.layers:
        assert block.attention is None and block.attention_norm is None
    assert not any("attention" in n for n, _ in model.named_parameters())
    logits, maps = model(random_ids(model.cfg, 1, 5), return_attention=True)
    assert logits.shape == (1, 5, 13) and maps == []


# --- Causality ---------------------------------------------------------------------

def _max_change_before(model: Llama, t: int) -> float:
    """Largest logit change at positions <= t when every token after t changes, relative
    to the largest logit (without norms, logits at init are only ~1e-2)."""
    cfg = model.cfg
    a = random_ids(cfg, 3, cfg.context_window, seed=1)
    b = a.clone()
    b[:, t + 1:] = (a[:, t + 1:] + 1 + random_ids(cfg, 3, cfg.context_window - t - 1,
                                                  seed=2) % (cfg.vocab_size - 1)) \
        % cfg.vocab_size
    assert torch.all(a[:, t + 1:] != b[:, t + 1:])
    model.eval()
    with torch.no_grad():
        la, lb = model(a), model(b)
        change = (la[:, : t + 1] - lb[:, : t + 1]).abs().max()
        return float(change / la.abs().max())


@pytest.mark.parametrize("norm,pos,ffn", COMBOS)
def test_causal_mask_hides_the_future_for_every_combination(norm, pos, ffn):
    causal = Llama(tiny(norm=norm, pos=pos, ffn=ffn, causal=True))
    bidirectional = Llama(tiny(norm=norm, pos=pos, ffn=ffn, causal=False))
    for t in (0, 5, 10):
        assert _max_change_before(causal, t) == 0.0
        assert _max_change_before(bidirectional, t) > 1e-4


# --- Relative position -------------------------------------------------------------

def _layer0_logits(model: Llama, idx: torch.Tensor) -> torch.Tensor:
    layer = model.layers[0]
    with torch.no_grad():
        return layer.attention.scores(layer.attention_norm(model.embed(idx)),
                                      model.freqs_cis)


def _toeplitz_error(s: torch.Tensor) -> float:
    """Largest |s[m, n] - s[m+1, n+1]| over the (..., T, T) logits."""
    return float((s[..., 1:, 1:] - s[..., :-1, :-1]).abs().max())


def test_rope_layer0_logits_on_constant_input_depend_only_on_distance():
    const = torch.full((1, 12), 3)
    rope = _layer0_logits(Llama(tiny(pos="rope")), const)
    assert _toeplitz_error(rope) < 1e-6
    assert float(rope.max() - rope.min()) > 1e-3  # not trivially constant
    learned = _layer0_logits(Llama(tiny(pos="learned")), const)
    assert _toeplitz_error(learned) > 1e-3


# --- Parameter counts --------------------------------------------------------------

def formula_params(cfg: ModelConfig) -> int:
    """The contract's closed form, written out here independently of inspect.py."""
    d, L, V = cfg.d_model, cfg.n_layers, cfg.vocab_size
    hidden = cfg.ffn_hidden
    ffn = (3 if cfg.ffn == "swiglu" else 2) * d * hidden
    attn = 4 * d * d if cfg.attention else 0
    norms_per_layer = 2 if cfg.attention else 1
    norm = d if cfg.norm != "none" else 0
    pos = cfg.context_window * d if cfg.pos == "learned" else 0
    return V * d + pos + L * (attn + ffn + norms_per_layer * norm) + norm + d * V


@pytest.mark.parametrize("attention", [True, False])
def test_parameter_count_equals_formula_for_every_combination(attention):
    for norm, pos, ffn in COMBOS:
        if not attention and pos == "rope":
            pos = "none"
        cfg = tiny(norm=norm, pos=pos, ffn=ffn, attention=attention)
        assert Llama(cfg).num_params() == formula_params(cfg), (norm, pos, ffn)


def test_default_llama_parameter_count_by_hand():
    # 65*128 embedding + 4 layers * (4*128^2 + 3*128*352 + 2*128) + 128 + 128*65 head
    assert Llama(ModelConfig()).num_params() == 8320 + 4 * (65536 + 135168 + 256) + 128 + 8320


def test_no_bias_anywhere():
    for norm, pos, ffn in COMBOS:
        model = Llama(tiny(norm=norm, pos=pos, ffn=ffn))
        assert not any(n.endswith("bias") for n, _ in model.named_parameters())
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.LayerNorm)):
                assert m.bias is None
    assert model.output.weight.data_ptr() != model.tok_embeddings.weight.data_ptr()


@pytest.mark.parametrize("d,hidden", [(128, 352), (384, 1024), (64, 192)])
def test_swiglu_hidden_rule(d, hidden):
    cfg = ModelConfig(d_model=d, n_heads=4, n_layers=1)
    assert cfg.ffn_hidden == hidden
    ff = Llama(cfg).layers[0].feed_forward
    assert ff.w1.weight.shape == ff.w3.weight.shape == (hidden, d)
    assert ff.w2.weight.shape == (d, hidden)
    assert ModelConfig(d_model=d, ffn="gelu").ffn_hidden == 4 * d


def test_swiglu_forward_is_w2_silu_w1_times_w3():
    ff = Llama(tiny(ffn="swiglu")).layers[0].feed_forward
    x = torch.randn(2, 3, 16)
    W1, W2, W3 = ff.w1.weight, ff.w2.weight, ff.w3.weight
    a = x @ W1.T
    expected = ((a * torch.sigmoid(a)) * (x @ W3.T)) @ W2.T
    torch.testing.assert_close(ff(x), expected, rtol=1e-5, atol=1e-7)


# --- Attention maps ----------------------------------------------------------------

@pytest.mark.parametrize("causal", [True, False])
def test_return_attention_gives_probabilities_matching_the_fused_path(causal):
    model = Llama(tiny(n_layers=3, causal=causal)).eval()
    idx = random_ids(model.cfg, 2, 9)
    with torch.no_grad():
        fused = model(idx)
        logits, maps = model(idx, return_attention=True)
    assert len(maps) == 3
    for p in maps:
        assert p.shape == (2, 2, 9, 9)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, 2, 9))
        upper = p.triu(1)
        assert (upper.abs().max() == 0) if causal else (upper.min() >= 0 and upper.max() > 0)
    torch.testing.assert_close(logits, fused, rtol=1e-5, atol=1e-6)
    scores = _layer0_logits(model, idx)
    expected = causal_mask_softmax(scores) if causal else scores.softmax(-1)
    torch.testing.assert_close(maps[0], expected, rtol=1e-5, atol=1e-7)


# --- Initialisation and generation -------------------------------------------------

def test_same_seed_same_init_and_different_seed_different_init():
    a, b, c = Llama(tiny(), seed=3), Llama(tiny(), seed=3), Llama(tiny(), seed=4)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(),
                                      c.named_parameters()):
        assert torch.equal(p, q), n
        if not n.endswith("norm.weight"):
            assert not torch.equal(p, r), n


def test_each_parameter_gets_its_own_random_values():
    attn = Llama(tiny()).layers[0].attention
    assert not torch.equal(attn.wq.weight, attn.wk.weight)
    assert not torch.equal(attn.wk.weight, attn.wv.weight)
    model = Llama(tiny())
    assert not torch.equal(model.layers[0].attention.wq.weight,
                           model.layers[1].attention.wq.weight)


def test_init_scales():
    model = Llama(ModelConfig(n_layers=4))
    attn = model.layers[0].attention
    assert abs(float(attn.wq.weight.detach().std()) - 0.02) < 0.002
    assert abs(float(attn.wo.weight.detach().std()) - 0.02 / math.sqrt(8)) < 0.001
    assert torch.equal(model.norm.weight, torch.ones(128))


@pytest.mark.parametrize("field,values", [("norm", NORMS), ("pos", ("rope", "learned")),
                                          ("causal", (True, False))])
def test_paired_ablations_share_initial_values(field, values):
    models = [Llama(tiny(**{field: v}), seed=7) for v in values]
    params = [dict(m.named_parameters()) for m in models]
    shared = set.intersection(*(set(p) for p in params))
    assert {"tok_embeddings.weight", "output.weight",
            "layers.0.feed_forward.w1.weight"} <= shared
    for name in shared:
        for other in params[1:]:
            assert torch.equal(params[0][name], other[name]), (field, name)


def test_generate_is_reproducible_and_temperature_zero_is_greedy():
    model = Llama(tiny()).eval()
    prompt = random_ids(model.cfg, 2, 3)

    def draw(seed):
        return model.generate(prompt, 20, temperature=1.0,
                              generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))
    greedy = model.generate(prompt, 15, temperature=0)  # beyond the 12-token window
    idx = prompt
    with torch.no_grad():
        for _ in range(15):
            nxt = model(idx[:, -12:])[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat((idx, nxt), 1)
    assert torch.equal(greedy, idx)


@pytest.mark.parametrize("temperature, top_k", [(0.7, None), (1.3, 4), (0.5, 1),
                                                (1.0, 13), (0.0, None)])
def test_sample_steps_probabilities_and_ids_match_generate(temperature, top_k):
    model = Llama(tiny(), seed=3).eval()
    with torch.no_grad():  # sharper than the 0.02 init, so the draws are not uniform
        model.output.weight.mul_(50)
    prompt = random_ids(model.cfg, 2, 5)
    steps = list(model.sample_steps(prompt, 14, temperature, top_k,
                                    torch.Generator().manual_seed(11)))
    assert len(steps) == 14
    idx = prompt
    for next_id, probs in steps:
        assert next_id.shape == (2, 1) and probs.shape == (2, model.cfg.vocab_size)
        assert not probs.requires_grad
        with torch.no_grad():
            logits = model(idx[:, -12:])[:, -1].double()  # window crop, as generation does
        if temperature == 0:
            expected = logits.softmax(-1)
            assert torch.equal(next_id, logits.argmax(-1, keepdim=True))
        else:
            scaled = logits / temperature
            expected = torch.zeros_like(scaled)
            for row in range(2):  # softmax over the k largest only, the rest exactly 0
                keep = scaled[row].argsort(descending=True)[: top_k or scaled.shape[-1]]
                expected[row, keep] = scaled[row, keep].softmax(-1)
            assert (probs > 0).sum(-1).tolist() == [min(top_k or 13, 13)] * 2
        torch.testing.assert_close(probs.double(), expected, rtol=1e-5, atol=1e-6)
        assert (probs.gather(1, next_id) > 0).all()  # only a possible token is drawn
        idx = torch.cat((idx, next_id), 1)
    assert idx.shape[1] > model.cfg.context_window  # the crop was exercised
    out = model.generate(prompt, 14, temperature, top_k, torch.Generator().manual_seed(11))
    assert torch.equal(out, idx)
    assert model.training is False


def test_sample_steps_leaves_the_training_flag_and_gradients_alone():
    model = Llama(tiny())  # training mode, no dropout: the caller decides the mode
    prompt = random_ids(model.cfg, 1, 3)
    for _, probs in model.sample_steps(prompt, 3, 1.0, None, torch.Generator()):
        assert torch.is_grad_enabled()  # no_grad covers the model's steps only
        assert not probs.requires_grad
    assert model.training


def test_sequence_longer_than_context_is_refused():
    model = Llama(tiny())
    with pytest.raises(ValueError, match="context_window"):
        model(torch.zeros(1, 13, dtype=torch.long))


# --- Named bugs do what their names say --------------------------------------------

def test_bug_norm_over_sequence_normalises_the_whole_block_and_leaks():
    model = Llama(tiny(bug="norm_over_sequence"))
    norm = model.layers[0].attention_norm
    x = torch.randn(2, 6, 16)
    xd = x.double()
    expected = xd / torch.sqrt(xd.pow(2).mean((-2, -1), keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x).double(), expected, rtol=1e-6, atol=1e-6)
    assert _max_change_before(model, 4) > 1e-4
    assert _max_change_before(Llama(tiny()), 4) == 0.0


def test_bug_dropout_at_eval_makes_evaluation_random():
    idx = random_ids(tiny(), 2, 10)
    buggy = Llama(tiny(dropout=0.2, bug="dropout_at_eval")).eval()
    fine = Llama(tiny(dropout=0.2)).eval()
    with torch.no_grad():
        assert not torch.equal(buggy(idx), buggy(idx))
        assert torch.equal(fine(idx), fine(idx))


def test_bug_rope_unrotated_removes_position_from_scores():
    const = torch.full((1, 12), 3)
    s = _layer0_logits(Llama(tiny(bug="rope_unrotated")), const)
    spread = s.amax((-2, -1)) - s.amin((-2, -1))  # per head
    assert float(spread.max()) < 1e-7  # every pair of positions scores the same
    model = Llama(tiny(bug="rope_unrotated"))
    x = model.layers[0].attention_norm(model.embed(random_ids(model.cfg, 1, 8)))
    q, k, _ = model.layers[0].attention.qkv(x, model.freqs_cis)
    q_plain = (x @ model.layers[0].attention.wq.weight.T).view(1, 8, 2, 8).transpose(1, 2)
    torch.testing.assert_close(q, q_plain)
    assert model.freqs_cis is not None  # the table exists, it is just not used


def test_bug_rope_off_by_one_shifts_frequencies():
    model = Llama(tiny(bug="rope_off_by_one"))
    D = model.cfg.head_dim
    i = torch.arange(D // 2, dtype=torch.float64)
    expected = 10000.0 ** (-2 * (i - 1) / D)
    torch.testing.assert_close(rope_frequencies(D, off_by_one=True).double(), expected,
                               rtol=1e-7, atol=0)
    first = torch.angle(model.freqs_cis[1]).double()  # one position's turn per pair
    torch.testing.assert_close(first[1:], expected[1:], rtol=1e-6, atol=1e-6)
    assert float(expected[0]) > 1  # a pair turns faster than 1 rad per position


def test_bug_mask_ones_adds_one_instead_of_minus_infinity():
    model = Llama(tiny(bug="mask_ones")).eval()
    idx = random_ids(model.cfg, 1, 8)
    with torch.no_grad():
        _, maps = model(idx, return_attention=True)
        plain = model(idx)  # the buggy mask is used even without return_attention
    s = _layer0_logits(model, idx)
    expected = (s + torch.ones(8, 8).triu(1)).softmax(-1)
    torch.testing.assert_close(maps[0], expected, rtol=1e-5, atol=1e-7)
    assert float(maps[0].triu(1).sum(-1)[..., 0].min()) > 0.5  # row 0 mostly future
    fixed = Llama(tiny()).eval()
    with torch.no_grad():
        assert not torch.allclose(plain, fixed(idx), atol=1e-4)


# --- Toggles as module swaps ----------------------------------------------------------

# ModelConfig field -> (its registry in model.py, the Parts slot it fills)
REGISTRIES = {"norm": (M.NORMS, "norm"), "pos": (M.POSITIONS, "positions"),
              "ffn": (M.FEED_FORWARDS, "feed_forward"), "causal": (M.ATTENTIONS, "attention"),
              "attention": (M.BLOCKS, "block")}
CHOICES = [(field, value) for field, (registry, _) in REGISTRIES.items() for value in registry]
REAL_BUGS = sorted(set(BUGS) - {"none"})


def with_bug(bug: str) -> ModelConfig:
    """A tiny model with the bug switched on as its pitfall entry says (dropout 0.1 so
    the dropout classes are there to swap)."""
    return tiny(**{"dropout": 0.1, **BUILT_IN[bug].on})


def built(model: Llama, part: str) -> list[nn.Module]:
    """Every module of one Parts slot in a built model (read by attribute name, so the
    check does not lean on choose_parts)."""
    blocks = list(model.layers)
    attentions = [b.attention for b in blocks if b.attention is not None]
    return {
        "block": blocks,
        "attention": attentions,
        "positions": [a.positions for a in attentions],
        "norm": [model.norm] + [n for b in blocks for n in (b.attention_norm, b.ffn_norm)
                                if n is not None],
        "feed_forward": [b.feed_forward for b in blocks],
        "dropout": [model.dropout] + [b.dropout for b in blocks]
                   + [a.dropout for a in attentions],
    }[part]


@pytest.mark.parametrize("field,value", CHOICES)
def test_each_choice_builds_its_registered_class_and_print_shows_it(field, value):
    registry, part = REGISTRIES[field]
    model = Llama(tiny(**{field: value}))
    modules = built(model, part)
    assert modules and all(type(m) is registry[value] for m in modules), (field, value)
    assert f"{registry[value].__name__}(" in repr(model)
    others = [type(m).__name__ for f, (reg, p) in REGISTRIES.items() if f != field
              for m in built(model, p) if type(m) not in reg.values()]
    assert others == []  # every other part is its own registry's class too


def test_print_names_the_swapped_classes():
    llama, classic = repr(Llama(tiny())), repr(Llama(tiny(norm="layernorm", pos="learned",
                                                          ffn="relu", causal=False)))
    for name in ("RMSNorm(", "RoPE(", "SwiGLU(", "Attention("):
        assert name in llama
    for name in ("LayerNorm(", "LearnedPositions(", "ReLUMLP(", "ReLU()",
                 "BidirectionalAttention(", "pos_embeddings: (12, 16)"):
        assert name in classic and name not in llama, name


def test_every_registry_entry_and_every_bug_is_reachable_from_a_config():
    from llama_core import config as C
    assert set(M.NORMS) == set(C.NORMS) and set(M.POSITIONS) == set(C.POSITIONS)
    assert set(M.FEED_FORWARDS) == set(C.FFNS)
    assert set(M.ATTENTIONS) == set(M.BLOCKS) == {True, False}
    for field, value in CHOICES:
        registry, part = REGISTRIES[field]
        assert getattr(M.choose_parts(tiny(**{field: value})), part) is registry[value]
    assert set(M.BUG_SWAPS) == set(REAL_BUGS)
    for bug in REAL_BUGS:
        part, buggy = M.BUG_SWAPS[bug]
        assert getattr(M.choose_parts(with_bug(bug)), part) is buggy


@pytest.mark.parametrize("bug", REAL_BUGS)
def test_each_bug_swaps_one_part_for_a_subclass_that_overrides_one_method(bug):
    import dataclasses
    part, buggy = M.BUG_SWAPS[bug]
    cfg = with_bug(bug)
    correct = M.choose_parts(dataclasses.replace(cfg, bug="none"))
    swapped = M.choose_parts(cfg)
    assert issubclass(buggy, getattr(correct, part)) and buggy is not getattr(correct, part)
    assert dataclasses.replace(swapped, **{part: getattr(correct, part)}) == correct
    methods = [n for n, v in vars(buggy).items() if not n.startswith("__") and callable(v)]
    assert len(methods) == 1, methods
    assert buggy.__doc__.startswith(f"BUG {bug}:")
    model = Llama(cfg)
    assert all(type(m) is buggy for m in built(model, part)) and built(model, part)
    assert f"{buggy.__name__}(" in repr(model)


def test_no_forward_method_asks_the_config_about_a_toggle():
    import inspect
    import re
    toggle = re.compile(r"cfg\.(norm|pos|ffn|causal|attention|bug|dropout)\b|\.bug\b|"
                        r"return_attention|dropout_on")
    checked = 0
    for cls in vars(M).values():
        if isinstance(cls, type) and issubclass(cls, nn.Module) and \
                cls.__module__ == M.__name__:
            for name in ("forward", "logits", "embed", "qkv", "scores", "mask", "_norm",
                         "rate"):
                if name in vars(cls) and not (cls is Llama and name == "forward"):
                    checked += 1
                    assert not toggle.search(inspect.getsource(vars(cls)[name])), \
                        f"{cls.__name__}.{name}"
    assert checked >= 15


@pytest.mark.parametrize("attention", [True, False])
def test_block_returns_a_tensor(attention):
    model = Llama(tiny(attention=attention, pos="rope" if attention else "none"))
    x = torch.randn(2, 5, 16)
    out = model.layers[0](x, model.freqs_cis)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape


class _Ops(TorchDispatchMode):
    """The aten operators a block of code runs, by name (no mock: it only watches)."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))

    def fused(self) -> bool:
        return any("scaled_dot_product" in n for n in self.names)


def test_capture_attention_collects_maps_then_gives_back_the_fused_path():
    model = Llama(tiny(n_layers=3)).eval()
    idx = random_ids(model.cfg, 2, 9)
    with torch.no_grad():
        with _Ops() as plain:
            fused = model(idx)
        with _Ops() as captured, M.capture_attention(model) as maps:
            logits = model(idx)
        _, returned = model(idx, return_attention=True)
        with _Ops() as after:
            model(idx)
    assert plain.fused() and "aten._softmax" not in plain.names
    assert not captured.fused() and "aten._softmax" in captured.names
    assert after.fused()
    torch.testing.assert_close(logits, fused, rtol=1e-5, atol=1e-6)
    assert len(maps) == 3 and all(torch.equal(a, b) for a, b in zip(maps, returned))
    assert all(block.attention.capture is None for block in model.layers)


def test_capture_attention_ends_on_error_and_nests():
    model = Llama(tiny(n_layers=2)).eval()
    idx = random_ids(model.cfg, 1, 6)
    with torch.no_grad():
        with pytest.raises(ValueError, match="context_window"):
            with M.capture_attention(model):
                model(torch.zeros(1, 13, dtype=torch.long))
        assert all(block.attention.capture is None for block in model.layers)
        with M.capture_attention(model) as outer:
            _, inner = model(idx, return_attention=True)
            model(idx)
    assert len(inner) == 2 and len(outer) == 2  # each call's maps went to its own list


def test_mask_ones_never_takes_the_fused_path():
    model = Llama(tiny(bug="mask_ones")).eval()
    with torch.no_grad(), _Ops() as ops:
        model(random_ids(model.cfg, 1, 6))
    assert not ops.fused() and "aten._softmax" in ops.names


def test_dropout_off_silences_every_dropout_and_gives_the_rates_back():
    model = Llama(tiny(dropout=0.3, bug="dropout_at_eval"))  # training mode and the bug
    idx = random_ids(model.cfg, 2, 8)
    with torch.no_grad():
        rng = torch.get_rng_state()
        with M.dropout_off(model):
            quiet = model(idx)
        assert torch.equal(torch.get_rng_state(), rng)  # no random numbers drawn
        assert torch.equal(quiet, Llama(tiny())(idx))  # same weights, no dropout
        assert all(m.p == 0.3 for m in built(model, "dropout"))
        assert not torch.equal(model(idx), model(idx))


def test_layer_health_draws_no_dropout_even_with_the_dropout_at_eval_bug():
    from llama_core.training import layer_health
    model = Llama(tiny(dropout=0.3, bug="dropout_at_eval"))
    x = random_ids(model.cfg, 2, 8)
    rng = torch.get_rng_state()
    first, second = layer_health(model, x), layer_health(model, x)
    assert first == second and torch.equal(torch.get_rng_state(), rng)


# --- The public API ----------------------------------------------------------------

LIGHT = ("torch", "streamlit", "llama_core.lab.store", "llama_core.lab.jobs", "llama_core.lab.classroom")


@pytest.mark.parametrize("first", ["", "from llama_core.checkpoint import load_checkpoint"])
def test_public_api_imports_and_stays_light(first):
    """``import llama_core`` loads no torch and no lab machinery; the public names work
    whether or not a torch-backed module was imported before."""
    import subprocess
    import sys
    from pathlib import Path
    code = f"""
import sys
import llama_core
print(sorted(m for m in {LIGHT!r} if m in sys.modules))
{first}
from llama_core import Llama, ModelConfig, TrainConfig, train, load_checkpoint, PRESETS
import llama_core.model, llama_core.training as lt
print(train.__module__, train.__name__, load_checkpoint.__name__, lt.train is train,
      Llama is llama_core.model.Llama, ModelConfig().norm, TrainConfig().corpus,
      "tiny" in PRESETS)
print(sorted(m for m in {LIGHT!r} if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    light, api, after = proc.stdout.splitlines()
    assert light == "[]"
    assert api == "llama_core.training train load_checkpoint True True rmsnorm shakespeare True"
    assert after == "['torch']"  # the public names need torch, never the lab or streamlit


@pytest.mark.parametrize("temperature, top_k, says", [
    (-0.5, None, "temperature must be 0 or more"),
    (float("nan"), None, "temperature must be 0 or more"),
    (1.0, 0, "top_k must be at least 1"),
])
def test_sampler_settings_are_refused_in_one_sentence(temperature, top_k, says):
    from llama_core.errors import UserError
    from llama_core.model import check_sampling
    with pytest.raises(UserError, match=says):
        check_sampling(temperature, top_k)
    check_sampling(0.0, 1)  # greedy with any top_k is fine
