"""Start: what Llama changed from the original Transformer, on one picture of a block.

The four controls redraw the block with the part each dashboard toggle swaps, so a
student sees where a toggle acts before training anything.
"""

from pathlib import Path

import streamlit as st

APP_ROOT = Path(__file__).resolve().parents[1]

# One colour per toggle, reused in the controls' labels and the diagram.
COLOURS = {"norm": "#cfe0ff", "pos": "#c9f0d6", "ffn": "#ffe0b8", "mask": "#ead9ff"}
NORMS = {"rmsnorm": "RMSNorm", "layernorm": "LayerNorm", "none": "none"}
POSITIONS = {"rope": "RoPE on q, k", "learned": "learned table", "none": "none"}
FFNS = {"swiglu": "SwiGLU", "gelu": "GELU", "relu": "ReLU"}
MASKS = {True: "causal", False: "off"}


def _node(name: str, label: str, toggle: str | None = None, off: bool = False) -> str:
    """A box; a toggle's box is filled with its colour, a switched-off part is dashed."""
    style = ["rounded", "filled"] + (["dashed"] if off else [])
    fill = COLOURS[toggle] if toggle else "#ffffff"
    colour = "#8a8f98" if off else "#30343b"
    return (f'{name} [label="{label}", style="{",".join(style)}", fillcolor="{fill}", '
            f'color="{colour}", fontcolor="{colour if off else "#111418"}"];')


def block_diagram(norm: str, pos: str, ffn: str, causal: bool) -> str:
    """Graphviz source for embeddings, one block and the head, as the toggles set them."""
    norm_label = {"rmsnorm": "RMSNorm\\n(per token, no mean)",
                  "layernorm": "LayerNorm\\n(mean and variance)",
                  "none": "no norm"}[norm]
    ffn_label = {"swiglu": "SwiGLU feed-forward\\nw2(silu(w1 x) * w3 x)\\nhidden ≈ 8d/3",
                 "gelu": "GELU feed-forward\\nw2(gelu(w1 x))\\nhidden 4d",
                 "relu": "ReLU feed-forward\\nw2(relu(w1 x))\\nhidden 4d"}[ffn]
    lines = [
        "digraph llama {",
        'rankdir=TB; nodesep=0.35; ranksep=0.28; bgcolor="transparent";',
        'node [shape=box, fontname="Helvetica", fontsize=12, margin="0.12,0.05", group=main];',
        'edge [color="#30343b", arrowsize=0.7];',
        _node("tokens", "token ids (B, T)"),
        _node("embed", "token embedding\\n(vocab × d)"),
        _node("learned", "+ learned position\\ntable (T × d)" if pos == "learned"
              else "no position\\ntable added", "pos", off=pos != "learned"),
        'subgraph cluster_block { label="one block, × n_layers"; labelloc=t; '
        'labeljust=r; fontname="Helvetica"; fontsize=14; style="rounded,dashed"; '
        'color="#8a8f98";',
        'xin [shape=point, width=0.08, xlabel="x "];',
        _node("norm1", norm_label, "norm", off=norm == "none"),
        _node("qkv", "q, k, v projections\\n(split into heads)"),
        _node("rope", "RoPE: rotate q and k\\nby position" if pos == "rope"
              else "q, k not rotated", "pos", off=pos != "rope"),
        _node("scores", "scores =\\nq kᵀ / √head_dim"),
        _node("mask", "causal mask: −inf\\nabove the diagonal" if causal
              else "no mask: every token\\nsees the future", "mask", off=not causal),
        _node("attn", "softmax, weights × v,\\noutput projection"),
        'add1 [label="+", shape=circle, width=0.35, fixedsize=true];',
        'hmid [shape=point, width=0.08, xlabel="h "];',
        _node("norm2", norm_label, "norm", off=norm == "none"),
        _node("ffn", ffn_label, "ffn"),
        'add2 [label="+", shape=circle, width=0.35, fixedsize=true];',
        # Residual paths as a rail on the right: its corner points share a rank with
        # the node they join, so the rail runs straight down beside the block.
        'node [shape=point, width=0.01, label="", group=rail];',
        'edge [style=dashed, dir=none];',
        "{rank=same; xin -> r0;} {rank=same; add1 -> r1 [dir=back];}",
        "{rank=same; hmid -> r2;} {rank=same; add2 -> r3 [dir=back];}",
        'r0 -> r1 [label=" residual"]; r2 -> r3 [label=" residual"];',
        "}",
        'edge [style=solid, dir=forward];',
        'node [shape=box, width=0.75, group=main];',
        _node("normf", "final " + norm_label, "norm", off=norm == "none"),
        _node("head", "output head\\n(d × vocab) → logits"),
        "tokens -> embed -> learned -> xin -> norm1 -> qkv -> rope -> scores -> mask -> attn "
        "-> add1 -> hmid -> norm2 -> ffn -> add2 -> normf -> head;",
        "}",
    ]
    return "\n".join(lines)


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
    if (norm, pos, ffn, causal) == ("rmsnorm", "rope", "swiglu", True):
        st.success("This is Llama's block.")
    else:
        st.warning("A variant, not Llama's block: train both to compare them.")

with picture:
    st.graphviz_chart(block_diagram(norm, pos, ffn, causal), width="stretch")
