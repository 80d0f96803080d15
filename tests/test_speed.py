"""MFU and the time estimate shown before a run starts."""

import math

from llama_core.presets import build_configs
from llama_core.inspect import flops_per_token
from llama_core.speed import estimate, measured_matmul_flops, mfu, peak_flops


def test_mfu_is_achieved_flops_over_the_measured_peak():
    model, _ = build_configs("nanogpt-cpu")
    peak, basis = peak_flops("cpu")
    assert peak == measured_matmul_flops() and peak > 1e9 and "measured" in basis
    per_token = flops_per_token(model)["training_flops_per_token"]
    assert math.isclose(mfu(10_000, model, "cpu"), 10_000 * per_token / peak)
    assert peak_flops("NVIDIA H100 80GB HBM3")[0] == 989e12
    assert mfu(0, model, "cpu") is None


def test_estimate_uses_past_runs_achieved_flops():
    small, train = build_configs("tiny", {"steps": 100})
    big, _ = build_configs("nanogpt-cpu")
    # a past run of the big model at 10k tokens/s achieved this many FLOP/s
    achieved = 10_000 * flops_per_token(big)["training_flops_per_token"]
    est = estimate(small, train, "cpu", past_runs=[(big, 10_000)])
    expected_tok_s = achieved / flops_per_token(small)["training_flops_per_token"]
    assert math.isclose(est["tokens_per_s"], expected_tok_s)
    tokens = 100 * train.batch_size * small.context_window
    assert math.isclose(est["seconds"], tokens / expected_tok_s)
    assert "past runs" in est["basis"]


def test_a_time_budget_caps_the_estimate():
    model, train = build_configs("classroom")
    est = estimate(model, train, "cpu")
    assert est["seconds"] == 60.0 and "no history" in est["basis"]


def test_a_shape_keeps_its_fastest_probe(monkeypatch):
    """A probe slowed by another process on the same cores must not stick: each shape
    is retaken after PROBE_AGAIN_S and the fastest reading so far is the answer."""
    from llama_core import speed
    from llama_core.config import ModelConfig

    readings = iter([{"step_s": 0.5, "eval_forward_s": 0.2, "char_s": 0.01},
                     {"step_s": 0.1, "eval_forward_s": 0.3, "char_s": 0.02},
                     {"step_s": 0.4, "eval_forward_s": 0.1, "char_s": 0.03}])
    monkeypatch.setattr(speed, "_probe", lambda *a: next(readings))
    monkeypatch.setattr(speed, "_probes", {})
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2)
    first = speed.probe(cfg, 8)
    assert speed.probe(cfg, 8) is first  # within PROBE_AGAIN_S: the same reading
    monkeypatch.setattr(speed, "PROBE_AGAIN_S", 0.0)
    speed.probe(cfg, 8)
    assert speed.probe(cfg, 8) == {"step_s": 0.1, "eval_forward_s": 0.1, "char_s": 0.01}
