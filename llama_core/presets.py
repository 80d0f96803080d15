"""Named starting points for a run, and the one way to build configs from them.

A preset is a set of model and training fields with a sentence saying why it exists;
``build_configs`` starts from one, applies ``key=value`` overrides (typed values from the
dashboard or strings from ``--set``) and validates the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from .config import (MODEL_FIELDS, TRAIN_FIELDS, ModelConfig, TrainConfig, validate_model,
                     validate_train)
from .errors import ConfigError

_LLAMA = dict(norm="rmsnorm", pos="rope", ffn="swiglu", causal=True, attention=True)
_LADDER_SHAPE = dict(context_window=16, d_model=128, n_heads=8)
_GENERATION = dict(_LLAMA, context_window=32, d_model=128, n_heads=8, n_layers=4,
                   rope_theta=10000.0)
_GENERATION_TRAIN = dict(batch_size=16, lr=2e-3, min_lr=2e-4, steps=1_000_000,
                         time_budget=60.0, warmup_steps=50, eval_interval=400,
                         eval_batches=10, sample_chars=100)
_LADDER_TRAIN = dict(batch_size=32, lr=1e-3, min_lr=1e-3, warmup_steps=0,
                     weight_decay=0.0, steps=1000, eval_interval=50)


@dataclass(frozen=True)
class Preset:
    """A named starting point: model fields and training fields, plus why it exists."""

    name: str
    description: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("llama", "The default small Llama: 4 layers, 4 heads, 128 wide, context 64.",
           dict(_LLAMA), dict()),
    Preset("kitano", "The 'Llama from scratch' write-up's final model: context 16, "
           "128 wide, 8 heads, 4 layers, batch 32.",
           dict(_LLAMA, context_window=16, d_model=128, n_heads=8, n_layers=4),
           dict(batch_size=32, lr=1e-3, steps=5000, warmup_steps=100)),
    Preset("nanogpt-cpu", "nanoGPT's CPU recipe shape: 4 layers, 4 heads, 128 wide, "
           "context 64, batch 12, 2000 steps.",
           dict(context_window=64, d_model=128, n_heads=4, n_layers=4),
           dict(batch_size=12, lr=1e-3, min_lr=1e-4, steps=2000, warmup_steps=100,
                eval_interval=250, eval_batches=20)),
    Preset("nanogpt-gpu", "nanoGPT's GPU recipe shape: 6 layers, 6 heads, 384 wide, "
           "context 256, batch 64, dropout 0.2.",
           dict(context_window=256, d_model=384, n_heads=6, n_layers=6, dropout=0.2),
           dict(batch_size=64, lr=1e-3, min_lr=1e-4, steps=5000, warmup_steps=100,
                eval_interval=250, eval_batches=200, device="auto")),
    Preset("classroom", "Tuned for the best validation loss two CPU cores reach in 60 s.",
           dict(_LLAMA, context_window=32, d_model=128, n_heads=4, n_layers=4),
           dict(batch_size=16, lr=2e-3, min_lr=2e-4, steps=1_000_000, time_budget=60.0,
                warmup_steps=50, eval_interval=400, eval_batches=10, sample_chars=100)),
    Preset("tiny", "A model that trains in a few seconds, for trying things out.",
           dict(_LLAMA, context_window=32, d_model=64, n_heads=4, n_layers=2),
           dict(batch_size=16, lr=3e-3, min_lr=3e-4, steps=200, warmup_steps=20,
                eval_interval=50, eval_batches=5)),
    # The Llama generations at classroom size (real_models.py has the real shapes): each
    # changes from the one before only what Meta changed. Context doubles as 2k -> 4k ->
    # 8k did; 8 heads of 16 let Llama 3 keep its 4 query heads per key/value head.
    Preset("llama-1", "Llama 1 in miniature: multi-head attention, theta 10,000, untied "
           "head, context 32 (the real 7B: 2,048).",
           dict(_GENERATION), dict(_GENERATION_TRAIN)),
    Preset("llama-2", "Llama 2 in miniature: as Llama 1 with twice the context, 64 (the "
           "7B and 13B: multi-head; only 34B and 70B used grouped-query attention).",
           dict(_GENERATION, context_window=64), dict(_GENERATION_TRAIN)),
    Preset("llama-3", "Llama 3 in miniature: grouped-query attention (8 query heads, 2 "
           "key/value heads, as 8B's 32 and 8), theta 500,000, context 128.",
           dict(_GENERATION, context_window=128, n_kv_heads=2, rope_theta=500000.0),
           dict(_GENERATION_TRAIN)),
    Preset("llama-3.2", "Llama 3.2's small models in miniature: Llama 3 with the output "
           "head tied to the token embedding.",
           dict(_GENERATION, context_window=128, n_kv_heads=2, rope_theta=500000.0,
                tie_embeddings=True), dict(_GENERATION_TRAIN)),
    # The ladder: the 'Llama from scratch' story, one modification per rung.
    Preset("ladder-1-mlp", "Rung 1: token embedding and a ReLU MLP, no attention.",
           dict(_LADDER_SHAPE, n_layers=1, attention=False, norm="none", pos="none",
                ffn="relu"), dict(_LADDER_TRAIN)),
    Preset("ladder-2-rmsnorm", "Rung 2: + RMSNorm before the MLP.",
           dict(_LADDER_SHAPE, n_layers=1, attention=False, norm="rmsnorm", pos="none",
                ffn="relu"), dict(_LADDER_TRAIN)),
    Preset("ladder-3-rope-head", "Rung 3: + one attention head with rotary positions, "
           "no causal mask yet (it can read the answer).",
           dict(_LADDER_SHAPE, n_layers=1, n_heads=1, norm="rmsnorm", pos="rope",
                ffn="relu", causal=False), dict(_LADDER_TRAIN)),
    Preset("ladder-4-causal", "Rung 4: + the causal mask, so each position sees only "
           "the past.",
           dict(_LADDER_SHAPE, n_layers=1, n_heads=1, norm="rmsnorm", pos="rope",
                ffn="relu", causal=True), dict(_LADDER_TRAIN)),
    Preset("ladder-5-heads", "Rung 5: + several heads (8 of size 16).",
           dict(_LADDER_SHAPE, n_layers=1, norm="rmsnorm", pos="rope", ffn="relu",
                causal=True), dict(_LADDER_TRAIN)),
    Preset("ladder-6-swiglu", "Rung 6: + SwiGLU instead of the ReLU MLP.",
           dict(_LADDER_SHAPE, n_layers=1, **_LLAMA), dict(_LADDER_TRAIN)),
    Preset("ladder-7-llama", "Rung 7: 4 stacked blocks: Llama.",
           dict(_LADDER_SHAPE, n_layers=4, **_LLAMA), dict(_LADDER_TRAIN)),
]}

LADDER = [name for name in PRESETS if name.startswith("ladder-")]

# Every field's type as config.py declares it ("int", "float", "bool", "str", "int | None",
# "float | None" or "dict | None", a JSON object): what ``--set`` text is parsed as.
FIELD_TYPES = {f.name: f.type for cls in (ModelConfig, TrainConfig) for f in fields(cls)}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]


def parse_value(text: str, name: str) -> Any:
    """Parse ``text`` as the field ``name``'s declared type; "none" (or nothing) is None
    for a field that may be None."""
    kind, t = FIELD_TYPES[name], text.strip()
    if kind.endswith(" | None"):
        if t.lower() in ("none", "null", ""):
            return None
        kind = kind.removesuffix(" | None")
    if kind == "bool":
        if t.lower() in ("true", "1", "yes", "on"):
            return True
        if t.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {text!r}.")
    if kind == "int":
        try:
            return int(t.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {text!r}.") from None
    if kind == "float":
        try:
            return float(t)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {text!r}.") from None
    if kind == "dict":
        try:
            value = json.loads(t)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a JSON object such as "
                              f"'{{\"rope_type\": \"linear\", \"factor\": 4}}', not {text!r}.")
        return value
    return t


def build_configs(preset_name: str | None = None, overrides: dict[str, Any] | None = None,
                  **extra: Any) -> tuple[ModelConfig, TrainConfig]:
    """Start from a preset (or the defaults), apply ``key=value`` overrides, validate.

    Overrides may be strings (from ``--set``) or typed values (from the dashboard).
    """
    model_kw: dict[str, Any] = {}
    train_kw: dict[str, Any] = {}
    if preset_name:
        p = preset(preset_name)
        model_kw.update(p.model)
        train_kw.update(p.train)
    for key, value in {**(overrides or {}), **extra}.items():
        if key in MODEL_FIELDS:
            target = model_kw
        elif key in TRAIN_FIELDS:
            target = train_kw
        else:
            raise ConfigError(f"Unknown setting {key!r}; see `python -m llama_core train "
                              f"--help` for the fields you can set.")
        if isinstance(value, str) and FIELD_TYPES[key] != "str":
            value = parse_value(value, key)
        target[key] = value
    try:
        model = ModelConfig(**model_kw)
        train = TrainConfig(**train_kw)
    except TypeError as e:  # pragma: no cover - guarded by the field check above
        raise ConfigError(str(e)) from None
    return validate_model(model), validate_train(train)
