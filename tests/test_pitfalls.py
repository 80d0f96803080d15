"""The pitfall registry (llama_core.pitfalls) and the probes that show each pitfall
(llama_core.probes).

Every pitfall is one entry that config validation, the model's buggy classes, the class
set and the pages read; nothing else spells a pitfall's name. And each entry's claims
hold on real models: the probes it names are exactly the ones that fire, what pages are
told about it (leaks the future, undoes the mask, ignores position, moves layer-0
logits when the prompt moves) is what the model does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from llama_core import inspect as I
from llama_core import model as M
from llama_core import pitfalls as P
from llama_core import probes
from llama_core.config import BUGS, ModelConfig, validate_model
from llama_core.errors import ConfigError
from llama_core.lab import classset
from llama_core.lab.sweeps import variant_label
from llama_core.model import Llama

REPO = Path(__file__).resolve().parent.parent
TINY = dict(vocab_size=13, context_window=16, d_model=16, n_layers=2, n_heads=2)
PROMPT = [3, 1, 4, 1, 5, 9, 2, 6]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def model_of(**kw) -> Llama:
    return Llama(tiny(**kw))


def fired(model: Llama) -> set[str]:
    return {name for name, probe in probes.PROBES.items() if probe(model)["fired"]}


# --- What derives from the registry -------------------------------------------------

def test_config_accepts_no_bug_or_a_built_in_one_and_says_what_each_breaks():
    assert list(BUGS) == [P.NO_BUG, *P.BUILT_IN]
    assert BUGS == {P.NO_BUG: "no bug", **{n: p.breaks for n, p in P.BUILT_IN.items()}}
    assert set(P.BUILT_IN) < set(P.PITFALLS)  # causal=false is a pitfall, not a bug value
    for name in set(P.PITFALLS) - set(P.BUILT_IN):
        with pytest.raises(ConfigError, match="bug must be one of"):
            validate_model(tiny(bug=name))


def test_each_built_in_bug_is_one_buggy_class_in_the_model():
    assert set(M.BUG_SWAPS) == set(P.BUILT_IN)
    for name, p in P.BUILT_IN.items():
        part, buggy = M.BUG_SWAPS[name]
        assert getattr(M.choose_parts(tiny(**p.on)), part) is buggy


MISFITS = [dict(norm="layernorm"), dict(pos="learned"), dict(causal=False),
           dict(dropout=0.0), dict(attention=False, pos="none")]


@pytest.mark.parametrize("name", list(P.BUILT_IN))
def test_a_bug_is_refused_in_one_sentence_where_it_cannot_be_built(name):
    p = P.BUILT_IN[name]
    validate_model(tiny(**p.on))
    validate_model(tiny(**p.correct))
    if p.needs is None:  # it can be built into any model
        return
    misfits = [kw for kw in MISFITS if not p.needs.test(tiny(**{**p.on, **kw}))]
    assert misfits
    for kw in misfits:
        with pytest.raises(ConfigError) as e:
            validate_model(tiny(**{**p.on, **kw}))
        assert str(e.value) == f"The {name} bug needs {p.needs.text}."


def test_the_class_set_trains_every_pitfall_against_its_correct_model():
    section = classset.SECTIONS["pitfalls"]
    plan = section.plan(section.seeds)
    runs = {(r.label, r.seed): r for r in plan}
    assert len(runs) == len(plan)
    for p in (p for p in P.PITFALLS.values() if p.class_set):
        for changes in (p.on, p.correct, *p.compare_with):
            for seed in section.seeds:
                model = runs[(variant_label(changes), seed)].model
                assert all(getattr(model, k) == v for k, v in changes.items()), changes
    for sweep in P.class_set_sweeps():  # each pitfall is paired with its own correct model
        correct = sweep[0]
        assert all(p.on in sweep for p in P.PITFALLS.values()
                   if p.correct == correct and p.class_set)
        assert not any(p.on in sweep for p in P.PITFALLS.values() if not p.class_set)


# --- Each entry's claims, measured ---------------------------------------------------

@pytest.mark.parametrize("name", list(P.PITFALLS))
def test_the_probes_that_fire_on_a_pitfall_are_exactly_the_ones_it_names(name):
    p = P.PITFALLS[name]
    assert p.probes and set(p.probes) <= set(probes.PROBES)
    assert fired(model_of(**p.on)) == set(p.probes)
    assert fired(model_of(**p.correct)) == set()


@pytest.mark.parametrize("name", list(P.BUILT_IN))
def test_what_other_pages_are_told_about_a_bug_is_what_its_model_does(name):
    p = P.BUILT_IN[name]
    cfg = tiny(**p.on)
    model = Llama(cfg)
    leak = probes.probe_future_leak(model)["fired"]
    assert (name in P.LEAKY_BUGS) == leak == p.leaks_future
    _, maps = model(torch.arange(8)[None], return_attention=True)
    assert P.mask_holds(cfg) == (I.future_attention_mass(maps).max() == 0)
    assert p.ignores_position == probes.probe_rope_unrotated(model)["fired"]
    moved = I.rope_invariance(model, PROMPT, shift=5).max_abs_diff > 1e-5
    assert moved == bool(p.shift_note)
    assert P.pitfall_of(name) is p


def test_a_correct_model_is_no_pitfall_and_its_mask_holds_unless_switched_off():
    assert P.pitfall_of(P.NO_BUG) is None
    assert P.mask_holds(tiny()) and not P.mask_holds(tiny(causal=False))


# --- No pitfall named anywhere else ---------------------------------------------------

def pitfall_names_in(source: str) -> list[str]:
    """Every string literal that is a pitfall's name: a comparison or a table keyed by
    the name, which adding or renaming a pitfall would silently miss."""
    return [node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and node.value in P.PITFALLS]


# The registry itself, the model's table of buggy classes, and the probes' own names
# (several are spelled like the bug they show).
NAMES_ALLOWED_IN = {"llama_core/pitfalls.py", "llama_core/model.py", "llama_core/probes.py"}


def test_no_code_outside_the_registry_spells_a_pitfall_name():
    files = [REPO / "dashboard.py"] + [f for top in ("llama_core", "charts", "ui", "views",
                                                      "benchmarks")
                                       for f in sorted((REPO / top).rglob("*.py"))]
    offenders = {}
    for f in files:
        rel = f.relative_to(REPO).as_posix()
        if rel not in NAMES_ALLOWED_IN:
            names = pitfall_names_in(f.read_text(encoding="utf-8"))
            if names:
                offenders[rel] = names
    assert offenders == {}
    planted = 'if cfg.bug == "mask_ones":\n    pass\nSEEN = ("rope_unrotated",)\n'
    assert pitfall_names_in(planted) == ["mask_ones", "rope_unrotated"]


# --- The probes -------------------------------------------------------------------------

BUGGY = [(probe, p.on, p.correct) for p in P.PITFALLS.values() for probe in p.probes] + [
    ("rope_off_by_one", dict(bug="rope_off_by_one", d_model=32, n_heads=2),
     dict(d_model=32, n_heads=2))]


@pytest.mark.parametrize("probe,bug,clean", BUGGY)
@pytest.mark.parametrize("weight_scale", [1.0, 20.0])
def test_each_probe_fires_with_its_bug_and_not_without(probe, bug, clean, weight_scale):
    """weight_scale 20 stands in for a trained model whose weights have grown."""
    def build(kw):
        model = model_of(**kw)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(weight_scale)
        return model

    on = probes.PROBES[probe](build(bug))
    assert set(on) >= {"fired", "value", "explanation"}
    assert on["fired"] and on["applicable"] and on["explanation"], on
    silent = probes.PROBES[probe](build(clean))
    assert not silent["fired"] and silent["applicable"], silent
    assert on["value"] != silent["value"]
    assert on["explanation"] != silent["explanation"]


def test_a_clean_llama_fires_no_probe_and_inapplicable_probes_say_so():
    table = probes.run_probes(model_of(dropout=0.1))
    assert list(table.probe) == list(probes.PROBES)
    assert not table.fired.any() and table.applicable.all()
    for kw in (dict(pos="learned"), dict(pos="none"), dict(attention=False, pos="none")):
        result = probes.probe_rope_unrotated(model_of(**kw))
        assert not result["fired"] and not result["applicable"]
        assert not probes.probe_rope_off_by_one(model_of(**kw))["fired"]
    assert not probes.probe_mask_ones(model_of(causal=False))["applicable"]
    assert not probes.probe_dropout_at_eval(model_of())["applicable"]


def test_probes_leave_the_global_random_state_alone():
    model = model_of(dropout=0.3, bug="dropout_at_eval")  # building draws from it
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    I.causal_leak(model, 10, 4)
    probes.run_probes(model)
    assert torch.equal(torch.rand(3), expected)


# --- The two cache pitfalls: invisible to training, visible to the cache ---------------

@pytest.mark.parametrize("name", ["rope_at_zero", "repeat_kv_before_cache"])
def test_a_cache_pitfall_trains_exactly_like_the_correct_model(name):
    p = P.BUILT_IN[name]
    correct, buggy = Llama(tiny(**p.correct), seed=3), Llama(tiny(**p.on), seed=3)
    idx = torch.randint(0, 13, (2, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(correct(idx), buggy(idx))  # the whole text at once: no cache


def test_rope_at_zero_makes_cached_generation_drift_from_uncached():
    model = model_of(**P.BUILT_IN["rope_at_zero"].on).eval()
    with torch.no_grad():  # weights grown as by training, so logits are decisive
        for w in model.parameters():
            w.mul_(20.0)
    prompt = torch.tensor([PROMPT[:3]])
    cached = model.generate(prompt, 12, temperature=0, use_cache=True)
    assert not torch.equal(cached, model.generate(prompt, 12, temperature=0, use_cache=False))
    assert probes.probe_cache_drift(model)["value"] > 1e-3


def test_repeat_kv_before_cache_caches_as_much_as_multi_head_attention():
    p = P.BUILT_IN["repeat_kv_before_cache"]
    sizes = {}
    for label, kw in (("gqa", p.correct), ("bug", p.on), ("mha", {})):
        model = model_of(**kw).eval()
        cache = model.make_cache(1, 8)
        with torch.no_grad():
            model(torch.tensor([PROMPT]), cache=cache, start_pos=0)
        sizes[label] = cache.nbytes
    assert sizes["bug"] == sizes["mha"] == 2 * sizes["gqa"]  # 2 query heads, 1 KV head
    assert probes.probe_cache_size(model_of(**p.on))["value"] == sizes["bug"] / 8
