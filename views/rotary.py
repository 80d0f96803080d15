"""Rotary: how RoPE turns each pair of query/key dimensions with position, why the
score then depends only on the distance m - n, and a trained model's own proof of it.
Everything but the last section works with no run at all."""

import numpy as np
import pandas as pd
import streamlit as st

from charts.labels import short_label
from charts.units import token_unit_of
from charts.rope_lengths import length_figure, scaled_frequencies_figure
from charts.rotary import logit_pair, rope_circles, rope_relative, rope_spectrum
from llama_core import inspect as I
from llama_core.config import ModelConfig
from llama_core.lengths import READINGS
from llama_core.model import rope_frequencies
from llama_core.pitfalls import pitfall_of
from ui.checkpoints import inspectable_runs, torch_turn
from ui.errors import each_run, user_errors
from ui.figures import show_chart
from ui.llama_parts import LLAMA3_HIGH, LLAMA3_LOW, scaling_dict
from ui.length_view import WINDOWS, length_frame
from llama_core.prompts import check_prompt, fit_tokens, token_unit
from ui.plain_text import md_literal
from ui.run_pickers import pick_trained_run

HEAD_SIZES = [8, 16, 32, 64, 128]
DEFAULT_CONTEXT = ModelConfig().context_window

st.title("Rotary position embeddings (RoPE)")
st.markdown(
    "Llama adds no position vector to the tokens. Inside every head it **rotates** the "
    "query and the key pair by pair: pair *i* (dimensions 2i and 2i+1) at position *m* "
    "turns by the angle $m\\,\\theta^{-2i/d_{head}}$. Pair 0 turns 1 radian per position, "
    "each later pair more slowly.")

c1, c2, c3 = st.columns(3)
head_dim = c1.selectbox("Head size d_head (dimensions per head)", HEAD_SIZES, index=2,
                        key="rotary_head_dim")
theta_a = c2.number_input("θ (theta) A", min_value=2.0, max_value=1e9, value=10000.0,
                          step=1000.0, format="%g", key="rotary_theta_a",
                          help="Llama 1 and 2 use 10,000.")
theta_b = c3.number_input("θ (theta) B", min_value=2.0, max_value=1e9, value=500000.0,
                          step=10000.0, format="%g", key="rotary_theta_b",
                          help="Llama 3 uses 500,000 for longer contexts.")
show_bug = st.toggle("Also draw the off-by-one bug (i − 1 for i) with θ A",
                     key="rotary_bug")

label_a, label_b = f"θ = {theta_a:g}", f"θ = {theta_b:g}"
if theta_a == theta_b:
    label_b += " (B)"
tables = {label_a: I.rope_frequency_table(head_dim, theta_a),
          label_b: I.rope_frequency_table(head_dim, theta_b)}
if show_bug:
    tables[f"{label_a}, off-by-one bug"] = I.rope_frequency_table(head_dim, theta_a,
                                                                   off_by_one=True)
st.subheader("1. Every pair has its own speed")
st.plotly_chart(rope_spectrum(tables, DEFAULT_CONTEXT), key="rotary_spectrum",
                width="stretch")
slowest = tables[label_a]["wavelength_positions"].iloc[-1]
st.caption(f"Left: radians per position (log scale). Right: positions for one full turn, "
           f"2π / frequency. With θ = {theta_a:g} and d_head = {head_dim}, the slowest pair "
           f"needs {slowest:,.0f} positions to turn once; pairs whose wavelength is longer "
           f"than the context window never complete a turn inside it. A larger θ slows "
           f"every pair but pair 0."
           + (" The bug makes pair 0 turn faster than 1 rad per position." if show_bug
              else ""))

st.subheader("2. One pair turning with position")
c1, c2 = st.columns(2)
pair = c1.slider("Pair i", 0, head_dim // 2 - 1, min(1, head_dim // 2 - 1),
                 key="rotary_pair")
positions = c2.slider("Positions shown (m = 0, 1, 2, ...)", 4, 64, 16,
                      key="rotary_positions")
circles = {label: I.rope_angles(head_dim, theta, positions)[:, pair]
           for label, theta in ((label_a, theta_a), (label_b, theta_b))}
st.plotly_chart(rope_circles(circles, pair), key="rotary_circle", width="stretch")
st.caption("Each dot is where the pair (x₂ᵢ, x₂ᵢ₊₁) of a unit vector lands at position m: "
           "the same vector, turned a little further at every position. Pair 0 turns 1 rad "
           "(about 57°) per position whatever θ is.")

st.subheader("3. The score depends only on the distance m − n")
max_distance = st.slider("Largest distance m − n (positions)", 4, 64, 32,
                         key="rotary_distance")
scores = I.rope_relative_scores(head_dim, theta_a, max_distance=max_distance)
st.plotly_chart(rope_relative(scores), key="rotary_relative", width="stretch")
spread = float(scores.groupby("distance")["score"].agg(np.ptp).max())
st.caption(f"One random query q and key k (d_head = {head_dim}, θ = {theta_a:g}), the "
           f"query rotated to position m and the key to n = m − distance, for four "
           f"absolute positions m far apart. The four curves lie on top of each other: "
           f"the largest gap between them at any distance is {spread:.1e} (floating-point "
           f"rounding), because rotations compose: R_m q · R_n k = q · R_(n−m) k, so only "
           f"the difference of the two positions is left.")

st.subheader("4. Scaling the frequencies to read further")
st.markdown(
    "A model meets only the angles its training context produced. To read a longer "
    "context, **linear scaling** (position interpolation, Chen et al. 2023) divides every "
    "frequency by a factor, as if every position were divided by it. **llama3 scaling** "
    "(Llama 3.1, factor 8 from an original context of 8,192) keeps the fast pairs, whose "
    "wavelength is shorter than original ÷ high_freq_factor (4), divides the slow pairs, "
    "longer than original ÷ low_freq_factor (1), and blends in between.")
c1, c2 = st.columns(2)
factor = c1.selectbox("Factor", [2, 4, 8, 16, 32], index=2, key="rotary_scale_factor",
                      help="Llama 3.1: 8. Llama 3.2 1B and 3B: 32.")
original = c2.number_input("Original context (positions)", min_value=2, max_value=1_000_000,
                           value=8192, step=1024, key="rotary_scale_original",
                           help="The context the model was trained at: 8,192 for Llama 3.")
scaled = {kind: rope_frequencies(head_dim, theta_b, scaling=scaling_dict(
    kind, factor, int(original))).numpy() for kind in ("linear", "llama3")}
freqs = {"unscaled": rope_frequencies(head_dim, theta_b).numpy(), **scaled}
show_chart(scaled_frequencies_figure(freqs, int(original), LLAMA3_HIGH, LLAMA3_LOW),
           key="rotary_scaled", filename="rope-scaling")
kept = int((freqs["llama3"] == freqs["unscaled"]).sum())
divided = int(np.isclose(freqs["llama3"], freqs["unscaled"] / factor).sum())
st.caption(f"θ = {theta_b:g} (θ B above), d_head = {head_dim}, factor {factor}, original "
           f"context {int(original):,}. Dotted lines: pairs above the upper one (wavelength "
           f"under {int(original) / LLAMA3_HIGH:,.0f} positions) are kept, pairs below the "
           f"lower one (wavelength over {int(original) / LLAMA3_LOW:,.0f}) are divided. "
           f"llama3 keeps {kept} of {head_dim // 2} pairs as "
           f"they were, divides {divided} by {factor} and blends the other "
           f"{head_dim // 2 - kept - divided}; linear divides all {head_dim // 2}. The "
           "fast pairs carry word-level detail, so llama3 leaves them alone. Rules as in "
           "Hugging Face transformers' modeling_rope_utils (llama3: Meta's Llama 3.1 "
           "config.json rope_scaling).")

st.subheader("5. Reading past the trained length")
st.markdown(
    "A trained model read at 2× or 4× its context, on its corpus's held-out text: loss "
    "at each position, averaged over the same windows for every reading. RoPE can be read "
    "at any length, unscaled or with its frequencies scaled by the same factor. "
    "**Learned positions cannot go past their table**: it has one row per trained "
    "position, so there is nothing to add at the next one, and their line stops there. "
    "A model with **no positions** reads any length.")
runs = inspectable_runs()
if not runs:
    st.info("No finished run yet: train a RoPE, a learned-positions and a no-positions "
            "run of one shape on Build & train to compare them here.")
else:
    by_id = {r.id: r for r in runs if r.model_config.get("attention", True)}
    if "rotary_length_runs" not in st.session_state:  # the newest run of each kind
        newest = {}
        for r in by_id.values():
            newest.setdefault(r.model_config.get("pos"), r.id)
        st.session_state["rotary_length_runs"] = list(newest.values())[:3]
    c1, c2 = st.columns([3, 1])
    chosen = c1.multiselect("Runs (up to 3: say a RoPE, a learned and a no-positions run)",
                            list(by_id), key="rotary_length_runs", max_selections=3,
                            format_func=lambda i: short_label(by_id[i]))
    length_factor = c2.segmented_control("Read at (× its context)", [2, 4], default=2,
                                         required=True, key="rotary_length_factor",
                                         format_func=lambda f: f"{f}×")
    frames = each_run([by_id[i] for i in chosen],
                      lambda r: length_frame(r, int(length_factor)))
    if frames:
        contexts = {by_id[i].model_config["context_window"] for i in frames}
        combined = pd.concat([f.assign(run=short_label(by_id[i])) for i, f in frames.items()],
                             ignore_index=True)
        trained = min(contexts)
        show_chart(length_figure(combined, trained, int(length_factor) * max(contexts)
                                 // trained), key="rotary_length", filename="length-view")
        summary = combined.groupby(["run", "reading", "seen"], sort=False)["loss"].mean()
        summary = summary.unstack("seen").rename(columns={
            True: "trained positions (nats/char)", False: "beyond them (nats/char)"})
        summary = summary.reset_index()
        summary["reading"] = summary["reading"].map(READINGS)
        st.dataframe(summary, hide_index=True, key="rotary_length_table")
        st.caption(
            f"Each point is the mean cross-entropy over {WINDOWS} windows of the run's "
            "validation text at that position (nats per character). Left of the dashed "
            "line the model reads positions it was trained on; right of it, positions it "
            "never saw. Scaled readings stretch the frequencies by the factor the run is "
            "read at (linear: every frequency ÷ it; llama3: Llama 3.1's bands with the "
            "trained context as original)."
            + (" The runs have different contexts; the dashed line marks the shortest."
               if len(contexts) > 1 else ""))

st.subheader("6. A trained model's own invariance")
if not runs:
    st.info("No finished run yet: train one on the Build & train page to check a trained "
            "model; the three sections above work without one.")
    st.stop()
run, model, tokenizer = pick_trained_run(
    runs, key="rotary_run", label="Trained run",
    none_picked="Pick a run to check its layer-0 attention logits.")
cfg = model.cfg
if not cfg.attention:
    st.info(f"{run.id} has no attention layers (attention=false), so it has no attention "
            "logits and no rotary embeddings to check.")
    st.stop()
if cfg.pos == "none":
    st.info(f"{run.id} has no positional encoding (pos=none): its attention logits ignore "
            "position altogether, so there is no relative-position property to check; "
            "pick a RoPE run.")
    st.stop()
pitfall = pitfall_of(cfg.bug)
if pitfall and pitfall.ignores_position:
    st.warning(f"{run.id} has the {pitfall.name} bug: its queries and keys are never "
               "rotated, so shifting the prompt changes nothing for the trivial reason "
               "that the model has no notion of position at all.")

if cfg.pos == "learned":
    st.info(f"{run.id} uses learned positions, not RoPE, so the invariance does not "
            "apply: a position vector is added to each token, every query and key "
            "carries its absolute position, and moving the prompt changes the logits. "
            "The check below shows by how much.")
else:
    st.markdown("Layer 0 sees only token embeddings and rotations, so if the prompt is "
                "moved later in the context window the attention logits between its "
                f"{token_unit_of(run)} must stay exactly the same: only distances matter.")

prompt = st.text_input("Prompt", value="To be, or not to be", key="rotary_prompt")
if not prompt:
    st.info("Type a prompt to move it along the context window.")
    st.stop()
with user_errors():
    check_prompt(tokenizer, prompt)
    longest = max(1, cfg.context_window // 2)
    ids, tokens, cut = fit_tokens(tokenizer, prompt, longest)
    unit, text = token_unit(tokenizer), tokenizer.decode(ids)
    if cut:
        st.info(f"The prompt and its shift must fit {run.id}'s context window of "
                f"{cfg.context_window} positions, so the check uses its last {longest} "
                f"{unit}: “{md_literal(text)}”.")
    most = cfg.context_window - len(tokens)
    if most < 1:
        st.info(f"{run.id}'s context window of {cfg.context_window} leaves no room to "
                "move a prompt.")
        st.stop()
    shift = st.slider("Move the prompt later by (positions)", 1, max(most, 2),
                      max(1, min(8, most)), key="rotary_shift", disabled=most < 2)
    shift = min(shift, most)
    with torch_turn():
        result = I.rope_invariance(model, ids, shift)
    st.metric(f"Largest change of any layer-0 attention logit, all {cfg.n_heads} heads",
              f"{result.max_abs_diff:.1e} logits")
    shift_note = pitfall.shift_note if pitfall else ""
    if cfg.pos == "rope" and not shift_note:
        verdict = ("about 0: float32 rounding (about 1e-6), so the logits depend only "
                   f"on the distance between {unit}" if result.max_abs_diff < 1e-3 else
                   "clearly above float rounding: something other than relative "
                   "position reaches the logits")
    elif shift_note:
        verdict = f"not 0: the {cfg.bug} bug {shift_note}"
    else:
        verdict = "not 0: learned positions make the logits depend on absolute position"
    prefix = tokenizer.decode(result.prefix_ids)
    st.caption(f"The prompt at positions 0–{len(tokens) - 1}, then after {shift} random "
               f"{unit} (“{md_literal(prefix)}”) at positions "
               f"{shift}–{shift + len(tokens) - 1}."
               f" The change is {verdict}.")
    head = st.columns([1, 3])[0].selectbox("Head", range(cfg.n_heads), key="rotary_head")
    st.plotly_chart(logit_pair(result.base[head], result.moved[head], tokens, shift,
                                      head), key="rotary_logits", width="stretch")
