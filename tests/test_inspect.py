"""The measurements the dashboard calls: accounting against formulas and measurements,
attention statistics against hand-worked cases, shapes and invariance checks. (The
pitfall probes built on them are tested in test_pitfalls.py.)"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from llama_core import inspect as I
from llama_core.config import ModelConfig
from llama_core.data import CharTokenizer
from llama_core.errors import UnknownCharactersError, UserError
from llama_core.model import Llama

TINY = dict(vocab_size=13, context_window=16, d_model=16, n_layers=2, n_heads=2)
COMBOS = list(itertools.product(("rmsnorm", "layernorm", "none"), ("rope", "learned", "none"),
                                ("swiglu", "gelu", "relu")))
TOK = CharTokenizer.from_text("abcdefghij \n.")  # 13 characters, matching vocab_size


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def model_of(**kw) -> Llama:
    return Llama(tiny(**kw))


# --- Parameters and FLOPs ----------------------------------------------------------

@pytest.mark.parametrize("attention", [True, False])
def test_param_formula_agrees_with_the_built_model_for_every_combination(attention):
    for norm, pos, ffn in COMBOS:
        if not attention and pos == "rope":
            continue
        cfg = tiny(norm=norm, pos=pos, ffn=ffn, attention=attention)
        model = Llama(cfg)
        formula, counted = I.param_formula(cfg), I.param_breakdown(model)
        assert formula == counted, (norm, pos, ffn, attention)
        assert counted["total"] == model.num_params()
        assert (formula["attention"] == 0) == (not attention)
        assert (formula["positions"] > 0) == (pos == "learned")


def test_param_formula_by_hand_for_the_default_llama():
    p = I.param_formula(ModelConfig())  # 65 vocab, 128 wide, 4 layers, SwiGLU 352, T 64
    assert p == {"embedding": 65 * 128, "positions": 0, "attention": 4 * 4 * 128 * 128,
                 "feed_forward": 4 * 3 * 128 * 352, "norms": 9 * 128, "head": 128 * 65,
                 "total": 820_608}
    learned = I.param_formula(ModelConfig(pos="learned", norm="none", ffn="gelu"))
    assert learned["positions"] == 64 * 128 and learned["norms"] == 0
    assert learned["feed_forward"] == 4 * 2 * 128 * 512


def test_param_breakdown_refuses_a_parameter_it_cannot_place():
    model = model_of()
    model.extra = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="extra"):
        I.param_breakdown(model)


@pytest.mark.parametrize("kw", [dict(), dict(pos="learned", ffn="gelu"),
                                dict(attention=False, pos="none", ffn="relu"),
                                dict(n_heads=4, context_window=8)])
def test_flops_per_token_equal_measured_matmul_flops(kw):
    """FlopCounterMode counts every matrix multiply torch runs (2 per multiply-add); the
    explicit-attention path computes the full T x T square, as the estimate assumes.
    A backward pass measured the same way costs exactly twice the forward."""
    cfg = tiny(**kw)
    est = I.flops_per_token(cfg)
    model = Llama(cfg)
    B, T = 2, cfg.context_window
    idx = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            model(idx, return_attention=True)
    assert fwd.get_total_flops() / (B * T) == est["forward_total"]
    with FlopCounterMode(display=False) as train:
        model(idx, return_attention=True)[0].sum().backward()
    assert train.get_total_flops() / (B * T) == est["training_flops_per_token"]
    assert est["training_flops_per_token"] == 3 * est["forward_total"]


def test_flops_match_the_nanogpt_estimate():
    cfg = ModelConfig()  # 6N + 12 L d T, N = matrix parameters (embedding lookup is free)
    p, f = I.param_formula(cfg), I.flops_per_token(cfg)
    n = p["attention"] + p["feed_forward"] + p["head"]
    assert f["training_flops_per_token"] == 6 * n + 12 * 4 * 128 * 64
    assert f["attention_scores"] == 2 * 2 * 64 * 128 * 4


# --- Rotary tables -----------------------------------------------------------------

def test_rope_frequency_table():
    t = I.rope_frequency_table(32, 10000.0)
    assert list(t.columns) == ["pair", "freq_rad_per_pos", "wavelength_positions"]
    assert len(t) == 16
    np.testing.assert_allclose(t.freq_rad_per_pos, 10000.0 ** (-2 * np.arange(16) / 32),
                               rtol=1e-7)
    np.testing.assert_allclose(t.wavelength_positions, 2 * np.pi / t.freq_rad_per_pos)
    assert t.freq_rad_per_pos[0] == 1.0 and t.wavelength_positions.is_monotonic_increasing
    bug = I.rope_frequency_table(32, 10000.0, off_by_one=True)
    assert bug.freq_rad_per_pos[0] > 1
    with pytest.raises(UserError, match="even"):
        I.rope_frequency_table(7)


def test_rope_angles():
    a = I.rope_angles(8, 100.0, 5)
    assert a.shape == (5, 4)
    np.testing.assert_allclose(a, np.outer(np.arange(5), 100.0 ** (-np.arange(0, 8, 2) / 8)),
                               rtol=1e-7)
    b = I.rope_angles(8, 100.0, [3, 1000])
    np.testing.assert_allclose(b[1], 1000 * 100.0 ** (-np.arange(0, 8, 2) / 8), rtol=1e-7)


def test_rope_relative_scores_depend_on_distance_only():
    df = I.rope_relative_scores(16, 10000.0, max_distance=20, seed=3)
    assert set(df.columns) == {"query_pos", "key_pos", "distance", "score"}
    assert (df.query_pos - df.key_pos == df.distance).all()
    assert df.query_pos.nunique() >= 3 and df.query_pos.max() >= 1000
    by_distance = df.groupby("distance").score
    assert float((by_distance.max() - by_distance.min()).max()) < 1e-9
    assert float(by_distance.mean().std()) > 0.05  # it does change with distance
    # Against the complex form: Re sum_i q_i conj(k_i) exp(i (m - n) f_i).
    rng = np.random.default_rng(3)
    q, k = rng.standard_normal(16), rng.standard_normal(16)
    qc, kc = q[0::2] + 1j * q[1::2], k[0::2] + 1j * k[1::2]
    f = 10000.0 ** (-np.arange(0, 16, 2) / 16)  # float64, as the model computes them
    for _, row in df.sample(10, random_state=0).iterrows():
        expected = np.real(np.sum(qc * np.conj(kc) * np.exp(1j * row.distance * f)))
        assert abs(row.score - expected) < 1e-9


# --- Attention maps and statistics -------------------------------------------------

def test_attention_maps_from_a_prompt():
    model = model_of(n_layers=3)
    model.train()
    maps = I.attention_maps(model, TOK, "abc dej.")
    assert model.training  # put back as found
    assert len(maps) == 3
    for m in maps:
        assert m.shape == (2, 8, 8) and m.dtype == np.float32
        np.testing.assert_allclose(m.sum(-1), 1, rtol=1e-6)
        assert np.abs(np.triu(m, 1)).max() == 0
    idx = torch.tensor([TOK.encode("abc dej.")])
    with torch.no_grad():
        _, ref = model.eval()(idx, return_attention=True)
    np.testing.assert_allclose(maps[1], ref[1][0].numpy())
    logits = I.layer0_logits(model, idx)
    assert logits.shape == (1, 2, 8, 8)
    masked = np.where(np.triu(np.ones((8, 8), bool), 1), -np.inf, logits[0])
    soft = np.exp(masked - masked.max(-1, keepdims=True))
    np.testing.assert_allclose(maps[0], soft / soft.sum(-1, keepdims=True), rtol=1e-5,
                               atol=1e-7)


def test_attention_maps_refuse_bad_prompts():
    model = model_of()
    with pytest.raises(UserError, match="at most 16"):
        I.attention_maps(model, TOK, "a" * 17)
    with pytest.raises(UnknownCharactersError):
        I.attention_maps(model, TOK, "xyz")
    with pytest.raises(UserError):
        I.attention_maps(model, TOK, "")
    assert I.attention_maps(model_of(attention=False, pos="none"), TOK, "abc") == []
    with pytest.raises(UserError, match="attention"):
        I.layer0_logits(model_of(attention=False, pos="none"), [[1, 2]])


def test_attention_statistics_on_hand_made_maps():
    T = 6
    uniform = np.full((2, T, T), 1 / T)                       # (H, T, T), bidirectional
    onehot0 = np.zeros((2, T, T)); onehot0[..., 0] = 1        # everyone looks at key 0
    causal = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    causal = np.broadcast_to(causal, (2, T, T))
    maps = [uniform, onehot0, causal]
    ent = I.attention_entropy(maps)
    assert ent.shape == (3, 2)
    np.testing.assert_allclose(ent[0], math.log(T))
    np.testing.assert_allclose(ent[1], 0)
    np.testing.assert_allclose(ent[2], np.mean(np.log(np.arange(1, T + 1))))
    dist = I.mean_attended_distance(maps)
    q = np.arange(T)
    np.testing.assert_allclose(dist[0], np.mean([np.abs(q - i).mean() for i in q]))
    np.testing.assert_allclose(dist[1], q.mean())            # (T - 1) / 2
    np.testing.assert_allclose(dist[2], (q / 2).mean())       # row q spans 0..q
    fut = I.future_attention_mass(maps)
    np.testing.assert_allclose(fut[0], (T - 1) / (2 * T))
    np.testing.assert_allclose(fut[1:], 0)
    # A stacked (L, H, T, T) array and (B, H, T, T) tensors give the same numbers.
    np.testing.assert_allclose(I.attention_entropy(np.stack(maps)), ent)
    np.testing.assert_allclose(I.attention_entropy([torch.tensor(m)[None] for m in maps]),
                               ent, rtol=1e-6)


def test_future_attention_mass_of_real_models():
    idx = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, causal = model_of().eval()(idx, return_attention=True)
        _, free = model_of(causal=False).eval()(idx, return_attention=True)
    assert I.future_attention_mass(causal).max() == 0
    assert I.future_attention_mass(free).min() > 0.2  # near-uniform at init: about 0.45


# --- Shapes and predictions --------------------------------------------------------

def test_module_shapes_lists_every_module_with_its_shapes():
    model = model_of(pos="learned", ffn="swiglu", n_layers=2)
    df = I.module_shapes(model, torch.zeros(3, 7, dtype=torch.long))
    rows = df.set_index("name")
    assert rows.loc["(model)", "input_shape"] == "(3, 7)"
    assert rows.loc["(model)", "output_shape"] == "(3, 7, 13)"
    assert rows.loc["tok_embeddings", "output_shape"] == "(3, 7, 16)"
    assert rows.loc["pos_embeddings", "output_shape"] == "(7, 16)"
    assert rows.loc["layers.1.feed_forward.w2", "input_shape"] == f"(3, 7, {model.cfg.ffn_hidden})"
    assert rows.loc["layers.1.feed_forward.w1", "output_shape"] == f"(3, 7, {model.cfg.ffn_hidden})"
    assert rows.loc["layers.0.attention", "output_shape"] == "(3, 7, 16)"
    assert rows.loc["layers.0.attention.wq", "output_shape"] == "(3, 7, 16)"
    assert "fused attention" in rows.loc["layers.0.attention.dropout", "note"]
    assert set(df.name[df.note != ""]) == {"pos_embeddings", "layers.0.attention.dropout",
                                           "layers.1.attention.dropout"}
    assert int(df.params.sum()) == model.num_params()
    names = [n for n, m in model.named_modules() if n and not isinstance(m, nn.ModuleList)]
    assert set(names) <= set(df.name)
    order = list(df.name)  # entered in forward order
    assert order.index("layers.0.attention_norm") < order.index("layers.0.attention") \
        < order.index("layers.0.ffn_norm") < order.index("layers.1.attention_norm") \
        < order.index("norm") < order.index("output")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_next_token_probs():
    model = model_of()
    df = I.next_token_probs(model, TOK, "abc", top=13)
    assert list(df.columns) == ["character", "token_id", "probability"]
    assert len(df) == 13 and abs(df.probability.sum() - 1) < 1e-6
    assert df.probability.is_monotonic_decreasing
    with torch.no_grad():
        expected = model.eval()(torch.tensor([TOK.encode("abc")]))[0, -1].softmax(-1)
    for _, row in df.iterrows():
        assert row.character == TOK.decode([row.token_id])
        assert abs(row.probability - float(expected[row.token_id])) < 1e-6
    top3 = I.next_token_probs(model, TOK, "abc", top=3)
    assert list(top3.token_id) == list(df.token_id[:3])
    long = "abcdefghij" * 3  # longer than the window: read as its last 16 characters
    assert I.next_token_probs(model, TOK, long).equals(I.next_token_probs(model, TOK, long[-16:]))


# --- Invariances -------------------------------------------------------------------

def test_causal_leak():
    assert I.causal_leak(model_of(), 12, 5) == 0.0
    for kw in (dict(causal=False), dict(bug="norm_over_sequence"), dict(bug="mask_ones")):
        assert I.causal_leak(model_of(**kw), 12, 5) > 1e-4, kw
    with pytest.raises(UserError):
        I.causal_leak(model_of(), 12, 11)
    with pytest.raises(UserError):
        I.causal_leak(model_of(), 17, 3)


def test_rope_invariance():
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]  # any prompt, not only a constant one
    assert I.rope_invariance(model_of(pos="rope"), prompt, shift=7).max_abs_diff < 1e-6
    assert I.rope_invariance(model_of(pos="learned"), prompt, shift=7).max_abs_diff > 1e-3
    assert I.rope_invariance(model_of(bug="norm_over_sequence"), prompt,
                             shift=7).max_abs_diff > 1e-5
    assert I.rope_invariance(model_of(pos="learned"), prompt, shift=0).max_abs_diff == 0
    with pytest.raises(UserError, match="fit"):
        I.rope_invariance(model_of(), prompt, shift=9)


@pytest.mark.parametrize("kw, invariant", [({"pos": "rope"}, True),
                                           ({"pos": "none"}, True),
                                           ({"pos": "learned"}, False),
                                           ({"bug": "norm_over_sequence"}, False)])
def test_rope_invariance_returns_the_two_compared_blocks(kw, invariant):
    model, prompt, shift = model_of(**kw), [3, 1, 4, 1, 5, 9, 2, 6], 5
    r = I.rope_invariance(model, prompt, shift=shift, seed=2)
    H, P = model.cfg.n_heads, len(prompt)
    assert r.base.shape == r.moved.shape == (H, P, P)
    assert r.base.dtype == r.moved.dtype == np.float32
    assert len(r.prefix_ids) == shift
    assert all(0 <= i < model.cfg.vocab_size for i in r.prefix_ids)
    assert r.prefix_ids == I.rope_invariance(model, prompt, shift=shift, seed=2).prefix_ids
    # The blocks are exactly layer 0's logits of the prompt, alone and after the prefix.
    assert np.array_equal(r.base, I.layer0_logits(model, prompt)[0])
    moved = I.layer0_logits(model, r.prefix_ids + prompt)[0]
    assert np.array_equal(r.moved, moved[:, shift:, shift:])
    # And the number is the largest gap between them.
    gap = np.abs(r.moved.astype(np.float64) - r.base)
    assert r.max_abs_diff == pytest.approx(gap.max(), abs=0)
    assert np.abs(r.base).max() > 1e-3  # the blocks are not trivially zero
    if invariant:
        assert r.max_abs_diff < 1e-6
        np.testing.assert_allclose(r.moved, r.base, atol=1e-6)
    else:
        assert r.max_abs_diff > 1e-5
        assert not np.allclose(r.moved, r.base, atol=1e-6)
