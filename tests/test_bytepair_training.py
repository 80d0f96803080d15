"""Training on byte-pair tokens: the setting is checked in one sentence, the vocabulary is
learned from the corpus, the run's checkpoint keeps its tokenizer, every evaluation
reports bits per character (loss x tokens per character / ln 2), and Compare sets a
character run and a byte-pair run side by side in that unit, warning when the units of
the chosen loss differ."""

from __future__ import annotations

import math
import types

import pytest

from helpers_apptest import open_page, plotly_specs, plotly_values, stop_jobs
from llama_core.checkpoint import load_checkpoint
from llama_core.config import ConfigError, TrainConfig, byte_pair_vocab, validate_train
from llama_core.corpora import corpus_text, load_corpus
from llama_core.lab.store import RunStore
from llama_core.tokenizer import BytePairTokenizer
from runs_fixtures import train_tiny_runs


@pytest.mark.parametrize("setting, vocab", [("char", None), ("bpe257", 257),
                                             ("bpe512", 512), ("bpe16384", 16384)])
def test_a_tokenizer_setting_names_its_vocabulary(setting, vocab):
    assert byte_pair_vocab(setting) == vocab
    assert validate_train(TrainConfig(tokenizer=setting)).tokenizer == setting


@pytest.mark.parametrize("setting", ["bpe", "bpe256", "bpe16385", "bpe-512", "bpe٥١٢",
                                     "words", "", 512, None])
def test_a_bad_tokenizer_setting_is_one_sentence(setting):
    with pytest.raises(ConfigError, match=r"^tokenizer must be 'char' or 'bpe' and a "
                                          r"vocabulary size from 257 to 16,384"):
        validate_train(TrainConfig(tokenizer=setting))


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The first 150,000 characters of the built-in corpus: a byte-pair vocabulary is
    learned from them in well under a second."""
    path = tmp_path_factory.mktemp("bpe-corpus") / "plays.txt"
    path.write_text(corpus_text("shakespeare")[:150_000], encoding="utf-8")
    return path


def test_the_corpus_is_read_in_learned_byte_pairs(small_corpus):
    chars = load_corpus(str(small_corpus))
    pairs = load_corpus(str(small_corpus), "bpe300")
    assert isinstance(pairs.tokenizer, BytePairTokenizer) and pairs.vocab_size == 300
    assert pairs.tokenizer.decode(pairs.data.tolist()) == chars.text  # nothing lost
    # Merges join characters: fewer tokens than characters, counted on the val split.
    val_chars = len(pairs.tokenizer.decode(pairs.val.tolist()))
    assert pairs.tokens_per_char == pytest.approx(len(pairs.val) / val_chars)
    assert 0.3 < pairs.tokens_per_char < 0.9 and chars.tokens_per_char == 1.0
    assert pairs.bits_per_char(2.0) == pytest.approx(2.0 * pairs.tokens_per_char
                                                     / math.log(2))
    assert load_corpus(str(small_corpus), "bpe300") is pairs  # learned once


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_corpus):
    """A character run and a byte-pair run, same model and seed, on the small corpus."""
    folder = tmp_path_factory.mktemp("bpe-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLAMA_LAB_RUNS", str(folder))
        store = RunStore(folder / "llama_lab.db")
        chars, pairs = train_tiny_runs(
            store.path, {"characters": {}, "byte pairs": {"tokenizer": "bpe300"}},
            corpus=str(small_corpus))
        yield types.SimpleNamespace(store=store, chars=chars, pairs=pairs,
                                    corpus=small_corpus)
        stop_jobs(folder)


def test_every_evaluation_reports_bits_per_character(two_runs):
    store = two_runs.store
    pairs_corpus = load_corpus(str(two_runs.corpus), "bpe300")
    for run_id, tokens_per_char in ((two_runs.chars, 1.0),
                                    (two_runs.pairs, pairs_corpus.tokens_per_char)):
        metrics = store.metrics(run_id)
        assert len(metrics) == 3
        for m in metrics:
            assert m["extra"]["val_bpc"] == pytest.approx(
                m["val_loss"] * tokens_per_char / math.log(2), rel=1e-12)
    run = store.get_run(two_runs.pairs)
    assert run.model_config["vocab_size"] == 300
    assert run.train_config["tokenizer"] == "bpe300"


def test_a_byte_pair_checkpoint_keeps_its_tokenizer(two_runs):
    model, tokenizer, _ = load_checkpoint(two_runs.store.checkpoint_path(two_runs.pairs))
    learned = load_corpus(str(two_runs.corpus), "bpe300").tokenizer
    assert isinstance(tokenizer, BytePairTokenizer) and tokenizer == learned
    assert model.cfg.vocab_size == tokenizer.vocab_size


def test_compare_puts_both_runs_in_bits_per_character(two_runs):
    ids = [two_runs.chars, two_runs.pairs]
    at = open_page("views/compare.py", runs=ids, loss="bits per character")  # as shared
    assert at.segmented_control(key="loss").value == "val_bpc"
    figure = plotly_specs(at)[0]
    assert figure["layout"]["yaxis"]["title"]["text"] == \
        "validation loss (bits per character)"
    finals = {t["meta"]: plotly_values(t["y"])[-1] for t in figure["data"]}
    for run_id in ids:
        assert finals[run_id] == pytest.approx(
            two_runs.store.metrics(run_id)[-1]["extra"]["val_bpc"])
    assert not [w for w in at.warning if "not comparable" in w.value]

    at.segmented_control(key="loss").set_value("val_loss").run()
    title = plotly_specs(at)[0]["layout"]["yaxis"]["title"]["text"]
    assert title == "validation loss (nats per token)"
    assert [w for w in at.warning if "not comparable" in w.value]


def test_a_byte_pair_run_exports_with_its_tokenizer(two_runs, tmp_path):
    """transformers reads the exported folder with the run's own byte-pair tokenizer and
    gives the run's logits."""
    import torch
    import transformers

    from llama_core.lab.hf_runs import export_run

    out = tmp_path / "hf"
    export_run(two_runs.store, two_runs.pairs, out)
    ours, tokenizer, _ = load_checkpoint(two_runs.store.checkpoint_path(two_runs.pairs))
    theirs = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    prompt = "ROMEO:\nBut soft"  # under the 16-token context
    ids = hf_tokenizer.encode(prompt, add_special_tokens=False)
    assert ids == tokenizer.encode(prompt) and len(ids) < len(prompt)
    x = torch.tensor([ids])
    with torch.no_grad():
        assert (theirs(x).logits - ours(x)).abs().max() < 1e-4
