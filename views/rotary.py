"""Rotary: how RoPE turns each pair of query/key dimensions with position, why the
score then depends only on the distance m - n, and a trained model's own proof of it.
Everything but the last section works with no run at all."""

import numpy as np
import streamlit as st

from charts.rotary import logit_pair, rope_circles, rope_relative, rope_spectrum
from llama_core import inspect as I
from llama_core.config import ModelConfig
from llama_core.errors import UserError
from llama_core.pitfalls import pitfall_of
from ui.checkpoints import inspectable_runs, load_run, torch_turn
from ui.errors import show_error, user_errors
from ui.inspect_compute import check_prompt, fit_prompt
from ui.plain_text import md_literal
from ui.run_pickers import pick_run

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

st.subheader("4. A trained model's own invariance")
runs = inspectable_runs()
if not runs:
    st.info("No finished run yet: train one on the Build & train page to check a trained "
            "model; the three sections above work without one.")
    st.stop()
run = pick_run(runs, key="rotary_run", label="Trained run")
if run is None:
    st.info("Pick a run to check its layer-0 attention logits.")
    st.stop()
try:
    model, tokenizer, _ = load_run(run)
except UserError as e:
    show_error(e)
    st.stop()
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
                "characters must stay exactly the same: only distances matter.")

prompt = st.text_input("Prompt", value="To be, or not to be", key="rotary_prompt")
if not prompt:
    st.info("Type a prompt to move it along the context window.")
    st.stop()
with user_errors():
    check_prompt(tokenizer, prompt)
    longest = max(1, cfg.context_window // 2)
    text, cut = fit_prompt(prompt, longest)
    if cut:
        st.info(f"The prompt and its shift must fit {run.id}'s context window of "
                f"{cfg.context_window} positions, so the check uses its last {longest} "
                f"characters: “{md_literal(text)}”.")
    most = cfg.context_window - len(text)
    if most < 1:
        st.info(f"{run.id}'s context window of {cfg.context_window} leaves no room to "
                "move a prompt.")
        st.stop()
    shift = st.slider("Move the prompt later by (positions)", 1, max(most, 2),
                      max(1, min(8, most)), key="rotary_shift", disabled=most < 2)
    shift = min(shift, most)
    with torch_turn():
        result = I.rope_invariance(model, tokenizer.encode(text), shift)
    st.metric(f"Largest change of any layer-0 attention logit, all {cfg.n_heads} heads",
              f"{result.max_abs_diff:.1e} logits")
    shift_note = pitfall.shift_note if pitfall else ""
    if cfg.pos == "rope" and not shift_note:
        verdict = ("about 0: float32 rounding (about 1e-6), so the logits depend only "
                   "on the distance between characters" if result.max_abs_diff < 1e-3 else
                   "clearly above float rounding: something other than relative "
                   "position reaches the logits")
    elif shift_note:
        verdict = f"not 0: the {cfg.bug} bug {shift_note}"
    else:
        verdict = "not 0: learned positions make the logits depend on absolute position"
    prefix = tokenizer.decode(result.prefix_ids)
    st.caption(f"The prompt at positions 0–{len(text) - 1}, then after {shift} random "
               f"characters (“{md_literal(prefix)}”) at positions "
               f"{shift}–{shift + len(text) - 1}."
               f" The change is {verdict}.")
    head = st.columns([1, 3])[0].selectbox("Head", range(cfg.n_heads), key="rotary_head")
    st.plotly_chart(logit_pair(result.base[head], result.moved[head], text, shift,
                                      head), key="rotary_logits", width="stretch")
