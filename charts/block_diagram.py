"""One Llama block as a Graphviz picture, redrawn as the Start page's toggles swap its
parts: each toggle's boxes share its colour, and a switched-off part is a dashed box."""

from __future__ import annotations

# One colour per toggle, reused in the controls' labels and the diagram.
COLOURS = {"norm": "#cfe0ff", "pos": "#c9f0d6", "ffn": "#ffe0b8", "mask": "#ead9ff",
           "kv": "#ffd6dc"}
# The q, k, v box for each attention kind (charts never compute: the page names the kind).
QKV_LABELS = {
    "multi-head": "q, k, v projections\\n(split into heads)",
    "grouped-query": "q, k, v projections\\ngrouped-query: fewer k, v heads,\\n"
                     "each shared by a group of q heads",
    "multi-query": "q, k, v projections\\nmulti-query: one k, v head\\n"
                   "shared by every q head",
}


def _node(name: str, label: str, toggle: str | None = None, off: bool = False) -> str:
    """A box; a toggle's box is filled with its colour, a switched-off part is dashed."""
    style = ["rounded", "filled"] + (["dashed"] if off else [])
    fill = COLOURS[toggle] if toggle else "#ffffff"
    colour = "#8a8f98" if off else "#30343b"
    return (f'{name} [label="{label}", style="{",".join(style)}", fillcolor="{fill}", '
            f'color="{colour}", fontcolor="{colour if off else "#111418"}"];')


def block_diagram(norm: str, pos: str, ffn: str, causal: bool,
                  attention: str = "multi-head") -> str:
    """Graphviz source for embeddings, one block and the head, as the toggles set them;
    ``attention`` is the kind (multi-head, grouped-query, multi-query)."""
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
        _node("qkv", QKV_LABELS[attention], "kv" if attention != "multi-head" else None),
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
