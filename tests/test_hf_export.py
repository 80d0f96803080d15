"""Exporting runs to Hugging Face's Llama layout: a run trained here for a few steps,
written by ``python -m llama_core export RUN_ID --format hf DIR``, loads with
``LlamaForCausalLM.from_pretrained`` and ``AutoTokenizer`` and gives our logits (1e-4)
and our greedy text; imported back, it is the same model. A run that is not a Llama is
refused naming what is not, and nothing is written. No network."""

from __future__ import annotations

import json

import pytest
import torch

from helpers_text import assert_one_sentence
from llama_core.checkpoint import load_checkpoint
from llama_core.lab.cli import main
from llama_core.lab.store import RunStore
from llama_core.tokenizer import CharTokenizer

transformers = pytest.importorskip("transformers")

LLAMA3 = '{"rope_type": "llama3", "factor": 2.0, "low_freq_factor": 1.0, ' \
         '"high_freq_factor": 4.0, "original_max_position_embeddings": 16}'
RUNS = {  # name: --set pairs on the tiny preset
    "mha-untied": [],
    "gqa-tied-llama3": ["n_kv_heads=2", "tie_embeddings=true", f"rope_scaling={LLAMA3}",
                        "rope_theta=500000"],
}
QUICK = ["eval_interval=40", "eval_batches=1", "sample_chars=0", "threads=1"]
PROMPT = "ROMEO:\nWhat"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(args, capsys):
    capsys.readouterr()
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two runs of 40 steps (the tiny preset), trained by the command line in-process."""
    db = tmp_path_factory.mktemp("runs") / "llama_lab.db"
    ids = {}
    for name, pairs in RUNS.items():
        assert main(["train", "--preset", "tiny", "--steps", "40", "--set", *QUICK, *pairs,
                     "--name", name, "--db", str(db), "--json"]) == 0
        ids[name] = next(r.id for r in RunStore(db).list_runs() if r.name == name)
    return db, ids


@pytest.mark.parametrize("name", list(RUNS))
def test_an_export_loads_in_transformers_with_our_logits_and_greedy_text(
        tmp_path, capsys, trained, name):
    db, ids = trained
    run_id = ids[name]
    out_dir = tmp_path / "hf"
    code, out, _ = cli(["export", run_id, "--format", "hf", str(out_dir), "--db", str(db),
                        "--json"], capsys)
    assert code == 0
    assert sorted(json.loads(out)["files"]) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]
    ours, tokenizer, _ = load_checkpoint(RunStore(db).checkpoint_path(run_id))
    config = json.loads((out_dir / "config.json").read_text())
    assert config["num_key_value_heads"] == ours.cfg.kv_heads
    assert config["tie_word_embeddings"] == ours.cfg.tie_embeddings
    assert config["rope_scaling"] == (json.loads(LLAMA3) if "llama3" in name else None)
    assert config["hidden_act"] == "silu" and config["torch_dtype"] == "float32"

    theirs = transformers.LlamaForCausalLM.from_pretrained(out_dir).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir)
    ids_ = hf_tokenizer.encode(PROMPT, add_special_tokens=False)
    assert ids_ == tokenizer.encode(PROMPT)
    x = torch.tensor([ids_])
    with torch.no_grad():
        assert (theirs(x).logits - ours(x)).abs().max() < 1e-4
    new = ours.cfg.context_window - x.shape[1]  # within the context: no window sliding
    greedy = theirs.generate(x, max_new_tokens=new, do_sample=False)
    assert torch.equal(greedy, ours.generate(x, new, temperature=0))
    assert hf_tokenizer.decode(greedy[0]) == tokenizer.decode(greedy[0])


def test_an_exported_run_imports_back_as_the_same_model(tmp_path, capsys, trained):
    db, ids = trained
    run_id = ids["gqa-tied-llama3"]
    assert cli(["export", run_id, "--format", "hf", str(tmp_path / "hf"), "--db", str(db)],
               capsys)[0] == 0
    code, out, _ = cli(["import", str(tmp_path / "hf"), "--db", str(db), "--json"], capsys)
    assert code == 0
    back = json.loads(out)["run_id"]
    a, tok_a, _ = load_checkpoint(RunStore(db).checkpoint_path(run_id))
    b, tok_b, _ = load_checkpoint(RunStore(db).checkpoint_path(back))
    assert a.cfg == b.cfg
    assert isinstance(tok_b, CharTokenizer) and tok_a == tok_b  # characters, not a stand-in
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("changes,phrase", [
    (["norm=layernorm", "pos=learned"], "LayerNorm (norm=layernorm) and learned positions"),
    (["ffn=gelu"], "GELU feed-forward"),
    (["causal=false"], "no causal mask"),
    (["bug=rope_off_by_one"], "pitfall switched on"),
])
def test_a_run_that_is_not_llama_is_refused_naming_what_is_not(tmp_path, capsys, changes,
                                                               phrase):
    db = tmp_path / "runs" / "llama_lab.db"
    assert main(["train", "--preset", "tiny", "--steps", "2", "--set", *QUICK, *changes,
                 "--db", str(db), "--json"]) == 0
    run_id = RunStore(db).list_runs()[0].id
    code, out, err = cli(["export", run_id, "--format", "hf", str(tmp_path / "hf"),
                          "--db", str(db)], capsys)
    assert code == 2 and out == ""
    message = err.removeprefix("error: ").strip()
    assert phrase in message and "not a Llama" in message
    assert_one_sentence(message)
    assert not (tmp_path / "hf").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]  # no temporary folder left


def test_exporting_into_a_folder_that_holds_files_is_refused(tmp_path, capsys, trained):
    db, ids = trained
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    code, _, err = cli(["export", ids["mha-untied"], "--format", "hf", str(tmp_path / "hf"),
                        "--db", str(db)], capsys)
    assert code == 2 and "not an empty folder" in err
    assert [p.name for p in (tmp_path / "hf").iterdir()] == ["notes.txt"]
    code, _, err = cli(["export", "rnothere", "--format", "hf", str(tmp_path / "x"),
                        "--db", str(db)], capsys)
    assert code == 2 and "There is no run" in err


def test_no_project_module_imports_transformers():
    """transformers is what the tests compare against, never what the dashboard or the
    library run on: no module of any layer imports it, even lazily."""
    from test_layers import REPO, imports_of, project_modules

    modules = project_modules(REPO)
    assert "llama_core.hf" in modules and "views.attention" in modules
    users = sorted(name for name, path in modules.items()
                   if any(m.split(".")[0] == "transformers"
                          for m in imports_of(name, path, modules)))
    assert users == []
