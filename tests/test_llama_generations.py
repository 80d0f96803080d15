"""The Llama generations (issue 14): the classroom presets that follow Llama 1, 2, 3
and 3.2, the table of the real models they follow, the standard grouped- and
multi-query ablation variants, and the class set that trains them."""

from __future__ import annotations

import dataclasses

import pytest

from llama_core.errors import ConfigError
from llama_core.lab import classset
from llama_core.lab.sweeps import STANDARD_VARIANTS, plan_sweep, variants_for
from llama_core.presets import PRESETS, build_configs
from llama_core.real_models import REAL_MODELS, real_model, real_models_frame

GENERATIONS = ["llama-1", "llama-2", "llama-3", "llama-3.2"]
FOLLOWS = {"llama-1": "Llama 1 7B", "llama-2": "Llama 2 7B", "llama-3": "Llama 3 8B",
           "llama-3.2": "Llama 3.2 1B"}
KiB = 1024


def model_of(preset: str):
    return build_configs(preset)[0]


def test_each_generation_changes_only_what_meta_changed():
    changed = {}
    for before, after in zip(GENERATIONS, GENERATIONS[1:]):
        a, b = dataclasses.asdict(model_of(before)), dataclasses.asdict(model_of(after))
        changed[after] = {k for k in a if a[k] != b[k]}
    assert changed == {"llama-2": {"context_window"},
                       "llama-3": {"context_window", "n_kv_heads", "rope_theta"},
                       "llama-3.2": {"tie_embeddings"}}


@pytest.mark.parametrize("preset", GENERATIONS)
def test_a_generation_preset_follows_its_real_model(preset):
    ours, real = model_of(preset), real_model(FOLLOWS[preset])
    assert ours.rope_theta == real.rope_theta
    assert ours.tie_embeddings == real.tied
    assert ours.n_heads // ours.kv_heads == real.n_heads // real.n_kv_heads  # queries per KV
    assert FOLLOWS[preset].split()[1] in PRESETS[preset].description.replace("-", " ")


def test_contexts_double_from_generation_to_generation_as_the_real_ones_did():
    ours = [model_of(p).context_window for p in GENERATIONS[:3]]
    real = [real_model(FOLLOWS[p]).context for p in GENERATIONS[:3]]
    assert [b / a for a, b in zip(ours, ours[1:])] == [b / a for a, b in zip(real, real[1:])]


def test_real_models_table_has_sources_and_the_published_cache_sizes():
    frame = real_models_frame()
    assert list(frame.name) == [m.name for m in REAL_MODELS]
    assert all(len(m.source) > 20 for m in REAL_MODELS)
    per_token = dict(zip(frame.name, frame.cache_bytes_per_token))  # 16-bit
    assert per_token["Llama 2 7B"] == 512 * KiB
    assert per_token["Llama 2 70B"] == 320 * KiB
    assert per_token["Llama 3 8B"] == 128 * KiB
    assert per_token["Llama 2 70B"] < per_token["Llama 2 7B"]  # GQA: the 70B caches less
    kinds = dict(zip(frame.name, frame.attention_kind))
    assert kinds["Llama 2 7B"] == "multi-head" and kinds["Llama 3 8B"] == "grouped-query"
    assert real_model("Llama 3.2 1B").head_dim == 64


def test_the_standard_kv_head_variants_are_fitted_to_the_baseline():
    assert {"n_kv_heads=2", "n_kv_heads=1"} <= set(STANDARD_VARIANTS)
    tiny = variants_for("tiny")  # 4 heads: grouped-query 2, multi-query 1
    assert tiny["n_kv_heads=2"] == {"n_kv_heads": 2} and tiny["n_kv_heads=1"] == {"n_kv_heads": 1}
    assert variants_for("nanogpt-gpu")["n_kv_heads=3"] == {"n_kv_heads": 3}  # 6 heads
    assert not any(k.startswith("n_kv_heads") for k in variants_for("ladder-4-causal"))  # 1 head
    assert not any(k.startswith("n_kv_heads") for k in variants_for("ladder-1-mlp"))  # no attention
    three = variants_for("llama-3")  # already 2 KV heads: only multi-query is a change
    assert "n_kv_heads=1" in three and not any(k in three for k in ("n_kv_heads=2",))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_presets_standard_variants_can_be_planned(preset):
    plan = plan_sweep(preset, {}, list(variants_for(preset).values()), [0])
    assert len({p.label for p in plan}) == len(plan)


def test_the_class_set_ablation_trains_grouped_and_multi_query_attention():
    section = classset.SECTIONS["ablation"]
    labels = {p.label for p in section.plan(section.seeds)}
    assert {"n_kv_heads=2", "n_kv_heads=1"} <= labels
    models = {p.label: p.model for p in section.plan((0,))}
    assert models["n_kv_heads=1"].kv_heads == 1 and models["baseline"].kv_heads == 4


def test_rope_scaling_is_given_on_the_command_line_as_json():
    text = '{"rope_type": "linear", "factor": 4}'
    model, _ = build_configs("tiny", {"rope_scaling": text})
    assert model.rope_scaling == {"rope_type": "linear", "factor": 4}
    with pytest.raises(ConfigError) as e:
        build_configs("tiny", {"rope_scaling": "linear"})
    assert "must be a JSON object" in str(e.value) and str(e.value).endswith(".")
