"""How fast training is, and how fast it could be: model FLOPs utilisation (MFU) and a
time estimate before a run starts.

MFU = achieved model FLOP/s / the hardware's peak, where achieved = tokens/s x training
FLOPs per token (llama_core.inspect.flops_per_token, the 6N-style count). The CPU's
"peak" is measured: the fp32 matrix-multiply rate of this machine, so the ratio says how
close training comes to the best the cores do. A GPU's peak is its published dense bf16
rate.
"""

from __future__ import annotations

import functools
import statistics
import time

import torch

from .config import ModelConfig, TrainConfig
from .inspect import flops_per_token

# Dense bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets.
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12,
                 "A10": 125e12, "4090": 165e12, "T4": 65e12}
# Without any history, assume training reaches this fraction of the peak (the measured
# nanogpt-cpu shape reaches 0.3 to 0.55 on the project's 2-core CPU).
DEFAULT_FRACTION = 0.3


@functools.lru_cache(maxsize=4)
def measured_matmul_flops(n: int = 512, repeats: int = 10) -> float:
    """fp32 FLOP/s of an n x n matrix multiply on this process's CPU threads (about
    0.1 s to measure, once per process)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def peak_flops(device: str) -> tuple[float, str]:
    """The FLOP/s that MFU divides by, and where the number comes from. ``device`` is a
    run's device as stored: "cpu", "2 x cpu", a GPU's name, or "auto"/"cuda"."""
    name = device
    if device in ("auto", "cuda"):
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    if "cpu" in name:
        return measured_matmul_flops(), "this CPU's measured fp32 matrix-multiply rate"
    for key, value in GPU_PEAK_BF16.items():
        if key in name:
            return value, f"{key} dense bf16 peak (data sheet)"
    return 0.0, "unknown GPU"


def mfu(tokens_per_s: float, model_cfg: ModelConfig, device: str) -> float | None:
    """Achieved model FLOP/s as a fraction of the device's peak (None if unknown)."""
    peak, _ = peak_flops(device)
    if not peak or not tokens_per_s:
        return None
    return tokens_per_s * flops_per_token(model_cfg)["training_flops_per_token"] / peak


def estimate(model_cfg: ModelConfig, train_cfg: TrainConfig, device: str = "cpu",
             past_runs: list[tuple[ModelConfig, float]] = ()) -> dict:
    """Predicted tokens/s and seconds for a run before it starts.

    ``past_runs`` are (model config, measured tokens/s) of earlier runs on the same
    device: the median FLOP/s they achieved predicts this one (training speed in FLOP/s
    varies far less across shapes than tokens/s does). Without history, a fixed
    fraction of the peak stands in. Evaluation pauses are not counted.
    """
    per_token = flops_per_token(model_cfg)["training_flops_per_token"]
    achieved = [tok_s * flops_per_token(cfg)["training_flops_per_token"]
                for cfg, tok_s in past_runs if tok_s]
    if achieved:
        flops_s, basis = statistics.median(achieved), f"median of {len(achieved)} past runs"
    else:
        peak, _ = peak_flops(device)
        flops_s, basis = DEFAULT_FRACTION * peak, f"{DEFAULT_FRACTION:.0%} of peak (no history)"
    tokens_per_s = flops_s / per_token if per_token else 0.0
    tokens = train_cfg.steps * train_cfg.batch_size * model_cfg.context_window
    seconds = tokens / tokens_per_s if tokens_per_s else float("inf")
    if train_cfg.time_budget is not None:
        seconds = min(seconds, train_cfg.time_budget)
    return {"tokens_per_s": tokens_per_s, "seconds": seconds, "basis": basis}
