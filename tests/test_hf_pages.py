"""An imported Hugging Face model on the inspection pages (AppTest): a tiny Llama saved
by transformers with a byte-pair tokenizer learned on the built-in corpus, imported as a
run, opens on Attention, Rotary, Generate and Inference with its tokens, not
characters, on the axes and in the tables."""

from __future__ import annotations

import json

import pytest
import torch

from helpers_apptest import open_page, plotly_specs
from helpers_markdown import as_read
from llama_core.corpora import shakespeare_text
from llama_core.lab.hf_runs import import_model
from llama_core.lab.store import RunStore
from llama_core.tokenizer import BytePairTokenizer

transformers = pytest.importorskip("transformers")

PROMPT = "ROMEO:\nWhat light through"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(runs folder, run id, tokenizer) of a GQA, tied, tiny Llama imported as a run."""
    root = tmp_path_factory.mktemp("hf-pages")
    tokenizer = BytePairTokenizer.train_from_text(shakespeare_text()[:100_000], 300)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, rope_theta=500000.0)
    transformers.LlamaForCausalLM(config).save_pretrained(root / "model")
    tokenizer.save(root / "model" / "tokenizer.json")
    runs = root / "runs"
    result = import_model(RunStore(runs / "llama_lab.db"), str(root / "model"))
    return runs, result["run_id"], tokenizer


@pytest.fixture
def page(imported, monkeypatch):
    runs, run_id, _ = imported
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(runs))

    def open_(view: str, **params):
        return open_page(view, **params)
    return open_


def tokens_of(tokenizer, text: str) -> list[str]:
    return [tokenizer.token_text(i) for i in tokenizer.encode(text)]


def shown(label: str) -> str:
    return label.replace("␣", " ").replace("⏎", "\n")


def test_attention_axes_are_the_imported_models_tokens(page, imported):
    _, run_id, tokenizer = imported
    at = page("views/attention.py", run=run_id)
    at.text_input(key="attention_prompt").input(PROMPT).run()
    assert not at.exception, at.exception
    tokens = tokens_of(tokenizer, PROMPT)
    assert len(tokens) < len(PROMPT) and any(len(t) > 1 for t in tokens)
    close_up = [s for s in plotly_specs(at) if "head 0" in s["layout"]["title"]["text"]
                and "layer 0" in s["layout"]["title"]["text"]]
    assert close_up
    labels = [shown(t) for t in close_up[0]["layout"]["xaxis"]["ticktext"]]
    assert labels == tokens
    assert close_up[0]["layout"]["yaxis"]["ticktext"] == close_up[0]["layout"]["xaxis"][
        "ticktext"]


def test_generate_bars_name_tokens(page, imported):
    _, run_id, tokenizer = imported
    at = page("views/generate.py", run=run_id)
    assert not at.error, [e.value for e in at.error]
    specs = plotly_specs(at)
    assert specs
    bars = [s for s in specs if "next character" in json.dumps(s["layout"]["xaxis"])]
    assert bars
    names = {shown(t) for s in bars for t in s["data"][0]["x"]}
    vocab = {tokenizer.token_text(i) for i in range(tokenizer.vocab_size)}
    assert len(names) > 3 and names <= vocab
    assert any(len(n) > 1 for n in vocab & names) or len(names) == len(bars[0]["data"][0]["x"])


def test_rotary_moves_the_prompt_by_tokens(page, imported):
    _, run_id, tokenizer = imported
    at = page("views/rotary.py", run=run_id)
    at.text_input(key="rotary_prompt").input(PROMPT).run()
    assert not at.exception, at.exception
    change = [m for m in at.metric if "layer-0 attention logit" in m.label]
    assert change and float(change[0].value.split()[0]) < 1e-3  # RoPE: distances only
    logits = [s for s in plotly_specs(at) if s["layout"].get("xaxis", {}).get("ticktext")
              and "prompt at positions" in json.dumps(s["layout"])]
    assert logits
    assert [shown(t) for t in logits[0]["layout"]["xaxis"]["ticktext"]] == tokens_of(
        tokenizer, PROMPT)
    # The length view needs a corpus the run was trained on: an imported one says so.
    assert any("was imported, not trained here" in as_read(e.value) for e in at.error)


def test_inference_measures_the_imported_model(page, imported):
    _, run_id, _ = imported
    at = page("views/inference.py", inf_run=run_id)
    assert not at.exception, at.exception
    assert any("same text" in s.value for s in at.success)
