"""Ablations: a full Llama against variants that each change one thing, over K seeds,
paired, with honest error bars.

A new ablation is planned by llama_core.lab.sweeps.plan_sweep and queued with
submit_plan under one group id, which goes into the URL (?group=...) so a reload or a
shared link shows the same sweep. The class set's prepared sweeps (data/classset/) are
offered beside live ones, so a class sees results before training anything. Results
poll the run store only while runs are active.
"""

from __future__ import annotations

import dataclasses
import time

import streamlit as st

from charts.bands import band_figure, seed_bands, seed_curves, variant_order
from charts.components import components_frame, config_of, params_figure
from charts.health import (HEALTH, depth_profile_figure, depth_summary, health_frame,
                           health_over_steps_figure)
from charts.palette import METRICS, X_AXES
from charts.records import records_frame
from charts.verdicts import leaks, summary_display, summary_frame
from llama_core import inspect as lc_inspect
from llama_core.corpora import check_offered
from llama_core.errors import UserError
from llama_core.lab import classset
from llama_core.lab.store import ACTIVE, TERMINAL
from llama_core.lab.sweeps import BASELINE, parse_variant, plan_sweep, submit_plan, summarize
from llama_core.presets import PRESETS, build_configs
from ui import state
from ui.errors import show_error, user_errors
from ui.estimates import sweep_seconds
from ui.figures import show_chart, show_table
from ui.model_facts import corpus_vocab
from ui.plain_text import md_literal
from ui.sweep_actions import export_buttons, resubmit

DEFAULT_PRESET = "tiny"
DEFAULT_VARIANTS = ("norm=layernorm", "ffn=gelu")
DEFAULT_SEEDS = 2
POLL_S = 1.0
LADDER_PREFIX = "ld-"
CLASSSET_GROUPS = ("classset-ablation", "classset-health", "classset-pitfalls")
AXES = ["step", "seconds", "flops", "tokens"]  # per step first, then per cost


def llama_presets() -> list[str]:
    """Presets whose model is a full Llama (RMSNorm, RoPE, SwiGLU, causal)."""
    out = []
    for name in PRESETS:
        m, _ = build_configs(name)
        if (m.norm, m.pos, m.ffn, m.causal, m.attention, m.bug) == (
                "rmsnorm", "rope", "swiglu", True, True, "none"):
            out.append(name)
    return out


def base_overrides(ss) -> dict:
    """Steps from the form, and at least four evaluations per run, so even a short run
    draws a curve with a band."""
    steps = int(ss["ab_steps"])
    _, preset_train = build_configs(ss["ab_preset"])
    base = {"steps": steps, "time_budget": None,
            "eval_interval": min(preset_train.eval_interval, max(1, steps // 4))}
    if ss.get("ab_match"):
        base["ffn_multiple_of"] = 1
    return base


def chosen_variants(ss) -> list[dict]:
    presets = classset.variants_for(ss["ab_preset"])
    out = [presets[k] for k in ss.get("ab_variants", []) if k in presets]
    for line in (ss.get("ab_custom") or "").splitlines():
        if line.strip():
            out.append(parse_variant(line))
    return out


def current_plan(ss):
    return plan_sweep(ss["ab_preset"], base_overrides(ss), chosen_variants(ss),
                      list(range(int(ss["ab_seeds"]))))


def start_ablation() -> None:
    """Button callback: plan, queue under one group, put the group in the URL."""
    ss = st.session_state
    try:
        plan = current_plan(ss)
        group, _ = submit_plan(state.job_manager(), plan, owner=state.owner_id())
    except UserError as e:
        ss["ab_error"] = str(e)
        return
    ss.pop("ab_error", None)
    st.query_params["group"] = group
    ss["ab_source"] = group


def reset_preset() -> None:
    ss = st.session_state
    _, t = build_configs(ss["ab_preset"])
    ss["ab_steps"] = 200 if t.time_budget else int(t.steps)
    options = classset.variants_for(ss["ab_preset"])
    ss["ab_variants"] = [v for v in ss.get("ab_variants", []) if v in options]


def new_ablation_form(cs) -> None:
    ss = st.session_state
    presets = llama_presets()
    if ss.get("ab_preset") not in presets:
        ss["ab_preset"] = DEFAULT_PRESET if DEFAULT_PRESET in presets else presets[0]
        reset_preset()
        ss["ab_variants"] = [v for v in DEFAULT_VARIANTS
                             if v in classset.variants_for(ss["ab_preset"])]
    ss.setdefault("ab_seeds", DEFAULT_SEEDS)
    a, b, c = st.columns([2, 1, 1])
    a.selectbox("Baseline: a full Llama from this preset", presets, key="ab_preset",
                on_change=reset_preset,
                format_func=lambda p: f"{p}: {PRESETS[p].description}")
    b.number_input("Steps per run", min_value=10, max_value=100_000, step=50,
                   key="ab_steps")
    c.number_input("Seeds (K)", min_value=1, max_value=10, key="ab_seeds",
                   help="Each variant and the baseline train once per seed 0..K-1. Seed s "
                        "gives every run the same batches and the same initial values in "
                        "every weight they share: the runs are paired.")
    options = classset.variants_for(ss["ab_preset"])
    st.multiselect("Variants: each changes one thing from the baseline", list(options),
                   key="ab_variants")
    st.text_area("Custom variants, one per line (key=value, several per line allowed)",
                 key="ab_custom", height=80,
                 placeholder="rope_theta=500\nd_model=96 n_heads=4")
    st.checkbox("Match feed-forward parameters (SwiGLU at ⌊8d/3⌋ hidden units)",
                key="ab_match",
                help="SwiGLU's hidden size is 2/3 · 4d rounded up to a multiple of 32, so "
                     "its three matrices usually hold a little more than a 4d GELU's two. "
                     "This sets ffn_multiple_of=1 for every run: SwiGLU's hidden size is "
                     "then ⌊8d/3⌋ and the feed-forwards differ by under 1%.")
    try:
        plan = current_plan(ss)
    except UserError as e:  # it may quote a custom variant line as typed
        show_error(e)
        return
    labels = list(dict.fromkeys(p.label for p in plan))
    try:
        vocab = corpus_vocab(plan[0].train.corpus)
        for p in plan[1:]:  # a variant may name its own corpus: each one is checked
            check_offered(p.train.corpus)
    except UserError as e:
        show_error(e)
        return
    configs = {p.label: dataclasses.replace(p.model, vocab_size=vocab) for p in plan}
    params = {k: lc_inspect.param_formula(c)["total"] for k, c in configs.items()}
    base = params.get(BASELINE)
    est = sweep_seconds(plan, cs)
    st.caption(f"{len(plan)} runs: {len(labels)} variants (baseline included) × "
               f"{int(ss['ab_seeds'])} seeds. Parameters: "
               + ", ".join(f"{md_literal(k)} {v:,}" + ("" if k == BASELINE or base is None
                                           else f" ({v - base:+,})")
                           for k, v in params.items())
               + (f". Rough time on this machine's CPU: about {est / 60:.1f} min."
                  if est else "."))
    if int(ss["ab_seeds"]) < 2:
        st.warning("With one seed there is no error bar: the verdict will say so. "
                   "Use 3 or more seeds for an honest comparison.")
    st.button("Start the ablation", key="ab_start", type="primary",
              icon=":material/play_arrow:", on_click=start_ablation)
    if ss.get("ab_error"):
        show_error(ss["ab_error"])


def live_groups(store) -> dict[str, list]:
    """Groups in the run store (newest first) with their runs, ladder groups left out."""
    groups: dict[str, list] = {}
    for r in store.list_runs():
        if r.group and not r.group.startswith(LADDER_PREFIX):
            groups.setdefault(r.group, []).append(r)
    return groups


def source_labels(options: list[str], live: dict, cs) -> dict[str, str]:
    """Each group's label in the picker, made unique. Streamlit finds a selectbox's
    value by its label, so labels must never repeat (two sweeps of the same variants
    started in the same minute) nor change while a sweep runs (no live counts here),
    or the page jumps to another sweep."""
    labels: dict[str, str] = {}
    for group in options:
        label = source_label(group, live, cs)
        n = 2
        while label in labels.values():
            label, n = f"{source_label(group, live, cs)} ({n})", n + 1
        labels[group] = label
    return labels


def source_label(group: str, live: dict, cs) -> str:
    """A sweep as a student finds it in the list: what it compares (its variants) and
    when it started, not its id."""
    if group in live:
        runs = sorted(live[group], key=lambda r: r.created)
        names = list(dict.fromkeys(str(r.name) for r in runs))
        others = [n for n in names if n != BASELINE]
        what = ", ".join(others) or ", ".join(names)
        what = what if len(what) <= 60 else what[:59] + "…"
        if BASELINE in names and others:
            what += " vs baseline"
        when = time.strftime("%d %b %H:%M", time.localtime(runs[0].created))
        return f"{what} · {len(runs)} run{'s' if len(runs) != 1 else ''} · started {when}"
    section = classset.GROUPS.get(group)
    return f"Class set: {section.title if section else group}"


def results(group: str, x: str, metric: str, show_seeds: bool, zoom: bool,
            was_active: bool) -> None:
    """Progress, the band chart and the verdict table (polled while runs are active)."""
    src = source(group)
    runs = src.list_runs(group=group, oldest_first=True)
    active = [r for r in runs if r.status in ACTIVE]
    if was_active and not active:
        st.rerun()
    done = sum(r.status in TERMINAL for r in runs)
    if active:
        running = sum(r.status == "running" for r in runs)
        st.progress(done / len(runs), text=f"{done} of {len(runs)} runs done · {running} "
                                           f"training · {len(active) - running} waiting")
    metrics = src.metrics_frame([r.id for r in runs])
    shown = [r for r in runs if not (zoom and leaks(r))]
    curves = seed_curves(shown, metrics)
    bands = seed_bands(curves, x, metric)
    show_chart(band_figure(bands, x, metric, curves if show_seeds else None,
                                 empty_text="The first evaluations appear here soon."),
                  key="ab_chart", filename=f"ablation-{group}-{metric}-vs-{x}")
    left_out = sorted({r.name for r in runs if r not in shown})
    st.caption("Lines: mean over seeds. Shaded: 95% confidence band of that mean "
               "(Student t over seeds). Dotted: each seed, when shown."
               + (f" Left out (they see the future): {md_literal(', '.join(left_out))}."
                  if left_out else ""))

    st.subheader("Verdicts: final validation loss, paired by seed")
    rows = summarize(runs)
    if not rows:
        st.info("No run has finished yet: the table fills in as they do.")
    else:
        show_table(summary_display(summary_frame(rows, runs)))
        st.caption(
            "Losses in nats per character. Δ is variant minus baseline on the same seed "
            "(same batches, same starting weights), averaged over seeds; negative is better. **better** / **worse**: "
            "the paired 95% interval excludes zero. **within seed noise**: it includes "
            "zero, so these seeds show no difference. A difference can be real and "
            "still too small for K seeds to show.")
    failed = [r for r in runs if r.status in ("failed", "interrupted", "diverged")]
    for r in failed:
        st.warning(f"{r.id} ({md_literal(r.name)}, seed {r.seed}) {r.status}: "
                   f"{md_literal(r.error)}")


def compute_tab(runs) -> None:
    configs = {}
    for r in runs:
        cfg = config_of(r.model_config)
        if cfg is not None and r.name not in configs:  # stored as trained: its vocabulary
            configs[r.name] = cfg
    configs = {k: configs[k] for k in variant_order(configs)}
    if not configs:
        st.info("No valid configs in this group.")
        return
    st.markdown("Parameters and **forward FLOPs per token** by component, from "
                "`llama_core.inspect` (a multiply-add is 2 FLOPs; training costs about 3 × "
                "forward). Switch the chart's x axis to *seconds* or *FLOPs* above: a "
                "variant can be better per step and worse per second.")
    st.dataframe(components_frame(configs), hide_index=True, key="ab_components",
                 column_config={k: st.column_config.NumberColumn(format="localized")
                                for k in configs})
    show_chart(params_figure(configs), key="ab_params", filename="parameters")
    if "ffn=gelu" in configs or "ffn=relu" in configs:
        base = configs.get(BASELINE)
        if base is not None:
            sw = lc_inspect.param_formula(base)["feed_forward"]
            other = next(lc_inspect.param_formula(configs[k])["feed_forward"]
                         for k in ("ffn=gelu", "ffn=relu") if k in configs)
            st.caption(f"Feed-forward parameters: SwiGLU {sw:,} (hidden "
                       f"{base.ffn_hidden}) vs 4d GELU/ReLU {other:,} "
                       f"({(sw - other) / other:+.1%}). Tick *Match feed-forward "
                       f"parameters* when starting an ablation to bring SwiGLU to "
                       f"⌊8d/3⌋ hidden units.")


def health_tab(src, runs, group: str) -> None:
    metrics = src.metrics_frame([r.id for r in runs])
    health = health_frame(runs, metrics)
    if health.empty:
        st.info("These runs have no per-layer records yet.")
        return
    labels = variant_order(health["variant"])
    default = labels[:2]
    if "norm=none" in labels and BASELINE in labels:
        default = [BASELINE, "norm=none"]
    chosen = st.multiselect("Variants", labels, default=default, key=f"ab_health_{group}")
    if not chosen:
        return
    h = health[health["variant"].isin(chosen)]
    st.markdown("**At the end of training, layer by layer** (geometric mean over seeds, "
                "95% band). Pre-norm RMSNorm hands every sub-layer an input of unit scale "
                "whatever the residual stream holds, so the stream can grow gently and "
                "gradients reach every layer at a steady size. Without a norm each layer "
                "adds to a stream whose scale compounds with depth, and the lower layers "
                "see only what trickles back through all the ones above.")
    show_chart(depth_profile_figure(h), key="ab_depth", filename="health-by-layer")
    summary = depth_summary(h)
    st.dataframe(summary, hide_index=True, key="ab_depth_summary", column_config={
        c: st.column_config.NumberColumn(format="%.3g") for c in summary.columns[2:]})
    st.caption("Measured from these runs: growth is the last layer's residual RMS over "
               "the first's; gradient norms at the first evaluation and at the end.")
    key = st.segmented_control("Over training", list(HEALTH), key="ab_health_key",
                               default="grad_norm", required=True,
                               format_func=lambda k: HEALTH[k])
    show_chart(health_over_steps_figure(h, chosen, key or "grad_norm"),
                  key="ab_health_steps", filename=f"health-{key}-over-steps")
    st.caption("Gradient norm: of each layer's weights on the last training batch before "
               "the evaluation (before clipping). Residual RMS: root mean square of the "
               "residual stream after the layer, on that batch.")


def records_tab(src, runs, group: str) -> None:
    st.markdown("Everything a run needs to be reproduced: configs, seed, code version, "
                "torch version, device, threads and the corpus's sha256.")
    st.dataframe(records_frame(runs), hide_index=True, key="ab_records",
                 column_config={"final val loss": st.column_config.NumberColumn(
                     format="%.4f")})
    export_buttons(src, runs, stem=group, key="ab_export")
    st.caption("Charts: the camera icon at the top right of each chart saves it as a PNG.")
    a, b = st.columns([1, 2])
    if a.button("Re-run this whole ablation", key="ab_rerun_all",
                icon=":material/replay:",
                help="Queue the same configs and seeds again as a new live group."):
        with user_errors():
            new, _ = resubmit(runs, owner=state.owner_id())
            st.query_params["group"] = new
            st.rerun()
    with b:
        pick = st.selectbox("A single record", [r.id for r in runs], key="ab_rerun_pick",
                            format_func=lambda i: next(f"{r.id} · {r.name} · seed {r.seed}"
                                                       for r in runs if r.id == i))
        if st.button("Re-run this record", key="ab_rerun_one", icon=":material/replay:"):
            with user_errors():
                new, _ = resubmit([r for r in runs if r.id == pick],
                                     owner=state.owner_id())
                st.query_params["group"] = new
                st.rerun()


def stop_group(ids: list[str]) -> None:
    for run_id in ids:
        try:
            state.stop_run(run_id)
        except UserError:
            pass  # finished or deleted meanwhile


# --- The page -----------------------------------------------------------------------

st.title("Ablations")
st.markdown(
    "Take away or swap **one** Llama modification at a time and train each version on "
    "several seeds. Seed *s* gives every version the same batches and the same starting "
    "values in every weight they share, so the difference on seed *s* is the change "
    "itself plus training noise, and the spread of those paired differences is the "
    "honest error bar. One seed is not an experiment.")

store = state.store()
cs = classset.load()
live = live_groups(store)


def source(group: str):
    return store if group in live or not group.startswith("classset-") else cs


with st.expander("Run a new ablation", expanded=not live):
    new_ablation_form(cs)

options = list(live) + [g for g in CLASSSET_GROUPS if g in cs.groups()]
requested = st.query_params.get("group")
if requested and requested not in options:
    st.warning(f"The link names sweep {md_literal(requested, limit=40)}, which is neither "
               "in this run store nor in the class set; showing another.")
    requested = None
ss = st.session_state
if requested:
    ss["ab_source"] = requested
elif ss.get("ab_source") not in options:
    ss["ab_source"] = options[0] if options else None
if not options:
    st.info("No results yet: start an ablation above. (The class set in data/classset/ "
            f"is missing; regenerate it with `{classset.COMMAND}`.)")
    st.stop()


def _pick_source() -> None:
    st.query_params["group"] = st.session_state["ab_source"]


labels = source_labels(options, live, cs)
group = st.selectbox("Results to show", options, key="ab_source", on_change=_pick_source,
                     format_func=labels.get)
if st.query_params.get("group") != group:
    st.query_params["group"] = group
src = source(group)
runs = src.list_runs(group=group, oldest_first=True)
if group.startswith("classset-"):
    section = classset.GROUPS.get(group)
    st.caption(f"Class set, trained ahead of time on the CPU by `{classset.COMMAND}`: "
               f"{section.description if section else ''} "
               "Re-run any record live under *Records & export*.")

a, b = st.columns([3, 2])  # wide enough for every option's name at 1280 px
x = a.segmented_control("x axis", AXES, key="ab_x", default="step",
                        required=True, format_func=lambda k: X_AXES[k][0])
# The losses every run of a sweep is scored in (its variants share one tokenizer).
metric = b.segmented_control("Loss", ["val_loss", "train_loss"], key="ab_metric",
                             default="val_loss", required=True,
                             format_func=lambda k: METRICS[k].split()[0])
c, z, d = st.columns([2, 2, 3])
show_seeds = c.toggle("Show each seed", key="ab_seeds_shown")
zoom = z.toggle("Hide leaks", key="ab_zoom",
                help="Variants that can see the future (no causal mask, a leaking bug) "
                     "score far below the rest; leave them out to see the others apart.")
active_ids = [r.id for r in runs if r.status in ACTIVE]
if active_ids and all(state.may_control(r) for r in runs if r.status in ACTIVE):
    d.button("Stop this ablation", key="ab_stop", icon=":material/stop:",
             on_click=stop_group, args=(active_ids,))

st.fragment(run_every=POLL_S if active_ids else None)(results)(
    group, x or "step", metric or "val_loss", show_seeds, zoom, bool(active_ids))

compute, health, records = st.tabs(["Parameters & compute", "Gradient & activation health",
                                    "Records & export"])
with compute:
    compute_tab(runs)
with health:
    health_tab(src, runs, group)
with records:
    records_tab(src, runs, group)
