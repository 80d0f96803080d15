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


# --- A timed probe: this machine's speed for this shape ----------------------------

# What a run costs besides its steps and evaluations: handing it to a warm worker,
# building the model, the last evaluation's bookkeeping, saving the checkpoint and
# recording the end. Measured with benchmarks/bench_estimates.py as actual - estimate
# on a quiet 2-core machine: 1.8 to 2.6 s over ten configurations.
START_S = 2.4
PROBE_STEP_LIMIT_S = 1.0  # shapes predicted slower per step than this are not probed
PROBE_S = 0.4  # time the probe spends on steps after its warm-up step


PROBE_AGAIN_S = 60.0  # a shape's probe is retaken this often, keeping the fastest seen
_probes: dict[tuple, tuple[float, dict | None]] = {}


def probe(model_cfg: ModelConfig, batch_size: int, device: str = "cpu",
          threads: int | None = None) -> dict | None:
    """Time a few real training steps of this shape on this machine: seconds per step,
    per evaluation forward pass (batch_size sequences) and per sampled token (one
    sequence). None when the shape is too big to probe quickly (a step predicted over
    PROBE_STEP_LIMIT_S): estimate() from FLOP/s stands in for those.

    Kept per shape, device and thread count, retaken at most every PROBE_AGAIN_S, and
    the fastest of every reading is the answer: a probe that ran while a worker process
    was starting on the same cores would otherwise hold a shape's estimate several
    times too long for the server's whole life."""
    key = (model_cfg, batch_size, device, threads)
    now = time.monotonic()
    seen = _probes.get(key)
    if seen is not None and now - seen[0] < PROBE_AGAIN_S:
        return seen[1]
    fresh = _probe(model_cfg, batch_size, device, threads)
    if seen is not None and seen[1] is not None and fresh is not None:
        fresh = {k: min(v, seen[1][k]) for k, v in fresh.items()}
    _probes[key] = (now, fresh)
    return fresh


def _probe(model_cfg: ModelConfig, batch_size: int, device: str,
           threads: int | None) -> dict | None:
    from .model import Llama
    per_token = flops_per_token(model_cfg)["training_flops_per_token"]
    tokens = batch_size * model_cfg.context_window
    peak, _ = peak_flops(device)
    if not peak or per_token * tokens / (DEFAULT_FRACTION * peak) > PROBE_STEP_LIMIT_S:
        return None
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        dev = torch.device("cuda" if device not in ("cpu",) and torch.cuda.is_available()
                           else "cpu")
        model = Llama(model_cfg, seed=0).to(dev)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(0, model_cfg.vocab_size, (batch_size, model_cfg.context_window),
                          device=dev)

        def step():
            loss = torch.nn.functional.cross_entropy(
                model(x).float().flatten(0, 1), x.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            loss.item()
        step_s = _timed(step)
        with torch.no_grad():
            model.eval()
            forward_s = _timed(lambda: model(x).sum().item(), budget=PROBE_S / 4)
            one = x[:1]
            char_s = _timed(lambda: model(one).sum().item(), budget=PROBE_S / 4)
        return {"step_s": step_s, "eval_forward_s": forward_s, "char_s": char_s}
    finally:
        torch.set_num_threads(before)


def _timed(fn, budget: float = PROBE_S, most: int = 20) -> float:
    """Fastest seconds of ``fn`` after one warm-up call, repeated for about ``budget``.
    The fastest, not the median: the probe is kept for the process's life, and a probe
    taken while a worker process starts (importing torch on the same cores) would
    otherwise make every later estimate of that shape several times too long."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < budget and len(times) < most):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return min(times)


def timed_estimate(model_cfg: ModelConfig, train_cfg: TrainConfig, device: str = "cpu",
                   threads: int | None = None) -> dict | None:
    """Seconds a run will take from Launch to its end, from probe(): start-up, every
    step, and every evaluation (its validation batches, the sample's characters, the
    layer health); None when the shape is not probed."""
    measured = probe(model_cfg, train_cfg.batch_size, device, threads)
    if measured is None:
        return None
    evals = train_cfg.steps // train_cfg.eval_interval + 1
    per_eval = (train_cfg.eval_batches * measured["eval_forward_s"]
                + train_cfg.sample_chars * measured["char_s"] + measured["eval_forward_s"])
    training = train_cfg.steps * measured["step_s"]
    if train_cfg.time_budget is not None:  # the budget's clock includes evaluations
        seconds = min(training + evals * per_eval, train_cfg.time_budget + per_eval)
    else:
        seconds = training + evals * per_eval
    tokens_per_s = train_cfg.batch_size * model_cfg.context_window / measured["step_s"]
    return {"seconds": START_S + seconds, "tokens_per_s": tokens_per_s,
            "basis": "timed steps of this shape on this machine"}
