"""Paired ablations: the pairing itself (same batches, same initial shared weights),
the statistics behind the verdicts, and the pure tables and figures of the Ablations
page. Training here is tiny and single-threaded."""

from __future__ import annotations

import math
import types

import numpy as np
import pandas as pd
import pytest
import torch

from llama_core.lab import classset
from llama_core import inspect as lc_inspect
from llama_core.lab.sweeps import BASELINE, plan_sweep, summarize
from llama_core.presets import build_configs
from llama_core.corpora import load_corpus
from llama_core.data import Corpus
from llama_core.model import Llama
from llama_core.lab.store import RunStore
from llama_core.stats import t_critical
from llama_core.training import train
from charts.bands import band_figure, half_width, seed_bands
from charts.components import components_frame
from charts.health import depth_profile_figure, health_frame, health_over_steps_figure
from charts.palette import plot_config
from charts.records import configs_json, records_frame
from charts.verdicts import summary_frame
from runs_fixtures import train_tiny_runs

SMALL = {"context_window": 16, "d_model": 32, "n_layers": 2, "n_heads": 2, "batch_size": 4,
         "threads": 1, "eval_batches": 1, "sample_chars": 0}
VARIANTS = [{"norm": "layernorm"}, {"ffn": "gelu"}, {"pos": "learned"}, {"causal": False},
            {"n_layers": 1}]


class Rec(types.SimpleNamespace):
    """A stand-in run record: attributes, plus the store's dict-style get."""

    def get(self, key, default=None):
        return getattr(self, key, default)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("shakespeare")


# --- Paired runs really are paired ---------------------------------------------------

def test_every_sweep_variant_starts_from_the_baselines_shared_weights():
    plan = plan_sweep("tiny", SMALL, VARIANTS, seeds=[3, 4])
    models = {(p.label, p.seed): dict(Llama(p.model, seed=p.train.seed).named_parameters())
              for p in plan}
    for (label, seed), params in models.items():
        if label == BASELINE:
            continue
        base = models[(BASELINE, seed)]
        shared = [n for n, p in params.items() if n in base and base[n].shape == p.shape]
        assert len(shared) >= 3, (label, shared)
        for name in shared:
            if label.startswith("n_layers") and name.endswith(("wo.weight", "w2.weight")):
                # The same draw, scaled by 1/sqrt(2 * n_layers) (GPT-2's residual init):
                # a depth change rescales the residual branches' output projections.
                scale = math.sqrt(2 * 2) / math.sqrt(2 * 1)
                torch.testing.assert_close(params[name], base[name] * scale)
                continue
            assert torch.equal(params[name], base[name]), (label, seed, name)
    # different seeds are different starts
    a, b = models[(BASELINE, 3)], models[(BASELINE, 4)]
    assert not torch.equal(a["tok_embeddings.weight"], b["tok_embeddings.weight"])
    # the GELU variant's feed-forward is a different shape, so it cannot be shared
    assert (models[("ffn=gelu", 3)]["layers.0.feed_forward.w1.weight"].shape
            != models[(BASELINE, 3)]["layers.0.feed_forward.w1.weight"].shape)


def test_every_sweep_variant_trains_on_the_same_batches(corpus, monkeypatch):
    seen: dict[tuple, list] = {}
    key = [None]
    real_batch = Corpus.batch

    def recording(self, split, batch_size, context_window, generator):
        x, y = real_batch(self, split, batch_size, context_window, generator)
        if split == "train":
            seen.setdefault(key[0], []).append(x.clone())
        return x, y

    monkeypatch.setattr(Corpus, "batch", recording)
    plan = plan_sweep("tiny", {**SMALL, "steps": 4, "eval_interval": 4}, VARIANTS[:3],
                      seeds=[0, 1])
    for p in plan:
        key[0] = (p.label, p.seed)
        train(p.model, p.train, corpus)
    for (label, seed), batches in seen.items():
        base = seen[(BASELINE, seed)]
        assert len(batches) == len(base) == 4
        assert all(torch.equal(a, b) for a, b in zip(batches, base)), (label, seed)
    assert not torch.equal(seen[(BASELINE, 0)][0], seen[(BASELINE, 1)][0])


def test_identical_configs_under_two_labels_train_identically_and_read_as_noise(tmp_path):
    db = tmp_path / "runs.db"
    train_tiny_runs(db, {"baseline": {}, "same model": {}}, seeds=(0, 1, 2), steps=20)
    runs = RunStore(db).list_runs()
    rows = {r["variant"]: r for r in summarize(runs)}
    assert rows["same model"]["diff_vs_baseline"] == 0.0
    assert rows["same model"]["diff_ci95"] == 0.0
    assert rows["same model"]["verdict"] == "within seed noise"
    assert rows["baseline"]["seeds"] == rows["same model"]["seeds"] == 3


def test_the_same_config_on_other_seeds_is_within_seed_noise(corpus):
    """Identical but for seed: the 'variant' of seed s is the baseline config trained on
    seed s + 10, so every paired difference is pure training noise."""
    losses = {}
    for seed in (0, 1, 2, 10, 11, 12):
        model, tc = build_configs("tiny", {**SMALL, "steps": 30, "eval_interval": 30,
                                           "seed": seed})
        losses[seed] = train(model, tc, corpus).final_val_loss
    runs = [Rec(name=name, seed=s, status="finished", params=1,
                                  final_val_loss=losses[s + offset])
            for name, offset in ((BASELINE, 0), ("other seeds", 10)) for s in (0, 1, 2)]
    row = next(r for r in summarize(runs) if r["variant"] == "other seeds")
    assert row["diff_vs_baseline"] != 0.0
    assert row["verdict"] == "within seed noise", row


# --- Statistics, by hand ---------------------------------------------------------------

def _fake(name, seed, value, **kw):
    return Rec(id=f"r{name[:3]}{seed}", name=name, seed=seed,
                                 status="finished", final_val_loss=value, params=100,
                                 wall_s=2.0, tokens_per_s=1000.0, **kw)


def test_paired_interval_of_a_known_sample_matches_a_hand_computation():
    base = {0: 2.0, 1: 2.2, 2: 1.9}
    variant = {0: 1.9, 1: 2.0, 2: 1.85}
    runs = ([_fake(BASELINE, s, v) for s, v in base.items()]
            + [_fake("v", s, v) for s, v in variant.items()])
    row = next(r for r in summarize(runs) if r["variant"] == "v")
    # differences -0.10, -0.20, -0.05: mean -0.116667, s = 0.0763763, n = 3
    diffs = [-0.10, -0.20, -0.05]
    mean = sum(diffs) / 3
    s = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert row["diff_vs_baseline"] == pytest.approx(-0.1166667, abs=1e-6)
    assert row["diff_ci95"] == pytest.approx(4.303 * s / math.sqrt(3), rel=1e-9)
    assert row["diff_ci95"] == pytest.approx(0.189747, abs=1e-5)
    assert row["verdict"] == "within seed noise"  # the interval straddles zero
    # the mean of the variant by itself: 1.916667 ± t(2) * sd / sqrt(3)
    assert row["mean"] == pytest.approx(1.9166667, abs=1e-6)
    assert row["ci95"] == pytest.approx(4.303 * np.std([1.9, 2.0, 1.85], ddof=1) / 3 ** .5)


def test_band_of_a_known_sample_matches_a_hand_computation():
    curves = pd.DataFrame({
        "variant": ["baseline"] * 4, "run_id": list("abcd"), "seed": [0, 1, 2, 3],
        "step": [50.0] * 4, "tokens": [800.0] * 4, "seconds": [1.0, 2.0, 3.0, 4.0],
        "flops": [8e6] * 4, "train_loss": [1.0] * 4, "val_loss": [1.0, 2.0, 3.0, 4.0]})
    band = seed_bands(curves, "seconds").iloc[0]
    half = 3.182 * math.sqrt(5 / 3) / 2
    assert band["mean"] == 2.5 and band["n"] == 4
    assert band["low"] == pytest.approx(2.5 - half) and band["high"] == pytest.approx(2.5 + half)
    assert band["x"] == 2.5  # mean seconds at that step
    assert math.isnan(half_width([1.0]))
    assert half_width([1.0, 3.0]) == pytest.approx(t_critical(1) * math.sqrt(2) / math.sqrt(2))


def test_band_figure_draws_a_filled_band_per_variant_with_seeds():
    rows = []
    for variant, shift in ((BASELINE, 0.0), ("ffn=gelu", 0.1), ("one seed", 0.2)):
        seeds = (0,) if variant == "one seed" else (0, 1, 2)
        for seed in seeds:
            for step in (10, 20, 30):
                rows.append({"variant": variant, "run_id": f"{variant}{seed}",
                             "seed": seed, "step": float(step), "tokens": step * 100.0,
                             "seconds": step / 10, "flops": step * 1e6,
                             "train_loss": 3 - step / 30 + shift,
                             "val_loss": 3 - step / 30 + shift + 0.01 * seed})
    curves = pd.DataFrame(rows)
    fig = band_figure(seed_bands(curves, "flops"), "flops", curves=curves)
    fills = [t for t in fig.data if t.fill == "tonexty"]
    assert sorted(t.legendgroup for t in fills) == [BASELINE, "ffn=gelu"]
    means = [t for t in fig.data if t.showlegend is not False]
    means.sort(key=lambda t: t.legendrank)  # the legend's order: baseline first
    assert [t.name for t in means] == ["baseline (3 seeds)", "ffn=gelu (3 seeds)",
                                       "one seed (1 seed)"]
    assert fig.data[-1].name == "baseline (3 seeds)"  # drawn last: nothing hides it
    assert means[0].line.width > means[1].line.width  # the baseline stands out
    assert list(means[0].x) == [1e7, 2e7, 3e7]
    assert "FLOPs" in fig.layout.xaxis.title.text and "nats" in fig.layout.yaxis.title.text
    seeds = [t for t in fig.data if t.showlegend is False and t.name.split()[-2] == "seed"]
    assert len(seeds) == 6  # the faint per-seed lines, only for the banded variants


def test_summary_frame_reads_like_the_write_up():
    runs = ([_fake(BASELINE, s, v) for s, v in enumerate([2.0, 2.1, 2.05])]
            + [_fake("worse", s, v + 0.3) for s, v in enumerate([2.0, 2.1, 2.05])])
    runs[3].params = 120
    for r in runs[4:]:
        r.params = 120
    table = summary_frame(summarize(runs), runs)
    assert list(table["variant"]) == [BASELINE, "worse"]
    worse = table.iloc[1]
    assert worse["verdict"] == "worse"
    assert worse["Δ vs baseline (paired, ± 95% CI)"] == "+0.300 ± 0.000"
    assert worse["val loss (mean ± 95% CI)"].startswith("2.350 ± ")
    assert worse["Δ parameters"] == 20
    assert table.iloc[0]["Δ vs baseline (paired, ± 95% CI)"] == "—"


# --- Parameters, FLOPs, health, records ------------------------------------------------

def test_components_frame_agrees_with_inspect_and_shows_the_ffn_difference():
    plan = plan_sweep("tiny", {}, [{"ffn": "gelu"}], [0])
    configs = {p.label: p.model for p in plan}
    table = components_frame(configs)
    params = table[table["quantity"] == "parameters"].set_index("component")
    flops = table[table["quantity"] == "FLOPs per token"].set_index("component")
    for label, cfg in configs.items():
        assert params.loc["total", label] == lc_inspect.param_formula(cfg)["total"]
        assert flops.loc["training (3 × forward)", label] == int(
            lc_inspect.flops_per_token(cfg)["training_flops_per_token"])
    # d=64: SwiGLU hidden 192 (2/3 * 4d rounded up to 32) x 3 vs GELU 256 x 2
    assert params.loc["feed-forward", BASELINE] == 2 * 3 * 64 * 192
    assert params.loc["feed-forward", "ffn=gelu"] == 2 * 2 * 64 * 256


def test_matching_parameters_brings_swiglu_within_one_percent_of_gelu():
    matched = plan_sweep("tiny", {"ffn_multiple_of": 1}, [{"ffn": "gelu"}], [0])
    ff = {p.label: lc_inspect.param_formula(p.model)["feed_forward"] for p in matched}
    assert matched[0].model.ffn_hidden == int(8 * 64 / 3)
    assert abs(ff[BASELINE] - ff["ffn=gelu"]) / ff["ffn=gelu"] < 0.01
    unmatched = plan_sweep("tiny", {}, [{"ffn": "gelu"}], [0])
    ff = {p.label: lc_inspect.param_formula(p.model)["feed_forward"] for p in unmatched}
    assert (ff[BASELINE] - ff["ffn=gelu"]) / ff["ffn=gelu"] > 0.1


def test_standard_variants_for_a_preset_skip_changes_that_change_nothing():
    tiny = classset.variants_for("tiny")  # 2 layers: "fewer layers" means 1
    assert "n_layers=2" not in tiny and tiny["n_layers=1"] == {"n_layers": 1}
    assert classset.variants_for("llama")["n_layers=2"] == {"n_layers": 2}
    assert "norm=none" not in classset.variants_for("tiny", {"norm": "none"})


def test_health_frame_and_figures_from_metric_extras():
    runs = [types.SimpleNamespace(id="ra", name=BASELINE, seed=0),
            types.SimpleNamespace(id="rb", name="norm=none", seed=0)]
    metrics = pd.DataFrame([
        {"run_id": "ra", "step": 10, "extra": {"grad_norm_per_layer": [0.1, 0.2],
                                               "residual_rms_per_layer": [1.0, 1.5]}},
        {"run_id": "rb", "step": 10, "extra": {"grad_norm_per_layer": [0.01, 3.0],
                                               "residual_rms_per_layer": [2.0, 9.0]}},
        {"run_id": "rb", "step": 20, "extra": None}])
    h = health_frame(runs, metrics)
    assert len(h) == 4 and list(h.columns[-2:]) == ["grad_norm", "residual_rms"]
    assert h[(h.run_id == "rb") & (h.layer == 1)].iloc[0]["residual_rms"] == 9.0
    fig = depth_profile_figure(h)
    named = [t for t in fig.data if t.name in (BASELINE, "norm=none")]
    assert len(named) == 4 and fig.layout.yaxis.type == "log"
    over = health_over_steps_figure(h, [BASELINE, "norm=none"], "residual_rms")
    assert len(over.data) == 4


def test_records_and_config_export_carry_what_reproduces_a_run(tmp_path):
    db = tmp_path / "runs.db"
    train_tiny_runs(db, seeds=(5,), steps=10)
    store = RunStore(db)
    runs = store.list_runs()
    table = records_frame(runs)
    row = table.iloc[0]
    assert row["seed"] == 5 and row["device"] == "cpu" and row["threads"] == 1
    assert row["code version"] and row["torch"] == torch.__version__
    assert len(row["data sha256"]) == 12
    cfg = configs_json(runs)[0]
    assert cfg["model_config"]["d_model"] == 32 and cfg["train_config"]["seed"] == 5
    assert cfg["data_sha256"] == runs[0].data_sha256


def test_plot_config_keeps_the_modebar_and_saves_png():
    cfg = plot_config("ablation-x")
    assert cfg["displayModeBar"] is True
    assert cfg["toImageButtonOptions"]["format"] == "png"
    assert cfg["toImageButtonOptions"]["filename"] == "ablation-x"
