"""Inference: what the KV cache buys when a trained model writes, what it costs in
memory (a trained run beside the real Llamas), and what grouped-query and multi-query
attention save against multi-head, from runs in the store. The measurements are
llama_core's (cache_speed, memory, real_models); this file lays them out."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from charts.inference import RUN_SOURCE, cache_memory_figure, cache_memory_frame, \
    kinds_figure, speed_figure
from charts.labels import short_label
from charts.units import one, token_unit_of
from llama_core.cache_speed import cache_speed, most_new_tokens
from llama_core.config import model_from_dict, train_from_dict
from llama_core.errors import UserError
from llama_core.memory import cache_bytes_per_token, human_bytes
from llama_core.real_models import real_models_frame
from ui.checkpoints import NO_RUNS, checkpoint_file, inspectable_runs, load_run, torch_turn
from ui.errors import show_error, user_errors
from ui.figures import show_chart
from llama_core.prompts import check_prompt
from ui.llama_parts import attention_kind, kind_variants
from ui.plain_text import md_literal
from ui.run_pickers import pick_trained_run
from ui.sweep_actions import queue_in_group

REAL_SHAPES = ["Llama 2 7B", "Llama 2 70B", "Llama 3 8B", "Llama 3 70B"]
KINDS_PARAM, KINDS_PREFIX, KINDS_ERROR = "kinds", "kv-", "inf_kinds_error"
# Settings that change how a run is trained, not what it learns from: ignored when
# looking for the same shape with another attention kind.
NOT_COMPARED = {"device", "threads", "compile"}
SPEED_PROMPT = "\n"
KINDS_TOKENS = 32  # generated per attention kind for its decode speed: quick, past prefill


@st.cache_data(max_entries=32, show_spinner=False)
def measured(path: str, mtime_ns: int, run_id: str, prompt: str, new_tokens: int,
             repeats: int, attempt: int):
    """cache_speed for a run's checkpoint, once per (checkpoint, settings, attempt):
    ``attempt`` grows when a student asks to measure again."""
    run = next(r for r in inspectable_runs() if r.id == run_id)
    model, tokenizer, _ = load_run(run)
    with torch_turn():
        return cache_speed(model, tokenizer.encode(prompt), new_tokens, repeats)


def measure(run, prompt: str, new_tokens: int, repeats: int = 3):
    path = checkpoint_file(run)
    if path is None:
        raise UserError(f"Run {run.id} has no checkpoint any more (deleted?); pick another.")
    return measured(str(path), path.stat().st_mtime_ns, run.id, prompt, new_tokens,
                    repeats, st.session_state.get("inf_attempt", 0))


def same_shape(run, other) -> bool:
    """Whether ``other`` is ``run`` with only its key/value heads changed (and how it
    ran: device, threads)."""
    a = {k: v for k, v in run.model_config.items() if k != "n_kv_heads"}
    b = {k: v for k, v in other.model_config.items() if k != "n_kv_heads"}
    ta = {k: v for k, v in run.train_config.items() if k not in NOT_COMPARED}
    tb = {k: v for k, v in other.train_config.items() if k not in NOT_COMPARED}
    return a == b and ta == tb


def missing_variants(run, missing: dict[str, int | None]):
    """(name, model, train) for each attention kind not yet trained at this shape and
    seed: the same config and seed, only n_kv_heads changed, so the runs are paired."""
    model = model_from_dict(run.model_config)
    train = train_from_dict(run.train_config)
    for kind, kv in missing.items():
        heads = model.n_heads if kv is None else kv
        yield (f"{kind} ({heads} KV heads)", dataclasses.replace(model, n_kv_heads=kv), train)


# --- The page -----------------------------------------------------------------------

st.title("Inference: the KV cache and grouped-query attention")
st.markdown(
    "A model writes one token at a time, and each new token attends to every token "
    "before it. Without a cache the model reruns the whole text at every step. With a "
    "**KV cache** it reads the prompt once (the *prefill*), keeps every layer's keys and "
    "values, and each later step (a *decode* step) computes only the new token's. The "
    "cache costs memory for every token kept: **2 (keys and values) · layers · KV heads · "
    "head size · bytes per value**. Grouped-query attention shrinks it by letting several "
    "query heads share one key/value head.")

runs = inspectable_runs()
if not runs:
    st.info(NO_RUNS)
    st.stop()
run, model, tokenizer = pick_trained_run(runs, key="inf_run", label="Trained run",
                                         none_picked="Pick a run to measure its generation.")
cfg = model.cfg
unit = token_unit_of(run)  # "characters", or "tokens" for a byte-pair run
kind = attention_kind(cfg.n_heads, cfg.n_kv_heads) if cfg.attention else "no attention"
st.caption(f"{md_literal(short_label(run))}: {cfg.n_layers} layers, {cfg.n_heads} query "
           f"heads, {cfg.kv_heads} key/value heads ({kind}), head size {cfg.head_dim}, "
           f"context {cfg.context_window} {unit}.")

# 1. Speed --------------------------------------------------------------------------
st.subheader("1. Generation with and without the cache")
why = model.why_no_cache() if cfg.attention else (
    "This model has no attention layers (attention=false), so there are no keys and "
    "values to cache.")
if why:
    st.info(f"No cache for this run: {md_literal(why)} Pick another run for this section.")
else:
    a, b = st.columns([2, 3])
    prompt = a.text_input("Prompt", value="ROMEO:", key="inf_prompt", max_chars=200)
    speed = None
    with user_errors():
        check_prompt(tokenizer, prompt)
        room = most_new_tokens(model, len(tokenizer.encode(prompt)))
        if room < 2:
            raise UserError(f"The prompt leaves {room} position(s) of the context window "
                            f"({cfg.context_window}); use a shorter prompt.")
        new_tokens = b.slider(f"Tokens to generate ({unit})", 2, room, room,
                              key="inf_tokens",
                              help="Up to the end of the context window: past it every "
                                   "step reruns the whole window, cache or not.")
        with st.spinner("Generating both ways, three times each…"):
            speed = measure(run, prompt, int(new_tokens))
    if speed is not None:
        show_chart(speed_figure(speed.steps, speed.parts, short_label(run), unit),
                   key="inf_speed", filename="generation-speed")
        parts = speed.parts.set_index("cached")
        last = speed.steps.groupby("cached")["tokens_per_s"].last()
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("With the cache", f"{last[True]:,.0f} tokens/s",
                  help="Generated tokens per second, prefill included.")
        m2.metric("Without a cache", f"{last[False]:,.0f} tokens/s")
        m3.metric("Speed-up at this length", f"{speed.speedup():.1f}×")
        m4.metric("Prefill, with the cache", f"{parts.loc[True, 'prefill_s'] * 1000:,.1f} ms",
                  help="Reading the prompt and drawing the first token.")
        text = tokenizer.decode(speed.ids[True])
        if speed.same_ids:
            st.success(f"Both ways wrote the same text, {one(unit)} for {one(unit)}: "
                       f"“{md_literal(text)}”")
        else:
            st.warning(f"The two ways wrote different text (cached: "
                       f"“{md_literal(text)}”, uncached: "
                       f"“{md_literal(tokenizer.decode(speed.ids[False]))}”): the cache "
                       "is not giving this model's logits.")
        st.caption(
            f"Greedy decoding (always the most likely {one(unit)}), one sequence, on this "
            f"server's CPU with one torch thread; each point is the fastest of three "
            f"tries. Without a cache step n reruns all {len(tokenizer.encode(prompt))} + n "
            f"{unit}, so its speed falls as the text grows; with the cache each decode "
            f"step reads one {one(unit)}. "
            f"Decode: {parts.loc[True, 'decode_tokens_per_s']:,.0f} tokens/s "
            f"with the cache, {parts.loc[False, 'decode_tokens_per_s']:,.0f} without.")
        if st.button("Measure again", key="inf_again", icon=":material/refresh:"):
            st.session_state["inf_attempt"] = st.session_state.get("inf_attempt", 0) + 1
            st.rerun()

# 2. Memory -------------------------------------------------------------------------
st.subheader("2. Cache memory per token")
real = real_models_frame(bytes_per_value=2)
run_rows = []
if cfg.attention:
    for bytes_per_value, dtype in ((4, "float32, as Llama Lab runs"), (2, "16-bit")):
        run_rows.append({
            "model": f"{short_label(run)} ({dtype})", "layers": cfg.n_layers,
            "KV heads": cfg.kv_heads, "query heads": cfg.n_heads, "head size": cfg.head_dim,
            "bytes per value": bytes_per_value,
            "cache_bytes_per_token": cache_bytes_per_token(cfg.n_layers, cfg.kv_heads,
                                                           cfg.head_dim, bytes_per_value),
            "context": cfg.context_window, "source": RUN_SOURCE})
frame = cache_memory_frame(run_rows, real, REAL_SHAPES)
show_chart(cache_memory_figure(frame), key="inf_memory", filename="kv-cache-per-token")
shown = frame[["model", "layers", "query heads", "KV heads", "head size", "bytes per value",
               "KiB per token"]].copy()
shown["full context"] = [human_bytes(b) for b in frame["full context bytes"]]
st.dataframe(shown, hide_index=True, key="inf_memory_table", column_config={
    "KiB per token": st.column_config.NumberColumn("KiB per token", format="%.2f",
                                                   help="Per token of one sequence."),
    "full context": st.column_config.TextColumn(
        "one full context", help="Per token × the context the model was released (or "
                                 "trained) for, one sequence.")})
sources = "; ".join(f"{n}: {s}" for n, s in zip(real["name"], real["source"])
                    if n in REAL_SHAPES)
st.caption(
    "KiB = 1,024 bytes. The real models at 16 bits per value (bf16, as they are served); "
    "the table also gives one full context of one sequence (a batch of 8 holds 8 times "
    "that). Llama 2 70B's 80 layers need less cache per token than Llama 2 7B's 32: "
    "it has 8 key/value heads for 64 query heads, 7B one per query head. "
    f"Sources: {md_literal(sources)}.")

# 3. Attention kinds ----------------------------------------------------------------
st.subheader("3. Multi-head, grouped-query and multi-query, side by side")
if not cfg.attention or cfg.n_heads < 2:
    st.info("This run has fewer than two heads (or no attention): there are no key/value "
            "heads to share. Pick a run with several heads.")
    st.stop()
variants = kind_variants(cfg.n_heads)
store_runs = [r for r in inspectable_runs() if same_shape(run, r)]
found: dict[str, list] = {k: [] for k in variants}
for r in store_runs:
    k = attention_kind(cfg.n_heads, r.model_config.get("n_kv_heads"))
    if k in found and r.seed == run.seed:
        found[k].append(r)
missing = {k: kv for k, kv in variants.items() if not found[k]}

rows = []
for kind_name, kv in variants.items():
    heads = cfg.n_heads if kv is None else kv
    trained = found[kind_name]
    row = {"kind": kind_name, "KV heads": heads, "runs": len(trained),
           "val_loss": float("nan"), "cache_kib": cache_bytes_per_token(
               cfg.n_layers, heads, cfg.head_dim, 4) / 1024,
           "decode_tokens_per_s": float("nan")}
    if trained:
        first = trained[0]
        losses = [r.final_val_loss for r in trained if r.final_val_loss is not None]
        row["val_loss"] = sum(losses) / len(losses) if losses else float("nan")
        try:
            s = measure(first, SPEED_PROMPT, min(KINDS_TOKENS, most_new_tokens(
                model, len(SPEED_PROMPT))), repeats=2)
            row["decode_tokens_per_s"] = float(s.parts.set_index("cached").loc[
                True, "decode_tokens_per_s"])
        except UserError:
            pass
    rows.append(row)
table = pd.DataFrame(rows)
show_chart(kinds_figure(table), key="inf_kinds", filename="attention-kinds")
st.dataframe(table.rename(columns={"val_loss": "final validation loss (nats/char)",
                                   "cache_kib": "cache (KiB/token, float32)",
                                   "decode_tokens_per_s": "decode (tokens/s, cached)"}),
             hide_index=True, key="inf_kinds_table")
st.caption(f"Runs in the store with this run's shape and training settings and seed "
           f"{run.seed}, differing only in their key/value heads (paired: same batches, "
           "same starting values in every shared weight). Speeds are measured here, with "
           f"the cache, generating up to {KINDS_TOKENS} characters. One seed is not an "
           "experiment: train more seeds on the Ablations page before drawing a "
           "conclusion about loss.")
error = st.session_state.pop(KINDS_ERROR, None)
if error:
    show_error(error)
if missing:
    names = ", ".join(missing)
    st.button(f"Train the missing variants ({names})", key="inf_train_kinds",
              type="primary", icon=":material/play_arrow:",
              on_click=queue_in_group,
              args=(list(missing_variants(run, missing)), KINDS_PARAM, KINDS_PREFIX,
                    KINDS_ERROR),
              help="Queues them through the job manager with this run's settings and "
                   "seed; they appear here when they finish.")
    st.caption(f"Not trained yet at this shape and seed: {names}.")
else:
    st.caption("Every attention kind is trained at this shape and seed.")
