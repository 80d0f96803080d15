"""How much memory a run (or a checkpoint) needs, and whether this machine has it.

A run that does not fit is refused before anything is allocated, with one sentence
giving the estimate, what is free and what to reduce: without this a config that
claims a huge model is allocated first and the operating system kills the process (or
the whole server) instead.

The estimate is an upper bound on what training adds on top of torch's own runtime,
counted in float32 (bf16 autocast on a GPU only makes activations smaller):

- weights: parameters, their gradients, AdamW's two moments, and room for the
  backward pass's and the optimizer's temporaries of weight size (6 x the exact
  parameter count, read from a model built on the meta device);
- activations: what autograd keeps per token and layer (norms, q/k/v and rotations,
  attention outputs, the feed-forward's hidden units, dropout masks, and the T x T
  scores when attention is computed explicitly: with dropout or an attention class
  that cannot use the fused kernel, such as the mask_ones bug's);
- logits and the loss: logits, their log-softmax and gradient, plus the backward
  pass's temporaries, per token.

Generation needs the weights and a KV cache (``kv_cache_bytes``: 2 x layers x key/value
heads x head size x bytes per token and sequence), which training never allocates.

Measured against the peak resident-memory growth of real CPU training processes
(tests/test_hardening_checkpoints_costs.py: activation-bound, weight-bound and
explicit-attention configs) the estimate is 1.2 to 1.5 times the peak; the test holds
it between 1 and 3 times. It does not count the corpus, and each check sees the memory
free at that moment, not what runs already queued will take.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import torch

from .config import ModelConfig, TrainConfig
from .errors import ConfigError, UserError

FLOAT_BYTES = 4
# What torch itself holds in a fresh training process before any model (measured:
# 350 MB resident on the project's CPU build), counted once per process; on a GPU it
# stands in for the CUDA context and workspaces.
RUNTIME_BYTES = 400 * 2**20


@functools.lru_cache(maxsize=64)
def parameter_shapes(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every weight a model of this config has, as {state-dict name: (shape, dtype)}.

    Built on the meta device: shapes without storage, so even a config that claims a
    model far larger than memory costs nothing to inspect."""
    from .model import Llama

    with torch.device("meta"):
        model = Llama(cfg)
    return {name: (tuple(t.shape), t.dtype) for name, t in model.state_dict().items()}


def parameter_count(cfg: ModelConfig) -> int:
    """The exact number of parameters of a model of this config."""
    return sum(math.prod(shape) for shape, _ in parameter_shapes(cfg).values())


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run needs, by part."""

    weights: int      # parameters, gradients, AdamW moments, weight copies in backward
    activations: int  # kept by autograd for the backward pass, all layers
    logits: int       # logits, log-softmax, their gradient, backward temporaries
    runtime: int      # torch's own libraries and buffers, per process

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.logits + self.runtime

    def parts(self) -> str:
        return (f"weights, gradients and AdamW state {human_bytes(self.weights)}, "
                f"activations {human_bytes(self.activations)}, "
                f"logits {human_bytes(self.logits)}")

    def what_to_reduce(self) -> str:
        """The settings that shrink the largest part."""
        if self.weights >= max(self.activations, self.logits):
            return "reduce d_model or n_layers (or ffn_multiple_of)"
        return "reduce batch_size or context_window (or n_layers)"


def activation_floats_per_token(cfg: ModelConfig) -> int:
    """Floats autograd keeps for one token: every layer plus the embedding and head."""
    d, h = cfg.d_model, cfg.ffn_hidden
    norm = 3 * d if cfg.norm != "none" else 0
    layer = norm + (6 * h if cfg.ffn == "swiglu" else 3 * h) + 2 * d
    if cfg.attention:
        from .model import choose_parts

        layer += norm + 12 * d + (4 * d if cfg.pos == "rope" else 0)
        explicit = cfg.dropout > 0 or not choose_parts(cfg).attention.fused
        if explicit:  # scores made explicitly: T x T
            layer += 3 * cfg.n_heads * cfg.context_window
    if cfg.dropout > 0:
        layer += 4 * d
    return cfg.n_layers * layer + 8 * d


def estimate(model_cfg: ModelConfig, train_cfg: TrainConfig,
             processes: int = 1) -> MemoryEstimate:
    """The memory one training process needs (``processes`` > 1: each of that many
    DistributedDataParallel processes, each with its share of the batch)."""
    tokens = math.ceil(train_cfg.batch_size / processes) * model_cfg.context_window
    head_floats = 4 * model_cfg.vocab_size + 3 * model_cfg.ffn_hidden
    return MemoryEstimate(
        weights=6 * parameter_count(model_cfg) * FLOAT_BYTES,
        activations=tokens * activation_floats_per_token(model_cfg) * FLOAT_BYTES,
        logits=tokens * head_floats * FLOAT_BYTES,
        runtime=RUNTIME_BYTES)


def cache_bytes_per_token(n_layers: int, kv_heads: int, head_dim: int,
                          bytes_per_value: int = 2) -> int:
    """What a KV cache holds for one token of one sequence, in bytes: keys and values (2)
    x layers x key/value heads x head size x bytes per value (2 in 16-bit). The same
    formula for a classroom model and for Llama 3 70B."""
    return 2 * n_layers * kv_heads * head_dim * bytes_per_value


def kv_cache_bytes(cfg: ModelConfig, tokens: int, batch_size: int = 1,
                   bytes_per_value: int = FLOAT_BYTES) -> int:
    """Bytes of a KV cache (``Llama.make_cache``) for ``batch_size`` sequences of
    ``tokens`` positions: n_kv_heads per layer, as Meta's cache holds them before
    repeat_kv; 0 for a model without attention."""
    if not cfg.attention:
        return 0
    per_token = cache_bytes_per_token(cfg.n_layers, cfg.kv_heads, cfg.head_dim,
                                      bytes_per_value)
    return per_token * tokens * batch_size


def available(device: str) -> tuple[int | None, str]:
    """Bytes free for a run on ``device`` ("auto", "cpu" or "cuda"), and where: the GPU's
    free memory when the run will use CUDA, else this machine's MemAvailable (None where
    it cannot be read, e.g. not on Linux)."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free, f"the GPU ({torch.cuda.get_device_name()})"
    return mem_available(), "this machine"


def mem_available() -> int | None:
    """/proc/meminfo's MemAvailable in bytes: what can be allocated without swapping."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits(model_cfg: ModelConfig, train_cfg: TrainConfig) -> MemoryEstimate:
    """Refuse, before the corpus is read or the model built, a run whose estimated
    memory is more than the device has free. Under torchrun every process of this
    machine counts (they share its RAM; on GPUs each has its own)."""
    processes = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    est = estimate(model_cfg, train_cfg, processes)
    free, where = available(train_cfg.device)
    gpu = where != "this machine"
    need = est.total if gpu else est.total * processes
    if free is not None and need > free:
        many = f" ({processes} processes)" if processes > 1 and not gpu else ""
        raise ConfigError(
            f"This run needs about {human_bytes(need)} of memory{many} ({est.parts()}) but "
            f"{where} has {human_bytes(free)} free; {est.what_to_reduce()}.")
    return est


def check_loadable(label: str, need: int) -> None:
    """Refuse a checkpoint that needs ``need`` bytes to load (its tensors, read and then
    copied into a model) when this machine has less free."""
    free = mem_available()
    if free is not None and need > free:
        raise UserError(f"{label} needs about {human_bytes(need)} of memory to load but "
                        f"this machine has {human_bytes(free)} free; load it on a machine "
                        "with more memory.")


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"
