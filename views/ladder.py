"""The ladder: the "Llama from scratch" story, one modification per rung.

Rungs are the ladder-* presets of llama_core.config (LADDER). The class set
(data/classset/) holds every rung trained on three seeds, so the chart and table are full
before anything trains; "Train" queues a rung (or all) as live runs in one group whose
id goes into the URL (?ladder=...), and their curves join the same chart. The write-up's
published numbers are shown beside ours, labelled as theirs, with their caveats.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from charts.bands import band_figure
from charts.ladder import CLASS_SET, YOURS, rung_bands, rung_styles, rung_table
from charts.palette import X_AXES
from llama_core.lab import classset
from llama_core.lab.store import ACTIVE
from llama_core.presets import LADDER, PRESETS, build_configs
from ui import state
from ui.errors import show_error
from ui.figures import show_chart, show_table
from ui.plain_text import md_literal
from ui.sweep_actions import queue_in_group

POLL_S = 1.0
GROUP_PREFIX = "ld-"
LEAK_RUNG = "ladder-3-rope-head"

# What each rung changes and why its curve moves (checked against the class set).
RUNGS = {
    "ladder-1-mlp": (
        "embedding + MLP",
        "Each character is looked up in an embedding table and a ReLU MLP guesses the next "
        "one. It sees one character and nothing before it, so the best it can learn is "
        "which character tends to follow which: a bigram model, whose best validation "
        "loss on this corpus is about 2.48. After 300 steps it is still on its way there "
        "(about 2.61)."),
    "ladder-2-rmsnorm": (
        "+ RMSNorm",
        "RMSNorm rescales each character's vector before the MLP. The model still sees one "
        "character, so it can know nothing more than rung 1; it only heads for the same "
        "2.48 floor faster (about 2.53 at 300 steps). A norm helps optimisation; it adds "
        "no information."),
    "ladder-3-rope-head": (
        "+ one RoPE attention head, no mask",
        "One attention head lets every position read the others, rotated by RoPE so it "
        "knows how far away they are. With no causal mask it can also read the next "
        "character, the very answer it is asked for: the loss dives to about 0.19, far "
        "below anything honest. That is a leak, not learning (see Pitfalls)."),
    "ladder-4-causal": (
        "+ causal mask",
        "The mask stops position m from looking at anything after m. The loss jumps back "
        "up to an honest value (about 2.20), and now below the bigram floor of rungs 1 "
        "and 2: the head uses the characters before the current one as context."),
    "ladder-5-heads": (
        "+ 8 heads",
        "The same 128 dimensions split into 8 heads of 16, with the same parameters, so "
        "each head can attend somewhere different. At 300 steps the gain is small (under "
        "0.01): one wide head already finds the nearby characters that matter most."),
    "ladder-6-swiglu": (
        "+ SwiGLU",
        "The ReLU MLP becomes SwiGLU: silu(w1 x), a smooth gate, multiplies a second "
        "projection w3 x. Three matrices of 352 cost about what two of 512 did (+4,096 "
        "parameters here), and the loss drops clearly, by about 0.05 at 300 steps."),
    "ladder-7-llama": (
        "4 stacked blocks = Llama",
        "Four pre-normalised blocks on a residual stream, each building on the one below. "
        "At 300 steps they barely beat one block (about 0.01 lower) while holding almost "
        "4 times the parameters and training about 3 times slower per step: depth needs "
        "more steps to pay off. The write-up's four blocks reached 1.55 at 5,000 steps "
        "against 1.90 for one block, though its leaky RMSNorm flatters both."),
}

# The write-up's table, exactly as TEACHING.md gives it (their numbers, not ours).
PUBLISHED = [
    ("embedding + MLP (softmax applied twice: a bug)", "33,217", "1,000", "3.94", "—"),
    ("embedding + MLP", "33,217", "1,000", "2.51", "1"),
    ("+ RMSNorm", "35,265", "1,000", "2.50", "2"),
    ("+ RoPE multi-head attention, no mask", "559,681", "1,000",
     "0.16 (leak: it reads the answer)", "3 (ours: one head)"),
    ("+ causal mask", "559,681", "1,000 / 6,000", "2.08 / 1.90", "4, 5"),
    ("+ SwiGLU", "592,706", "5,000", "1.90", "6"),
    ("Llama, 4 blocks", "2,370,246", "5,000 / 25,000", "1.55 / 1.00", "7"),
]


def rung_number(name: str) -> int:
    return LADDER.index(name) + 1


def short(name: str) -> str:
    return f"{rung_number(name)}. {RUNGS[name][0]}"


def live_runs(store, group: str | None) -> dict[str, object]:
    """The newest live run of each rung in this group."""
    if not group:
        return {}
    out = {}
    for r in store.list_runs(group=group):  # newest first
        if r.name in RUNGS and r.name not in out:
            out[r.name] = r
    return out


def rung_runs(rungs: list[str]):
    """(name, model, train) of each rung with the form's steps and seed, and at least
    four evaluations."""
    steps = int(st.session_state["ld_steps"])
    for rung in rungs:
        preset_eval = build_configs(rung)[1].eval_interval
        yield (rung, *build_configs(rung, {
            "steps": steps, "seed": int(st.session_state["ld_seed"]),
            "eval_interval": min(preset_eval, max(1, steps // 4))}))


def train_rungs(rungs: list[str]) -> None:
    """Button callback: queue these rungs in the page's group (made on first use)."""
    queue_in_group(rung_runs(rungs), "ladder", GROUP_PREFIX, "ld_error")


def chart_and_table(group: str | None, x: str, show: str, zoom: bool,
                    was_active: bool) -> None:
    store, cs = state.store(), classset.load()
    live = live_runs(store, group)
    active = [r for r in live.values() if r.status in ACTIVE]
    if was_active and not active:
        st.rerun()
    cs_runs = [r for r in cs.list_runs(group="classset-ladder") if r.name in RUNGS]
    titles = {n: short(n) for n in LADDER}
    sources = []
    if show in ("class set", "both") and cs_runs:
        sources.append((CLASS_SET, cs_runs, cs.metrics_frame([r.id for r in cs_runs])))
    if show in ("your runs", "both") and live:
        runs = list(live.values())
        sources.append((YOURS, runs, store.metrics_frame([r.id for r in runs])))
    both = show == "both" and bool(live)
    # Zoom leaves out the rung that reads the answer, so the honest ones separate.
    bands = rung_bands(sources, titles, x, left_out=LEAK_RUNG if zoom else None)
    if active:
        running = [short(r.name) for r in active if r.status == "running"]
        st.info("Training: " + (", ".join(running) or "waiting for a free slot") +
                f" ({len(active)} of your rung{'s' if len(active) != 1 else ''} still to "
                "finish). The chart fills in as they go.")
    show_chart(band_figure(bands, x, "val_loss", styles=rung_styles(titles, both),
                           empty_text="Train a rung to see its curve."),
               key="ld_chart", filename=f"ladder-val-loss-vs-{x}")
    st.caption("Class set: mean of 3 seeds with a 95% band"
               + (", dotted" if both else "") + ". Yours: one run per rung."
               + (" Rung 3 (no mask: it reads the answer) is left out." if zoom else ""))

    st.subheader("Our ladder")
    show_table(rung_table(cs_runs, live, titles))


# --- The page -----------------------------------------------------------------------

st.title("The ladder: from a character MLP to Llama")
st.markdown(
    "The *Llama from scratch* story, one modification per rung, on character-level "
    "Shakespeare with context 16, width 128 and batch 32. Each rung trains in seconds to "
    "a minute on a CPU. The class set already holds every rung on three seeds; train any "
    "rung yourself and its curve joins the chart.")

store = state.store()
cs = classset.load()
ss = st.session_state
group = st.query_params.get("ladder")
if group and not live_runs(store, group):
    st.warning(f"The link names ladder {md_literal(group, limit=40)}, which has no runs "
               "in this run store; train a rung to start a new one.")
    group = None
    del st.query_params["ladder"]

ss.setdefault("ld_steps", classset.LADDER_STEPS)
ss.setdefault("ld_seed", 0)
a, b, c, d = st.columns([3, 1, 1, 2])
rung = a.selectbox("Rung", LADDER, key="ld_rung", format_func=short)
b.number_input("Steps", min_value=10, max_value=25_000, step=50, key="ld_steps",
               help=f"The class set trained {classset.LADDER_STEPS} steps; the write-up "
                    f"1,000 to 25,000.")
c.number_input("Seed", min_value=0, max_value=10_000, key="ld_seed")
with d:
    st.button(f"Train rung {rung_number(rung)}", key="ld_train", type="primary",
              icon=":material/play_arrow:", on_click=train_rungs, args=([rung],))
    st.button("Train all 7 rungs", key="ld_train_all", icon=":material/stairs:",
              on_click=train_rungs, args=(list(LADDER),))
if ss.get("ld_error"):
    show_error(ss["ld_error"])
st.caption(f"**Rung {rung_number(rung)}: {RUNGS[rung][0]}.** {RUNGS[rung][1]} "
           f"(preset `{rung}`: {PRESETS[rung].description})")

live = live_runs(store, group)
e, f, g = st.columns([3, 3, 2])
x = e.segmented_control("x axis", ["step", "seconds", "flops"], key="ld_x", default="step",
                        required=True, format_func=lambda k: X_AXES[k][0])
show = f.segmented_control("Show", ["class set", "your runs", "both"], key="ld_show",
                           default="both", required=True)
zoom = g.toggle("Zoom: leave out rung 3", key="ld_zoom",
                help="Rung 3 reads the answer, so its loss is far below the others'; "
                     "leave it out to see the honest rungs apart.")
active = any(r.status in ACTIVE for r in live.values())
st.fragment(run_every=POLL_S if active else None)(chart_and_table)(
    group, x or "step", show or "both", zoom, active)

st.subheader("What each rung changed, and why the curve moved")
st.markdown("\n".join(f"{rung_number(n)}. **{t}.** {why}" for n, (t, why) in RUNGS.items()))

st.subheader("Their numbers: the write-up's published table")
st.caption("From bkitano/llama-from-scratch, as recorded there. Not ours, and not "
           "directly comparable: read the caveats below.")
published = pd.DataFrame(PUBLISHED, columns=["their rung", "params", "steps", "val loss",
                                             "closest rung here"])
show_table(published.set_index("their rung"))
st.markdown(
    "- **Their setup:** char-level TinyShakespeare, context 16, width 128, batch 32, "
    "Adam 1e-3, an 80/10/10 split, loss averaged over 10 batches. Ours: the built-in "
    "Shakespeare corpus with a 90/10 split, the same shape, far fewer steps.\n"
    "- **Their RMSNorm leaks.** It normalises over the whole (sequence, width) block, "
    "which lets later tokens influence earlier positions: their final 1.00 is suspect. "
    "Every rung here uses the correct per-token RMSNorm; the Pitfalls page shows the "
    "leak.\n"
    "- **0.16 without a mask is a leak:** the model reads the answer (our rung 3 does "
    "the same).\n"
    "- **Their heads are full width** (8 × 128, then projected back), hence their "
    "559,681 parameters at the attention rungs; ours split 128 dimensions between the "
    "heads, as Llama does.\n"
    "- **Their first row is a bug:** softmax applied twice.")
