"""What the Attention and Rotary pages and the verdict table say about a trained run
with a bug (AppTest, real runs). Each note comes from the pitfall registry, not from a
comparison with the bug's name: a bug that undoes the causal mask is called out beside
the attention on future keys, a RoPE that never rotates is flagged, a bug that moves
layer-0 logits with the prompt says why, and a leaking bug's low loss is not a win."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from charts.verdicts import leak_note, leaks
from helpers_browser import REPO
from helpers_markdown import as_read
from llama_core.lab.store import RunStore
from llama_core.pitfalls import LEAKY_BUGS, PITFALLS
from runs_fixtures import trained_store

BUGS = ("mask_ones", "rope_unrotated", "norm_over_sequence", "rope_off_by_one")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_store(tmp_path_factory, "bug-runs",
                         {name: PITFALLS[name].on for name in BUGS})


@pytest.fixture
def page(runs, monkeypatch):
    folder, ids = runs
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))

    def open_page(view: str, name: str) -> AppTest:
        at = AppTest.from_file(str(REPO / "views" / view), default_timeout=120)
        at.query_params["run"] = ids[name]
        at.run()
        assert not at.exception, at.exception
        return at
    return open_page


def texts(at: AppTest, kind: str) -> list[str]:
    return [as_read(e.value) for e in getattr(at, kind)]


def test_attention_calls_out_a_bug_that_undoes_the_causal_mask(page):
    at = page("attention.py", "mask_ones")
    assert "Attention on future keys" in [s.value for s in at.subheader]
    assert any("can see the future (causal mask off or the mask_ones bug)" in t
               for t in texts(at, "markdown"))
    kept = page("attention.py", "rope_off_by_one")  # a bug that leaves the mask alone
    assert "Attention on future keys" not in [s.value for s in kept.subheader]


def test_rotary_flags_a_rope_that_never_rotates(page):
    at = page("rotary.py", "rope_unrotated")
    assert any("has the rope_unrotated bug: its queries and keys are never rotated" in t
               for t in texts(at, "warning"))
    assert not page("rotary.py", "rope_off_by_one").warning


def test_rotary_says_why_a_bug_moves_layer0_logits_with_the_prompt(page):
    at = page("rotary.py", "norm_over_sequence")
    assert any("The change is not 0: the norm_over_sequence bug normalises over the whole "
               "sequence, so the added prefix changes every token's scale." in t
               for t in texts(at, "caption"))
    kept = page("rotary.py", "rope_off_by_one")  # still a pure rotation: about 0
    assert any("The change is about 0" in t for t in texts(kept, "caption"))


def test_the_verdict_table_warns_that_a_leaking_bug_is_too_good(runs):
    folder, ids = runs
    store = RunStore(folder / "llama_lab.db")
    for name in BUGS:
        run = store.get_run(ids[name])
        assert leaks(run) == (name in LEAKY_BUGS)
        expected = (f"BUG {name}: the future leaks, so its loss is too good"
                    if name in LEAKY_BUGS else f"BUG {name}")
        assert leak_note(run) == expected
