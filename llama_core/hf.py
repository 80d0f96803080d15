"""Llama Lab's layout and Hugging Face's Llama layout, converted both ways.

Three things differ between a Llama Lab model and ``transformers``' ``LlamaForCausalLM``:

1. The config: ModelConfig's fields against LlamaConfig's ``config.json`` (``to_hf_config``,
   ``from_hf_config``).
2. The parameter names: Meta's (``layers.0.attention.wq.weight``) against Hugging Face's
   (``model.layers.0.self_attn.q_proj.weight``); see ``hf_names``.
3. Where each rotary pair lives. Meta and Llama Lab rotate *adjacent* dimensions of a head
   as a pair, (0, 1), (2, 3), ...; Hugging Face's ``rotate_half`` pairs dimension i with
   i + head_dim/2, (0, 32), (1, 33), ... in a head of 64. The same model therefore needs
   the rows of wq and wk reordered within each head: ``to_hf_rows`` is transformers' own
   ``permute`` from convert_llama_weights_to_hf.py (pair j's two rows go to j and j + head_dim/2),
   ``from_hf_rows`` its inverse. Without it the weights load, look plausible, and the
   model writes gibberish (the ``hf_without_permutation`` pitfall).

Only a Llama is converted: a config with any other part is refused with one sentence
naming every part that is not Llama's (``NotLlamaError``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import torch

from .config import ModelConfig, ROPE_SCALINGS, validate_model
from .errors import UserError

# Llama Lab's context window has this ceiling (config.validate_model); a longer
# max_position_embeddings is read up to it.
MAX_CONTEXT = 8192
LLAMA_ACT = "silu"
# Names of tensors a Hugging Face Llama file may hold that are not weights (older
# checkpoints saved the rotary table): skipped on import.
NOT_WEIGHTS = ("rotary_emb.inv_freq",)


class NotLlamaError(UserError):
    """A model or checkpoint that is not a Llama, so it has no Hugging Face Llama form."""


# --- The rotary permutation -------------------------------------------------------

def to_hf_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Llama Lab's (Meta's) wq or wk rows -> Hugging Face's: within each head, the rows
    of pair j (2j and 2j + 1) move to j and j + head_dim/2. Transformers' ``permute``:
    ``w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)``."""
    dim1, dim2 = w.shape
    return w.reshape(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def from_hf_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face's wq or wk rows -> Llama Lab's: ``to_hf_rows`` undone, the rows j and
    j + head_dim/2 of each head back side by side as pair j."""
    dim1, dim2 = w.shape
    return w.reshape(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


# --- Names ------------------------------------------------------------------------

# Per layer: Llama Lab's name -> Hugging Face's.
LAYER_NAMES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
MODEL_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_names(cfg: ModelConfig) -> dict[str, str]:
    """Every Llama Lab weight name of this config -> its Hugging Face name. A tied head
    has no ``output.weight`` (``lm_head`` is ``embed_tokens`` in both)."""
    names = {ours: theirs for ours, theirs in MODEL_NAMES.items()
             if not (cfg.tie_embeddings and ours == "output.weight")}
    for i in range(cfg.n_layers):
        for ours, theirs in LAYER_NAMES.items():
            names[f"layers.{i}.{ours}"] = f"model.layers.{i}.{theirs}"
    return names


def _rotary_heads(name: str, cfg: ModelConfig) -> int | None:
    """Heads whose rows a weight's rotation pairs span: n_heads for wq, n_kv_heads for
    wk, None for a weight RoPE never touches."""
    if name.endswith("attention.wq.weight"):
        return cfg.n_heads
    if name.endswith("attention.wk.weight"):
        return cfg.kv_heads
    return None


def to_hf_state_dict(state: Mapping[str, torch.Tensor], cfg: ModelConfig
                     ) -> dict[str, torch.Tensor]:
    """A Llama Lab state dict -> Hugging Face's names and rotary row order."""
    check_exportable(cfg)
    out = {}
    for ours, theirs in hf_names(cfg).items():
        w = state[ours]
        heads = _rotary_heads(ours, cfg)
        out[theirs] = (to_hf_rows(w, heads) if heads else w).contiguous()
    return out


def from_hf_state_dict(tensors: Mapping[str, torch.Tensor], cfg: ModelConfig,
                       permute: bool = True) -> dict[str, torch.Tensor]:
    """Hugging Face's tensors -> a Llama Lab state dict (names and row order). The caller
    has checked the names (``check_hf_names``). ``permute=False`` is the pitfall: rows left
    in Hugging Face's order."""
    out = {}
    for ours, theirs in hf_names(cfg).items():
        w = tensors[theirs]
        heads = _rotary_heads(ours, cfg)
        out[ours] = from_hf_rows(w, heads) if heads and permute else w
    return out


def check_hf_names(names, cfg: ModelConfig, label: str) -> list[str]:
    """The Hugging Face tensor names to read for this config. One sentence for a weight
    missing or a tensor no Llama of this config has; a tied model's file may still hold
    ``lm_head.weight`` (the same matrix), which is not read."""
    wanted = set(hf_names(cfg).values())
    present = set(names)
    missing = sorted(wanted - present)
    if missing:
        raise NotLlamaError(f"{label} has no {missing[0]} (and {len(missing) - 1} more "
                            f"weights missing), so it is not a complete Llama checkpoint; "
                            f"use the model's full set of safetensors files."
                            if len(missing) > 1 else
                            f"{label} has no {missing[0]}, so it is not a complete Llama "
                            "checkpoint; use the model's full set of safetensors files.")
    ignorable = {"lm_head.weight"} if cfg.tie_embeddings else set()
    extra = sorted(n for n in present - wanted - ignorable if not n.endswith(NOT_WEIGHTS))
    if extra:
        shown = extra[0] if len(extra[0]) <= 80 else extra[0][:77] + "..."
        raise NotLlamaError(f"{label} holds {shown!r}, which a Llama of its config.json does "
                            f"not have ({len(extra)} such tensors); use a plain "
                            "LlamaForCausalLM checkpoint.")
    return sorted(wanted)


# --- The config -------------------------------------------------------------------

def not_llama_parts(cfg: ModelConfig) -> list[str]:
    """What makes a Llama Lab config something other than a Llama, in words."""
    parts = []
    if cfg.norm != "rmsnorm":
        parts.append("LayerNorm (norm=layernorm)" if cfg.norm == "layernorm"
                     else "no normalisation (norm=none)")
    if cfg.pos != "rope":
        parts.append("learned positions (pos=learned)" if cfg.pos == "learned"
                     else "no positions (pos=none)")
    if cfg.ffn != "swiglu":
        parts.append(f"a {cfg.ffn.upper()} feed-forward (ffn={cfg.ffn})")
    if not cfg.attention:
        parts.append("no attention (attention=false)")
    elif not cfg.causal:
        parts.append("no causal mask (causal=false)")
    if cfg.bug != "none":
        parts.append(f"the {cfg.bug} pitfall switched on (bug={cfg.bug})")
    return parts


def check_exportable(cfg: ModelConfig) -> None:
    """Refuse, in one sentence naming every part, a config that is not a Llama."""
    parts = not_llama_parts(cfg)
    if parts:
        raise NotLlamaError(
            f"This model is not a Llama, so it has no Hugging Face Llama form: it has "
            f"{_and(parts)}; export a run with RMSNorm, RoPE, SwiGLU, causal attention and "
            "no pitfall.")


def to_hf_config(cfg: ModelConfig, bos_token_id: int | None = None,
                 eos_token_id: int | list[int] | None = None) -> dict:
    """``config.json`` of LlamaForCausalLM for this config (float32 weights). The rotary
    settings are written in the long-standing form every transformers version reads
    (``rope_theta``, ``rope_scaling``); no special tokens unless given (a character
    vocabulary has none)."""
    check_exportable(cfg)
    scaling = cfg.rope_scaling
    if scaling is not None and scaling.get("rope_type") == "default":
        scaling = None
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": LLAMA_ACT,
        "max_position_embeddings": cfg.context_window,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": dict(scaling) if scaling else None,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": None,
        "torch_dtype": "float32",
    }


def from_hf_config(hf: Mapping, label: str = "This checkpoint") -> tuple[ModelConfig, list[str]]:
    """A Llama ``config.json`` -> (ModelConfig, notes). Refuses in one sentence naming every
    part that is not Llama's. ``notes`` say what was adapted (a context window read only
    up to Llama Lab's ceiling)."""
    if not isinstance(hf, Mapping):
        raise NotLlamaError(f"{label}'s config.json is not a JSON object; use the model's "
                            "own config.json.")
    kind = hf.get("model_type")
    if kind != "llama":
        raise NotLlamaError(f"{label} is a {kind!r} model, not a Llama (its config.json's "
                            f"model_type is not 'llama'); import a LlamaForCausalLM "
                            "checkpoint such as SmolLM2, TinyLlama or Llama 3.2.")
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads")
    missing = [k for k in required if not _whole(hf.get(k))]
    if missing:
        raise NotLlamaError(f"{label}'s config.json has no valid {_and(missing)}; use the "
                            "model's own config.json.")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    kv = hf.get("num_key_value_heads") or heads
    problems = []
    act = hf.get("hidden_act", LLAMA_ACT)
    if act != LLAMA_ACT:
        problems.append(f"a {act} feed-forward activation (Llama's SwiGLU gates with silu)")
    if hf.get("attention_bias"):
        problems.append("biases in its attention projections (attention_bias)")
    if hf.get("mlp_bias"):
        problems.append("biases in its feed-forward (mlp_bias)")
    if d % heads:
        problems.append(f"a hidden_size ({d}) that its {heads} heads do not divide")
    head_dim = hf.get("head_dim") or (d // heads)
    if head_dim != d // heads:
        problems.append(f"a head_dim of {head_dim} where hidden_size / heads is {d // heads}")
    if not _whole(kv) or heads % kv:
        problems.append(f"{kv!r} key/value heads, which do not divide its {heads} heads")
    if hf.get("quantization_config"):
        problems.append("quantized weights (quantization_config)")
    if hf.get("sliding_window"):
        problems.append("sliding-window attention (sliding_window)")
    theta, scaling, rope_problem = _rope(hf)
    if rope_problem:
        problems.append(rope_problem)
    eps = hf.get("rms_norm_eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (
            math.isfinite(eps) and eps > 0):
        problems.append(f"an rms_norm_eps of {str(eps)[:40]!r}")
    if problems:
        raise NotLlamaError(f"{label} is not a Llama that Llama Lab can load: it has "
                            f"{_and(problems)}.")
    notes = []
    context = hf.get("max_position_embeddings") or 2048
    if not _whole(context):
        raise NotLlamaError(f"{label}'s config.json has no valid max_position_embeddings; "
                            "use the model's own config.json.")
    if context > MAX_CONTEXT:
        notes.append(f"it reads up to {context:,} tokens; Llama Lab reads the first "
                     f"{MAX_CONTEXT:,}")
        context = MAX_CONTEXT
    cfg = ModelConfig(
        vocab_size=hf["vocab_size"], context_window=context, d_model=d,
        n_layers=hf["num_hidden_layers"], n_heads=heads,
        n_kv_heads=None if kv == heads else kv,
        rope_theta=float(theta), norm_eps=float(eps),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        rope_scaling=scaling)
    if cfg.ffn_hidden != hf["intermediate_size"]:
        cfg = dataclasses.replace(cfg, ffn_hidden_size=hf["intermediate_size"])
    try:
        return validate_model(cfg), notes
    except UserError as e:
        raise NotLlamaError(f"{label} is a Llama that Llama Lab cannot build: "
                            f"{str(e).rstrip('.')}.") from None


def _rope(hf: Mapping) -> tuple[float, dict | None, str | None]:
    """(rope_theta, rope_scaling for ModelConfig, a problem in words or None), from either
    form: ``rope_theta`` + ``rope_scaling`` (transformers 4) or ``rope_parameters``
    (transformers 5)."""
    params = hf.get("rope_parameters")
    scaling = hf.get("rope_scaling")
    theta = hf.get("rope_theta")
    if isinstance(params, Mapping) and params:
        if not ({"rope_type", "rope_theta", "type"} & set(params)):
            return 10000.0, None, "rotary settings per layer type (rope_parameters)"
        theta = params.get("rope_theta", theta)
        scaling = scaling or params
    if theta is None:
        theta = 10000.0
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not (
            math.isfinite(theta) and theta > 1):
        return 10000.0, None, f"a rope_theta of {theta!r}"
    if not scaling:
        return theta, None, None
    if not isinstance(scaling, Mapping):
        return theta, None, f"a rope_scaling of {scaling!r}"
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_SCALINGS:
        return theta, None, (f"{kind} RoPE scaling (Llama Lab computes "
                             f"{', '.join(ROPE_SCALINGS)})")
    if kind == "default":
        return theta, None, None
    if scaling.get("partial_rotary_factor", 1.0) != 1.0:
        return theta, None, "rotation of part of each head only (partial_rotary_factor)"
    out = {"rope_type": kind, **{k: scaling[k] for k in ROPE_SCALINGS[kind] if k in scaling}}
    if kind == "llama3" and "original_max_position_embeddings" not in out:
        # transformers' rule: the context it was trained at defaults to max_position_embeddings
        out["original_max_position_embeddings"] = hf.get("max_position_embeddings")
    return theta, out, None


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _and(items: list[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
