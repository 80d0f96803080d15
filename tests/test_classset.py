"""The shipped class set (data/classset/): it loads with no training, it is small and
committed, it is what today's plan would train, its records carry what reproduces
them, and retraining one of its runs on the same seed gives the same numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from helpers_browser import REPO
from llama_core.lab import classset
from llama_core.lab.sweeps import summarize
from llama_core.config import model_from_dict, to_dict, train_from_dict
from llama_core.presets import LADDER
from llama_core.lab.store import RunStore
from llama_core.training import as_trained

FILES = ("manifest.json", "runs.json", "metrics.csv")


@pytest.fixture(scope="module")
def cs():
    return classset.ClassSet(classset.DEFAULT_DIR)


def test_it_loads_instantly_without_training(monkeypatch):
    training = sys.modules["llama_core.training"]  # llama_core.training is the function

    def no_training(*a, **k):
        raise AssertionError("loading the class set must not train")
    monkeypatch.setattr(training, "train", no_training)
    t0 = time.perf_counter()
    cs = classset.ClassSet(classset.DEFAULT_DIR)
    assert time.perf_counter() - t0 < 2.0
    assert cs.available
    assert cs.groups() == {"classset-ladder": 21, "classset-ablation": 33,
                           "classset-health": 6, "classset-pitfalls": 36}


def test_it_is_small_committed_and_never_ignored():
    size = sum((classset.DEFAULT_DIR / f).stat().st_size for f in FILES)
    assert size < 1_000_000
    assert not list(classset.DEFAULT_DIR.glob("*.safetensors"))
    ignored = subprocess.run(["git", "check-ignore", *[f"data/classset/{f}" for f in FILES]],
                             cwd=REPO, capture_output=True, text=True)
    assert ignored.returncode == 1, f"git ignores {ignored.stdout}"


def test_every_record_is_complete_and_reproducible(cs):
    manifest = cs.manifest
    assert manifest["format"] == classset.FORMAT
    assert manifest["command"] == "python -m llama_core classset build"
    for run in cs.list_runs():
        assert run.status == "finished", run
        assert run.code_version and run.torch_version and run.device == "cpu"
        assert run.data_sha256 == manifest["data_sha256"]
        assert run.train_config["threads"] == 1 and run.train_config["device"] == "cpu"
        assert run.train_config["corpus"] == "shakespeare"
        model_from_dict(run.model_config), train_from_dict(run.train_config)  # valid
        metrics = cs.metrics(run.id)
        assert metrics and metrics[-1]["step"] == run.steps
        assert metrics[-1]["val_loss"] == pytest.approx(run.final_val_loss, abs=1e-12)
        assert cs.samples(run.id)
        assert all(m["extra"]["grad_norm_per_layer"] for m in metrics)


def test_it_holds_exactly_what_todays_plan_trains(cs):
    """A change to the presets, the variants or the plan makes the shipped set stale:
    regenerate it (the README's command) when this fails. A stored config is read as
    the model loads it (a field added since, absent there, takes its default)."""
    for section, plan in classset.plan(classset.SECTIONS):
        stored = sorted((r.name, r.seed,
                         json.dumps(to_dict(model_from_dict(r.model_config)), sort_keys=True),
                         json.dumps(to_dict(train_from_dict(r.train_config)),
                                    sort_keys=True))
                        for r in cs.list_runs(group=section.group))
        planned = sorted((p.label, p.seed,
                          json.dumps(to_dict(as_trained(p.model, p.train)), sort_keys=True),
                          json.dumps(to_dict(p.train), sort_keys=True)) for p in plan)
        assert stored == planned, section.name


def test_the_ladder_and_ablations_tell_the_story(cs):
    ladder = {}
    for r in cs.list_runs(group="classset-ladder"):
        ladder.setdefault(r.name, []).append(r.final_val_loss)
    assert sorted(ladder) == sorted(LADDER) and all(len(v) == 3 for v in ladder.values())
    mean = {k: sum(v) / len(v) for k, v in ladder.items()}
    assert mean["ladder-3-rope-head"] < 0.5  # no mask: it reads the answer
    assert mean["ladder-4-causal"] < mean["ladder-2-rmsnorm"] < mean["ladder-1-mlp"]
    rows = {r["variant"]: r for r in summarize(cs.list_runs(group="classset-ablation"))}
    assert rows["causal=false"]["verdict"] == "better"  # the leak, flagged by the page
    assert rows["norm=none"]["verdict"] == "worse"
    pit = {r["variant"]: r for r in summarize(cs.list_runs(group="classset-pitfalls"))}
    assert pit["bug=norm_over_sequence"]["diff_vs_baseline"] < 0  # too good
    # RoPE computed but not applied trains exactly like no positions at all
    unrotated = {r.seed: cs.metrics(r.id) for r in cs.list_runs(group="classset-pitfalls")
                 if r.name == "bug=rope_unrotated"}
    nopos = {r.seed: cs.metrics(r.id) for r in cs.list_runs(group="classset-pitfalls")
             if r.name == "pos=none"}
    for seed in unrotated:
        assert [m["val_loss"] for m in unrotated[seed]] == [m["val_loss"] for m in nopos[seed]]


def test_it_reads_like_the_run_store(cs, tmp_path):
    runs = cs.list_runs(group="classset-ablation")
    frame = cs.metrics_frame([r.id for r in runs[:2]])
    assert set(frame["run_id"]) == {r.id for r in runs[:2]}
    assert list(frame.columns[:3]) == ["run_id", "step", "tokens"]
    csv_text = cs.export([runs[0].id], "csv")
    assert csv_text.splitlines()[0].startswith("run_id,name,group,status,seed,device")
    assert len(csv_text.splitlines()) == 1 + len(cs.metrics(runs[0].id))
    exported = json.loads(cs.export([runs[0].id], "json"))[0]
    assert exported["metrics"] and exported["samples"] and exported["id"] == runs[0].id


def test_a_regenerated_run_matches_its_record():
    """CPU determinism: the cheapest record retrained with its stored configs (same
    seed, one thread). Bit-identical on the CPU kind that made it (torch's CPU
    capability, recorded in the manifest); elsewhere kernels may sum in another order."""
    report = classset.verify()
    assert report["same_steps"] and report["evaluations"] >= 2
    if report["this_cpu_capability"] == report["stored_cpu_capability"]:
        assert report["max_abs_loss_difference"] <= 1e-6, report
    else:
        assert report["max_abs_loss_difference"] <= 1e-3, report


def test_the_command_line_shows_and_verifies(tmp_path):
    out = subprocess.run([sys.executable, "-m", "llama_core", "classset", "show", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    groups = {g["group"]: g["runs"] for g in json.loads(out.stdout)["groups"]}
    assert groups["classset-ablation"] == 33
    bad = subprocess.run([sys.executable, "-m", "llama_core", "classset", "build", "--only",
                          "nonsense"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Unknown class-set section" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_build_writes_a_section_through_the_sweep_path(tmp_path, monkeypatch):
    """A miniature section built exactly as the real ones are (JobManager, run store,
    export), merged into an existing folder without touching the other sections."""
    from llama_core.lab.sweeps import plan_sweep

    def tiny_plan(seeds):
        return plan_sweep("tiny", {**classset.COMMON, "steps": 8, "eval_interval": 4,
                                   "eval_batches": 1, "sample_chars": 8, "d_model": 16,
                                   "n_heads": 2, "context_window": 8, "n_layers": 1},
                          [{"norm": "layernorm"}], list(seeds))
    section = classset.Section("mini", "classset-mini", "mini", "a test section",
                               tiny_plan, seeds=(0, 1))
    monkeypatch.setitem(classset.SECTIONS, "mini", section)
    folder = tmp_path / "classset"
    manifest = classset.build(folder, ["mini"], parallel=1, db=tmp_path / "runs.db",
                              log=lambda s: None)
    assert manifest["sections"]["mini"]["runs"] == 4
    built = classset.ClassSet(folder)
    assert built.groups() == {"classset-mini": 4}
    store = RunStore(tmp_path / "runs.db")
    for run in built.list_runs():
        assert cs_metrics_equal(built.metrics(run.id), store.metrics(run.id))
    assert {r.name for r in built.list_runs()} == {"baseline", "norm=layernorm"}


def cs_metrics_equal(a, b) -> bool:
    keys = ("step", "tokens", "train_loss", "val_loss", "grad_norm")
    return [[m[k] for k in keys] for m in a] == [[m[k] for k in keys] for m in b]
