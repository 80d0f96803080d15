"""Pitfalls: the classic bugs of "Llama from scratch" code, switched on on purpose.

Every pitfall of llama_core.pitfalls.PITFALLS is labelled as a bug, with the story
that registry tells. Its toggle builds a small fresh model with the bug on or off and
runs the probes that show it (llama_core.probes), so the signature appears and
disappears at once; a training comparison (bug against the correct model, same seed)
comes from the class set, or from live runs trained here, whose checkpoints are probed
too. The chosen pitfall is in the URL (?bug=mask_ones), the live group too
(?pitgroup=...).
"""

from __future__ import annotations

import dataclasses
import json

import plotly.express as px
import streamlit as st

from llama_core.lab import classset
from llama_core import inspect as lc_inspect
from llama_core.lab.sweeps import BASELINE, new_group_id, summarize, variant_label
from llama_core.config import ModelConfig
from llama_core.presets import build_configs
from llama_core.corpora import SHAKESPEARE_CHARS
from llama_core.data import CharTokenizer
from llama_core.errors import UserError
from llama_core.model import Llama
from llama_core.pitfalls import PITFALLS, Pitfall
from llama_core.probes import (PROBES, probe_dropout_at_eval, probe_mask_ones,
                               probe_rope_off_by_one)
from llama_core.lab.store import ACTIVE, COMPLETED
from charts.bands import band_figure, seed_bands, seed_curves
from charts.verdicts import summary_display, summary_frame
from ui import state
from ui.checkpoints import checkpoint_file, load_run
from ui.errors import show_error
from ui.figures import show_chart, show_table
from ui.plain_text import md_literal

POLL_S = 1.0
GROUP_PREFIX = "pf-"
PROMPT = "To be, or not to"  # 16 characters: fills the probe model's context


# --- Probes on small fresh models ---------------------------------------------------

@st.cache_resource(show_spinner=False)
def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_text("".join(sorted(SHAKESPEARE_CHARS)))


def probe_config(changes: dict) -> ModelConfig:
    """A small Llama (2 layers, 64 wide, 4 heads, context 16) with ``changes``."""
    return ModelConfig(vocab_size=tokenizer().vocab_size, context_window=16, d_model=64,
                       n_layers=2, n_heads=4, **changes)


@st.cache_resource(show_spinner=False, max_entries=32)
def fresh_model(changes_json: str) -> Llama:
    """Built with seed 0 and never trained: instant, and a probe does not need more."""
    return Llama(probe_config(json.loads(changes_json)), seed=0).eval()


def model_with(changes: dict) -> Llama:
    return fresh_model(json.dumps(changes, sort_keys=True))


def show_probe(result: dict, name: str, where: str) -> None:
    value = result["value"]
    shown = "—" if value != value else f"{value:.3g}"
    if not result["applicable"]:
        st.info(f"**{name}** does not apply to {where}: {result['explanation']}")
    elif result["fired"]:
        st.error(f"**Probe `{name}` FIRED** on {where} (value {shown}). "
                 f"{result['explanation']}", icon=":material/bug_report:")
    else:
        st.success(f"**Probe `{name}` silent** on {where} (value {shown}). "
                   f"{result['explanation']}", icon=":material/check_circle:")


def attention_picture(p: Pitfall, on: bool) -> None:
    """Layer 0, head 0: where the weight above the diagonal shows."""
    model = model_with(p.on if on else p.correct)
    maps = lc_inspect.attention_maps(model, tokenizer(), PROMPT)
    a = maps[0][0]
    fig = px.imshow(a, color_continuous_scale="Blues", zmin=0, zmax=float(a.max()),
                    labels=dict(x="key position", y="query position", color="weight"))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10),
                      title=f"layer 0, head 0 ({'bug on' if on else 'correct'}): "
                            f"{lc_inspect.future_attention_mass(maps).max():.1%} "
                            "of attention above the diagonal")
    show_chart(fig, key="pf_attention", filename=f"attention-{p.name}-{on}")


def frequency_table(p: Pitfall, on: bool) -> None:
    """The first rotary pairs' frequencies, the formula's or the bug's."""
    cfg = probe_config(p.on if on else p.correct)
    table = lc_inspect.rope_frequency_table(cfg.head_dim, cfg.rope_theta,
                                            off_by_one=on).head(4)
    st.dataframe(table.rename(columns={"freq_rad_per_pos": "radians per position",
                                       "wavelength_positions": "wavelength (positions)"}),
                 hide_index=True, key="pf_freqs", column_config={
                     "radians per position": st.column_config.NumberColumn(format="%.4f"),
                     "wavelength (positions)": st.column_config.NumberColumn(
                         format="%.2f")})
    st.caption(f"Head size {cfg.head_dim}: pair 0 should turn exactly 1 rad per position "
               "(theta^0) and every other pair slower.")


def two_generations(p: Pitfall, on: bool) -> None:
    """Two greedy generations: identical unless dropout is still active."""
    from llama_core.generate import generate_text
    model = model_with(p.on if on else p.correct)
    texts = [generate_text(model, tokenizer(), "\n", 40, temperature=0.0, seed=s)
             for s in (0, 0)]
    st.markdown("Two greedy generations (temperature 0, no sampling, same seed) from "
                "the same model and prompt:")
    st.code("\n".join(repr(t) for t in texts), language=None)
    st.caption("identical: dropout is off at generation" if texts[0] == texts[1] else
               "different: dropout is still active at generation")


# The picture that goes with some probes, drawn below their verdicts.
PICTURES = {probe_mask_ones: attention_picture, probe_rope_off_by_one: frequency_table,
            probe_dropout_at_eval: two_generations}


# --- Training comparisons -----------------------------------------------------------

def labels(p: Pitfall) -> tuple[str, str, tuple[str, ...]]:
    """The run names of its trained comparison: the bug, the correct model, extra lines
    (as the class set's sweep names them)."""
    return (variant_label(p.on), variant_label(p.correct),
            tuple(variant_label(c) for c in p.compare_with))


def comparison_runs(src, group: str, key: str, seed: int | None = None) -> list:
    bug, correct, extra = labels(PITFALLS[key])
    wanted = (bug, correct, *extra)
    runs = [r for r in src.list_runs(group=group, oldest_first=True) if r.name in wanted
            and (seed is None or r.seed == seed)]
    return runs


def as_paired(runs: list, key: str) -> list:
    """Runs renamed so the correct model reads as the baseline and the bug first."""
    bug, correct, _ = labels(PITFALLS[key])
    names = {correct: f"correct ({correct})" if correct != BASELINE else BASELINE,
             bug: f"BUG: {bug}"}
    out = [dataclasses.replace(r, name=BASELINE if r.name == correct else
                               names.get(r.name, r.name)) for r in runs]
    return out


def comparison(src, group: str, key: str, where: str, was_active: bool = False) -> None:
    runs = comparison_runs(src, group, key)
    if was_active and not any(r.status in ACTIVE for r in runs):
        st.rerun()
    if not runs:
        st.info(f"No {where} runs for this pitfall yet.")
        return
    paired = as_paired(runs, key)
    curves = seed_curves(paired, src.metrics_frame([r.id for r in runs]))
    styles = {n: {"dash": "dash"} for n in curves["variant"].unique()
              if n.startswith("BUG")}
    styles[BASELINE] = {"name": "correct model"}
    left, right = st.columns(2)
    for col, metric in ((left, "train_loss"), (right, "val_loss")):
        with col:
            bands = seed_bands(curves, "step", metric)
            show_chart(band_figure(bands, "step", metric, styles=styles, height=380,
                                   empty_text="The first evaluations appear soon."),
                       key=f"pf_{where}_{metric}", filename=f"pitfall-{key}-{metric}")
    rows = summarize(paired)
    if rows:
        table = summary_frame(rows, paired).drop(columns=["Δ parameters",
                                                          "tokens/s"])
        table["variant"] = table["variant"].replace({BASELINE: "correct model"})
        show_table(summary_display(table))
    samples = st.columns(len({r.name for r in paired}))
    shown = {}
    for r, p in zip(runs, paired):
        if p.name not in shown:
            shown[p.name] = r
    for col, (name, r) in zip(samples, shown.items()):
        s = src.samples(r.id)
        with col:
            st.markdown(f"**{'correct model' if name == BASELINE else name}**, seed "
                        f"{r.seed}, last sample")
            st.code(s[-1]["text"] if s else "(no sample yet)", language=None,
                    wrap_lines=True)


def train_live(key: str) -> None:
    """Button callback: queue the bug and the correct model (same seed) in the live
    group, with the class set's pitfall settings."""
    ss = st.session_state
    p = PITFALLS[key]
    bug, correct, extra = labels(p)
    group = st.query_params.get("pitgroup") or new_group_id().replace("sw-", GROUP_PREFIX)
    seed = int(ss.get("pf_seed", 0))
    base = {**classset.PITFALL_BASE, "seed": seed}
    existing = {(r.name, r.seed) for r in state.store().list_runs(group=group)}
    manager = state.job_manager()
    try:
        for label, changes in ((correct, p.correct), (bug, p.on),
                               *zip(extra, p.compare_with)):
            if (label, seed) in existing:
                continue
            model, train = build_configs(classset.ABLATION_PRESET, {**base, **changes})
            manager.submit(model, train, name=label, group=group, owner=state.owner_id())
    except UserError as e:
        ss["pf_error"] = str(e)
        return
    ss.pop("pf_error", None)
    st.query_params["pitgroup"] = group


def probe_trained(runs: list, key: str) -> None:
    """The probe on each finished live run that kept a checkpoint."""
    probe = PITFALLS[key].probes[0]
    for r in runs:
        if r.status not in COMPLETED or checkpoint_file(r) is None:
            continue
        try:
            model, _, _ = load_run(r)  # the server's one checkpoint cache
        except UserError as e:  # a damaged checkpoint: one sentence, not a traceback
            show_error(str(e))
            continue
        show_probe(PROBES[probe](model), probe,
                   f"the trained run {r.id} ({md_literal(r.name)}, seed {r.seed})")


# --- The page -----------------------------------------------------------------------

st.title("Pitfalls: classic bugs, switched on on purpose")
# An info framing, not a red banner: nothing here has failed, the bugs are the lesson.
st.info("**These are deliberate bugs, switched on on purpose.** Each one appears in real "
        "'Llama from scratch' code; Llama Lab builds it here so you can see its "
        "signature, then switch it off. Nothing is broken: the rest of the dashboard "
        "uses the correct code.", icon=":material/science:")

FIRST = next(iter(PITFALLS))


def _pick_bug() -> None:
    st.query_params["bug"] = st.session_state["pf_bug"] or FIRST


# The pitfall's key (not its title) in the URL: ?bug=mask_ones
wanted = st.query_params.get("bug")
if wanted in PITFALLS:
    st.session_state["pf_bug"] = wanted
elif st.session_state.get("pf_bug") not in PITFALLS:
    st.session_state["pf_bug"] = FIRST
key = st.segmented_control("Which bug", list(PITFALLS), key="pf_bug", required=True,
                           on_change=_pick_bug,
                           format_func=lambda k: PITFALLS[k].title)
key = key or FIRST
if st.query_params.get("bug") != key:
    st.query_params["bug"] = key
p = PITFALLS[key]

with st.container(border=True):
    st.subheader(f":material/bug_report: BUG: {p.title}")
    st.markdown(f"{p.what}\n\n**Signature:** {p.signature}")
    on = st.toggle("Bug switched ON", value=True, key=f"pf_on_{key}",
                   help="Off: the correct model. The probe runs on a small freshly built "
                        "model (2 layers, 64 wide, context 16) either way.")
    model = model_with(p.on if on else p.correct)
    fresh = "a fresh model with the bug ON" if on else "a fresh correct model"
    for i, probe in enumerate(p.probes):
        show_probe(PROBES[probe](model), probe, fresh if i == 0 else "the same model")
    for probe in p.probes:
        picture = PICTURES.get(PROBES[probe])
        if picture:
            picture(p, on)

st.subheader("Trained: the bug against the correct model, same seed")
cs = classset.load()
if "classset-pitfalls" in cs.groups():
    st.caption(f"Class set ({classset.SECTIONS['pitfalls'].description}) Mean of the "
               "seeds with a 95% band; dashed: the bug.")
    comparison(cs, "classset-pitfalls", key, "classset")
else:
    st.info(f"The class set is missing; regenerate it with `{classset.COMMAND}`.")

st.subheader("Train it yourself")
a, b = st.columns([1, 3])
a.number_input("Seed", min_value=0, max_value=10_000, key="pf_seed")
b.button("Train the bug and the correct model live", key="pf_train", type="primary",
         icon=":material/play_arrow:", on_click=train_live, args=(key,),
         help="Queues both with the class set's settings ('tiny' with context 8, 600 "
              "steps) and the same seed; their checkpoints are probed when they finish.")
if st.session_state.get("pf_error"):
    show_error(st.session_state["pf_error"])
group = st.query_params.get("pitgroup")
if group:
    store = state.store()
    live = comparison_runs(store, group, key)
    active = any(r.status in ACTIVE for r in live)

    def live_part(was_active: bool) -> None:
        comparison(store, group, key, "live", was_active)

    st.fragment(run_every=POLL_S if active else None)(live_part)(active)
    probe_trained(live, key)
