"""Attention: where each token (character or byte-pair token) of a prompt looks, in
every layer and head of one or two trained runs, their difference, and per-head
statistics (entropy, distance, and attention on future keys when the causal mask is
off)."""

import streamlit as st

from charts.attention import (attention_grid, attention_heatmap, head_bars, map_height,
                              panel_size, shared_zmax)
from charts.labels import describe, short_label
from charts.units import one, shared_unit
from ui.checkpoints import NO_RUNS, inspectable_runs, load_run, torch_turn
from ui.errors import each_run, require
from llama_core.pitfalls import mask_holds
from llama_core.attention_readings import attention_for, uniform_references
from ui.plain_text import md_literal
from ui.run_pickers import pick_runs

DEFAULT_PROMPT = "To be, or not to be"
# A grid of every layer is drawn up to this depth; a deeper model (an imported 30-layer
# Llama) shows the layers picked, by default its first and last two, so the page stays
# fast (each layer adds a row of heads x prompt² cells for the browser to draw).
GRID_LAYERS = 6
# (statistic, chart title, axis title, what it means) for the two per-head charts
HEAD_STATISTICS = [
    ("entropy", "Entropy per head", "entropy (nats)",
     "Mean over the prompt's queries of −Σ p log p. 0 nats: every query looks at a single "
     "key. The dashed line: a head that spreads its attention evenly over the keys a "
     "query can see."),
    ("distance", "Mean attended distance per head", "distance (positions)",
     "Mean over queries of Σ p · |query − key|. 0 positions: a head that looks at the "
     "current {one}; large: one that looks far back (or, without the mask, ahead)."),
]

st.title("Attention")
intro = st.empty()  # written once the runs, and so the unit of a token, are known

runs = inspectable_runs()
if not runs:
    st.info(NO_RUNS)
    st.stop()

chosen = pick_runs(runs, key="attention_runs", max_runs=2,
                   label="Runs (pick two to compare them side by side)")
unit = shared_unit(chosen)  # "characters", or "tokens" when a byte-pair run is chosen
intro.markdown(f"Each heatmap shows, for one head, how much each {one(unit)} of the prompt "
               f"(a **row**: the *query*) attends to every {one(unit)} (a **column**: the "
               "*key*). Each row sums to 1. With the causal mask on, a query sees only "
               "itself and earlier keys: the grey triangle is what the mask hides.")
prompt = st.text_input("Prompt", value=DEFAULT_PROMPT, key="attention_prompt")
require(chosen, "Pick a run above to see its attention.")
require(prompt, "Type a prompt to see where the model looks.")


def attention_of(run):
    model, tokenizer, _ = load_run(run)
    return run, model.cfg, attention_for(model, tokenizer, prompt)


with torch_turn():
    results = each_run(chosen, attention_of)
if not results:
    st.stop()

for run, cfg, res in results.values():
    if res.truncated:
        st.info(f"The prompt is longer than the {cfg.context_window} {res.unit} {run.id} "
                f"reads at most, so its maps show the last {cfg.context_window} "
                f"{res.unit}: “{md_literal(res.text)}”.")

items = list(results.values())
zmax = shared_zmax([res.maps for _, _, res in items])  # one colour scale for every map
deepest = max(cfg.n_layers for _, cfg, _ in items)
shown_layers = list(range(deepest))
if deepest > GRID_LAYERS:
    shown_layers = sorted(st.multiselect(
        "Layers in the grid", list(range(deepest)), key="attention_grid_layers",
        default=[0, 1, deepest - 2, deepest - 1], format_func=lambda l: f"layer {l}"))
    st.caption(f"{deepest} layers are too many maps to draw at once and stay quick, so "
               "the grid shows the layers picked here, by default the first two and the "
               "last two. The close-up and the statistics below cover every layer.")
    if not shown_layers:
        st.info("Pick at least one layer above to draw the grid.")


def grid_title(run_id: str, layers: list[int], n_layers: int, what: str) -> str:
    """The grid's title: "every layer and head", or the layers it draws of a deep run."""
    if len(layers) == n_layers:
        return f"{run_id}: every layer and head{what}"
    return f"{run_id}: layers {', '.join(map(str, layers))} of {n_layers}, every head{what}"

columns = st.columns(len(items))
for i, (col, (run, cfg, res)) in enumerate(zip(columns, items)):
    with col:
        st.subheader(md_literal(short_label(run)))
        st.caption(describe(cfg))
        layers = [l for l in shown_layers if l < cfg.n_layers]
        if not layers:
            continue
        fig = attention_grid(
            [res.maps[l] for l in layers], res.tokens,
            grid_title(run.id, layers, cfg.n_layers, ""),
            hide_future=mask_holds(cfg), zmax=zmax,
            show_scale=i == len(items) - 1,  # one scale serves both runs
            panel_px=panel_size(cfg.n_heads, len(items)), layers=layers)
        st.plotly_chart(fig, key=f"attention_grid_{i}",
                        width="stretch")

top_text = "1" if zmax > 0.995 else f"{zmax:.2f} or more"
st.caption(f"One colour scale for {'both runs' if len(items) > 1 else 'every head'}, "
           f"darkest at probability {top_text} (under the causal mask the first "
           f"query can only attend to itself, so its single cell is always 1). Hover a "
           f"cell for its exact value.")

if len(items) == 2:
    (run_a, cfg_a, a), (run_b, cfg_b, b) = items
    st.subheader(f"Difference: {run_a.id} − {run_b.id}")
    same_shape = (cfg_a.n_layers, cfg_a.n_heads) == (cfg_b.n_layers, cfg_b.n_heads)
    if not same_shape:
        st.info(f"The two runs have different shapes ({cfg_a.n_layers} layers × "
                f"{cfg_a.n_heads} heads against {cfg_b.n_layers} × {cfg_b.n_heads}), so "
                "there is no head-by-head difference to draw.")
    elif a.tokens != b.tokens:
        st.info("The two runs read different parts of the prompt (their context windows "
                "differ), so their maps cannot be subtracted; shorten the prompt to "
                f"{min(cfg_a.context_window, cfg_b.context_window)} {unit}.")
    elif shown_layers:
        diff = [a.maps[l] - b.maps[l] for l in shown_layers]
        st.caption("Red: the first run attends more; blue: the second run attends more. "
                   "Same prompt, same layer and head.")
        title = (f"{run_a.id} − {run_b.id}: difference in attention probability"
                 if len(shown_layers) == cfg_a.n_layers else
                 f"{run_a.id} − {run_b.id}: difference in attention probability, layers "
                 f"{', '.join(map(str, shown_layers))}")
        st.plotly_chart(attention_grid(
            diff, a.tokens, title, difference=True,
            panel_px=panel_size(cfg_a.n_heads, 1), layers=shown_layers),
            key="attention_difference", width="stretch")

st.subheader("One head up close")
c1, c2 = st.columns(2)
layer = c1.selectbox("Layer", range(max(c.n_layers for _, c, _ in items)),
                     key="attention_layer")
head = c2.selectbox("Head", range(max(c.n_heads for _, c, _ in items)),
                    key="attention_head")
close_up_px = map_height(max(len(res.tokens) for _, _, res in items))  # one size for both
columns = st.columns(len(items))
for i, (col, (run, cfg, res)) in enumerate(zip(columns, items)):
    with col:
        if layer >= cfg.n_layers or head >= cfg.n_heads:
            st.info(f"{run.id} has {cfg.n_layers} layers × {cfg.n_heads} heads; pick a "
                    "smaller layer or head.")
            continue
        st.plotly_chart(attention_heatmap(
            res.maps[layer][head], res.tokens, f"{run.id}: layer {layer}, head {head}",
            hide_future=mask_holds(cfg), zmax=zmax,
            max_labels=64 if len(items) == 1 else 32, height=close_up_px),
            key=f"attention_head_{i}", width="stretch")

st.subheader("What each head does, in numbers")
labels = {short_label(run): res for run, _, res in items}
# The dashed lines: uniform attention over the keys a query can see.
reference = uniform_references([(len(res.tokens), mask_holds(cfg))
                                for _, cfg, res in items], unit)
for col, (stat, title, axis, caption) in zip(st.columns(2), HEAD_STATISTICS):
    with col:
        st.plotly_chart(head_bars(
            {k: getattr(r, stat) for k, r in labels.items()}, title, axis,
            reference={k: v[stat] for k, v in reference.items()}),
            key=f"attention_{stat}", width="stretch")
        st.caption(caption.format(one=one(unit)))

leaky = [(run, cfg) for run, cfg, _ in items if not mask_holds(cfg)]
if leaky:
    st.subheader("Attention on future keys")
    names = ", ".join(run.id for run, _ in leaky)
    st.markdown(f"**{names}** can see the future (causal mask off"
                + "".join(f" or the {bug} bug" for bug in dict.fromkeys(
                    c.bug for _, c in leaky if c.causal)) + "): the fraction of each query's attention that lands on "
                "keys after it, averaged over the prompt. A model that reads the next "
                f"{one(unit)} trains to a suspiciously low loss and generates garbage.")
    st.plotly_chart(head_bars(
        {k: r.future for k, r in labels.items()},
        "Attention on keys after the query, per head", "attention on future keys "
        "(fraction)", percent=True), key="attention_future", width="stretch")
else:
    st.caption("Future keys: every chosen run has the causal mask on, so 0% of its "
               "attention lands on keys after the query (the grey triangle).")
