"""An imported Hugging Face model in real Chromium through a real server: a tiny Llama
saved by transformers, with a byte-pair tokenizer learned on the built-in corpus,
imported as a run, opens from ``?run=ID`` on Attention, Rotary, Generate and Inference
without an exception, its charts drawn and its tokens (not characters) on the attention
axes; screenshots in test-artifacts/ for a person to look at."""

from __future__ import annotations

import pytest
import torch
from playwright.sync_api import expect

from helpers_browser import screenshot, wait_for_app
from llama_core.corpora import shakespeare_text
from llama_core.lab.hf_runs import import_model
from llama_core.lab.store import RunStore
from llama_core.tokenizer import BytePairTokenizer

transformers = pytest.importorskip("transformers")
pytestmark = [pytest.mark.browser, pytest.mark.slow]

ATTENTION_PROMPT = "To be, or not to be"  # the Attention page's default prompt
PAGES = {  # page -> what it shows once it has read the imported run
    "attention": "One head up close",
    "rotary": "Largest change of any layer-0 attention logit",
    "generate": "What the model was choosing from",
    "inference": "Both ways wrote the same text",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A dashboard over a store holding one imported model: (url, run id, tokenizer)."""
    from conftest import running_dashboard

    root = tmp_path_factory.mktemp("hf-browser")
    tokenizer = BytePairTokenizer.train_from_text(shakespeare_text()[:100_000], 300)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True)).save_pretrained(root / "model")
    tokenizer.save(root / "model" / "tokenizer.json")
    runs = root / "runs"
    run_id = import_model(RunStore(runs / "llama_lab.db"), str(root / "model"))["run_id"]
    with running_dashboard(runs, "hf-server.log") as url:
        yield url, run_id, tokenizer


@pytest.mark.parametrize("view", list(PAGES))
def test_an_imported_model_opens_on_the_page(server, browser, view):
    url, run_id, tokenizer = server
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{url}/{view}?run={run_id}", wait_until="domcontentloaded")
        wait_for_app(page, timeout_ms=180_000)
        expect(page.get_by_text(PAGES[view]).first).to_be_visible()
        expect(page.locator("[data-testid='stException']")).to_have_count(0)
        assert page.locator("[data-testid='stPlotlyChart']").count() >= 1
        if view == "attention":
            words = [t for t in (tokenizer.token_text(i)
                                 for i in tokenizer.encode(ATTENTION_PROMPT))
                     if len(t.strip()) > 1]
            assert words  # byte pairs merged into tokens of several characters
            word = words[0].strip()
            expect(page.locator(f"svg text:has-text('{word}')").first).to_be_attached()
        screenshot(page, f"hf-imported-{view}-1280x720")
    finally:
        context.close()
