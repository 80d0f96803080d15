"""Training: determinism from a seed, paired batches, learning, checkpoints and resume,
divergence, the schedule, and generation."""

import dataclasses
import math

import pytest
import torch

from llama_core.presets import build_configs
from llama_core.checkpoint import load_checkpoint
from llama_core.corpora import load_corpus
from llama_core.errors import ConfigError, UnknownCharactersError, UserError
from llama_core.generate import generate_text
from llama_core.training import learning_rate, train

TINY = {"steps": 20, "eval_interval": 10, "eval_batches": 2, "sample_chars": 20,
        "threads": 1, "batch_size": 8, "context_window": 16, "d_model": 32,
        "n_layers": 2, "n_heads": 2, "warmup_steps": 5}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("shakespeare")


def tiny(**changes):
    return build_configs("tiny", {**TINY, **changes})


def record_evals(model_cfg, train_cfg, corpus, **kw):
    records = []
    result = train(model_cfg, train_cfg, corpus, on_eval=records.append, **kw)
    return result, records


def test_same_seed_same_config_gives_bit_identical_losses(corpus):
    r1, e1 = record_evals(*tiny(seed=3), corpus)
    r2, e2 = record_evals(*tiny(seed=3), corpus)
    assert [e["val_loss"] for e in e1] == [e["val_loss"] for e in e2]
    assert [e["train_loss"] for e in e1] == [e["train_loss"] for e in e2]
    assert e1[-1]["sample"] == e2[-1]["sample"]
    r3, e3 = record_evals(*tiny(seed=4), corpus)
    assert e3[-1]["val_loss"] != e1[-1]["val_loss"]


def test_same_seed_different_models_see_identical_batches(corpus, monkeypatch):
    seen = {}
    original = type(corpus).batch

    def spy(self, split, batch_size, context_window, generator):
        x, y = original(self, split, batch_size, context_window, generator)
        if split == "train":
            seen.setdefault(key, []).append(x.clone())
        return x, y

    monkeypatch.setattr(type(corpus), "batch", spy)
    for key, changes in (("llama", {}), ("gpt", {"norm": "layernorm", "pos": "learned",
                                                   "ffn": "gelu", "n_layers": 1})):
        train(*tiny(seed=7, **changes), corpus)
    assert len(seen["llama"]) == len(seen["gpt"]) == TINY["steps"]
    assert all(torch.equal(a, b) for a, b in zip(seen["llama"], seen["gpt"]))


def test_a_tiny_model_overfits_one_batch(corpus):
    model_cfg, train_cfg = tiny(lr=3e-3, min_lr=3e-3, warmup_steps=0, weight_decay=0.0)
    from llama_core.model import Llama
    model = Llama(dataclasses.replace(model_cfg, vocab_size=corpus.vocab_size), seed=0)
    x, y = corpus.batch("train", 8, 16, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_training_lowers_validation_loss_and_reports_everything(corpus):
    result, evals = record_evals(*tiny(steps=60, eval_interval=20), corpus)
    assert result.status == "finished" and result.error is None
    assert [e["step"] for e in evals] == [20, 40, 60]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] < math.log(corpus.vocab_size) + 0.5
    assert result.final_val_loss == evals[-1]["val_loss"]
    assert result.tokens == 60 * 8 * 16 and result.params > 0 and result.tokens_per_s > 0
    health = evals[-1]["extra"]
    assert len(health["grad_norm_per_layer"]) == len(health["residual_rms_per_layer"]) == 2
    assert all(g > 0 for g in health["grad_norm_per_layer"])


def test_stop_callback_ends_the_run_and_saves(corpus, tmp_path):
    calls = []
    result = train(*tiny(steps=1000), corpus, should_stop=lambda: len(calls) > 5
                   or calls.append(1) and False, checkpoint_path=tmp_path / "m.safetensors")
    assert result.status == "stopped" and result.steps < 1000
    assert (tmp_path / "m.safetensors").is_file()


def test_resume_continues_exactly_where_it_stopped(corpus, tmp_path):
    full, full_evals = record_evals(*tiny(steps=20), corpus)
    model_cfg, train_cfg = tiny(steps=20)
    count = []
    half = train(model_cfg, train_cfg, corpus, should_stop=lambda: len(count) >= 10 or
                 count.append(1) is None and False,
                 checkpoint_path=tmp_path / "half.safetensors")
    assert half.status == "stopped" and half.steps == 10
    resumed, resumed_evals = record_evals(model_cfg, train_cfg, corpus,
                                          resume_from=tmp_path / "half.safetensors")
    assert resumed.steps == 20
    assert resumed_evals[-1]["val_loss"] == full_evals[-1]["val_loss"]


def test_checkpoint_round_trip_and_generation_is_reproducible(corpus, tmp_path):
    result = train(*tiny(), corpus, checkpoint_path=tmp_path / "m.safetensors")
    model, tokenizer, info = load_checkpoint(result.checkpoint)
    assert info["model_config"].vocab_size == corpus.vocab_size
    a = generate_text(model, tokenizer, "ROMEO:", 40, temperature=1.0, top_k=10, seed=5)
    b = generate_text(model, tokenizer, "ROMEO:", 40, temperature=1.0, top_k=10, seed=5)
    c = generate_text(model, tokenizer, "ROMEO:", 40, temperature=1.0, top_k=10, seed=6)
    assert a == b and len(a) == 40 and a != c
    greedy = generate_text(model, tokenizer, "ROMEO:", 20, temperature=0)
    assert greedy == generate_text(model, tokenizer, "ROMEO:", 20, temperature=0, seed=99)
    with pytest.raises(UnknownCharactersError) as e:
        generate_text(model, tokenizer, "ROMEO: ☃", 5)
    assert e.value.chars == ["☃"]


def test_a_foreign_or_damaged_checkpoint_is_refused_untouched(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_checkpoint(bad)
    assert bad.read_bytes() == b"not a checkpoint at all"
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not written by Llama Lab"):
        load_checkpoint(foreign)
    with pytest.raises(UserError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_divergence_stops_with_a_clear_status(corpus):
    result = train(*tiny(lr=10.0, min_lr=10.0, grad_clip=0.0, warmup_steps=0, steps=200,
                        norm="none", n_layers=4),
                   corpus)
    assert result.status == "diverged"
    assert "lower the learning rate" in result.error


def test_cuda_without_a_gpu_is_a_user_error(corpus):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(*tiny(device="cuda"), corpus)


def test_context_longer_than_the_corpus_is_refused(tmp_path):
    text = ("To be, or not to be, that is the question.\n" * 30)[:1200]
    path = tmp_path / "short.txt"
    path.write_text(text)
    with pytest.raises(UserError, match="shorter than the context window"):
        train(*tiny(corpus=str(path), context_window=512, d_model=32), None)


def test_schedule_warms_up_then_decays_to_min_lr():
    _, cfg = build_configs(None, {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 10,
                                  "steps": 100})
    assert learning_rate(cfg, 0, 0.0) < learning_rate(cfg, 5, 0.05) < cfg.lr
    assert math.isclose(learning_rate(cfg, 10, 0.0), cfg.lr)
    assert math.isclose(learning_rate(cfg, 100, 1.0), cfg.min_lr)
    assert math.isclose(learning_rate(cfg, 55, 0.5), (cfg.lr + cfg.min_lr) / 2)
