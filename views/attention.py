"""Attention: where each character of a prompt looks, in every layer and head of one
or two trained runs, their difference, and per-head statistics (entropy, distance, and
attention on future keys when the causal mask is off)."""

import numpy as np
import streamlit as st

from llama_core.errors import UserError
from ui import inspect_charts as charts
from ui.inspect_compute import attention_for, uniform_baselines
from ui.inspect_pages import (NO_RUNS, describe, inspectable_runs, load_run, pick_runs,
                              short_label, show_errors, torch_turn)
from ui.plain_text import md_literal

DEFAULT_PROMPT = "To be, or not to be"


def panel_size(heads: int, runs: int) -> int:
    """Pixels per heatmap panel so a grid fills its column on a 1400-pixel-wide screen
    (about 1000 pixels for the page, less margins and the colour scale)."""
    return int(min(230, max(80, (1000 / runs - 250) / heads)))

st.title("Attention")
st.markdown("Each heatmap shows, for one head, how much each character of the prompt "
            "(a **row**: the *query*) attends to every character (a **column**: the "
            "*key*). Each row sums to 1. With the causal mask on, a query sees only "
            "itself and earlier keys: the grey triangle is what the mask hides.")

runs = inspectable_runs()
if not runs:
    st.info(NO_RUNS)
    st.stop()

chosen = pick_runs(runs, key="attention_runs", max_runs=2,
                   label="Runs (pick two to compare them side by side)")
prompt = st.text_input("Prompt", value=DEFAULT_PROMPT, key="attention_prompt")
if not chosen:
    st.info("Pick a run above to see its attention.")
    st.stop()
if not prompt:
    st.info("Type a prompt to see where the model looks.")
    st.stop()

results, errors = {}, {}
with torch_turn():
    for run in chosen:
        try:
            model, tokenizer, _ = load_run(run)
            results[run.id] = (run, model.cfg, attention_for(model, tokenizer, prompt))
        except UserError as e:
            errors.setdefault(str(e), []).append(run)
show_errors(errors)
if not results:
    st.stop()

for run, cfg, res in results.values():
    if res.truncated:
        st.info(f"The prompt has {len(prompt)} characters but {run.id} reads at most "
                f"{cfg.context_window}, so its maps show the last {cfg.context_window} "
                f"characters: “{md_literal(res.text)}”.")

items = list(results.values())
# One colour scale for every map, topped by the largest weight any query but the first
# gives: under the causal mask query 0 can only look at itself (probability 1), which
# would wash every other cell out to white.
zmax = max(float(max(m[:, 1:].max() if m.shape[-1] > 1 else m.max() for m in res.maps))
           for _, _, res in items)
columns = st.columns(len(items))
for i, (col, (run, cfg, res)) in enumerate(zip(columns, items)):
    with col:
        st.subheader(md_literal(short_label(run)))
        st.caption(describe(cfg))
        fig = charts.attention_grid(
            res.maps, res.text, f"Attention of {run.id}: every layer and head",
            hide_future=cfg.causal and cfg.bug != "mask_ones", zmax=zmax,
            show_scale=i == len(items) - 1,  # one scale serves both runs
            panel_px=panel_size(cfg.n_heads, len(items)))
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
    elif a.text != b.text:
        st.info("The two runs read different parts of the prompt (their context windows "
                "differ), so their maps cannot be subtracted; shorten the prompt to "
                f"{min(cfg_a.context_window, cfg_b.context_window)} characters.")
    else:
        diff = [x - y for x, y in zip(a.maps, b.maps)]
        top = max(float(np.abs(d).max()) for d in diff) or 1.0
        st.caption("Red: the first run attends more; blue: the second run attends more. "
                   "Same prompt, same layer and head.")
        st.plotly_chart(charts.attention_grid(
            diff, a.text, f"{run_a.id} − {run_b.id}: difference in attention probability",
            difference=True, zmax=top,
            panel_px=panel_size(cfg_a.n_heads, 1)),
            key="attention_difference", width="stretch")

st.subheader("One head up close")
c1, c2 = st.columns(2)
layer = c1.selectbox("Layer", range(max(c.n_layers for _, c, _ in items)),
                     key="attention_layer")
head = c2.selectbox("Head", range(max(c.n_heads for _, c, _ in items)),
                    key="attention_head")
columns = st.columns(len(items))
for i, (col, (run, cfg, res)) in enumerate(zip(columns, items)):
    with col:
        if layer >= cfg.n_layers or head >= cfg.n_heads:
            st.info(f"{run.id} has {cfg.n_layers} layers × {cfg.n_heads} heads; pick a "
                    "smaller layer or head.")
            continue
        st.plotly_chart(charts.attention_heatmap(
            res.maps[layer][head], res.text, f"{run.id}: layer {layer}, head {head}",
            hide_future=cfg.causal and cfg.bug != "mask_ones", zmax=zmax,
            max_labels=64 if len(items) == 1 else 32),
            key=f"attention_head_{i}", width="stretch")

st.subheader("What each head does, in numbers")
labels = {short_label(run): res for run, _, res in items}
# The dashed lines: uniform attention over the keys a query can see, per distinct
# (prompt length, mask) among the chosen runs.
baselines = {}
for run, cfg, res in items:
    masked = cfg.causal and cfg.bug != "mask_ones"
    baselines[(len(res.text), masked)] = uniform_baselines(len(res.text), masked)
if len(baselines) == 1:
    reference = {"uniform attention": next(iter(baselines.values()))}
elif len({T for T, _ in baselines}) == 1:
    reference = {f"uniform, {'causal' if m else 'no mask'}": b
                 for (_, m), b in baselines.items()}
else:
    reference = {f"uniform, {T} characters{'' if m else ', no mask'}": b
                 for (T, m), b in baselines.items()}
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(charts.head_bars(
        {k: r.entropy for k, r in labels.items()},
        "Entropy per head", "entropy (nats)",
        reference={k: v["entropy"] for k, v in reference.items()}),
        key="attention_entropy", width="stretch")
    st.caption("Mean over the prompt's queries of −Σ p log p. 0 nats: every query looks "
               "at a single key. The dashed line: a head that spreads its attention evenly "
               "over the keys a query can see.")
with c2:
    st.plotly_chart(charts.head_bars(
        {k: r.distance for k, r in labels.items()},
        "Mean attended distance per head", "distance (positions)",
        reference={k: v["distance"] for k, v in reference.items()}),
        key="attention_distance", width="stretch")
    st.caption("Mean over queries of Σ p · |query − key|. 0 positions: a head that looks "
               "at the current character; large: one that looks far back (or, without the "
               "mask, ahead).")

leaky = [(run, cfg) for run, cfg, _ in items if not cfg.causal or cfg.bug == "mask_ones"]
if leaky:
    st.subheader("Attention on future keys")
    names = ", ".join(run.id for run, _ in leaky)
    st.markdown(f"**{names}** can see the future (causal mask off"
                + (" or the mask_ones bug" if any(c.bug == "mask_ones" for _, c in leaky)
                   else "") + "): the fraction of each query's attention that lands on "
                "keys after it, averaged over the prompt. A model that reads the next "
                "character trains to a suspiciously low loss and generates garbage.")
    st.plotly_chart(charts.head_bars(
        {k: r.future for k, r in labels.items()},
        "Attention on keys after the query, per head", "attention on future keys "
        "(fraction)", percent=True), key="attention_future", width="stretch")
else:
    st.caption("Future keys: every chosen run has the causal mask on, so 0% of its "
               "attention lands on keys after the query (the grey triangle).")
