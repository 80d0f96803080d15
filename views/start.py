"""Start: what Llama changed from the original Transformer, on one picture of a block.

The four controls redraw the block with the part each dashboard toggle swaps, so a
student sees where a toggle acts before training anything.
"""

from pathlib import Path

import streamlit as st

from charts.block_diagram import block_diagram
from charts.generations import generations_table
from llama_core.real_models import real_models_frame
from ui.figures import show_table
from ui.settings_in_url import start_params

APP_ROOT = Path(__file__).resolve().parents[1]

NORMS = {"rmsnorm": "RMSNorm", "layernorm": "LayerNorm", "none": "none"}
POSITIONS = {"rope": "RoPE on q, k", "learned": "learned table", "none": "none"}
FFNS = {"swiglu": "SwiGLU", "gelu": "GELU", "relu": "ReLU"}
MASKS = {True: "causal", False: "off"}
ATTENTION_KINDS = {"multi-head": "multi-head", "grouped-query": "grouped-query",
                   "multi-query": "multi-query"}


def start_first_run() -> None:
    """Hook for the one-click first run; until it exists, go to Build & train."""
    if (APP_ROOT / "views" / "train.py").exists():
        st.switch_page("views/train.py")
    st.info("The Build & train page is not here yet: this button will start a tiny "
            "first run once it is.")


st.title("Llama Lab")
st.markdown("Build Llama one modification at a time, train it on Shakespeare, "
            "and watch what each change does.")

if st.button("Train your first model", key="start_first_run", type="primary",
             icon=":material/play_arrow:"):
    start_first_run()

text, picture = st.columns([1, 1], gap="large")

with text:
    st.subheader("What Llama changed from the original Transformer")
    st.markdown(
        "**1. RMSNorm, before each sub-layer.** The 2017 Transformer applied LayerNorm "
        "*after* each residual addition. Llama normalises the *input* of attention and of "
        "the feed-forward instead (`h = x + attn(norm(x))`, `out = h + ffn(norm(h))`), "
        "plus one final norm before the output head. Its RMSNorm divides each token's "
        "vector by its root mean square and multiplies by a learned weight: no mean "
        "subtraction, no bias.\n\n"
        "**2. Rotary position embeddings (RoPE).** The 2017 Transformer added fixed "
        "sine/cosine vectors to the token embeddings. Llama adds nothing there: inside "
        "every head it rotates queries and keys pair by pair, pair *i* at position *m* by "
        "the angle $m\\,\\theta^{-2i/d_{head}}$ ($\\theta$ = 10000 by default, $d_{head}$ "
        "the head width). The score of query $m$ and key $n$ then depends only on $m - n$: "
        "relative position, with no extra parameters.\n\n"
        "**3. SwiGLU feed-forward.** The 2017 Transformer used two matrices with a ReLU "
        "between them and a hidden size of 4d. Llama uses `w2(silu(w1 x) * w3 x)`: three "
        "matrices with hidden size about 2/3 · 4d, so it costs about the same parameters."
    )
    st.markdown(
        "The **causal mask** is not new (every decoder has one): position *m* may only "
        "attend to positions up to *m*. Turn it off here and the model reads the answer: "
        "training loss falls towards zero and the samples are garbage."
    )
    st.subheader("Swap a part, watch the block change")
    st.caption("Each toggle has a colour, shared by its boxes in the picture. "
               "Dashed boxes are parts switched off.")
    norm = st.segmented_control("Norm (blue)", list(NORMS), format_func=NORMS.get,
                                default="rmsnorm", required=True, key="start_norm")
    pos = st.segmented_control("Positions (green)", list(POSITIONS),
                               format_func=POSITIONS.get, default="rope", required=True,
                               key="start_pos")
    ffn = st.segmented_control("Feed-forward (orange)", list(FFNS), format_func=FFNS.get,
                               default="swiglu", required=True, key="start_ffn")
    causal = st.segmented_control("Causal mask (purple)", list(MASKS),
                                  format_func=MASKS.get, default=True, required=True,
                                  key="start_mask")
    attention = st.segmented_control(
        "Attention (pink when keys and values are shared)", list(ATTENTION_KINDS),
        default="multi-head", required=True, key="start_attention",
        help="Multi-head: every query head has its own key and value head (Llama 1, "
             "Llama 2 7B). Grouped-query: a group of query heads shares one (Llama 2 70B, "
             "Llama 3). Multi-query: all share one.")
    if (norm, pos, ffn, causal) == ("rmsnorm", "rope", "swiglu", True):
        st.success("This is Llama's block" + (
            "." if attention == "multi-head" else
            f", with {attention} attention as in Llama 3." if attention == "grouped-query"
            else ", with multi-query attention (one key/value head, Shazeer 2019)."))
    else:
        st.warning("A variant, not Llama's block: train both to compare them.")
    st.page_link("views/train.py", label="Train this block on Build & train",
                 icon=":material/model_training:",
                 query_params=start_params(norm, pos, ffn, causal))

with picture:
    st.graphviz_chart(block_diagram(norm, pos, ffn, causal, attention), width="stretch")

st.subheader("The Llama generations")
st.markdown(
    "What changed after the first Llama, in the released models' own numbers: Llama 2 "
    "doubled the context and gave its 70B grouped-query attention; Llama 3 took "
    "grouped-query attention to every size, a 128k-token vocabulary and RoPE theta "
    "500,000; Llama 3.2's small models tie the output head to the embedding and reach "
    "131,072 positions with RoPE scaling. The presets `llama-1`, `llama-2`, `llama-3` "
    "and `llama-3.2` on Build & train copy these choices at classroom size.")
real = real_models_frame()
show_table(generations_table(real).drop(columns=["source"]))
st.caption("Context and vocabulary in tokens (sub-word pieces, not characters); width is "
           "d_model. Sources: " + "; ".join(f"{n}: {s}" for n, s in zip(real["name"],
                                                                        real["source"])) + ".")
