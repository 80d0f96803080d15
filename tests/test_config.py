"""Configs: presets build, every invalid setting is refused with one clear sentence."""

import dataclasses
import math

import pytest

from llama_core.config import (MODEL_FIELDS, ModelConfig, TrainConfig, model_from_dict,
                               to_dict, train_from_dict)
from llama_core.presets import LADDER, PRESETS, build_configs
from llama_core.errors import ConfigError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips(name):
    model, train = build_configs(name)
    assert model_from_dict(to_dict(model)) == model
    assert train_from_dict(to_dict(train)) == train


def test_named_presets_have_their_published_shapes():
    m, t = build_configs("kitano")
    assert (m.context_window, m.d_model, m.n_heads, m.n_layers, t.batch_size) == (16, 128, 8, 4, 32)
    m, t = build_configs("nanogpt-cpu")
    assert (m.n_layers, m.n_heads, m.d_model, m.context_window, t.batch_size) == (4, 4, 128, 64, 12)
    m, t = build_configs("nanogpt-gpu")
    assert (m.n_layers, m.n_heads, m.d_model, m.context_window, t.batch_size, m.dropout) == (
        6, 6, 384, 256, 64, 0.2)
    assert build_configs("classroom")[1].time_budget == 60.0


def test_ladder_adds_one_thing_per_rung():
    rungs = [build_configs(name)[0] for name in LADDER]
    assert not rungs[0].attention and rungs[0].norm == "none"
    assert rungs[1].norm == "rmsnorm" and not rungs[1].attention
    assert rungs[2].attention and rungs[2].n_heads == 1 and not rungs[2].causal
    assert rungs[3].causal and rungs[3].n_heads == 1
    assert rungs[4].n_heads == 8
    assert rungs[5].ffn == "swiglu" and rungs[5].n_layers == 1
    assert rungs[6].n_layers == 4


def test_string_overrides_are_parsed_by_field_type():
    m, t = build_configs(None, {"causal": "false", "d_model": "64", "n_heads": "2",
                                "lr": "3e-4", "time_budget": "none", "threads": "1"})
    assert m.causal is False and m.d_model == 64 and t.lr == 3e-4
    assert t.time_budget is None and t.threads == 1


def test_every_field_takes_its_value_as_text():
    """``--set`` gives every field as text, parsed by the type config.py declares; a
    field declared with a type the parser does not know would arrive as a string."""
    for cfg in (ModelConfig(), TrainConfig(time_budget=30.0, threads=1)):
        for field in dataclasses.fields(cfg):
            value = getattr(cfg, field.name)
            text = str(value).lower() if isinstance(value, bool) else str(value)
            model, train = build_configs(None, {field.name: text})
            parsed = getattr(model if field.name in MODEL_FIELDS else train, field.name)
            assert parsed == value and type(parsed) is type(value), field.name


BAD = [
    ({"n_heads": 3}, "must divide d_model"),
    ({"d_model": 36, "n_heads": 4}, "must be even"),
    ({"norm": "batchnorm"}, "norm must be one of"),
    ({"pos": "sinusoid"}, "pos must be one of"),
    ({"ffn": "moe"}, "ffn must be one of"),
    ({"d_model": 0}, "d_model must be at least 1"),
    ({"n_layers": -1}, "n_layers must be at least 1"),
    ({"lr": float("nan")}, "finite"),
    ({"lr": 0}, "lr must be greater than 0"),
    ({"dropout": 1.5}, "dropout must be at most"),
    ({"rope_theta": 1.0}, "rope_theta must be greater than 1"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"steps": "many"}, "steps must be a whole number"),
    ({"batch_size": 2.5}, "batch_size must be a whole number"),
    ({"time_budget": -3}, "time_budget must be greater than 0"),
    ({"causal": "maybe"}, "causal must be true or false"),
    ({"device": "tpu"}, "device must be one of"),
    ({"min_lr": 1.0, "lr": 0.1}, "min_lr"),
    ({"bug": "typo"}, "bug must be one of"),
    ({"bug": "dropout_at_eval"}, "needs dropout above 0"),
    ({"bug": "rope_off_by_one", "pos": "learned"}, "needs attention with pos=rope"),
    ({"colour": "blue"}, "Unknown setting 'colour'"),
]


@pytest.mark.parametrize("overrides,phrase", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_settings_give_one_clear_sentence(overrides, phrase):
    with pytest.raises(ConfigError) as e:
        build_configs(None, overrides)
    message = str(e.value)
    assert phrase in message
    assert "\n" not in message and message.endswith(".")


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="choose one of .*classroom"):
        build_configs("gpt-5")


def test_swiglu_hidden_rounds_two_thirds_of_4d_up():
    assert ModelConfig(d_model=128).ffn_hidden == 352
    assert ModelConfig(d_model=384, n_heads=6).ffn_hidden == 1024
    assert ModelConfig(d_model=128, ffn="gelu").ffn_hidden == 512
    assert math.isclose(TrainConfig().lr, 1e-3)


def test_an_explicit_ffn_hidden_size_is_the_width_real_checkpoints_have():
    from llama_core.config import validate_model

    # TinyLlama-1.1B: d_model 2048, intermediate_size 5632, which 8d/3 rounding never gives.
    cfg = validate_model(ModelConfig(d_model=2048, n_heads=32, ffn_hidden_size=5632))
    assert cfg.ffn_hidden == 5632
    assert model_from_dict(to_dict(cfg)) == cfg
    assert ModelConfig(d_model=2048, n_heads=32).ffn_hidden == 5472
    for bad in (0, 2.5, 2048 * 16 + 1):
        with pytest.raises(ConfigError, match="ffn_hidden_size"):
            validate_model(ModelConfig(d_model=2048, n_heads=32, ffn_hidden_size=bad))
