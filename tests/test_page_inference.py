"""The Inference page under AppTest, on real trained runs: generation with and without
the KV cache (the same text, said on the page; tokens per second against length; prefill
and decode apart), cache memory per token for the run and the real Llamas with units
and sources, and multi-head / grouped-query / multi-query side by side, with a button
that queues the missing variants through the job manager, paired by seed."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from helpers_apptest import open_page, plotly_array, plotly_specs, stop_jobs
from helpers_markdown import as_read
from llama_core.lab.store import RunStore
from llama_core.memory import cache_bytes_per_token
from runs_fixtures import train_tiny_runs

# 4 heads, so every attention kind exists: multi-head 4, grouped 2, multi-query 1.
SHAPE = dict(n_heads=4, d_model=32, context_window=32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A store with a multi-head and a grouped-query run of one shape and seed, and a
    run with the causal mask off (which no cache can serve)."""
    folder = tmp_path_factory.mktemp("inference-runs")
    ids = train_tiny_runs(folder / "llama_lab.db",
                          {"mha": {}, "gqa": {"n_kv_heads": 2}}, **SHAPE)
    [open_mask] = train_tiny_runs(folder / "llama_lab.db", {"nomask": {"causal": False}},
                                  **SHAPE)
    return folder, {"mha": ids[0], "gqa": ids[1], "nomask": open_mask}


@pytest.fixture
def app(runs, monkeypatch):
    folder, ids = runs
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))
    return lambda name: open_page("views/inference.py", 180, run=ids[name])


def spec_titled(at: AppTest, words: str) -> dict:
    found = [s for s in plotly_specs(at) if words in s["layout"]["title"]["text"]]
    assert len(found) == 1, [s["layout"]["title"]["text"] for s in plotly_specs(at)]
    return found[0]


def test_cached_and_uncached_write_the_same_text_and_the_cache_is_faster(app):
    at = app("mha")
    assert not at.error, [e.value for e in at.error]
    said = [as_read(s.value) for s in at.success]
    assert any("Both ways wrote the same text" in s for s in said), said
    spec = spec_titled(at, "Generation speed")
    lines = {t["name"]: t for t in spec["data"] if t["type"] == "scatter"}
    assert set(lines) == {"with the KV cache", "without a cache"}
    cached = plotly_array(lines["with the KV cache"]["y"])
    uncached = plotly_array(lines["without a cache"]["y"])
    assert len(cached) == len(uncached) == 32 - len("ROMEO:")
    # Which is faster at this tiny size is the machine's business (benchmarks/ measure
    # it at 256 tokens); the page must draw real, positive speeds for every length.
    assert (cached > 0).all() and (uncached > 0).all()
    assert spec["layout"]["xaxis"]["title"]["text"].startswith("tokens generated")
    assert spec["layout"]["yaxis"]["title"]["text"] == "tokens per second"
    assert spec["layout"]["yaxis2"]["title"]["text"] == "time (ms)"
    bars = {t["name"] for t in spec["data"] if t["type"] == "bar"}
    assert bars == {"prefill (prompt + first token)", "decode (every later token)"}
    labels = {m.label: m.value for m in at.metric}
    assert labels["With the cache"].endswith("tokens/s")
    assert labels["Prefill, with the cache"].endswith("ms")


def test_cache_memory_per_token_for_the_run_and_real_llamas(app, runs):
    at = app("gqa")
    table = next(d.value for d in at.dataframe if "KiB per token" in d.value.columns)
    by_model = dict(zip(table["model"], table["KiB per token"]))
    # TEACHING.md: Llama 2 7B 512 KiB, Llama 2 70B 320 KiB, Llama 3 8B 128 KiB per token.
    assert by_model["Llama 2 7B"] == 512
    assert by_model["Llama 2 70B"] == 320
    assert by_model["Llama 3 8B"] == 128
    assert by_model["Llama 3 70B"] == 320
    ours = [m for m in by_model if "float32" in m]
    assert len(ours) == 1  # 2 layers x 2 KV heads x head size 8 x 4 bytes x 2
    assert by_model[ours[0]] * 1024 == cache_bytes_per_token(2, 2, 8, 4) == 256
    spec = spec_titled(at, "KV cache memory per token")
    assert spec["layout"]["xaxis"]["type"] == "log"
    assert "KiB" in spec["layout"]["xaxis"]["title"]["text"]
    captions = " ".join(as_read(c.value) for c in at.caption)
    assert "Sources:" in captions and "config.json of meta-llama/Llama-2-70b-hf" in captions


def test_kinds_side_by_side_and_the_missing_one_is_queued_with_the_same_seed(app, runs):
    folder, ids = runs
    at = app("mha")
    table = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert list(table["kind"]) == ["multi-head", "grouped-query", "multi-query"]
    assert list(table["KV heads"]) == [4, 2, 1]
    assert list(table["runs"]) == [1, 1, 0]
    cache = list(table["cache (KiB/token, float32)"])
    assert cache[0] == 2 * cache[1] == 4 * cache[2]
    loss = table["final validation loss (nats/char)"]
    assert loss.iloc[:2].notna().all() and loss.isna().iloc[2]
    spec = spec_titled(at, "Multi-head, grouped-query and multi-query")
    assert spec["layout"]["yaxis"]["title"]["text"] == "nats per character"
    assert spec["layout"]["yaxis2"]["title"]["text"] == "KiB per token"
    assert spec["layout"]["yaxis3"]["title"]["text"] == "tokens per second"

    store = RunStore(folder / "llama_lab.db")
    before = {r.id for r in store.list_runs()}
    try:
        at.button(key="inf_train_kinds").click().run()
    finally:
        stop_jobs(folder)  # the queued run is not needed to finish
    assert not at.exception, at.exception
    new = [r for r in store.list_runs() if r.id not in before]
    assert len(new) == 1
    source = store.get_run(ids["mha"])
    queued = new[0]
    assert queued.model_config["n_kv_heads"] == 1
    assert queued.seed == source.seed
    assert {k: v for k, v in queued.model_config.items() if k != "n_kv_heads"} == \
        {k: v for k, v in source.model_config.items() if k != "n_kv_heads"}
    assert queued.group == at.query_params["kinds"] and queued.group.startswith("kv-")


def test_a_model_no_cache_can_serve_says_why(app):
    at = app("nomask")
    infos = " ".join(as_read(i.value) for i in at.info)
    assert "No cache for this run" in infos
    assert not at.error
    assert spec_titled(at, "KV cache memory per token")  # the memory section still shows
