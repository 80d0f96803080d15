"""Generate: continue a prompt with one or more trained runs side by side (same prompt,
same seed), and see the next-character probabilities behind every step. More than two
runs go two to a row, so that each chart stays wide enough to read at 1280 px."""

import streamlit as st

from charts.generation import step_figure
from charts.labels import describe, short_label
from charts.units import one, shared_unit, token_unit_of
from ui.checkpoints import NO_RUNS, checkpoint_file, inspectable_runs, load_run, torch_turn
from ui.errors import each_run, require
from ui.figures import grid
from llama_core.generation_steps import generate_with_probs
from ui.plain_text import md_literal
from ui.run_pickers import pick_runs

MAX_RUNS = 4


@st.cache_data(max_entries=64, show_spinner=False)
def generate(path: str, mtime_ns: int, run_id: str, prompt: str, length: int,
             temperature: float, top_k: int | None, seed: int, top: int):
    """Generated text and per-step probabilities, computed once per (checkpoint,
    settings); ``path`` and ``mtime_ns`` key the cache, ``run_id`` finds the model."""
    run = next(r for r in inspectable_runs() if r.id == run_id)
    model, tokenizer, _ = load_run(run)
    with torch_turn():
        return generate_with_probs(model, tokenizer, prompt, length, temperature, top_k,
                                   seed, top)


st.title("Generate")
intro = st.empty()  # written once the runs, and so the unit of a token, are known

runs = inspectable_runs()
if not runs:
    st.info(NO_RUNS)
    st.stop()

chosen = pick_runs(runs, key="generate_runs", max_runs=MAX_RUNS, default_count=2,
                   label=f"Runs (up to {MAX_RUNS}, side by side)")
unit = shared_unit(chosen)  # "characters", or "tokens" when a byte-pair run is chosen
intro.markdown(f"Each run continues the same prompt with the same random seed, one "
               f"{one(unit)} at a time: at every step the model gives a probability to "
               f"each possible next {one(unit)}, and one is drawn from them.")
prompt = st.text_input("Prompt", value="ROMEO:", key="generate_prompt")
c1, c2, c3, c4 = st.columns(4)
temperature = c1.slider("Temperature", 0.0, 2.0, 0.8, 0.05, key="generate_temperature",
                        help="Divides the logits before the softmax: below 1 sharpens the "
                             "distribution, above 1 flattens it, 0 always takes the most "
                             f"likely {one(unit)}.")
top_k = c2.number_input("Top-k (0 = off)", 0, 100, 0, key="generate_top_k",
                        help=f"Keep only the k most likely {unit} before drawing.")
seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="generate_seed",
                       help="The same seed draws the same text.")
length = c4.slider(f"{unit.capitalize()} to generate", 10, 400, 100, 10,
                   key="generate_length")
top_k = int(top_k) or None
bars = min(top_k, 15) if top_k else 10

require(chosen, "Pick a run above to generate text.")
require(prompt, "Type a prompt for the models to continue.")


def generated_by(run):
    path = checkpoint_file(run)
    return generate(str(path), path.stat().st_mtime_ns, run.id, prompt, int(length),
                    float(temperature), top_k, int(seed), bars)


outputs = each_run(chosen, generated_by)

for col, run in zip(grid(len(chosen)), chosen):
    with col:
        st.subheader(md_literal(short_label(run)))
        loss = f", validation loss {run.final_val_loss:.3f} nats" if (
            run.final_val_loss is not None) else ""
        if run.id not in outputs:
            st.caption("No text: see the message above.")
            continue
        model, tokenizer, _ = load_run(run)
        cfg = model.cfg
        st.caption(describe(cfg) + loss)
        text, _ = outputs[run.id]
        if len(tokenizer.encode(prompt)) > cfg.context_window:
            st.caption(f"It reads only the last {cfg.context_window} {token_unit_of(run)} "
                       "of the prompt (its context window).")
        st.code(prompt + text, language=None, wrap_lines=True)

if outputs:
    st.subheader("What the model was choosing from, step by step")
    step = st.slider(f"Generated {one(unit)} number", 1, int(length), 1,
                     key="generate_step")
    kind = ("after temperature " + f"{temperature:g}" + (f" and top-{top_k}" if top_k
            else "") if temperature > 0 else "temperature 0: the most likely is always "
            "taken")
    st.caption(f"Bars: the {bars} most likely next {unit} and the probability the "
               f"sampler drew from ({kind}); orange is the {one(unit)} drawn. ␣ is a space, "
               f"⏎ a new line.")
    for i, (col, run) in enumerate(zip(grid(len(chosen)), chosen)):
        if run.id not in outputs:
            continue
        text, table = outputs[run.id]
        with col:
            st.plotly_chart(step_figure(short_label(run), prompt, text, table, step),
                            key=f"generate_bars_{i}", width="stretch")
