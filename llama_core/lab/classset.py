"""The class set: ready-made results, so a CPU-only classroom sees curves at once.

``data/classset/`` holds the ladder, every single-modification ablation, a depth-8
gradient-health comparison and the pitfall comparisons, all trained by the project's
own sweep path (``sweeps.plan_sweep`` -> ``sweeps.submit_plan`` -> ``JobManager`` ->
the run store) on the built-in ``shakespeare`` corpus, then exported small:

- ``manifest.json``: what was run, the command that regenerates it, the machine, the
  code and torch versions, and how long generation took.
- ``runs.json``: one record per run (configs, seed, code version, torch version, device,
  data hash, parameters, final losses, timings) with its samples.
- ``metrics.csv``: one row per evaluation of every run; ``extra`` is JSON (per-layer
  gradient norms and residual-stream RMS).

No checkpoints. :class:`ClassSet` reads the files back with the run store's read
interface (``list_runs``, ``get_run``, ``metrics``, ``metrics_frame``, ``samples``,
``export``), so a page shows the class set or live runs with the same code.

Every run trains on the CPU with one thread (``device=cpu``, ``threads=1`` are in its
stored config), so retraining any record with its stored configs on the same kind of
CPU reproduces its metrics: ``python -m llama_core classset verify`` does that.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable

from .output_file import write_text_atomically
from .sweeps import PlannedRun, plan_sweep, submit_plan, variants_for, wait_for
from ..pitfalls import class_set_sweeps
from ..presets import LADDER
from ..errors import UserError
from .store import METRIC_COLUMNS, REPO_ROOT, Run, RunNotFound, RunStore, check_run_id

FORMAT = "llama-lab-classset-1"
DEFAULT_DIR = REPO_ROOT / "data" / "classset"
ENV_DIR = "LLAMA_LAB_CLASSSET"
COMMAND = "python -m llama_core classset build"
SEEDS = (0, 1, 2)

# Every class-set run: the built-in corpus, on the CPU, one thread, so it is
# reproducible bit for bit on the same kind of CPU and several can train side by side.
COMMON = {"corpus": "shakespeare", "device": "cpu", "threads": 1}

ABLATION_PRESET = "tiny"
LADDER_STEPS = 300
HEALTH_LAYERS = 8
# Pitfalls: a short context makes the whole-sequence RMSNorm leak easy to exploit
# (each token is 1/8 of the shared RMS), and 600 steps give the model time to find it.
PITFALL_BASE = {"context_window": 8, "steps": 600, "eval_interval": 50}


@dataclass(frozen=True)
class Section:
    """One part of the class set: a group of runs in the store and in the files."""

    name: str
    group: str
    title: str
    description: str
    plan: Callable[[tuple[int, ...]], list[PlannedRun]] = field(repr=False)
    seeds: tuple[int, ...] = SEEDS


def _ladder_plan(seeds) -> list[PlannedRun]:
    """Each rung is its own preset; the run is named after it (not 'baseline')."""
    plan = []
    for rung in LADDER:
        for p in plan_sweep(rung, {**COMMON, "steps": LADDER_STEPS}, [], list(seeds)):
            plan.append(PlannedRun(rung, p.seed, p.model, p.train))
    return plan


def _ablation_plan(seeds) -> list[PlannedRun]:
    return plan_sweep(ABLATION_PRESET, dict(COMMON),
                      list(variants_for(ABLATION_PRESET, COMMON).values()), list(seeds))


def _health_plan(seeds) -> list[PlannedRun]:
    return plan_sweep(ABLATION_PRESET, {**COMMON, "n_layers": HEALTH_LAYERS},
                      [{"norm": "none"}], list(seeds))


def _pitfall_plan(seeds) -> list[PlannedRun]:
    """Every pitfall of pitfalls.PITFALLS against its correct model (each sweep names
    that model first, so none adds a baseline of its own)."""
    base = {**COMMON, **PITFALL_BASE}
    return [run for variants in class_set_sweeps()
            for run in plan_sweep(ABLATION_PRESET, base, variants, list(seeds),
                                  include_baseline=False)]


SECTIONS: dict[str, Section] = {s.name: s for s in [
    Section("ladder", "classset-ladder", "The ladder, 7 rungs",
            f"The ladder-* presets, {LADDER_STEPS} steps each, 3 seeds.", _ladder_plan),
    Section("ablation", "classset-ablation", "Every single change to a tiny Llama",
            f"The '{ABLATION_PRESET}' preset (2 layers, 64 wide, 4 heads, context 32, 200 "
            f"steps) against each standard single-modification variant (fewer layers: 1; "
            f"grouped-query: 2 key/value heads; multi-query: 1), 3 seeds, paired.",
            _ablation_plan),
    Section("health", "classset-health", f"Depth {HEALTH_LAYERS}: no norm vs RMSNorm",
            f"The '{ABLATION_PRESET}' preset at {HEALTH_LAYERS} layers with RMSNorm "
            f"(baseline) and with norm=none: per-layer gradient norms and "
            f"residual-stream RMS, 3 seeds.", _health_plan),
    Section("pitfalls", "classset-pitfalls", "The classic bugs, trained",
            "The 'tiny' preset with context 8 and 600 steps: the correct model against "
            "each bug (and causal=false, pos=none, dropout 0.1 with and without the "
            "dropout-at-eval bug, one key/value head with and without repeat_kv before "
            "the cache), 3 seeds.", _pitfall_plan),
]}
GROUPS = {s.group: s for s in SECTIONS.values()}


def classset_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else DEFAULT_DIR


# --- Reading ------------------------------------------------------------------------

_RUN_FIELDS = {f.name for f in fields(Run)}
_DROPPED = ("pid", "owner", "checkpoint", "stop_requested")


def _float(text: str) -> float | None:
    if text == "" or text is None:
        return None
    return float(text)


class ClassSet:
    """The shipped results, read-only, with the run store's read interface."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else classset_dir()
        self.manifest: dict = {}
        self._runs: dict[str, Run] = {}
        self._samples: dict[str, list[dict]] = {}
        self._metrics: dict[str, list[dict]] = {}
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            return
        self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
        if self.manifest.get("format") != FORMAT:
            raise UserError(f"{self.folder} does not hold a Llama Lab class set of format "
                            f"{FORMAT}; regenerate it with `{COMMAND}`.")
        for d in json.loads((self.folder / "runs.json").read_text(encoding="utf-8")):
            self._samples[d["id"]] = d.pop("samples", [])
            known = {k: v for k, v in d.items() if k in _RUN_FIELDS}
            self._runs[d["id"]] = Run(**known)
        with open(self.folder / "metrics.csv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                m = {"step": int(row["step"]),
                     "tokens": None if row["tokens"] == "" else int(row["tokens"])}
                for c in METRIC_COLUMNS[2:]:
                    m[c] = _float(row[c])
                m["extra"] = json.loads(row["extra"]) if row.get("extra") else None
                self._metrics.setdefault(row["run_id"], []).append(m)
        for rows in self._metrics.values():
            rows.sort(key=lambda m: m["step"])

    def __repr__(self) -> str:
        return f"ClassSet({str(self.folder)!r}, runs={len(self._runs)})"

    @property
    def available(self) -> bool:
        return bool(self._runs)

    def groups(self) -> dict[str, int]:
        """Group id -> number of runs, in the order of SECTIONS."""
        counts: dict[str, int] = {}
        for r in self._runs.values():
            counts[r.group] = counts.get(r.group, 0) + 1
        order = [s.group for s in SECTIONS.values()]
        return {g: counts[g] for g in sorted(counts, key=lambda g: (
            order.index(g) if g in order else len(order), g))}

    def list_runs(self, status=None, group: str | None = None, owner=None,
                  limit: int | None = None, oldest_first: bool = False) -> list[Run]:
        statuses = None if status is None else ({status} if isinstance(status, str)
                                                else set(status))
        runs = [r for r in self._runs.values()
                if (group is None or r.group == group)
                and (statuses is None or r.status in statuses)]
        runs.sort(key=lambda r: r.created, reverse=not oldest_first)
        return runs[:limit] if limit is not None else runs

    def get_run(self, run_id: str) -> Run:
        if run_id not in self._runs:
            raise RunNotFound(f"There is no run {run_id!r} in the class set.")
        return self._runs[run_id]

    def metrics(self, run_id: str, since_step: int | None = None) -> list[dict]:
        rows = self._metrics.get(check_run_id(run_id), [])
        return [dict(m) for m in rows if since_step is None or m["step"] > since_step]

    def samples(self, run_id: str) -> list[dict]:
        return [dict(s) for s in self._samples.get(run_id, [])]

    def metrics_frame(self, run_ids: Iterable[str]):
        """Like ``RunStore.metrics_frame``: one frame (run_id, step, ..., extra)."""
        import pandas as pd
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        cols = ["run_id", *METRIC_COLUMNS, "extra"]
        rows = [{"run_id": r, **m} for r in sorted(ids) for m in self._metrics.get(r, [])]
        df = pd.DataFrame(rows, columns=cols)
        for c in METRIC_COLUMNS[1:]:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        return df

    # The run store's own export, on this object: get_run, metrics and samples are all
    # it calls, so both sources export in exactly the same format.
    export = RunStore.export


_cache: dict[tuple, ClassSet] = {}


def load(folder: str | os.PathLike | None = None) -> ClassSet:
    """The class set in ``folder`` (default data/classset/ or $LLAMA_LAB_CLASSSET),
    cached until its files change. An empty ClassSet when there is none."""
    folder = Path(folder) if folder is not None else classset_dir()
    key_parts = [str(folder.resolve())]
    for name in ("manifest.json", "runs.json", "metrics.csv"):
        p = folder / name
        st = p.stat() if p.is_file() else None
        key_parts.append((st.st_mtime_ns, st.st_size) if st else None)
    key = tuple(key_parts)
    if key not in _cache:
        _cache.clear()
        _cache[key] = ClassSet(folder)
    return _cache[key]


# --- Writing ------------------------------------------------------------------------

def _run_record(store, run: Run) -> dict:
    d = run.to_dict()
    for key in _DROPPED:
        d.pop(key, None)
    d["samples"] = store.samples(run.id)
    return d


def write(folder: Path, runs: list[Run], store, manifest: dict) -> None:
    """Write runs (read from ``store``) and the manifest into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [_run_record(store, r) for r in runs]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run_id", *METRIC_COLUMNS, "extra"])
    for r in runs:
        for m in store.metrics(r.id):
            extra = "" if m.get("extra") is None else json.dumps(m["extra"],
                                                                 separators=(",", ":"))
            w.writerow([r.id] + ["" if m[c] is None else repr(m[c]) if isinstance(
                m[c], float) else m[c] for c in METRIC_COLUMNS] + [extra])
    write_text_atomically(folder / "metrics.csv", buf.getvalue(), "--out")
    write_text_atomically(folder / "runs.json", json.dumps(records, indent=1, sort_keys=True),
                          "--out")
    write_text_atomically(folder / "manifest.json",
                          json.dumps(manifest, indent=1, sort_keys=True), "--out")


def plan(sections: Iterable[str]) -> list[tuple[Section, list[PlannedRun]]]:
    out = []
    for name in sections:
        if name not in SECTIONS:
            raise UserError(f"Unknown class-set section {name!r}; choose from "
                            f"{', '.join(SECTIONS)}.")
        s = SECTIONS[name]
        out.append((s, s.plan(s.seeds)))
    return out


def build(folder: str | os.PathLike | None = None, sections: Iterable[str] | None = None,
          parallel: int | None = None, db: str | os.PathLike | None = None,
          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """Train the chosen sections (default all) through the sweep path and write them
    into ``folder``, keeping the other sections already there. Returns the manifest."""
    import tempfile

    import torch

    from .jobs import JobManager, available_cores

    folder = Path(folder) if folder is not None else classset_dir()
    names = list(sections) if sections else list(SECTIONS)
    planned = plan(names)
    total = sum(len(p) for _, p in planned)
    parallel = parallel or max(1, available_cores())
    tmpdir = None
    if db is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="llama-lab-classset-")
        db = Path(tmpdir.name) / "llama_lab.db"
    started = time.time()
    t0 = time.perf_counter()
    manager = JobManager(db, max_concurrent=parallel)
    try:
        log(f"class set: {total} runs in {len(planned)} section(s), {parallel} at a time, "
            f"1 thread each; run store {manager.store.path}")
        ids_by_section: dict[str, list[str]] = {}
        for s, p in planned:
            _, ids = submit_plan(manager, p, group=s.group)
            ids_by_section[s.name] = ids
        all_ids = [i for ids in ids_by_section.values() for i in ids]
        wait_for(manager.store, all_ids, poll_s=5.0, on_wait=lambda done, n: log(
            f"  {done}/{n} runs done, {time.perf_counter() - t0:.0f} s"))
        wall = time.perf_counter() - t0
        store = manager.store
        runs = {s.name: [store.get_run(i) for i in ids_by_section[s.name]]
                for s, _ in planned}
    finally:
        manager.shutdown()
    bad = [r for rs in runs.values() for r in rs if r.status != "finished"]
    if bad:
        raise UserError("Some class-set runs did not finish: " + "; ".join(
            f"{r.id} ({r.name}, seed {r.seed}) {r.status}: {r.error}" for r in bad[:5]))

    old = load(folder) if (folder / "manifest.json").is_file() else ClassSet(folder / "-")
    keep_groups = {SECTIONS[n].group for n in names}
    kept = [r for r in old.list_runs(oldest_first=True) if r.group not in keep_groups]
    merged = MergedStore([old, store])
    new_runs = kept + [r for s, _ in planned for r in runs[s.name]]
    manifest = dict(old.manifest) if old.manifest else {}
    section_info = dict(manifest.get("sections", {}))
    for s, _ in planned:
        rs = runs[s.name]
        section_info[s.name] = {
            "group": s.group, "title": s.title, "description": s.description,
            "seeds": list(s.seeds), "runs": len(rs),
            "variants": list(dict.fromkeys(r.name for r in rs)),
            "train_wall_s_sum": round(sum(r.wall_s or 0 for r in rs), 1),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "generation_wall_s": round(wall, 1),
        }
    first = new_runs[0] if new_runs else None
    manifest.update({
        "format": FORMAT, "command": COMMAND,
        "corpus": COMMON["corpus"],
        "data_sha256": first.data_sha256 if first else None,
        "code_version": runs[planned[0][0].name][0].code_version,
        "torch_version": torch.__version__,
        "device": "cpu", "threads_per_run": 1, "parallel": parallel,
        "cpu_capability": cpu_capability(),
        "last_build": {"sections": names, "runs": total,
                       "generation_wall_s": round(wall, 1),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                time.localtime(started))},
        "sections": {n: section_info[n] for n in SECTIONS if n in section_info},
    })
    write(folder, new_runs, merged, manifest)
    if tmpdir is not None:
        tmpdir.cleanup()
    log(f"class set: wrote {len(new_runs)} runs to {folder} "
        f"({sum((folder / n).stat().st_size for n in ('manifest.json', 'runs.json', 'metrics.csv')) / 1024:.0f} KiB) "
        f"in {wall:.0f} s")
    return manifest


class MergedStore:
    """Reads from the first source that holds a run (class set, then a store)."""

    def __init__(self, sources):
        self.sources = sources

    def _source(self, run_id):
        for s in self.sources:
            try:
                s.get_run(run_id)
                return s
            except (RunNotFound, UserError):
                continue
        raise RunNotFound(f"There is no run {run_id!r}.")

    def metrics(self, run_id):
        return self._source(run_id).metrics(run_id)

    def samples(self, run_id):
        return self._source(run_id).samples(run_id)


def cpu_capability() -> str | None:
    """The SIMD level torch's CPU kernels use here (e.g. AVX2, AVX512): results are
    bit-identical only between machines that share it."""
    try:
        import torch
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return None


# --- Checking a record --------------------------------------------------------------

def retrain(run: Run) -> list[dict]:
    """Train ``run``'s stored configs again in this process; return its metric rows
    (without samples), for comparing with the record."""
    from ..config import model_from_dict, train_from_dict
    from ..training import train

    rows: list[dict] = []

    def keep(record: dict) -> None:
        rows.append({k: v for k, v in record.items() if k != "sample"})
    train(model_from_dict(run.model_config), train_from_dict(run.train_config),
          on_eval=keep)
    return rows


def cheapest_run(cs: ClassSet) -> Run:
    """The record that retrains fastest (fewest training FLOPs)."""
    from ..config import model_from_dict
    from ..inspect import flops_per_token

    def cost(r: Run) -> float:
        per_token = flops_per_token(model_from_dict(r.model_config))
        return per_token["training_flops_per_token"] * (r.tokens or 1)
    runs = cs.list_runs(status="finished")
    if not runs:
        raise UserError(f"The class set in {cs.folder} is empty; build it with `{COMMAND}`.")
    return min(runs, key=lambda r: (cost(r), r.id))


def verify(run_id: str | None = None, folder=None) -> dict:
    """Retrain one record (default the cheapest) and compare every evaluation."""
    cs = load(folder)
    run = cs.get_run(run_id) if run_id else cheapest_run(cs)
    t0 = time.perf_counter()
    fresh = retrain(run)
    stored = cs.metrics(run.id)
    worst = 0.0
    for a, b in zip(stored, fresh):
        for key in ("train_loss", "val_loss"):
            if a[key] is not None and b[key] is not None:
                worst = max(worst, abs(a[key] - b[key]))
    return {"run_id": run.id, "name": run.name, "seed": run.seed,
            "evaluations": len(fresh), "same_steps": [m["step"] for m in stored]
            == [m["step"] for m in fresh], "max_abs_loss_difference": worst,
            "stored_cpu_capability": cs.manifest.get("cpu_capability"),
            "this_cpu_capability": cpu_capability(),
            "wall_s": round(time.perf_counter() - t0, 2)}


__all__ = ["ClassSet", "SECTIONS", "GROUPS", "load", "build", "verify", "retrain",
           "cheapest_run", "variants_for"]
