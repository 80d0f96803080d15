"""The classic pitfalls of "Llama from scratch" code, in one registry.

A pitfall is written down once, here: what it breaks, what config it needs, the probes
that show its signature, what the class set trains to compare it with the correct model,
and the story the Pitfalls page tells. Everything else derives from ``PITFALLS``: the
bug names ``ModelConfig.bug`` accepts and their checks (config.py), the class set's
pitfall runs (lab/classset.py), the Pitfalls page, and what other pages say about a
run's bug. So adding a bug is one entry here plus, in model.py, the one buggy class
``BUG_SWAPS`` names.

No torch, and nothing from the library but errors.py: config validation reads this
module, so it must stay cheap and below everything. Probes are named, not imported
(their functions are in ``probes.PROBES``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import ConfigError

NO_BUG = "none"  # ModelConfig.bug of a correct model


@dataclass(frozen=True)
class Needs:
    """What a model must have for a bug to be built into it: ``test`` takes a
    ModelConfig, ``text`` ends the sentence that refuses one without it."""

    text: str
    test: Callable[[Any], bool]


# Both RoPE bugs live in the rotation, which only attention with pos=rope has.
ROTARY = Needs("attention with pos=rope", lambda cfg: cfg.attention and cfg.pos == "rope")


@dataclass(frozen=True)
class Pitfall:
    """One classic mistake.

    ``name`` is its key (``?bug=NAME`` on the Pitfalls page). A ``built_in`` pitfall is
    switched on by ``ModelConfig.bug = name``, which model.BUG_SWAPS turns into a buggy
    class, and ``needs`` says which models it can be built into; the others are
    switched on by plain settings (``switch``, such as causal=false). ``probes`` names
    the probes (probes.PROBES) whose firing is its signature, its own first. ``correct``
    is the model it is compared with (a change to the baseline, such as dropout 0.1 for
    dropout_at_eval) and ``compare_with`` more lines for its trained comparison.
    ``breaks`` is one line for menus; ``title``, ``what`` and ``signature`` are the story
    the Pitfalls page tells; ``shift_note`` says why it moves layer-0 attention logits
    when a prompt moves along the context (the Rotary page), if it does. ``class_set``
    False: the class set trains no comparison for it (a model trained from scratch with
    it learns exactly as well; its harm is to weights trained for the other layout).
    """

    name: str
    title: str
    breaks: str
    probes: tuple[str, ...]
    what: str
    signature: str
    needs: Needs | None = None
    built_in: bool = True
    switch: Mapping[str, Any] = field(default_factory=dict)
    correct: Mapping[str, Any] = field(default_factory=dict)
    compare_with: tuple[Mapping[str, Any], ...] = ()
    shift_note: str = ""
    class_set: bool = True

    @property
    def on(self) -> dict:
        """The settings of the model with the pitfall: the correct model's, switched on."""
        return {**self.correct, **({"bug": self.name} if self.built_in else {}),
                **self.switch}

    def check(self, cfg) -> None:
        """Refuse, in one sentence, a ModelConfig this bug cannot be built into."""
        if self.needs and not self.needs.test(cfg):
            raise ConfigError(f"The {self.name} bug needs {self.needs.text}.")

    @property
    def leaks_future(self) -> bool:
        """Later tokens change earlier logits: its low loss is a leak, not a win."""
        return "future_leak" in self.probes

    @property
    def unmasks_future(self) -> bool:
        """Attention lands on later keys although causal=true."""
        return "mask_ones" in self.probes

    @property
    def ignores_position(self) -> bool:
        """pos=rope in name only: queries and keys are never rotated."""
        return "rope_unrotated" in self.probes


# In the order the Pitfalls page offers them.
PITFALLS: dict[str, Pitfall] = {p.name: p for p in [
    Pitfall(
        "norm_over_sequence",
        title="RMSNorm over the whole sequence",
        breaks="RMSNorm over the whole (sequence, width) block instead of per token",
        needs=Needs("norm=rmsnorm", lambda cfg: cfg.norm == "rmsnorm"),
        probes=("future_leak",),
        shift_note="normalises over the whole sequence, so the added prefix changes "
                   "every token's scale",
        what="RMSNorm divides by one root-mean-square computed over the whole (sequence, "
             "width) block instead of each token's own vector. Every position's scale then "
             "depends on the tokens after it: the future leaks into the past.",
        signature="Changing a later token changes earlier logits; the validation loss is "
                  "too good, and gets more so with training as the model learns to read "
                  "the leak."),
    Pitfall(
        "causal_off", built_in=False, switch={"causal": False},
        title="Causal mask forgotten",
        breaks="causal mask left out, so each position sees the character it must predict",
        probes=("future_leak",),
        what="Without the causal mask, position m attends to every position, including "
             "m + 1: the character it is asked to predict.",
        signature="Training loss falls towards 0 fast, validation too (it is scored with "
                  "the answer in view), and the samples are garbage: generating one "
                  "character at a time, there is no future to copy."),
    Pitfall(
        "mask_ones",
        title="Mask drawn with ones instead of −inf",
        breaks="causal mask added as ones instead of -inf",
        needs=Needs("attention with causal=true", lambda cfg: cfg.attention and cfg.causal),
        probes=("mask_ones", "future_leak"),
        what="The causal mask is added as +1 on future positions instead of −inf, so the "
             "softmax still gives them weight. In the write-ups this was a picture bug; "
             "here it is wired into the model itself, so it also leaks in training.",
        signature="'Masked' positions still get weight in the attention picture (above the "
                  "diagonal); here the future-leak probe fires too and the loss collapses "
                  "like a missing mask."),
    Pitfall(
        "dropout_at_eval",
        title="Dropout left on at evaluation",
        breaks="dropout left on at evaluation and generation",
        needs=Needs("dropout above 0", lambda cfg: cfg.dropout > 0),
        correct={"dropout": 0.1},
        probes=("dropout_at_eval",),
        what="Dropout should only be active while training. Left on at evaluation and "
             "generation, it randomly zeroes activations when the model is scored and "
             "when it writes.",
        signature="Validation loss is noisier and a little worse (with dropout 0.1 on a "
                  "model this small, often within seed noise); the sure sign is "
                  "generation that varies with no sampling (temperature 0)."),
    Pitfall(
        "rope_off_by_one",
        title="RoPE frequencies off by one",
        breaks="rotary frequencies use i - 1 for i",
        needs=ROTARY,
        probes=("rope_off_by_one",),
        what="The rotary frequencies use i − 1 where the formula says i, so pair 0 turns "
             "by theta^(2/head_dim) radians per position: more than 1.",
        signature="A frequency above 1 rad per position appears; the loss changes little "
                  "(the model adapts to the frequencies it is given)."),
    Pitfall(
        "rope_unrotated",
        title="RoPE computed but not applied",
        breaks="rotary tables computed but queries and keys passed on unrotated",
        needs=ROTARY,
        probes=("rope_unrotated",),
        compare_with=({"pos": "none"},),
        what="The rotary tables are computed, but the unrotated queries and keys are "
             "passed on: the code looks like RoPE and does nothing.",
        signature="It learns like no positional encoding at all: its curve lies on "
                  "pos=none's, not the correct model's."),
    Pitfall(
        "rope_at_zero",
        title="RoPE at position 0 for every decoded token",
        breaks="a token decoded after a cached prefix is rotated at position 0, not its own",
        needs=Needs("attention with pos=rope and causal=true (a model a KV cache can serve)",
                    lambda cfg: cfg.attention and cfg.pos == "rope" and cfg.causal),
        probes=("cache_drift",),
        what="With a KV cache, each decoding step runs only its new token, so the code "
             "must rotate it at its absolute position start_pos. Rotating every call's "
             "tokens from position 0 is right for a whole sequence and wrong for each "
             "decoded token, which turns as if it were the first.",
        signature="Training never uses the cache, so the loss curve is the correct "
                  "model's exactly; cached and uncached logits of the same text drift "
                  "apart, and text generated with the cache degrades."),
    Pitfall(
        "repeat_kv_before_cache",
        title="repeat_kv before caching",
        breaks="keys and values repeated for every query head before they are cached",
        needs=Needs("attention with causal=true and n_kv_heads below n_heads (grouped- or "
                    "multi-query attention)",
                    lambda cfg: cfg.attention and cfg.causal and cfg.kv_heads < cfg.n_heads),
        correct={"n_kv_heads": 1},
        probes=("cache_size",),
        what="Grouped-query attention shares each key/value head among a group of query "
             "heads; Meta's code caches the n_kv_heads heads and repeats them (repeat_kv) "
             "only when attending. Repeating first caches n_heads heads per layer.",
        signature="Logits and loss are exactly right; the cache is as big as multi-head "
                  "attention's, so the memory grouped-query attention was for is never "
                  "saved."),
    Pitfall(
        "hf_without_permutation",
        title="Hugging Face weights loaded without the RoPE permutation",
        breaks="Hugging Face's query/key rows rotated as Meta's adjacent pairs, unpermuted",
        needs=ROTARY,
        probes=("rope_pairs",),
        class_set=False,
        what="Meta's code (and Llama Lab's) rotates adjacent dimensions of each head as a "
             "pair; Hugging Face's rotate_half pairs dimension i with i + head_dim/2, so "
             "its checkpoints store the query and key rows in that order. Loaded into "
             "Meta-style code without transformers' permutation, every rotary pair "
             "mixes two dimensions the weights never paired.",
        signature="Every weight has the right name and shape and plausible values, and the "
                  "text is gibberish: the logits are far from transformers' on the same "
                  "file. A model trained from scratch this way learns fine; it is the "
                  "weights trained for the other layout that break."),
]}

# The pitfalls ModelConfig.bug switches on, each a class swapped in by model.BUG_SWAPS.
BUILT_IN: dict[str, Pitfall] = {n: p for n, p in PITFALLS.items() if p.built_in}

# Bugs whose model sees the future, so a low loss is a leak.
LEAKY_BUGS = frozenset(n for n, p in BUILT_IN.items() if p.leaks_future)


def pitfall_of(bug: str) -> Pitfall | None:
    """The pitfall a ModelConfig.bug value switches on; None for a correct model."""
    return BUILT_IN.get(bug)


def mask_holds(cfg) -> bool:
    """Whether no query of this model can attend to a later key: the causal mask is on
    and no bug undoes it."""
    bug = pitfall_of(cfg.bug)
    return cfg.causal and not (bug and bug.unmasks_future)


def class_set_sweeps() -> list[list[dict]]:
    """The class set's pitfall comparisons as sweeps of config changes, one per correct
    model: that model first (``{}`` is the baseline), then every pitfall compared with
    it, switched on, then their extra lines (rope_unrotated's pos=none)."""
    sweeps: list[list[dict]] = []

    def sweep_for(p: Pitfall) -> list[dict]:
        for sweep in sweeps:
            if sweep[0] == p.correct:
                return sweep
        sweeps.append([dict(p.correct)])
        return sweeps[-1]

    trained = [p for p in PITFALLS.values() if p.class_set]
    for p in trained:
        sweep_for(p).append(p.on)
    for p in trained:
        sweep = sweep_for(p)
        sweep.extend(dict(c) for c in p.compare_with if c not in sweep)
    return sweeps
