"""The later Llamas' parts (issue 14): grouped-query attention, the KV cache, tied
embeddings and RoPE scaling, each checked against a reference re-typed here from Meta's
llama/model.py, Hugging Face's modeling_rope_utils.py or the formula, never taken from
llama_core. Models are tiny: the whole file runs in seconds on two CPU cores."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from llama_core import inspect as I
from llama_core.checkpoint import load_checkpoint, save_checkpoint
from llama_core.config import ModelConfig, TrainConfig, model_from_dict, to_dict
from llama_core.data import CharTokenizer
from llama_core.errors import ConfigError, UserError
from llama_core.generate import generate_text, timed_generate
from llama_core.memory import kv_cache_bytes, parameter_count
from llama_core.model import Llama, repeat_kv, rope_frequencies

TINY = dict(vocab_size=13, context_window=12, d_model=16, n_layers=2, n_heads=4)
KINDS = {"MHA": None, "GQA": 2, "MQA": 1}  # n_kv_heads of 4 query heads
NORMS, POSES, FFNS = ("rmsnorm", "layernorm", "none"), ("rope", "learned", "none"), \
    ("swiglu", "gelu", "relu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def ids(cfg: ModelConfig, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, length), generator=g)


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and "Traceback" not in message


# --- Grouped-query attention ---------------------------------------------------------

def meta_repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Meta's llama/model.py repeat_kv, re-typed: x is (bs, slen, n_kv_heads, head_dim)."""
    bs, slen, n_kv_heads, head_dim = x.shape
    if n_rep == 1:
        return x
    return (x[:, :, :, None, :].expand(bs, slen, n_kv_heads, n_rep, head_dim)
            .reshape(bs, slen, n_kv_heads * n_rep, head_dim))


@pytest.mark.parametrize("n_kv,n_rep", [(1, 4), (2, 2), (4, 1), (3, 2)])
def test_repeat_kv_is_metas(n_kv, n_rep):
    x = torch.randn(2, 5, n_kv, 8)  # Meta's layout: heads on dim 2
    ours = repeat_kv(x.transpose(1, 2), n_rep).transpose(1, 2)  # ours: heads on dim 1
    assert torch.equal(ours, meta_repeat_kv(x, n_rep))
    assert torch.equal(ours, torch.repeat_interleave(x, n_rep, dim=2))
    if n_rep == 1:
        assert repeat_kv(x, 1) is x  # nothing copied


def test_gqa_with_as_many_kv_heads_as_query_heads_is_multi_head_bit_for_bit():
    idx = ids(tiny(), 3, 12)
    mha, same = Llama(tiny(), seed=5), Llama(tiny(n_kv_heads=4), seed=5)
    assert mha.state_dict().keys() == same.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(mha.state_dict().values(),
                                                  same.state_dict().values()))
    mha.train(), same.train()
    la, lb = mha(idx), same(idx)
    la.square().mean().backward(), lb.square().mean().backward()
    assert torch.equal(la, lb)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(mha.parameters(), same.parameters()))


def reference_attention(attn, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Grouped-query causal attention written out head by head: query head h uses
    key/value head h // (n_heads / n_kv_heads); RoPE by rotation matrices on adjacent
    pairs."""
    B, T, _ = x.shape
    H, KV, D = attn.n_heads, attn.n_kv_heads, attn.head_dim
    q = (x @ attn.wq.weight.T).view(B, T, H, D).double()
    k = (x @ attn.wk.weight.T).view(B, T, KV, D).double()
    v = (x @ attn.wv.weight.T).view(B, T, KV, D).double()
    angles = torch.angle(freqs[:T]).double()  # (T, D/2)

    def rotate(t):
        out = t.clone()
        c, s = torch.cos(angles)[None, :, None], torch.sin(angles)[None, :, None]
        out[..., 0::2] = t[..., 0::2] * c - t[..., 1::2] * s
        out[..., 1::2] = t[..., 0::2] * s + t[..., 1::2] * c
        return out
    q, k = rotate(q), rotate(k)
    out = torch.zeros(B, T, H, D, dtype=torch.float64)
    for h in range(H):
        g = h // (H // KV)
        scores = torch.einsum("btd,bsd->bts", q[:, :, h], k[:, :, g]) / math.sqrt(D)
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
        out[:, :, h] = scores.softmax(-1) @ v[:, :, g]
    return out.reshape(B, T, H * D) @ attn.wo.weight.T.double()


@pytest.mark.parametrize("kind", list(KINDS))
def test_grouped_query_attention_matches_a_head_by_head_reference(kind):
    model = Llama(tiny(n_kv_heads=KINDS[kind]), seed=1)
    attn = model.layers[0].attention
    assert attn.wk.weight.shape == attn.wv.weight.shape == (attn.n_kv_heads * 4, 16)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        ours = attn(x, model.freqs_cis)
        ref = reference_attention(attn, x, model.freqs_cis)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
    _, maps = model(ids(model.cfg, 1, 9), return_attention=True)  # still works, 4 heads
    assert maps[0].shape == (1, 4, 9, 9)


def test_n_kv_heads_must_divide_n_heads_in_one_sentence():
    for bad, says in [(3, "must divide n_heads (4)"), (0, "at least 1"),
                      (2.0, "whole number"), (8, "must divide n_heads (4)")]:
        with pytest.raises(ConfigError) as e:
            Llama(tiny(n_kv_heads=bad))
        assert says in str(e.value) and one_sentence(str(e.value)), str(e.value)


# --- The KV cache ---------------------------------------------------------------------

def decoded_logits(model: Llama, idx: torch.Tensor, prefix: int) -> torch.Tensor:
    """The logits of positions prefix-1 .. T-1: the prefix read at once (prefill), then
    one token at a time from the cache."""
    cache = model.make_cache(idx.shape[0], idx.shape[1])
    out = [model(idx[:, :prefix], cache=cache, start_pos=0)[:, -1]]
    for t in range(prefix, idx.shape[1]):
        out.append(model(idx[:, t:t + 1], cache=cache, start_pos=t)[:, -1])
    return torch.stack(out, dim=1)


COMBOS = list(itertools.product(NORMS, POSES, FFNS, KINDS))


@pytest.mark.parametrize("norm,pos,ffn,kind", COMBOS)
def test_cached_equals_uncached_for_every_combination(norm, pos, ffn, kind):
    cfg = tiny(norm=norm, pos=pos, ffn=ffn, n_kv_heads=KINDS[kind])
    model = Llama(cfg, seed=3).eval()
    idx = ids(cfg, 2, 12)
    with torch.no_grad():
        whole = model(idx)
        torch.testing.assert_close(decoded_logits(model, idx, 4), whole[:, 3:],
                                   atol=2e-5, rtol=1e-5)
    prompt = idx[:, :4]  # 20 new tokens: 8 inside the window, then it slides
    greedy = [model.generate(prompt, 20, temperature=0, use_cache=c) for c in (True, False)]
    assert torch.equal(*greedy)
    sampled = [model.generate(prompt, 20, 1.0, None, torch.Generator().manual_seed(7),
                              use_cache=c) for c in (True, False)]
    assert torch.equal(*sampled)


def test_attention_free_models_use_the_cache_too():
    cfg = tiny(attention=False, pos="none")
    model = Llama(cfg).eval()
    idx = ids(cfg, 1, 10)
    with torch.no_grad():
        torch.testing.assert_close(decoded_logits(model, idx, 3), model(idx)[:, 2:])
    assert model.make_cache(1, 10).nbytes == 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_cache_holds_n_kv_heads_keys_rotated_at_their_absolute_positions(kind):
    cfg = tiny(n_kv_heads=KINDS[kind])
    model = Llama(cfg, seed=2).eval()
    idx = ids(cfg, 2, 10)
    with torch.no_grad():
        cache = model.make_cache(2, 12)
        model(idx[:, :6], cache=cache, start_pos=0)
        for t in range(6, 10):
            model(idx[:, t:t + 1], cache=cache, start_pos=t)
        layer0 = model.layers[0]
        _, k, v = layer0.attention.qkv(layer0.attention_norm(model.embed(idx)),
                                       model.freqs_cis)
    got = cache.layers[0]
    assert got.cache_k.shape == (2, cfg.kv_heads, 12, cfg.head_dim)  # before repeat_kv
    torch.testing.assert_close(got.cache_k[:, :, :10], k)
    torch.testing.assert_close(got.cache_v[:, :, :10], v)
    assert cache.length == 10 and cache.heads == cfg.kv_heads
    # 2 (keys, values) x layers x KV heads x head size x 4 bytes (float32) per token
    per_token = 2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim * 4
    assert cache.nbytes == per_token * 12 * 2 == kv_cache_bytes(cfg, 12, 2)
    assert I.kv_cache_per_token(cfg, 4)["bytes"] == per_token
    assert I.kv_cache_per_token(cfg, 4)["saving"] == 4 / cfg.kv_heads


def test_positions_past_the_window_and_misused_caches_are_refused_in_one_sentence():
    model = Llama(tiny()).eval()
    cache = model.make_cache(1, 8)
    with torch.no_grad():
        model(ids(model.cfg, 1, 3), cache=cache, start_pos=0)
        cases = [
            (lambda: model(ids(model.cfg, 1, 13)), "context_window of 12"),
            (lambda: model(ids(model.cfg, 1, 2), cache=cache, start_pos=11), "context_window"),
            (lambda: model(ids(model.cfg, 1, 1), cache=cache, start_pos=5), "skip positions"),
            (lambda: model(ids(model.cfg, 1, 6), cache=cache, start_pos=3), "make a larger"),
            (lambda: model(ids(model.cfg, 2, 1), cache=cache, start_pos=3), "make a larger"),
            (lambda: model.make_cache(1, 13), "at most the context window"),
            (lambda: model.make_cache(0, 4), "batch_size"),
        ]
        for call, says in cases:
            with pytest.raises(UserError) as e:
                call()
            assert says in str(e.value) and one_sentence(str(e.value)), str(e.value)
        model(ids(model.cfg, 1, 1), cache=cache, start_pos=3)  # the next position is fine


@pytest.mark.parametrize("settings", [dict(causal=False), dict(bug="norm_over_sequence"),
                                      dict(bug="mask_ones")])
def test_a_model_whose_past_sees_the_future_is_never_cached(settings):
    model = Llama(tiny(**settings), seed=4).eval()
    why = model.why_no_cache()
    assert why and one_sentence(why)
    with pytest.raises(UserError, match="cannot be cached"):
        model.make_cache(1, 4)
    prompt = ids(model.cfg, 1, 3)
    assert torch.equal(model.generate(prompt, 15, temperature=0),  # falls back, same ids
                       model.generate(prompt, 15, temperature=0, use_cache=False))


def test_generation_helpers_give_the_same_text_with_and_without_the_cache():
    tok = CharTokenizer("abcdefghijkl ")
    model = Llama(tiny(), seed=6)
    for temperature in (0.0, 0.9):
        texts = {generate_text(model, tok, "abc", 25, temperature, seed=3, use_cache=c)
                 for c in (True, False)}
        assert len(texts) == 1
    idx = ids(model.cfg, 1, 4)
    timed = [timed_generate(model, idx, 8, use_cache=c) for c in (True, False)]
    assert torch.equal(timed[0].ids, timed[1].ids) and timed[0].ids.shape == (1, 12)
    assert all(t.prefill_s > 0 and t.decode_s > 0 and t.tokens_per_s > 0 for t in timed)
    assert model.training  # the training flag is given back


# --- Tied embeddings ------------------------------------------------------------------

def test_tied_embeddings_share_storage_and_drop_vocab_times_d_parameters(tmp_path):
    untied, tied = Llama(tiny(), seed=9), Llama(tiny(tie_embeddings=True), seed=9)
    assert tied.output.weight is tied.tok_embeddings.weight
    assert tied.output.weight.data_ptr() == tied.tok_embeddings.weight.data_ptr()
    drop = 13 * 16
    assert untied.num_params() - tied.num_params() == drop
    assert parameter_count(tied.cfg) == tied.num_params()
    assert I.param_breakdown(tied) == I.param_formula(tied.cfg)
    assert I.param_formula(tied.cfg)["head"] == 0
    assert I.flops_per_token(tied.cfg) == I.flops_per_token(untied.cfg)  # the head still runs
    # initial values stay paired: every shared name starts the same
    u, t = dict(untied.named_parameters()), dict(tied.named_parameters())
    assert set(t) == set(u) - {"output.weight"}
    assert all(torch.equal(t[n], u[n]) for n in t)
    # one matrix, trained from both ends, stored once, loaded back tied
    tied.train()
    opt = torch.optim.SGD(tied.parameters(), lr=0.1)
    before = tied.tok_embeddings.weight.detach().clone()
    tied(ids(tied.cfg, 2, 8)).logsumexp(-1).mean().backward()
    opt.step()
    assert not torch.equal(before, tied.output.weight)
    assert "output.weight" not in tied.state_dict()
    path = save_checkpoint(tmp_path / "tied.safetensors", tied, CharTokenizer("abcdefghijklm"),
                           TrainConfig(), {"step": 1, "tokens": 16, "seconds": 0.1})
    loaded, _, _ = load_checkpoint(path)
    assert loaded.output.weight is loaded.tok_embeddings.weight
    assert torch.equal(loaded.output.weight, tied.output.weight)


def test_gqa_keeps_every_shared_initial_value_paired():
    mha, gqa = Llama(tiny(), seed=4), Llama(tiny(n_kv_heads=1), seed=4)
    m, g = dict(mha.named_parameters()), dict(gqa.named_parameters())
    assert m.keys() == g.keys()
    for name in m:
        if name.endswith(("wk.weight", "wv.weight")):
            assert g[name].shape == (4, 16) and m[name].shape == (16, 16)
        else:
            assert torch.equal(m[name], g[name]), name


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_heads=2), dict(n_kv_heads=1),
                                dict(tie_embeddings=True, n_kv_heads=1, pos="learned")])
def test_parameter_and_flop_accounting_with_fewer_kv_heads(kw):
    cfg = tiny(**kw)
    model = Llama(cfg)
    assert I.param_breakdown(model) == I.param_formula(cfg)
    d, kv_dim = 16, cfg.kv_heads * cfg.head_dim
    assert I.attention_matrices(cfg) == {"wq": d * d, "wk": d * kv_dim, "wv": d * kv_dim,
                                         "wo": d * d}
    flops = I.flops_per_token(cfg)
    assert flops["attention_projections"] == 2 * 2 * (2 * d * d + 2 * d * kv_dim)
    assert flops["head"] == 2 * d * 13


# --- RoPE scaling ---------------------------------------------------------------------

def hf_llama3_inv_freq(inv_freq: np.ndarray, factor, low, high, original) -> np.ndarray:
    """Hugging Face's _compute_llama3_parameters (modeling_rope_utils.py), re-typed with
    one branch per frequency."""
    low_freq_wavelen, high_freq_wavelen = original / low, original / high
    out = []
    for f in inv_freq:
        wavelen = 2 * math.pi / f
        if wavelen < high_freq_wavelen:
            out.append(f)
        elif wavelen > low_freq_wavelen:
            out.append(f / factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


LLAMA31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


@pytest.mark.parametrize("head_dim,theta,scaling", [
    (128, 500000.0, LLAMA31),  # Llama 3.1's own settings
    (16, 10000.0, {**LLAMA31, "factor": 4.0, "original_max_position_embeddings": 32}),
    (64, 500000.0, {**LLAMA31, "factor": 32.0})])  # Llama 3.2's
def test_llama3_rope_scaling_follows_the_published_rule(head_dim, theta, scaling):
    plain = theta ** (-np.arange(0, head_dim, 2) / head_dim)
    want = hf_llama3_inv_freq(plain, scaling["factor"], scaling["low_freq_factor"],
                              scaling["high_freq_factor"],
                              scaling["original_max_position_embeddings"])
    got = rope_frequencies(head_dim, theta, scaling=scaling).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == plain[0]  # the fastest pair is left alone
    assert got[-1] == pytest.approx(plain[-1] / scaling["factor"])  # the slowest divided
    # every pair slows by a factor between 1 and ``factor`` (to float rounding)
    ratio = plain / got
    assert (ratio > 1 - 1e-12).all() and (ratio < scaling["factor"] * (1 + 1e-12)).all()


def test_linear_rope_scaling_divides_every_position_and_the_model_uses_it():
    scaling = {"rope_type": "linear", "factor": 4.0}
    plain = rope_frequencies(8, 10000.0)
    torch.testing.assert_close(rope_frequencies(8, 10000.0, scaling=scaling), plain / 4)
    model = Llama(tiny(d_model=32, rope_scaling=scaling))
    angles = torch.angle(model.freqs_cis[1]).double()  # position 1: one step of each pair
    torch.testing.assert_close(angles, plain / 4, atol=1e-6, rtol=1e-6)
    assert "scaling=" in repr(model)
    assert I.rope_frequency_table(8, scaling=scaling)["freq_rad_per_pos"].tolist() == \
        pytest.approx((plain / 4).tolist())


def test_rope_scaling_round_trips_through_json_the_run_store_and_a_hash(runs_dir):
    from llama_core.lab.store import RunStore

    cfg = tiny(rope_scaling=dict(LLAMA31), n_kv_heads=2, tie_embeddings=True)
    assert hash(cfg) == hash(tiny(rope_scaling=dict(LLAMA31), n_kv_heads=2,
                                  tie_embeddings=True))
    assert cfg.rope_scaling == LLAMA31 and type(to_dict(cfg)["rope_scaling"]) is dict
    with pytest.raises(TypeError):
        cfg.rope_scaling["factor"] = 2.0  # frozen like the rest of the config
    assert model_from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
    store = RunStore(runs_dir / "llama_lab.db")
    run = store.get_run(store.create_run(cfg, TrainConfig()))
    assert model_from_dict(run.model_config) == cfg
    old_style = {"type": "linear", "factor": 2.0}  # Hugging Face's older spelling
    assert tiny(rope_scaling=old_style).rope_scaling == {"rope_type": "linear", "factor": 2.0}


@pytest.mark.parametrize("scaling,says", [
    ("linear", "must be None or a dictionary"),
    ({"rope_type": "yarn", "factor": 2.0}, "rope_type must be one of"),
    ({"rope_type": "linear"}, "add factor"),
    ({"rope_type": "linear", "factor": 2.0, "beta": 1}, "remove beta"),
    ({"rope_type": "linear", "factor": 0.5}, "factor must be at least 1"),
    ({**LLAMA31, "high_freq_factor": 1.0}, "must be greater than its low_freq_factor"),
    ({**LLAMA31, "original_max_position_embeddings": 8192.5}, "whole number"),
    ({**LLAMA31, "factor": float("nan")}, "finite"),
])
def test_bad_rope_scaling_is_refused_in_one_sentence(scaling, says):
    with pytest.raises(ConfigError) as e:
        Llama(tiny(rope_scaling=scaling))
    assert says in str(e.value) and one_sentence(str(e.value)), str(e.value)


def test_tie_embeddings_must_be_true_or_false():
    with pytest.raises(ConfigError, match="tie_embeddings must be true or false"):
        Llama(tiny(tie_embeddings="yes"))


def test_module_shapes_count_a_tied_head_once_and_say_so():
    model = Llama(tiny(tie_embeddings=True, n_kv_heads=1))
    table = I.module_shapes(model, ids(model.cfg, 1, 6)).set_index("name")
    assert table["params"].sum() == model.num_params()
    assert table.loc["output", "params"] == 0 and "tied" in table.loc["output", "note"]
    assert table.loc["layers.0.attention.wk", "output_shape"] == "(1, 6, 4)"  # one KV head of 4
