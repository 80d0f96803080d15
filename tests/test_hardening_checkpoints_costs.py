"""Hostile checkpoints and costs that slip past the caps (issue 11, classes 6 and 2).

Checkpoints: real safetensors files crafted from a real trained run's checkpoint, each
damaged one way (shapes, names, dtypes, metadata, config, tokenizer, non-finite
weights, a config claiming a huge model), must end in one sentence naming the file,
from the library, a resume and the Generate, Attention and Rotary pages (AppTest),
without building or allocating the model first.

Costs: every field that changes memory or time has a hard bound in config validation
and a classroom cap, and a run whose estimated memory is more than the machine has
free is refused before the corpus is read, by the job manager and the command line.
The memory estimate is checked against the measured peak of real training processes.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from llama_core.lab import classroom
from llama_core.lab.cli import main as cli_main
from llama_core.config import ModelConfig, machine_cores
from llama_core.presets import build_configs
from llama_core.errors import ConfigError, UserError
from llama_core.lab.jobs import JobManager
from llama_core.memory import (RUNTIME_BYTES, check_fits, estimate, mem_available,
                               parameter_count)
from llama_core.model import Llama
from llama_core.lab.store import RunStore
from llama_core.checkpoint import load_checkpoint, read_checkpoint
from llama_core.training import train
from runs_fixtures import trained_store

REPO = Path(__file__).resolve().parent.parent
# A config that needs about a terabyte: far more than any machine running the tests.
HUGE = {"d_model": 8192, "n_layers": 64, "n_heads": 64, "context_window": 64}


def assert_one_sentence(message: str, *words: str) -> None:
    assert message.endswith(".") and ". " not in message and "\n" not in message, message
    assert "Traceback" not in message
    for w in words:
        assert w in message, (w, message)


# --- Crafting hostile checkpoints from a real one -------------------------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real checkpoint of a tiny trained run: its path, metadata and tensors."""
    folder, ids = trained_store(tmp_path_factory, "good-checkpoint", {"llama": {}})
    path = RunStore(folder / "llama_lab.db").checkpoint_path(ids["llama"])
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return path, meta, tensors


def edit_json(key: str, **changes):
    def change(meta, tensors):
        value = json.loads(meta[key])
        value.update(changes)
        meta[key] = json.dumps(value)
    return change


def set_meta(key: str, text: str | None):
    def change(meta, tensors):
        if text is None:
            del meta[key]
        else:
            meta[key] = text
    return change


def set_tensor(name: str, value):
    def change(meta, tensors):
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value(tensors.get(name))
    return change


def fewer_characters(meta, tensors):
    chars = json.loads(meta["tokenizer"])["chars"]
    meta["tokenizer"] = json.dumps({"type": "char", "chars": chars[:-1]})


def nan_at(name: str):
    def value(t):
        t = t.clone()
        t.view(-1)[0] = float("nan")
        return t
    return set_tensor(name, value)


# (id, change(meta, tensors) in place, words the one sentence must hold)
HOSTILE = [
    ("wrong-shape", set_tensor("model.output.weight", lambda t: torch.zeros(t.shape[0],
                                                                            t.shape[1] + 1)),
     ["model.output.weight", "has shape", "config implies"]),
    ("missing-weight", set_tensor("model.norm.weight", None),
     ["model.norm.weight", "missing"]),
    ("extra-weight", set_tensor("model.layers.7.attention.wq.weight",
                                lambda _: torch.zeros(32, 32)),
     ["model.layers.7.attention.wq.weight", "no Llama Lab checkpoint"]),
    ("stray-tensor", set_tensor("__import__('os')", lambda _: torch.zeros(1)),
     ["no Llama Lab checkpoint"]),
    ("optimizer-wrong-shape", set_tensor("optim.exp_avg.output.weight",
                                         lambda t: torch.zeros(3, 3)),
     ["optim.exp_avg.output.weight", "has shape"]),
    ("wrong-dtype", set_tensor("model.tok_embeddings.weight", lambda t: t.half()),
     ["model.tok_embeddings.weight", "F16", "not F32"]),
    ("metadata-not-json", set_meta("model_config", "{'d_model': 32"),
     ["model_config", "not valid JSON"]),
    ("metadata-json-list", set_meta("model_config", "[32, 2]"),
     ["model_config", "not an object"]),
    ("metadata-json-number", set_meta("state", "42"), ["state", "not an object"]),
    ("metadata-deeply-nested", set_meta("train_config", "[" * 100_000 + "]" * 100_000),
     ["train_config"]),
    ("metadata-missing", set_meta("tokenizer", None), ["no tokenizer"]),
    ("config-wrong-type", edit_json("model_config", d_model="wide"),
     ["model config", "d_model must be a whole number"]),
    ("config-not-finite", edit_json("model_config", rope_theta=float("inf")),
     ["rope_theta"]),
    ("config-huge-model", edit_json("model_config", **HUGE),
     ["the weight model.layers.", "is missing"]),
    ("config-huge-vocabulary", edit_json("model_config", vocab_size=1_000_000),
     ["has shape"]),
    ("tokenizer-does-not-match", fewer_characters, ["tokenizer has", "rows"]),
    ("tokenizer-not-characters", set_meta("tokenizer", '{"type": "bpe", "merges": []}'),
     ["tokenizer"]),
    ("state-without-step", edit_json("state", step=None), ["state", "step"]),
    ("weights-not-finite", nan_at("model.layers.0.feed_forward.w2.weight"),
     ["model.layers.0.feed_forward.w2.weight", "not finite"]),
]


def craft(folder: Path, name: str, good, change) -> Path:
    """``good``'s checkpoint with one change, as <folder>/<name>/model.safetensors."""
    _, meta, tensors = good
    meta, tensors = dict(meta), dict(tensors)
    change(meta, tensors)
    path = folder / name / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def peak_rss_growth(call) -> int:
    """Bytes the process's peak resident memory grew by while ``call`` ran."""
    def field(name):
        for line in open("/proc/self/status"):
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current size
    before = field("VmRSS:")
    call()
    return field("VmHWM:") - before


@pytest.mark.parametrize("case, change, words", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_checkpoint_is_one_sentence_before_anything_is_built(
        good, tmp_path, case, change, words):
    path = craft(tmp_path, case, good, change)
    errors = []

    def load():
        t0 = time.perf_counter()
        try:
            load_checkpoint(path)
        except UserError as e:
            errors.append((e, time.perf_counter() - t0))

    grown = peak_rss_growth(load)
    assert errors, f"{case}: loaded without complaint"
    error, seconds = errors[0]
    assert_one_sentence(str(error), f"{case}/model.safetensors", *words)
    # Refused from the header: nothing the config claims was allocated (the huge
    # config alone would be about a terabyte).
    assert grown < 200 * 2**20 and seconds < 20, (grown, seconds)
    with pytest.raises(UserError) as again:  # the resume path reads through the same check
        read_checkpoint(path)
    assert str(again.value) == str(error)


def test_resuming_from_a_hostile_checkpoint_is_refused_the_same_way(good, tmp_path):
    path = craft(tmp_path, "resume", good, HOSTILE[0][1])
    model, tc = build_configs("tiny", {"steps": 2, "threads": 1, "context_window": 16,
                                       "d_model": 32, "n_layers": 2, "n_heads": 2})
    with pytest.raises(UserError) as e:
        train(model, tc, resume_from=path)
    assert_one_sentence(str(e.value), "resume/model.safetensors", "has shape")


def test_the_good_checkpoint_still_loads_and_resumes(good, tmp_path):
    path, _, _ = good
    model, tokenizer, info = load_checkpoint(path)
    assert not model.training and tokenizer.vocab_size == model.cfg.vocab_size
    assert info["state"]["step"] == 30
    header, tensors = read_checkpoint(path)
    assert any(k.startswith("optim.") for k in tensors) and "rng.torch" in tensors
    header, weights = read_checkpoint(path, weights_only=True)
    assert weights and all(k.startswith("model.") for k in weights)


def sparse_checkpoint(path: Path, meta: dict, cfg: ModelConfig) -> int:
    """A real safetensors file whose every weight matches ``cfg`` (a model too big for
    memory), written sparse: the header is real, the data is holes that take no disk.
    Returns the bytes its tensors claim."""
    model_cfg = {**json.loads(meta["model_config"]),
                 **{k: getattr(cfg, k) for k in ("d_model", "n_layers", "n_heads")}}
    header, offset = {"__metadata__": {**meta, "model_config": json.dumps(model_cfg)}}, 0
    with torch.device("meta"):
        shapes = {f"model.{k}": tuple(v.shape) for k, v in Llama(cfg).state_dict().items()}
    for name, shape in shapes.items():
        size = math.prod(shape) * 4
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        f.truncate(8 + len(blob) + offset)
    return offset


def too_big_config(vocab: int, free: int, beyond_memory: bool) -> ModelConfig | None:
    """A config whose weights take 3/4 of the free memory (so the file can be mapped,
    but weights plus the model built from them cannot fit), or, ``beyond_memory``, the
    largest config there is (a file the kernel may refuse to map at all)."""
    if beyond_memory:
        return ModelConfig(**{**HUGE, "vocab_size": vocab})
    for width in (1024, 2048, 4096, 8192):
        one, two = (parameter_count(ModelConfig(vocab_size=vocab, d_model=width,
                                                n_heads=width // 128, n_layers=n))
                    for n in (1, 2))
        layers = int((0.75 * free / 4 - (one - (two - one))) // (two - one))
        if 1 <= layers <= 64 and 2 * 4 * parameter_count(ModelConfig(
                vocab_size=vocab, d_model=width, n_heads=width // 128,
                n_layers=layers)) > free:
            return ModelConfig(vocab_size=vocab, d_model=width, n_heads=width // 128,
                               n_layers=layers)
    return None


@pytest.mark.parametrize("beyond_memory", [False, True], ids=["mappable", "beyond-memory"])
def test_a_checkpoint_too_big_for_memory_is_refused_before_loading(good, tmp_path,
                                                                  beyond_memory):
    _, meta, _ = good
    free = mem_available()
    cfg = too_big_config(json.loads(meta["model_config"])["vocab_size"], free or 0,
                         beyond_memory)
    if free is None or cfg is None:
        pytest.skip("no config here is too big for this machine's free memory")
    path = tmp_path / "huge" / "model.safetensors"
    claimed = sparse_checkpoint(path, meta, cfg)
    if 2 * claimed <= free:
        pytest.skip("this machine could hold the huge checkpoint")
    errors = []

    def load():
        try:
            load_checkpoint(path)
        except UserError as e:
            errors.append(e)

    grown = peak_rss_growth(load)
    assert errors and grown < 200 * 2**20, (errors, grown)
    assert_one_sentence(str(errors[0]), "huge/model.safetensors", "needs about",
                        "GiB", "free", "more memory")


# --- The pages that load checkpoints --------------------------------------------------

@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory, good):
    """A runs folder with a good run and a run whose checkpoint was damaged after it
    finished (one weight of the wrong shape)."""
    folder, ids = trained_store(tmp_path_factory, "hostile-pages", {"fine": {}, "bad": {}})
    bad = RunStore(folder / "llama_lab.db").checkpoint_path(ids["bad"])
    with safe_open(str(bad), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["model.output.weight"] = torch.zeros(3, 7)
    save_file(tensors, str(bad), metadata=meta)
    return folder, ids


def unescape(markdown: str) -> str:
    """An st.error body as a reader sees it (Markdown escapes and joiners removed)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


@pytest.mark.parametrize("page", ["generate", "attention", "rotary"])
def test_pages_show_a_hostile_checkpoint_as_one_error(hostile_store, monkeypatch, page):
    folder, ids = hostile_store
    monkeypatch.setenv("LLAMA_LAB_RUNS", str(folder))
    at = AppTest.from_file(str(REPO / "views" / f"{page}.py"), default_timeout=120)
    at.query_params["run"] = [ids["bad"], ids["fine"]] if page != "rotary" else [ids["bad"]]
    at.run()
    assert not at.exception, at.exception
    errors = [unescape(e.value) for e in at.error]
    # One sentence, said once per section that needs the checkpoint (Rotary has two).
    assert len(set(errors)) == 1 and len(errors) <= 2, errors
    assert_one_sentence(errors[0].split(": ", 1)[-1] if errors[0].startswith(ids["bad"])
                        else errors[0], f"{ids['bad']}/model.safetensors",
                        "model.output.weight", "has shape")
    if page == "generate":  # the good run beside it still generates
        assert len(at.code) == 1 and at.code[0].value.startswith("ROMEO:")


# --- Hard bounds on every field that changes cost -------------------------------------

BOUNDS = [
    ({"ffn_multiple_of": 5000}, "ffn_multiple_of must be at most 4,096"),
    ({"ffn_multiple_of": 4096, "d_model": 128}, "over its limit of 2048 (16 x d_model"),
    ({"ffn_multiple_of": 1_000_000}, "at most 4,096"),
    ({"eval_interval": 10**9}, "eval_interval must be at most 10,000,000"),
    ({"eval_batches": 5000}, "eval_batches must be at most 1,000"),
    ({"sample_chars": 10**6}, "sample_chars must be at most 10,000"),
    ({"threads": machine_cores() + 1}, f"threads must be at most {machine_cores()} "
                                       "(the CPU cores"),
    ({"vocab_size": 10**8}, "vocab_size must be at most 1,114,112"),
]


@pytest.mark.parametrize("overrides, words", BOUNDS, ids=[next(iter(b[0])) + str(i)
                                                          for i, b in enumerate(BOUNDS)])
def test_every_cost_field_has_a_hard_bound(overrides, words):
    with pytest.raises(ConfigError) as e:
        build_configs("tiny", overrides)
    assert_one_sentence(str(e.value), words)


def test_the_bounds_leave_every_preset_and_the_narrowest_width_alone():
    for name in ("llama", "tiny", "classroom", "nanogpt-gpu", "ladder-7-llama"):
        build_configs(name)
    build_configs(None, {"d_model": 1, "n_heads": 1, "pos": "none"})  # hidden 32 <= 64
    build_configs(None, {"ffn_multiple_of": 256, "d_model": 4096, "n_heads": 32})
    build_configs("tiny", {"threads": machine_cores()})


# --- Classroom caps on the same fields ------------------------------------------------

def test_classroom_caps_name_every_cost_field():
    room = classroom.parse("[caps]\nffn_multiple_of = 32\neval_batches = 5\n"
                           "sample_chars = 100\nthreads = 1\neval_interval = 50\n")
    fine = build_configs("tiny", {"threads": 1, "sample_chars": 100})
    assert room.violations(*fine) == []
    problems = room.violations(*build_configs("tiny", {
        "ffn_multiple_of": 64, "eval_batches": 20, "sample_chars": 200,
        "eval_interval": 10, "threads": 1}))
    assert len(problems) == 4, problems
    for field, words in (("ffn_multiple_of", "over this classroom's cap of 32"),
                         ("eval_batches", "cap of 5"), ("sample_chars", "cap of 100"),
                         ("eval_interval", "under this classroom's floor of 50")):
        (sentence,) = [p for p in problems if p.startswith(field)]
        assert_one_sentence(sentence, words)


def test_a_locked_value_may_not_break_its_own_floor():
    with pytest.raises(classroom.ClassroomError, match="under its own floor"):
        classroom.parse("[locked]\neval_interval = 10\n[caps]\neval_interval = 50\n")


# --- The launch check: estimated memory against what is free --------------------------

def test_check_fits_refuses_a_run_bigger_than_memory_naming_what_to_reduce():
    with pytest.raises(ConfigError) as e:
        check_fits(*build_configs(None, HUGE))
    assert_one_sentence(str(e.value), "needs about", "GiB", "this machine has",
                        "reduce d_model or n_layers")
    wide_batch = {"batch_size": 65536, "context_window": 8192, "d_model": 64,
                  "n_heads": 4, "n_layers": 4}
    with pytest.raises(ConfigError) as e:
        check_fits(*build_configs(None, wide_batch))
    assert_one_sentence(str(e.value), "activations", "reduce batch_size or context_window")
    check_fits(*build_configs("tiny"))  # a small run fits


def test_the_job_manager_refuses_it_before_a_run_exists(tmp_path):
    manager = JobManager(tmp_path / "runs.db", max_concurrent=1, warm=False)
    try:
        with pytest.raises(ConfigError, match="needs about"):
            manager.submit(*build_configs(None, {**HUGE, "corpus": "/no/such/file.txt"}))
        assert manager.store.list_runs() == []
    finally:
        manager.shutdown(timeout=5)


def test_the_command_line_refuses_it_before_reading_the_corpus(tmp_path, capsys):
    db = tmp_path / "runs.db"
    code = cli_main(["train", "--db", str(db), "--corpus", "/no/such/file.txt",
                     "--set", *[f"{k}={v}" for k, v in HUGE.items()]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert_one_sentence(err.removeprefix("error: "), "needs about", "reduce d_model")
    assert RunStore(db).list_runs() == []


# --- The estimate is honest -----------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {}, {"pos": "learned", "ffn": "gelu", "norm": "layernorm"}, {"attention": False},
    {"n_layers": 3, "d_model": 48, "n_heads": 3, "pos": "none", "ffn_multiple_of": 7},
])
def test_parameter_count_is_exact(overrides):
    model, _ = build_configs("tiny", overrides)
    assert parameter_count(model) == Llama(model).num_params()


MEASURE = textwrap.dedent("""
    import json, sys
    import torch
    from llama_core.presets import build_configs
    from llama_core.corpora import load_corpus
    from llama_core.training import train

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    common = {"steps": 3, "eval_interval": 1000, "eval_batches": 1, "sample_chars": 0,
              "threads": 1, "device": "cpu"}
    corpus = load_corpus("shakespeare")
    # one tiny run first, so torch's one-time costs (autograd, AdamW) are not counted
    train(*build_configs(None, {**common, "d_model": 16, "n_layers": 1, "n_heads": 2,
                                "context_window": 8, "batch_size": 2}), corpus)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = kib("VmRSS:")
    train(*build_configs(None, {**common, **json.loads(sys.argv[1])}), corpus)
    print(json.dumps({"runtime": before, "growth": kib("VmHWM:") - before}))
""")


@pytest.mark.parametrize("overrides", [
    # activations dominate
    {"d_model": 256, "n_layers": 2, "n_heads": 4, "batch_size": 16, "context_window": 128},
    # weights, gradients and AdamW state dominate
    {"d_model": 768, "n_layers": 2, "n_heads": 4, "batch_size": 1, "context_window": 8},
    # explicit T x T attention scores (the mask_ones bug) dominate
    {"d_model": 64, "n_layers": 2, "n_heads": 8, "batch_size": 8, "context_window": 512,
     "bug": "mask_ones"},
], ids=["activations", "weights", "attention-scores"])
def test_estimate_bounds_the_measured_peak_within_3x(overrides):
    """The real peak resident-memory growth of a training process (3 steps, so AdamW's
    state exists) is at most the estimate, and the estimate at most 3 x the peak."""
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(overrides)], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    model, tc = build_configs(None, {"threads": 1, **overrides})
    est = estimate(model, tc)
    training = est.total - est.runtime
    print(f"{overrides}: measured {measured['growth'] / 2**20:.0f} MiB, "
          f"estimate {training / 2**20:.0f} MiB, runtime {measured['runtime'] / 2**20:.0f} "
          f"MiB")
    assert measured["growth"] <= training <= 3 * measured["growth"]
    assert measured["runtime"] <= RUNTIME_BYTES
