"""Build & train: set every modification, see what it costs, launch, watch it learn.

The controls fill from a preset and feed llama_core.presets.build_configs; the numbers
beside them (parameters, FLOPs, shapes) come from llama_core.inspect without training
anything. Launch queues a run with the shared job manager; the run's id goes into the
URL (?run=...), so a reload or a trip to another page never loses it, and the panel
below polls the run store only while the run is active.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from charts.components import parameter_table
from charts.labels import run_label
from charts.numbers import rough_duration, si
from charts.live_loss import starting_line_figure
from charts.units import tokenizer_loss_unit, tokenizer_unit
from llama_core.config import BUGS, FFNS, NORMS, POSITIONS, ModelConfig, TrainConfig
from llama_core.corpora import UPLOAD_PREFIX, list_corpora, save_upload
from llama_core.errors import UserError
from llama_core.lab import classroom
from llama_core.lab.classroom import offered_presets
from llama_core.presets import PRESETS, build_configs
from ui import state
from ui.errors import show_error
from ui.estimates import cuda_available, run_estimate
from ui.llama_parts import SCALING_KINDS, kv_choices, kv_field, kv_label, scaling_controls, \
    scaling_dict
from ui.model_facts import corpus_vocab, module_shapes
from ui.launch_guard import launch_guard
from ui.plain_text import md_literal
from ui.run_panel import POLL_S, jump_to_run, run_panel, wait_for_first_step
from ui.settings_in_url import apply_start_parts, restore_run_settings

DEFAULT_PRESET = "tiny"
TIME_MODE_STEPS = 1_000_000  # the step cap when a run trains for a time budget

NORM_LABELS = {"rmsnorm": "RMSNorm", "layernorm": "LayerNorm", "none": "none"}
POS_LABELS = {"rope": "RoPE", "learned": "learned table", "none": "none"}
FFN_LABELS = {"swiglu": "SwiGLU", "gelu": "GELU", "relu": "ReLU"}
BUDGETS = {"steps": "a number of steps", "time": "a time budget"}
TOKENIZERS = {"char": "characters: one token each",
              "bpe512": "byte pairs: 512 tokens learned from the corpus",
              "bpe1024": "byte pairs: 1,024 tokens learned from the corpus",
              "bpe2048": "byte pairs: 2,048 tokens learned from the corpus"}

# Control key -> config field, for every control a preset fills one to one.
FIELDS = {
    "tr_norm": "norm", "tr_pos": "pos", "tr_ffn": "ffn", "tr_causal": "causal",
    "tr_attention": "attention", "tr_layers": "n_layers", "tr_heads": "n_heads",
    "tr_width": "d_model", "tr_context": "context_window", "tr_theta": "rope_theta",
    "tr_dropout": "dropout", "tr_bug": "bug", "tr_lr": "lr", "tr_min_lr": "min_lr",
    "tr_batch": "batch_size", "tr_warmup": "warmup_steps",
    "tr_eval_interval": "eval_interval", "tr_seed": "seed",
    "tr_kv_heads": "n_kv_heads", "tr_tie": "tie_embeddings", "tr_tokenizer": "tokenizer",
}
MODEL_DEFAULTS = dataclasses.asdict(ModelConfig())
TRAIN_DEFAULTS = dataclasses.asdict(TrainConfig())


# --- Corpora and devices on offer ---------------------------------------------------

@st.cache_data(show_spinner=False)
def server_corpora() -> dict[str, str]:
    return {c.name: c.description for c in list_corpora() if c.available}


def corpora() -> dict[str, str]:
    """What the corpus picker offers: the server's corpora and this session's uploads,
    as far as a classroom opens them."""
    settings = classroom.current()
    offered = server_corpora() | st.session_state.get("tr_uploads", {})
    return {k: v for k, v in offered.items() if settings is None or settings.corpus_open(k)}


def keep_upload() -> None:
    """Validate and keep an uploaded text file, then select it as the corpus."""
    upload = st.session_state.get("tr_upload")
    if upload is None:
        return
    try:
        name = save_upload(upload.getvalue(), upload.name)
    except UserError as e:
        st.session_state["tr_upload_error"] = str(e)
        return
    st.session_state.setdefault("tr_uploads", {})[name] = f"uploaded: {upload.name}"
    st.session_state["tr_corpus"] = name


def devices() -> list[str]:
    return ["cuda", "cpu"] if cuda_available() else ["cpu"]


# --- Controls -----------------------------------------------------------------------

def fill_from_preset() -> None:
    """Set every control to the chosen preset's values (a callback: runs before the
    widgets are drawn, so they show the new values)."""
    p = PRESETS[st.session_state["tr_preset"]]
    fill_controls({**p.model, **p.train})


def fill_controls(settings: dict) -> None:
    """Set every control to these config values (a preset's, or a run's on reload)."""
    values = {**MODEL_DEFAULTS, **TRAIN_DEFAULTS, **settings}
    for key, field in FIELDS.items():
        st.session_state[key] = values[field]
    st.session_state["tr_scaling"], st.session_state["tr_scaling_factor"] = \
        scaling_controls(values.get("rope_scaling"))
    if values.get("time_budget"):
        st.session_state["tr_budget"] = "time"
        st.session_state["tr_seconds"] = float(values["time_budget"])
        st.session_state["tr_steps"] = int(TRAIN_DEFAULTS["steps"])
    else:
        st.session_state["tr_budget"] = "steps"
        st.session_state["tr_steps"] = int(values["steps"])
        st.session_state.setdefault("tr_seconds", 60.0)
    device = values.get("device", "auto")
    st.session_state["tr_device"] = device if device in devices() else devices()[0]


def ensure_controls() -> None:
    offered = offered_presets()  # classroom mode may offer fewer presets
    if st.session_state.get("tr_preset") not in offered:
        st.session_state["tr_preset"] = (DEFAULT_PRESET if DEFAULT_PRESET in offered
                                         else offered[0])
    if any(k not in st.session_state for k in (*FIELDS, "tr_budget", "tr_steps",
                                               "tr_seconds", "tr_device", "tr_scaling",
                                               "tr_scaling_factor")):
        fill_from_preset()
    available = corpora()
    if st.session_state.get("tr_corpus") not in available:
        st.session_state["tr_corpus"] = next(iter(available), "shakespeare")
    if st.session_state["tr_device"] not in devices():
        st.session_state["tr_device"] = devices()[0]


KEEP = "session"  # controls keep their values when hidden or when the student leaves


def later_llama_controls() -> None:
    """Grouped-query attention, a tied head and RoPE scaling: what Llama 2, 3 and 3.2
    added. KV heads offer only the divisors of the heads (a group must be whole)."""
    ss = st.session_state
    st.markdown("**What later Llamas added**")
    heads = int(ss["tr_heads"])
    choices = kv_choices(heads)
    if ss.get("tr_kv_heads") not in choices:  # None (multi-head) or no longer a divisor
        ss["tr_kv_heads"] = choices[0]
    a, b = st.columns(2)
    a.selectbox("Key/value heads", choices, key="tr_kv_heads", persist_state=KEEP,
                format_func=lambda k: kv_label(heads, k),
                disabled=not ss["tr_attention"],
                help="Grouped-query attention (Llama 2 70B, Llama 3): several query heads "
                     "share one key/value head, so wk, wv and the KV cache shrink by "
                     "heads ÷ KV heads. 1 is multi-query attention.")
    b.toggle("Tie the output head to the embedding", key="tr_tie", persist_state=KEEP,
             help="As Llama 3.2's 1B and 3B: the head reuses the token embedding's "
                  "vocab × d matrix, so those parameters are counted once.")
    a, b = st.columns(2)
    a.selectbox("RoPE scaling", list(SCALING_KINDS), key="tr_scaling", persist_state=KEEP,
                format_func=SCALING_KINDS.get, disabled=ss["tr_pos"] != "rope",
                help="Slows the rotary frequencies to read longer contexts: linear divides "
                     "every frequency by the factor; llama3 (Llama 3.1) keeps the fast "
                     "pairs, divides the slow ones and blends between, with the context "
                     "above as its original context. The Rotary page draws both.")
    b.number_input("Scaling factor", min_value=1.0, max_value=64.0, step=1.0, format="%g",
                   key="tr_scaling_factor", persist_state=KEEP,
                   disabled=ss["tr_pos"] != "rope" or ss["tr_scaling"] == "none")


def controls() -> dict:
    """Draw every control; return the overrides for build_configs."""
    ss = st.session_state
    st.selectbox("Start from a preset", offered_presets(), key="tr_preset",
                 on_change=fill_from_preset, persist_state=KEEP,
                 help="Choosing a preset sets every control below to its values.")
    st.caption(PRESETS[ss["tr_preset"]].description)

    st.markdown("**The parts Llama changed**")
    st.segmented_control("Norm", list(NORMS), key="tr_norm", required=True,
                         format_func=NORM_LABELS.get, persist_state=KEEP)
    st.segmented_control("Positions", list(POSITIONS), key="tr_pos", required=True,
                         format_func=POS_LABELS.get, persist_state=KEEP)
    st.segmented_control("Feed-forward", list(FFNS), key="tr_ffn", required=True,
                         format_func=FFN_LABELS.get, persist_state=KEEP)
    a, b = st.columns(2)
    a.toggle("Causal mask", key="tr_causal", persist_state=KEEP,
             help="Off: every position also sees the characters after it, so the model "
                  "can read the answer.")
    b.toggle("Attention", key="tr_attention", persist_state=KEEP,
             help="Off: embedding and feed-forward only, the ladder's first rung.")

    st.markdown("**Shape**")
    a, b = st.columns(2)
    a.number_input("Layers (blocks)", min_value=1, max_value=64, step=1, key="tr_layers",
                   persist_state=KEEP)
    b.number_input("Heads", min_value=1, max_value=256, step=1, key="tr_heads",
                   persist_state=KEEP, help="Must divide the width.")
    a.number_input("Width d_model", min_value=1, max_value=8192, step=16, key="tr_width",
                   persist_state=KEEP)
    b.number_input("Context (characters)", min_value=1, max_value=8192, step=8,
                   key="tr_context", persist_state=KEEP)
    a.number_input("RoPE theta", min_value=1.0, max_value=1e7, step=1000.0, format="%g",
                   key="tr_theta", persist_state=KEEP, disabled=ss["tr_pos"] != "rope",
                   help="Base of the rotary frequencies theta^(-2i/head_dim).")
    b.number_input("Dropout", min_value=0.0, max_value=0.9, step=0.05, format="%.2f",
                   key="tr_dropout", persist_state=KEEP)
    later_llama_controls()

    st.markdown("**Training**")
    a, b = st.columns(2)
    a.number_input("Learning rate", min_value=1e-6, max_value=10.0, step=1e-4,
                   format="%g", key="tr_lr", persist_state=KEEP)
    b.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="tr_seed",
                   persist_state=KEEP,
                   help="Same seed, same training batches and starting weights: runs "
                        "that differ in one setting form a paired comparison.")
    st.radio("Train for", list(BUDGETS), key="tr_budget", horizontal=True,
             format_func=BUDGETS.get, persist_state=KEEP)
    a, b = st.columns(2)
    if ss["tr_budget"] == "steps":
        a.number_input("Steps", min_value=1, max_value=10_000_000, step=100,
                       key="tr_steps", persist_state=KEEP)
    else:
        a.number_input("Time budget (s)", min_value=1.0, max_value=7 * 24 * 3600.0,
                       step=10.0, format="%g", key="tr_seconds", persist_state=KEEP)
    b.selectbox("Device", devices(), key="tr_device", persist_state=KEEP,
                help="CUDA is offered only when this server has a GPU.")
    names = corpora()
    st.selectbox("Corpus", list(names) or ["shakespeare"], key="tr_corpus",
                 persist_state=KEEP, format_func=lambda k: names.get(k, k)
                 if k.startswith(UPLOAD_PREFIX) else k,
                 help="; ".join(f"{k}: {v}" for k, v in names.items()
                                if not k.startswith(UPLOAD_PREFIX)))
    if classroom.current() is None or classroom.current().corpus_open(UPLOAD_PREFIX):
        st.file_uploader("Or train on a text file of your own (UTF-8)", type=["txt"],
                         key="tr_upload", on_change=keep_upload)
        error = st.session_state.pop("tr_upload_error", None)
        if error:  # it names the uploaded file as the browser named it
            show_error(error)

    with st.expander("More settings"):
        a, b = st.columns(2)
        a.number_input("Batch size", min_value=1, max_value=65536, step=1, key="tr_batch",
                       persist_state=KEEP)
        b.number_input("Evaluate every (steps)", min_value=1, step=10,
                       key="tr_eval_interval", persist_state=KEEP)
        a.number_input("Final learning rate", min_value=0.0, max_value=10.0, step=1e-4,
                       format="%g", key="tr_min_lr", persist_state=KEEP,
                       help="The cosine schedule decays to this.")
        b.number_input("Warm-up steps", min_value=0, step=10, key="tr_warmup",
                       persist_state=KEEP)
        options = list(TOKENIZERS) + [t for t in [ss["tr_tokenizer"]] if t not in TOKENIZERS]
        st.selectbox("Tokens", options, key="tr_tokenizer", persist_state=KEEP,
                     format_func=lambda k: TOKENIZERS.get(k, k),
                     help="What one prediction is: a character, or a byte-pair token (a "
                          "frequent word or word part, as real Llama checkpoints use). "
                          "Losses per token then differ in unit: compare such runs in bits "
                          "per character on Compare.")
        st.selectbox("Classic bug, on purpose", list(BUGS), key="tr_bug",
                     format_func=lambda k: f"{k}: {BUGS[k]}" if k != "none" else "no bug",
                     persist_state=KEEP,
                     help="Build one of the write-ups' mistakes, labelled as a bug, to "
                          "see its signature.")
        st.text_input("Run name (optional)", key="tr_name", max_chars=200,
                      persist_state=KEEP, placeholder="e.g. layernorm instead of rmsnorm")

    overrides = {field: ss[key] for key, field in FIELDS.items()}
    overrides["n_kv_heads"] = kv_field(ss["tr_heads"], ss["tr_kv_heads"])
    overrides["rope_scaling"] = scaling_dict(ss["tr_scaling"], ss["tr_scaling_factor"],
                                             ss["tr_context"]) if ss["tr_pos"] == "rope" else None
    overrides["device"] = ss["tr_device"]
    overrides["corpus"] = ss["tr_corpus"]
    if ss["tr_budget"] == "steps":
        overrides.update(steps=int(ss["tr_steps"]), time_budget=None)
    else:
        overrides.update(steps=TIME_MODE_STEPS, time_budget=float(ss["tr_seconds"]))
    return overrides


# --- What the controls build --------------------------------------------------------

def model_facts(model: ModelConfig, train: TrainConfig) -> None:
    table = parameter_table(model)
    total = int(table.loc[table["part"] == "total", "parameters"].iloc[0])
    fwd = float(table.loc[table["part"] == "total", "forward FLOPs per token"].iloc[0])
    a, b, c = st.columns(3)
    a.metric("Parameters", f"{total:,}")
    b.metric("FLOPs per token", si(3 * fwd),
             help=f"Training FLOPs per token. Forward {si(fwd)}; the backward pass "
                  "costs about twice the forward, so training ≈ 3 × forward.")
    guess = run_estimate(model, train)
    queue = (f" It includes {rough_duration(guess['queue_s'])} waiting for a training "
             "slot behind the runs ahead." if guess["queue_s"] else "")
    c.metric("Estimated time", rough_duration(guess["seconds"]),
             help=f"From Launch to the end, evaluations included, at "
                  f"{guess['tokens_per_s']:,.0f} tokens/s ({guess['basis']}).{queue}")
    shown = table.drop(columns=["part"])
    shown["forward FLOPs per token"] = [
        "—" if f is None or f != f else si(f) for f in table["forward FLOPs per token"]]
    st.dataframe(
        shown, hide_index=True, key="param_table",
        column_config={
            "component": st.column_config.TextColumn("part", width="medium"),
            "parameters": st.column_config.NumberColumn("parameters", format="localized",
                                                        width="small"),
            "share": st.column_config.ProgressColumn("share", format="percent",
                                                     min_value=0.0, max_value=1.0,
                                                     width="small"),
            "forward FLOPs per token": st.column_config.TextColumn(
                "FLOPs/token", width="small",
                help="Forward FLOPs per token (a multiply-add is 2); — for element-wise "
                     "parts, which the count leaves out."),
        })
    st.caption(f"Vocabulary V = {model.vocab_size} {tokenizer_unit(train.tokenizer)} "
               f"({md_literal(train.corpus)}), width "
               f"d = {model.d_model}, context T = {model.context_window}, "
               f"L = {model.n_layers} layers. Embedding and output head are V·d each; "
               "attention q,k,v,o are 4·d² per layer; its scores cost 4·T·d FLOPs per "
               "token per layer and grow with the context. FLOPs count matrix multiplies; "
               "norms, rotations and softmax are element-wise and left out (a few percent).")
    with st.expander("Check the dimensions: every module's input and output shape for "
                     f"one batch (B = {train.batch_size}, T = {model.context_window})"):
        shapes = module_shapes(dataclasses.asdict(model), int(train.batch_size))
        st.dataframe(shapes, hide_index=True, key="shapes_table", height=420,
                     column_order=["name", "input shape", "output shape", "params", "note",
                                   "type"],
                     column_config={"params": st.column_config.NumberColumn(
                         "parameters", format="localized")})
        st.caption("Shapes are (batch B, positions T, features): d inside the blocks, the "
                   "feed-forward's hidden size inside it, the vocabulary at the output. "
                   "Computed on PyTorch's meta device: "
                   "exact shapes, no weights, no arithmetic.")


def launch(model: ModelConfig, train: TrainConfig) -> None:
    """Launch's callback: queue the run and put it in the URL before the page reruns, so
    the one rerun the click causes draws the run panel, above the builder, with its
    chart on screen (a submit inside the page would need a second rerun), and hold that
    rerun until the run's first step is stored, so the chart opens with its first point.
    A refusal is kept for the page to show under the button."""
    name = (st.session_state.get("tr_name") or "").strip() or None
    try:
        run_id = state.job_manager().submit(model, train, name=name,
                                            owner=state.owner_id())
    except UserError as e:
        st.session_state["tr_launch_refused"] = str(e)
        return
    st.session_state["tr_run"] = run_id
    st.session_state["tr_jump"] = True
    st.query_params["run"] = run_id
    wait_for_first_step(run_id)


# --- The current run ----------------------------------------------------------------

def your_run(run_id: str) -> None:
    """The run in the URL, live (a fragment redrawn twice a second) while active."""
    st.subheader("Your run", anchor="your-run")
    if st.session_state.pop("tr_jump", False):
        jump_to_run()
    try:
        active = state.store().get_run(run_id).active
    except UserError:
        active = False
    st.fragment(run_every=POLL_S if active else None)(run_panel)(run_id, active)
    if st.button("Hide this run", key="tr_hide", type="tertiary"):
        st.session_state.pop("tr_run", None)
        st.query_params.pop("run", None)
        st.rerun()
    st.divider()




# --- The page -----------------------------------------------------------------------

st.title("Build & train")

# Start the shared job manager now (once per server), so its warm training process is
# ready by the time the first Launch is pressed.
state.job_manager()

# The run lives in the URL; the session remembers it for a trip to another page.
url_run = st.query_params.get("run")
if url_run:
    st.session_state["tr_run"] = url_run
elif st.session_state.get("tr_run"):
    st.query_params["run"] = st.session_state["tr_run"]
    url_run = st.session_state["tr_run"]

# The run being watched sits above the builder, so after Launch its live chart is on
# screen without scrolling, even on a 1280 x 720 projector.
if url_run:
    your_run(url_run)
st.markdown("Set each part, watch what it costs, launch a short run and see it learn. "
            "Loss is in **nats per token** (a token is one character unless you pick "
            "byte pairs): ln(vocabulary) is blind guessing, ≈ 4.1 for Shakespeare's "
            "characters.")
restore_run_settings(url_run, fill_controls)
ensure_controls()
apply_start_parts()
left, right = st.columns([4, 5], gap="large")
with left:
    st.subheader("Build")
    overrides = controls()

model_cfg = train_cfg = None
with right:
    st.subheader("What you are building")
    try:
        overrides["vocab_size"] = corpus_vocab(st.session_state["tr_corpus"],
                                               st.session_state["tr_tokenizer"])
        model_cfg, train_cfg = build_configs(st.session_state["tr_preset"], overrides)
    except UserError as e:
        show_error(e)
    if model_cfg is not None:
        state.warm_corpus(train_cfg.corpus, train_cfg.tokenizer)
        model_facts(model_cfg, train_cfg)

with left:
    blocked = launch_guard(model_cfg, train_cfg) if model_cfg is not None else \
        "Fix the setting named in red first."
    st.button("Launch", key="tr_launch", type="primary", icon=":material/play_arrow:",
              disabled=blocked is not None, width="stretch", help=blocked,
              on_click=launch, args=(model_cfg, train_cfg))
    refused = st.session_state.pop("tr_launch_refused", None)
    if refused:
        show_error(refused)

if not url_run:
    st.divider()
    st.subheader("Your run", anchor="your-run")
    mine = state.store().list_runs(owner=state.owner_id(), limit=5)
    if not mine:
        st.info("No run yet: press **Launch** to train the model you built.")
    else:
        st.info("No run shown. Press **Launch** for a new one, or open one of yours:")
        for run in mine:
            st.page_link("views/train.py", label=md_literal(run_label(run)),
                         query_params={"run": run.id}, icon=":material/history:")
    if model_cfg is not None:
        steps = None if train_cfg.time_budget else train_cfg.steps
        st.plotly_chart(starting_line_figure(model_cfg.vocab_size, steps,
                                             tokenizer_loss_unit(train_cfg.tokenizer)),
                        key="tr_start_line", width="stretch",
                        config={"displayModeBar": False})
