"""Imported and byte-pair runs across the dashboard (AppTest), where a character run's
habits would mislead: an imported model is named "imported", never "seed None", and its
Build & train panel says where it came from instead of showing an empty training panel;
Compare says it has no curve; a byte-pair run's loss is in nats per token with its bits
per character beside it; the Attention page on a 30-layer imported model draws the
layers picked (first and last by default), while 1- and 2-layer runs draw every layer;
sentences say tokens for byte-pair runs and characters for character runs."""

from __future__ import annotations

import math

import pytest
import torch

from charts.labels import chip_label, run_label
from charts.units import loss_unit_of, token_unit_of
from helpers_apptest import open_page, plotly_specs
from helpers_markdown import as_read
from llama_core.corpora import shakespeare_text
from llama_core.lab.hf_runs import import_model
from llama_core.lab.store import RunStore
from llama_core.tokenizer import BytePairTokenizer
from runs_fixtures import train_tiny_runs

transformers = pytest.importorskip("transformers")

LAYERS = 30  # the depth of a real small Llama (SmolLM2-135M), at a tiny width


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(runs folder, {name: run id}): a 30-layer tiny Llama made by transformers with a
    byte-pair tokenizer and imported, beside a character run and a byte-pair run trained
    here (2 layers) and a 1-layer character run."""
    root = tmp_path_factory.mktemp("imported-runs")
    tokenizer = BytePairTokenizer.train_from_text(shakespeare_text()[:100_000], 300)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=LAYERS,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        tie_word_embeddings=True)
    transformers.LlamaForCausalLM(config).save_pretrained(root / "deep-llama")
    tokenizer.save(root / "deep-llama" / "tokenizer.json")
    folder = root / "runs"
    db = folder / "llama_lab.db"
    imported = import_model(RunStore(db), str(root / "deep-llama"))["run_id"]
    trained = train_tiny_runs(db, {"char": {}, "bpe": {"tokenizer": "bpe300"},
                                   "one-layer": {"n_layers": 1}})
    return folder, {"imported": imported, **dict(zip(["char", "bpe", "one-layer"],
                                                      trained))}


@pytest.fixture
def page(runs, monkeypatch):
    folder, _ = runs
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))
    return open_page


def run_of(runs, name):
    folder, ids = runs
    return RunStore(folder / "llama_lab.db").get_run(ids[name])


def texts(at) -> str:
    """Everything a reader sees as text on the page, Markdown read back."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "success",
                                  "error") for e in at.get(kind)]
    return "\n".join(as_read(str(p)).replace("**", "") for p in parts)


def loss_axis(spec) -> str:
    """The y-axis title of a loss chart ("loss (nats per token)"), else ""."""
    title = spec["layout"].get("yaxis", {}).get("title", {})
    text = title.get("text", "") if isinstance(title, dict) else str(title)
    return text if text.startswith("loss (") else ""


# --- Naming: imported, not "seed None" ----------------------------------------------

def test_labels_name_an_imported_run_imported_and_a_trained_one_by_its_seed(runs):
    imported, char = run_of(runs, "imported"), run_of(runs, "char")
    assert imported.seed is None  # what used to print as "seed None"
    for label in (chip_label(imported), run_label(imported)):
        assert "imported" in label and "None" not in label and "seed" not in label
    assert "seed 0" in chip_label(char) and "seed 0" in run_label(char)


def test_pickers_on_inspect_pages_say_imported(page, runs):
    _, ids = runs
    at = page("views/generate.py", run=ids["imported"])
    shown = at.multiselect[0].options  # as the picker shows them
    assert any("imported" in s for s in shown) and not any("None" in s for s in shown)


def test_build_and_train_panel_of_an_imported_run_says_where_it_came_from(page, runs):
    _, ids = runs
    at = page("views/train.py", run=ids["imported"])
    text = texts(at)
    assert f"{ids['imported']} · deep-llama · imported · finished" in text
    assert "seed None" not in text and "None" not in text
    assert "Imported from deep-llama: trained elsewhere, so it has no training curve" \
        in text
    labels = [m.label for m in at.metric]
    # no training panel: no steps, tokens, wall time or final loss of an import
    assert not {"Steps", "Final validation loss", "Wall time"} & set(labels)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers"] == str(LAYERS) and metrics["Vocabulary"] == "300"
    assert not [s for s in plotly_specs(at) if loss_axis(s)]  # no empty loss chart


def test_compare_says_an_imported_run_has_no_curve_and_measures_from_a_trained_run(
        page, runs):
    _, ids = runs
    at = page("views/compare.py", runs=[ids["imported"], ids["char"]])
    text = texts(at)
    assert f"{ids['imported']} was imported from deep-llama: trained elsewhere, it has " \
           "no training curve or final loss here." in text
    assert at.selectbox(key="baseline").value == ids["char"]
    assert "None" not in "".join(at.multiselect[0].options)
    table = next(d.value for d in at.dataframe if "seed" in d.value.columns)
    seeds = dict(zip(table["run"], table["seed"]))
    assert seeds[ids["imported"]] == "imported" and seeds[ids["char"]] == "0"


# --- Attention on a deep model: the layers picked, not all 30 -----------------------

def grids(at) -> list[dict]:
    return [s for s in plotly_specs(at) if "every head" in s["layout"]["title"]["text"]
            or "every layer and head" in s["layout"]["title"]["text"]]


def layer_names(spec) -> list[str]:
    """The layers a grid draws, from its query-axis titles ("<b>layer 28</b><br>query")."""
    return [v["title"]["text"].split("</b>")[0].removeprefix("<b>")
            for k, v in spec["layout"].items()
            if k.startswith("yaxis") and (v.get("title") or {}).get("text")]


def test_attention_on_30_layers_draws_the_first_and_last_two_then_the_layers_picked(
        page, runs):
    _, ids = runs
    at = page("views/attention.py", run=ids["imported"])
    assert not at.exception, at.exception
    picker = at.multiselect(key="attention_grid_layers")
    assert picker.value == [0, 1, LAYERS - 2, LAYERS - 1]
    assert "the first two and the last two" in texts(at)
    [grid] = grids(at)
    assert f"layers 0, 1, 28, 29 of {LAYERS}, every head" in grid["layout"]["title"]["text"]
    assert len([t for t in grid["data"] if t["type"] == "heatmap"]) == 4 * 2  # 4 x 2 heads
    assert layer_names(grid) == ["layer 0", "layer 1", "layer 28", "layer 29"]
    picker.set_value([5, 17]).run()
    [grid] = grids(at)
    assert layer_names(grid) == ["layer 5", "layer 17"]
    assert len([t for t in grid["data"] if t["type"] == "heatmap"]) == 2 * 2
    # the statistics still cover every layer and head
    [entropy] = [s for s in plotly_specs(at)
                 if "Entropy per head" in s["layout"]["title"]["text"]]
    [bar] = [t for t in entropy["data"] if t["type"] == "bar"]
    assert len(bar["x"]) == LAYERS * 2
    at.multiselect(key="attention_grid_layers").set_value([]).run()
    assert not grids(at) and "Pick at least one layer" in texts(at)


@pytest.mark.parametrize("name, n_layers", [("one-layer", 1), ("char", 2)])
def test_attention_on_shallow_runs_draws_every_layer_as_before(page, runs, name, n_layers):
    _, ids = runs
    at = page("views/attention.py", run=ids[name])
    assert not [m for m in at.multiselect if m.key == "attention_grid_layers"]
    [grid] = grids(at)
    assert f"{ids[name]}: every layer and head" in grid["layout"]["title"]["text"]
    assert layer_names(grid) == [f"layer {l}" for l in range(n_layers)]
    assert len([t for t in grid["data"] if t["type"] == "heatmap"]) == n_layers * 2


# --- Units: tokens for byte-pair runs, characters for character runs ----------------

def test_units_of_runs(runs):
    assert token_unit_of(run_of(runs, "char")) == "characters"
    assert loss_unit_of(run_of(runs, "char")) == "nats per character"
    for name in ("bpe", "imported"):
        assert token_unit_of(run_of(runs, name)) == "tokens"
        assert loss_unit_of(run_of(runs, name)) == "nats per token"


def metric_helps_and_values(at) -> tuple[dict, dict]:
    """The page's st.metric help texts and values, by label."""
    return ({m.label: m.proto.help for m in at.metric},
            {m.label: m.value for m in at.metric})


def test_run_panel_of_a_byte_pair_run_gives_nats_per_token_and_bits_per_character(
        page, runs):
    folder, ids = runs
    at = page("views/train.py", run=ids["bpe"])
    helps, values = metric_helps_and_values(at)
    assert helps["Final validation loss"] == "in nats per token"
    assert helps["Final training loss"] == "in nats per token"
    assert helps["Tokens"] == "in tokens seen in training"
    last = RunStore(folder / "llama_lab.db").metrics(ids["bpe"])[-1]
    assert values["Bits per character"] == f"{last['extra']['val_bpc']:.3f}"
    # a byte-pair token is several characters: fewer bits per character than nats per
    # token / ln 2 would give
    assert last["extra"]["val_bpc"] < last["val_loss"] / math.log(2)
    [chart] = [s for s in plotly_specs(at) if loss_axis(s)]
    assert loss_axis(chart) == "loss (nats per token)"
    hovers = {t["name"]: t["hovertemplate"] for t in chart["data"] if t.get("name")}
    assert "nats/token" in hovers["validation loss"] and "nats/char" not in str(hovers)


def test_run_panel_of_a_character_run_stays_in_characters(page, runs):
    folder, ids = runs
    at = page("views/train.py", run=ids["char"])
    helps, values = metric_helps_and_values(at)
    assert helps["Final validation loss"] == "in nats per character"
    assert helps["Tokens"] == "in characters seen in training"
    run = run_of(runs, "char")
    assert values["Bits per character"] == \
        f"{run.final_val_loss / math.log(2):.3f}"
    [chart] = [s for s in plotly_specs(at) if loss_axis(s)]
    assert loss_axis(chart) == "loss (nats per character)"
    hovers = {t["name"]: t["hovertemplate"] for t in chart["data"] if t.get("name")}
    assert "nats/char" in hovers["validation loss"]


@pytest.mark.parametrize("name, unit", [("bpe", "token"), ("imported", "token"),
                                        ("char", "character")])
def test_inspect_pages_say_the_unit_of_the_run(page, runs, name, unit):
    _, ids = runs
    at = page("views/attention.py", run=ids[name])
    assert f"how much each {unit} of the prompt" in texts(at)
    at = page("views/generate.py", run=ids[name])
    assert at.slider(key="generate_length").label == f"{unit.capitalize()}s to generate"
    assert f"one {unit} at a time" in texts(at)
    at = page("views/inference.py", run=ids[name])
    assert at.slider(key="inf_tokens").label == f"Tokens to generate ({unit}s)"
    context = run_of(runs, name).model_config["context_window"]
    assert f"context {context} {unit}s." in texts(at)
    other = "character" if unit == "token" else "token"
    assert f"each {other} of" not in texts(at)


@pytest.mark.parametrize("name, axis", [("bpe", "tokens generated so far"),
                                        ("char", "tokens generated so far (characters)")])
def test_inference_speed_axis_counts_the_runs_tokens(page, runs, name, axis):
    _, ids = runs
    at = page("views/inference.py", run=ids[name])
    [speed] = [s for s in plotly_specs(at) if "Generation speed" in s["layout"]["title"][
        "text"]]
    assert speed["layout"]["xaxis"]["title"]["text"] == axis


def test_teacher_briefs_an_imported_run_by_where_it_came_from(page, runs):
    _, ids = runs
    at = page("views/teacher.py", runs=[ids["imported"], ids["char"]])
    text = texts(at)
    assert f"deep-llama ({ids['imported']}): {LAYERS}×16 ctx 64 rmsnorm/rope/swiglu, " \
           "imported from deep-llama" in text
    assert "None steps" not in text and ", 30 steps" in text  # the char run's own
