"""What a run is made of: the model's shape and parts, and how it is trained.

Every toggle the dashboard shows is a field here, so a run is fully described by two
small frozen dataclasses that serialise to JSON. ``validate_model`` and ``validate_train``
refuse combinations that cannot work with one sentence saying what to change.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .errors import ConfigError
from .pitfalls import BUILT_IN, NO_BUG

NORMS = ("rmsnorm", "layernorm", "none")
POSITIONS = ("rope", "learned", "none")
FFNS = ("swiglu", "gelu", "relu")
DEVICES = ("auto", "cpu", "cuda")

# Classic mistakes, built in on purpose so a probe can show their signature
# (pitfalls.PITFALLS holds each one's story and what it needs).
BUGS = {NO_BUG: "no bug", **{name: p.breaks for name, p in BUILT_IN.items()}}


class RopeScaling(dict):
    """``rope_scaling`` as stored in a ModelConfig: Hugging Face's dictionary, read-only
    and hashable. Its older spelling ``type`` is read as ``rope_type``."""

    def __init__(self, items=(), **kw):
        d = dict(items, **kw)
        if "type" in d and "rope_type" not in d:
            d["rope_type"] = d.pop("type")
        super().__init__(d)

    def __hash__(self):
        return hash(tuple(sorted((k, repr(v)) for k, v in self.items())))

    def __reduce__(self):
        return (RopeScaling, (dict(self),))

    def _read_only(self, *args, **kwargs):
        raise TypeError("rope_scaling is part of a frozen ModelConfig; use "
                        "dataclasses.replace to change it.")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only


# rope_type -> the keys it takes (Hugging Face's names), all required. "default" is
# Hugging Face's name for no scaling.
ROPE_SCALINGS = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor",
               "original_max_position_embeddings"),
}


@dataclass(frozen=True)
class ModelConfig:
    """The architecture. Defaults are a small Llama: RMSNorm, RoPE, SwiGLU, causal."""

    vocab_size: int = 65
    context_window: int = 64
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    norm: str = "rmsnorm"
    pos: str = "rope"
    ffn: str = "swiglu"
    causal: bool = True
    attention: bool = True  # False: embedding + feed-forward only (the ladder's first rung)
    rope_theta: float = 10000.0
    dropout: float = 0.0
    ffn_multiple_of: int = 32
    norm_eps: float = 1e-5
    bug: str = "none"
    # After the first Llama. Their defaults leave every earlier run as it was.
    n_kv_heads: int | None = None  # key/value heads: None = n_heads (multi-head), 1 = multi-query
    tie_embeddings: bool = False   # the output head reuses the token embedding (Llama 3.2 1B)
    rope_scaling: dict | None = None  # Hugging Face's form, e.g. {"rope_type": "linear", "factor": 4.0}
    # A real checkpoint's feed-forward width (Hugging Face's intermediate_size), which the
    # 8d/3 rounding cannot always give (TinyLlama: d 2048, 5632); None = computed (ffn_hidden).
    ffn_hidden_size: int | None = None

    def __post_init__(self):
        # A dict is unhashable; the frozen read-only copy keeps the config hashable (a
        # cache key) while it still equals, and serialises as, the plain dict.
        if isinstance(self.rope_scaling, Mapping) and not isinstance(self.rope_scaling,
                                                                     RopeScaling):
            object.__setattr__(self, "rope_scaling", RopeScaling(self.rope_scaling))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_heads, or n_heads when it is None (Meta's rule)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU: 2/3 of 4d rounded up to a multiple, so its three matrices cost about
        what a 4d two-matrix MLP costs. GELU and ReLU: 4d. ffn_hidden_size, when set,
        is the width as given."""
        if self.ffn_hidden_size is not None:
            return self.ffn_hidden_size
        if self.ffn == "swiglu":
            hidden = int(2 * 4 * self.d_model / 3)
            m = self.ffn_multiple_of
            return m * ((hidden + m - 1) // m)
        return 4 * self.d_model


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained. ``steps`` is a cap; ``time_budget`` (seconds), when
    set, ends the run on the clock and stretches the learning-rate schedule over it."""

    corpus: str = "shakespeare"
    steps: int = 2000
    time_budget: float | None = None
    batch_size: int = 12
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_batches: int = 20
    sample_chars: int = 200
    seed: int = 1337
    device: str = "auto"
    compile: bool = False
    threads: int | None = None
    # "char" (one token per character) or "bpe<N>": a byte-level byte-pair vocabulary
    # of N tokens learned from the corpus, as real checkpoints ship (e.g. "bpe512").
    tokenizer: str = "char"


def _check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")


def _check_number(name: str, value: Any, *, minimum: float, integer: bool,
                  inclusive: bool = True, maximum: float | None = None) -> None:
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        raise ConfigError(f"{name} must be {kind}, not {value!r}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {value!r}.")
    too_small = value < minimum if inclusive else value <= minimum
    if too_small:
        bound = "at least" if inclusive else "greater than"
        raise ConfigError(f"{name} must be {bound} {_show(minimum)}, not {value!r}.")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {_show(maximum)}, not {value!r}.")


def _show(bound: float) -> str:
    """A bound as a reader writes it: 1,114,112 rather than 1.11411e+06."""
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def validate_model(cfg: ModelConfig) -> ModelConfig:
    """Refuse a model that cannot be built, naming the field to change."""
    _check_choice("norm", cfg.norm, NORMS)
    _check_choice("pos", cfg.pos, POSITIONS)
    _check_choice("ffn", cfg.ffn, FFNS)
    _check_choice("bug", cfg.bug, tuple(BUGS))
    for name in ("causal", "attention"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"{name} must be true or false, not {getattr(cfg, name)!r}.")
    # A character tokenizer has at most one token per Unicode code point.
    _check_number("vocab_size", cfg.vocab_size, minimum=2, integer=True, maximum=0x110000)
    _check_number("context_window", cfg.context_window, minimum=1, integer=True, maximum=8192)
    _check_number("d_model", cfg.d_model, minimum=1, integer=True, maximum=8192)
    _check_number("n_layers", cfg.n_layers, minimum=1, integer=True, maximum=64)
    _check_number("n_heads", cfg.n_heads, minimum=1, integer=True)
    _check_number("rope_theta", cfg.rope_theta, minimum=1.0, integer=False, inclusive=False)
    _check_number("dropout", cfg.dropout, minimum=0.0, integer=False, maximum=0.9)
    _check_number("ffn_multiple_of", cfg.ffn_multiple_of, minimum=1, integer=True,
                  maximum=MAX_FFN_MULTIPLE)
    _check_number("norm_eps", cfg.norm_eps, minimum=0.0, integer=False, inclusive=False)
    if cfg.ffn_hidden_size is not None:
        _check_number("ffn_hidden_size", cfg.ffn_hidden_size, minimum=1, integer=True,
                      maximum=max(MAX_FFN_RATIO * cfg.d_model, 64))
    _check_ffn_hidden(cfg)
    if not isinstance(cfg.tie_embeddings, bool):
        raise ConfigError(f"tie_embeddings must be true or false, not {cfg.tie_embeddings!r}.")
    if cfg.n_kv_heads is not None:
        _check_number("n_kv_heads", cfg.n_kv_heads, minimum=1, integer=True)
        if cfg.n_heads % cfg.n_kv_heads:
            raise ConfigError(
                f"n_kv_heads ({cfg.n_kv_heads}) must divide n_heads ({cfg.n_heads}), so "
                f"each key/value head serves a whole group of query heads; try n_kv_heads "
                f"in {divisors(cfg.n_heads)}.")
    _check_rope_scaling(cfg.rope_scaling)
    if cfg.attention and cfg.d_model % cfg.n_heads:
        raise ConfigError(
            f"n_heads ({cfg.n_heads}) must divide d_model ({cfg.d_model}); "
            f"try n_heads in {divisors(cfg.d_model)}.")
    if cfg.attention and cfg.pos == "rope" and cfg.head_dim % 2:
        raise ConfigError(
            f"RoPE rotates pairs of dimensions, so the head size d_model / n_heads "
            f"({cfg.head_dim}) must be even; change d_model or n_heads.")
    if cfg.bug in BUILT_IN:
        BUILT_IN[cfg.bug].check(cfg)
    return cfg


def _check_rope_scaling(scaling) -> None:
    """Refuse a rope_scaling that is not one of Hugging Face's two forms we compute."""
    if scaling is None:
        return
    example = '{"rope_type": "linear", "factor": 4.0}'
    if not isinstance(scaling, Mapping):
        raise ConfigError(f"rope_scaling must be None or a dictionary such as {example}, "
                          f"not {scaling!r}.")
    kind = scaling.get("rope_type")
    if kind not in ROPE_SCALINGS:
        raise ConfigError(f"rope_scaling's rope_type must be one of "
                          f"{', '.join(ROPE_SCALINGS)}, not {kind!r}.")
    keys = ROPE_SCALINGS[kind]
    missing = [k for k in keys if k not in scaling]
    extra = sorted(set(scaling) - set(keys) - {"rope_type"})
    if missing or extra:
        takes = f"exactly {', '.join(keys)}" if keys else "nothing else"
        raise ConfigError(f"rope_scaling of rope_type {kind} takes {takes}; " + (
            f"add {', '.join(missing)}." if missing else f"remove {', '.join(extra)}."))
    if "factor" in keys:
        _check_number("rope_scaling factor", scaling["factor"], minimum=1.0, integer=False)
    if kind == "llama3":
        _check_number("rope_scaling low_freq_factor", scaling["low_freq_factor"],
                      minimum=0.0, integer=False, inclusive=False)
        _check_number("rope_scaling high_freq_factor", scaling["high_freq_factor"],
                      minimum=0.0, integer=False, inclusive=False)
        _check_number("rope_scaling original_max_position_embeddings",
                      scaling["original_max_position_embeddings"], minimum=1, integer=True)
        if scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
            raise ConfigError(
                f"rope_scaling's high_freq_factor ({scaling['high_freq_factor']:g}) must be "
                f"greater than its low_freq_factor ({scaling['low_freq_factor']:g}): the "
                f"band between them is where frequencies are blended.")


# Meta's Llama rounds to 256 at width 4096; a multiple this size is already generous.
MAX_FFN_MULTIPLE = 4096
# SwiGLU's hidden size is about 2.7 x d_model; rounding may not make it over 16 x (or 64
# units, so the default multiple stays usable at the narrowest widths).
MAX_FFN_RATIO = 16


def _check_ffn_hidden(cfg: ModelConfig) -> None:
    """Refuse a rounding multiple that blows the feed-forward up: at width 128 a multiple
    of a million would make every layer hold hundreds of millions of parameters."""
    limit = max(MAX_FFN_RATIO * cfg.d_model, 64)
    if cfg.ffn == "swiglu" and cfg.ffn_hidden_size is None and cfg.ffn_hidden > limit:
        raise ConfigError(
            f"ffn_multiple_of = {cfg.ffn_multiple_of} rounds the SwiGLU hidden size up to "
            f"{cfg.ffn_hidden}, over its limit of {limit} ({MAX_FFN_RATIO} x d_model, at "
            f"least 64); use an ffn_multiple_of of at most "
            f"{_largest_multiple(cfg.d_model, limit)}.")


def _largest_multiple(d_model: int, limit: int) -> int:
    """The largest ffn_multiple_of whose rounded SwiGLU hidden size stays within limit."""
    hidden = int(2 * 4 * d_model / 3)
    return max((m for m in range(1, min(limit, MAX_FFN_MULTIPLE) + 1)
                if m * ((hidden + m - 1) // m) <= limit), default=1)


def machine_cores() -> int:
    """CPU cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def validate_train(cfg: TrainConfig) -> TrainConfig:
    """Refuse training settings that cannot work, naming the field to change."""
    _check_number("steps", cfg.steps, minimum=1, integer=True, maximum=10_000_000)
    if cfg.time_budget is not None:
        _check_number("time_budget", cfg.time_budget, minimum=0.0, integer=False,
                      inclusive=False, maximum=7 * 24 * 3600)
    _check_number("batch_size", cfg.batch_size, minimum=1, integer=True, maximum=65536)
    _check_number("lr", cfg.lr, minimum=0.0, integer=False, inclusive=False, maximum=10.0)
    _check_number("min_lr", cfg.min_lr, minimum=0.0, integer=False)
    if cfg.min_lr > cfg.lr:
        raise ConfigError(f"min_lr ({cfg.min_lr:g}) must not exceed lr ({cfg.lr:g}).")
    _check_number("warmup_steps", cfg.warmup_steps, minimum=0, integer=True)
    _check_number("weight_decay", cfg.weight_decay, minimum=0.0, integer=False)
    _check_number("beta1", cfg.beta1, minimum=0.0, integer=False, maximum=0.9999)
    _check_number("beta2", cfg.beta2, minimum=0.0, integer=False, maximum=0.9999)
    _check_number("grad_clip", cfg.grad_clip, minimum=0.0, integer=False)
    _check_number("eval_interval", cfg.eval_interval, minimum=1, integer=True,
                  maximum=10_000_000)
    _check_number("eval_batches", cfg.eval_batches, minimum=1, integer=True, maximum=1000)
    _check_number("sample_chars", cfg.sample_chars, minimum=0, integer=True, maximum=10000)
    _check_number("seed", cfg.seed, minimum=0, integer=True, maximum=2**63 - 1)
    _check_choice("device", cfg.device, DEVICES)
    if not isinstance(cfg.compile, bool):
        raise ConfigError(f"compile must be true or false, not {cfg.compile!r}.")
    if cfg.threads is not None:
        cores = machine_cores()
        _check_number("threads", cfg.threads, minimum=1, integer=True)
        if cfg.threads > cores:
            raise ConfigError(f"threads must be at most {cores} (the CPU cores this machine "
                              f"gives Llama Lab), not {cfg.threads}.")
    if not isinstance(cfg.corpus, str) or not cfg.corpus.strip():
        raise ConfigError("corpus must name a built-in corpus or a text file.")
    byte_pair_vocab(cfg.tokenizer)
    return cfg


BYTE_PAIR_VOCAB = (257, 16384)  # the 256 byte symbols and at least one merge


def byte_pair_vocab(tokenizer: str) -> int | None:
    """The vocabulary size a ``tokenizer`` setting asks to learn ("bpe512" -> 512), None
    for "char"; anything else is refused naming both forms."""
    low, high = BYTE_PAIR_VOCAB
    if tokenizer == "char":
        return None
    digits = tokenizer[3:] if isinstance(tokenizer, str) and tokenizer.startswith("bpe") \
        else ""
    if digits.isdigit() and digits.isascii() and low <= int(digits) <= high:
        return int(digits)
    raise ConfigError(f"tokenizer must be 'char' or 'bpe' and a vocabulary size from {low} "
                      f"to {high:,} (e.g. 'bpe512'), not {tokenizer!r}.")


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
# What makes a model Llama, whatever its size (ModelConfig's defaults): RMSNorm, RoPE,
# SwiGLU, causal attention, no bug. Comparisons are read against such a run.
LLAMA_PARTS = {k: getattr(ModelConfig(), k)
               for k in ("norm", "pos", "ffn", "causal", "attention", "bug")}


def is_llama(model: dict) -> bool:
    """True when a stored model config has every Llama part."""
    return all(model.get(k, v) == v for k, v in LLAMA_PARTS.items())


def to_dict(cfg) -> dict:
    """A config as plain values: what the run store, checkpoints and JSON output keep."""
    d = dataclasses.asdict(cfg)
    if isinstance(d.get("rope_scaling"), dict):
        d["rope_scaling"] = dict(d["rope_scaling"])
    return d


def model_from_dict(d: dict) -> ModelConfig:
    """A stored model config, validated; keys this version does not know are ignored, so
    records from other versions still load."""
    known = {k: v for k, v in d.items() if k in MODEL_FIELDS}
    return validate_model(ModelConfig(**known))


def train_from_dict(d: dict) -> TrainConfig:
    """A stored training config, validated; unknown keys are ignored as above."""
    known = {k: v for k, v in d.items() if k in TRAIN_FIELDS}
    return validate_train(TrainConfig(**known))
