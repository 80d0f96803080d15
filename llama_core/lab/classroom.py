"""Classroom mode: a teacher's settings file, and the admission rules it sets.

A TOML file named by the environment variable ``LLAMA_LAB_CLASSROOM`` (see
``classroom.example.toml``) sets which presets the pages offer, fields students cannot
change (``[locked]``), and caps on model size, steps, time, evaluation cost, threads and
how many runs each student (each browser, the run's ``owner``: ui.state.owner_id) may
have running and queued.

This module decides; the run store only stores and counts. Every run is created through
``create_run`` (the command line, every page and a sweep alike), which checks the
settings' limits with one sentence per violation and hands the store the per-student
check to run on the owner's counts inside its insert transaction. The job manager asks
``running_cap`` on every round and tells ``RunStore.claim_next``, which also queues
fairly: the next run to start belongs to the student with the fewest runs going, then
the one served longest ago.

Runs with no owner (the teacher's command line) are exempt from the per-student caps,
not from the model caps and locks. Without the environment variable nothing is limited.
"""

from __future__ import annotations

import os
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import MODEL_FIELDS, TRAIN_FIELDS, ModelConfig, TrainConfig, is_llama
from ..presets import PRESETS, build_configs
from ..errors import ConfigError, UserError
from .store import COMPLETED

ENV_CLASSROOM = "LLAMA_LAB_CLASSROOM"
UPLOADS = "uploads"  # in [classroom] corpora: students may train on texts they upload

# [caps] key -> (config field or None, integer?). Every field that changes a run's
# memory or time can be capped.
CAPS = {
    "d_model": ("d_model", True),
    "n_layers": ("n_layers", True),
    "context_window": ("context_window", True),
    "steps": ("steps", True),
    "time_budget": ("time_budget", False),
    "batch_size": ("batch_size", True),
    "ffn_multiple_of": ("ffn_multiple_of", True),
    "eval_interval": ("eval_interval", True),
    "eval_batches": ("eval_batches", True),
    "sample_chars": ("sample_chars", True),
    "threads": ("threads", True),
    "running_per_student": (None, True),
    "queued_per_student": (None, True),
}
# Caps that are floors: evaluating more often costs more, so eval_interval's cap is the
# fewest steps allowed between evaluations.
FLOORS = {"eval_interval"}
SECTIONS = {"classroom": {"title", "presets", "corpora", "teacher_key"}, "locked": None, "caps": set(CAPS)}
MAX_SETTINGS_BYTES = 64 * 1024


class ClassroomError(UserError):
    """The classroom settings file cannot be used, or a run breaks its limits."""


@dataclass(frozen=True)
class Classroom:
    """Validated classroom settings."""

    path: str | None = None
    title: str = "Llama Lab classroom"
    presets: tuple[str, ...] | None = None  # None: every preset
    corpora: tuple[str, ...] | None = None  # None: any corpus
    locked: dict[str, Any] = field(default_factory=dict)
    caps: dict[str, float] = field(default_factory=dict)
    teacher_key: str | None = field(default=None, repr=False)

    def teacher_ok(self, given: str | None) -> bool:
        """Does ``given`` open the Teacher page? (Always, when no key is set.)"""
        if not self.teacher_key:
            return True
        import hmac
        return hmac.compare_digest(str(given or "").encode(), self.teacher_key.encode())

    @property
    def running_per_student(self) -> int | None:
        v = self.caps.get("running_per_student")
        return None if v is None else int(v)

    @property
    def queued_per_student(self) -> int | None:
        v = self.caps.get("queued_per_student")
        return None if v is None else int(v)

    def allowed_presets(self, names=None) -> list[str]:
        """The presets a student may start from, in the order given (or PRESETS')."""
        names = list(PRESETS) if names is None else list(names)
        return names if self.presets is None else [n for n in names if n in self.presets]

    def violations(self, model: dict | ModelConfig, train: dict | TrainConfig) -> list[str]:
        """One sentence per way these configs break the classroom's limits."""
        values = {**_as_dict(model), **_as_dict(train)}
        out = []
        for key, want in self.locked.items():
            if values.get(key) != want:
                out.append(f"{key} is locked by the teacher at {want!r} (this run asks "
                           f"for {values.get(key)!r}); set it back to {want!r}.")
        budget = values.get("time_budget")
        time_cap = self.caps.get("time_budget")
        for key, cap in self.caps.items():
            fname = CAPS[key][0]
            if fname is None:
                continue
            if fname == "steps" and budget is not None and time_cap is not None:
                continue  # a run on the clock: the time cap bounds it, not its step cap
            v = values.get(fname)
            if fname == "time_budget" and v is None:
                if "steps" not in self.caps:
                    out.append(f"This classroom limits runs to {cap:g} seconds; set a "
                               f"time budget of at most {cap:g} s.")
                continue
            if v is not None and key in FLOORS and v < cap:
                out.append(f"{fname} = {v:g} is under this classroom's floor of {cap:g} "
                           f"(each evaluation costs time); use {cap:g} or more.")
            elif v is not None and key not in FLOORS and v > cap:
                out.append(f"{fname} = {v:g} is over this classroom's cap of {cap:g}; "
                           f"use {cap:g} or less.")
        if self.corpora is not None and not self.corpus_open(values.get("corpus")):
            out.append(f"The corpus {str(values.get('corpus'))[:40]!r} is not open in this "
                       f"classroom; choose one of {', '.join(self.corpora)}.")
        return out

    def corpus_open(self, corpus: Any) -> bool:
        """Whether runs may train on this corpus: one the file lists by name, or an
        upload when the list holds "uploads"."""
        from ..corpora import UPLOAD_PREFIX  # lazily: the store's readers need no torch
        if self.corpora is None:
            return True
        if isinstance(corpus, str) and corpus.startswith(UPLOAD_PREFIX):
            return UPLOADS in self.corpora
        return corpus in self.corpora

    def check_run(self, model, train) -> None:
        """Raise ClassroomError listing every violation (one sentence each)."""
        problems = self.violations(model, train)
        if problems:
            raise ClassroomError(" ".join(problems))

    def check_owner(self, owner: str | None, running: int, queued: int) -> None:
        """Refuse a new run for ``owner`` who already has ``running`` + ``queued`` runs."""
        if owner is None:
            return
        r_cap, q_cap = self.running_per_student, self.queued_per_student
        if r_cap is None and q_cap is None:
            return
        total_cap = (r_cap if r_cap is not None else running) + (q_cap if q_cap is not None
                                                                else queued + 1)
        if running + queued >= total_cap:
            raise ClassroomError(
                f"You already have {running} run(s) running and {queued} waiting, the most "
                f"this classroom allows ({r_cap if r_cap is not None else 'any'} running, "
                f"{q_cap if q_cap is not None else 'any'} waiting); stop one or wait for it "
                "to finish.")


def _as_dict(cfg) -> dict:
    if isinstance(cfg, dict):
        return cfg
    import dataclasses
    return dataclasses.asdict(cfg)


def _err(path, text: str) -> ClassroomError:
    return ClassroomError(f"Classroom settings {path}: {text}")


def parse(text: str, path: str | None = "<text>") -> Classroom:
    """Validate the TOML text of a settings file; every mistake is one clear sentence."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _err(path, f"not valid TOML ({e}); fix that line.") from None
    for section, value in data.items():
        if section not in SECTIONS:
            raise _err(path, f"unknown section [{section}]; use [classroom], [locked] and "
                             "[caps].")
        if not isinstance(value, dict):
            raise _err(path, f"{section} must be a [{section}] table, not a value.")
        allowed = SECTIONS[section]
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise _err(path, f"unknown key {key!r} in [{section}]; use one of "
                                     f"{', '.join(sorted(allowed))}.")
    top = data.get("classroom", {})
    title = top.get("title", Classroom.title)
    if not isinstance(title, str) or len(title) > 200:
        raise _err(path, "title must be a short string.")
    presets = top.get("presets")
    if presets is not None:
        if not isinstance(presets, list) or not presets or not all(
                isinstance(p, str) for p in presets):
            raise _err(path, "presets must be a non-empty list of preset names.")
        unknown = [p for p in presets if p not in PRESETS]
        if unknown:
            raise _err(path, f"unknown preset(s) {', '.join(map(repr, unknown))}; choose "
                             f"from {', '.join(PRESETS)}.")
        presets = tuple(presets)
    corpora = top.get("corpora")
    if corpora is not None:
        if not isinstance(corpora, list) or not corpora or not all(
                isinstance(c, str) and c for c in corpora):
            raise _err(path, "corpora must be a non-empty list of corpus names.")
        corpora = tuple(corpora)
    teacher_key = top.get("teacher_key")
    if teacher_key is not None and (not isinstance(teacher_key, str)
                                    or not 4 <= len(teacher_key) <= 200):
        raise _err(path, "teacher_key must be a string of 4 to 200 characters.")
    locked = dict(data.get("locked", {}))
    for key, value in locked.items():
        if key not in MODEL_FIELDS | TRAIN_FIELDS:
            raise _err(path, f"[locked] names {key!r}, which is not a model or training "
                             "setting.")
        if isinstance(value, (dict, list)):
            raise _err(path, f"[locked] {key} must be a single value, not a "
                             f"{type(value).__name__}.")
    if locked:
        try:  # the locked values must make a valid config on their own
            build_configs(None, dict(locked))
        except ConfigError as e:
            raise _err(path, f"[locked] holds a value that cannot work: {e}") from None
    caps: dict[str, float] = {}
    for key, value in data.get("caps", {}).items():
        integer = CAPS[key][1]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                integer and not isinstance(value, int)):
            raise _err(path, f"[caps] {key} must be a {'whole ' if integer else ''}number, "
                             f"not {value!r}.")
        minimum = 0 if key in ("queued_per_student", "sample_chars") else 1
        if value < minimum:
            raise _err(path, f"[caps] {key} must be at least {minimum}, not {value!r}.")
        caps[key] = value
    for key, value in locked.items():
        if key not in caps or not isinstance(value, (int, float)):
            continue
        if key in FLOORS and value < caps[key]:
            raise _err(path, f"[locked] {key} = {value} is under its own floor of "
                             f"{caps[key]}.")
        if key not in FLOORS and value > caps[key]:
            raise _err(path, f"[locked] {key} = {value} is over its own cap of {caps[key]}.")
    return Classroom(path=path, title=title, presets=presets, corpora=corpora,
                     locked=locked, caps=caps, teacher_key=teacher_key)


def load(path: str | os.PathLike) -> Classroom:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ClassroomError(f"Classroom settings file {p} does not exist (named by "
                             f"{ENV_CLASSROOM}); create it from classroom.example.toml or "
                             "unset the variable.")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ClassroomError(f"Classroom settings file {p} cannot be read "
                             f"({e.strerror or e}); check its permissions.") from None
    if len(raw) > MAX_SETTINGS_BYTES:
        raise _err(p, f"the file is {len(raw):,} bytes, more than a settings file needs; "
                      "check that it is the right file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _err(p, "not UTF-8 text; save it as UTF-8.") from None
    return parse(text, str(p))


_cache: dict[str, tuple[tuple, Classroom]] = {}
_cache_lock = threading.Lock()


def current() -> Classroom | None:
    """The settings named by $LLAMA_LAB_CLASSROOM (reloaded when the file changes), or
    None when classroom mode is off. A broken file raises ClassroomError: better no run
    than a run the teacher meant to forbid."""
    path = os.environ.get(ENV_CLASSROOM, "").strip()
    if not path:
        return None
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and stamp is not None and hit[0] == stamp:
            return hit[1]
    settings = load(path)
    with _cache_lock:
        _cache[path] = (stamp, settings)
    return settings


def check_limits(model, train) -> None:
    """The current classroom's limits on a run's settings, checked before any file is
    opened (no-op when classroom mode is off). The per-student counts are checked where
    the run is created, in the same transaction."""
    settings = current()
    if settings is not None:
        settings.check_run(model, train)


def create_run(store, model, train, *, owner: str | None = None, **fields) -> str:
    """Queue a run in ``store`` as the classroom allows: its settings within the limits,
    and its owner under the per-student caps, counted in the same transaction as the
    insert. ``fields`` go to ``RunStore.create_run`` (name, group, pid)."""
    settings = current()
    if settings is None:
        return store.create_run(model, train, owner=owner, **fields)
    settings.check_run(model, train)
    return store.create_run(
        model, train, owner=owner, **fields,
        admit=lambda holding, waiting: settings.check_owner(owner, holding, waiting))


def offered_presets(names=None) -> list[str]:
    """The presets a page should offer: the classroom's list, or all of them when
    classroom mode is off (or its file is broken: create_run says why at launch)."""
    try:
        settings = current()
    except UserError:
        settings = None
    names = list(PRESETS) if names is None else list(names)
    return names if settings is None else settings.allowed_presets(names)


def running_cap() -> int | None:
    """Per-student cap on runs holding a slot, for the job manager to pass to
    ``RunStore.claim_next``; None without one (or with a broken file: no run is
    admitted then anyway)."""
    try:
        settings = current()
    except UserError:
        return None
    return None if settings is None else settings.running_per_student


# --- The queue, and what the class found ------------------------------------------------

# Settings that do not make a different model: a run's seed is what pooling averages
# over, and threads or device change only the speed.
NOT_A_VARIANT = ("seed", "threads", "device")


def variant_settings(run) -> dict[str, Any]:
    """The settings that make a run's variant: its model and training configs, seed,
    threads and device aside (fields named as in ModelConfig and TrainConfig)."""
    train = {k: v for k, v in (run.train_config or {}).items() if k not in NOT_A_VARIANT}
    return {**train, **(run.model_config or {})}


def variant_key(run) -> str:
    """How a run is pooled with its classmates' runs: by what it built and how it was
    trained, never by its name (two runs named "baseline" with different settings are
    two variants; two students who built the same model pool their seeds)."""
    import json
    return json.dumps(variant_settings(run), sort_keys=True, default=str)


def _differing(settings: list[dict]) -> list[str]:
    """The fields whose values are not the same in every variant, in field order."""
    order = list(dict.fromkeys(k for s in settings for k in s))
    return [k for k in order if len({repr(s.get(k)) for s in settings}) > 1]


def _describe(settings: dict, differing: list[str]) -> str:
    """A variant in words: only the settings that differ between the class's variants."""
    def show(v):
        return ("true" if v else "false") if isinstance(v, bool) else (
            f"{v:g}" if isinstance(v, float) else str(v))
    return ", ".join(f"{k}={show(settings.get(k))}" for k in differing) or "one configuration"


def class_findings(runs) -> list[dict]:
    """The class's seeds pooled into one distribution per variant (runs with the same
    settings, see ``variant_key``): sweeps.summarize over every finished run. The
    baseline is the all-Llama variant with the most runs (none if nobody trained one);
    seeds pair variants with it as in an ablation, and two classmates' runs with the
    same seed in one variant both count (the second gets a pooled seed of its own).

    Each row's ``variant`` names only the settings that differ between the variants;
    ``runs`` is how many runs its mean pools and ``seeds`` how many different seeds they
    used; ``names`` are the names students gave them; ``members`` the runs themselves,
    for drawing every run as a dot."""
    from .sweeps import BASELINE, summarize
    done = [r for r in runs
            if r.status in COMPLETED and r.final_val_loss is not None]
    members: dict[str, list] = {}
    for run in done:
        members.setdefault(variant_key(run), []).append(run)
    settings = {key: variant_settings(group[0]) for key, group in members.items()}
    differing = _differing(list(settings.values()))
    llama = [key for key in members if is_llama(members[key][0].model_config or {})]
    baseline = max(llama, key=lambda key: len(members[key]), default=None)
    labels: dict[str, str] = {}
    for n, key in enumerate(members):
        label = BASELINE if key == baseline else _describe(settings[key], differing)
        labels[key] = label if label not in labels.values() else f"{label} #{n + 1}"
    pooled = []
    for i, run in enumerate(done):
        label = labels[variant_key(run)]
        taken = {p["seed"] for p in pooled if p["name"] == label}
        seed = run.seed if run.seed is not None and run.seed not in taken else 1_000_000 + i
        pooled.append({"name": label, "seed": seed, "status": run.status,
                       "final_val_loss": run.final_val_loss, "params": run.params})
    by_label = {labels[key]: key for key in members}
    rows = summarize(pooled)
    for row in rows:
        key = by_label[row["variant"]]
        group = members[key]
        row["runs"] = row.pop("seeds")
        row["seeds"] = len({r.seed for r in group})
        row["settings"] = _describe(settings[key], differing)
        row["names"] = ", ".join(dict.fromkeys(str(r.name) for r in group))
        row["members"] = group
    return rows


__all__ = ["Classroom", "ClassroomError", "ENV_CLASSROOM", "load", "parse", "current",
           "check_limits", "create_run", "running_cap", "offered_presets", "class_findings",
           "variant_key"]
