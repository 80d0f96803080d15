"""Importing Hugging Face Llamas: tiny random checkpoints made by transformers itself
(LlamaConfig + LlamaForCausalLM(...).save_pretrained) in the shapes real ones have (MHA
and GQA, tied and untied, Llama 3 RoPE scaling, bfloat16 and float32, one file or
shards), with a byte-pair tokenizer learned by ``tokenizers`` on the built-in corpus.
An import gives transformers' logits and greedy text, is a run the pages open, and a
config that is not a Llama is one sentence with nothing written. No network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers_text import assert_one_sentence
from llama_core import hf
from llama_core.checkpoint import load_checkpoint
from llama_core.corpora import shakespeare_text
from llama_core.lab.cli import main
from llama_core.lab.hf_runs import imported_from
from llama_core.lab.store import RunStore
from llama_core.model import Llama, apply_rope, rope_table
from llama_core.probes import probe_rope_pairs
from llama_core.tokenizer import BytePairTokenizer

transformers = pytest.importorskip("transformers")

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
SHAPES = {  # name: (key/value heads of 4, tied, rope_scaling, dtype)
    "mha-untied-fp32": (4, False, None, torch.float32),
    "gqa-tied-llama3-fp32": (2, True, LLAMA3, torch.float32),
    "gqa-tied-llama3-bf16": (2, True, LLAMA3, torch.bfloat16),
    "mqa-untied-bf16": (1, False, None, torch.bfloat16),
}
TEXT = "ROMEO:\nBut, soft! what light through yonder"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer() -> BytePairTokenizer:
    return BytePairTokenizer.train_from_text(shakespeare_text()[:100_000], 300)


def make_checkpoint(folder: Path, tokenizer, kv=2, tied=False, scaling=None,
                    dtype=torch.float32, shard: str | None = None, **config):
    """A random Llama saved by transformers, with our byte-pair tokenizer.json beside it.
    The embedding has 320 rows for the tokenizer's 300 tokens, as real vocabularies are
    padded."""
    torch.manual_seed(0)
    hc = transformers.LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv, max_position_embeddings=64,
        tie_word_embeddings=tied, rope_theta=500000.0,
        rope_scaling=dict(scaling) if scaling else None,  # transformers fills it in
        rms_norm_eps=1e-5, **config)
    model = transformers.LlamaForCausalLM(hc).to(dtype).eval()
    with torch.no_grad():  # grown weights, as trained ones: decisive logits
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(10.0)
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    tokenizer.save(folder / "tokenizer.json")
    # What transformers reads back from the files, computing in float32 as Llama Lab does
    # (bfloat16 weights widened; its rotary table computed afresh in float32).
    return transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def import_cli(args, capsys):
    capsys.readouterr()  # what making the checkpoint printed
    code = main(["import", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("shape", list(SHAPES))
def test_an_import_gives_transformers_logits_and_greedy_text(tmp_path, capsys, tokenizer,
                                                             shape):
    kv, tied, scaling, dtype = SHAPES[shape]
    reference = make_checkpoint(tmp_path / shape, tokenizer, kv, tied, scaling, dtype)
    db = tmp_path / "runs" / "llama_lab.db"
    code, out, _ = import_cli([str(tmp_path / shape), "--json", "--db", str(db)], capsys)
    assert code == 0
    result = json.loads(out)
    run = RunStore(db).get_run(result["run_id"])
    # A finished run with no training curve, marked imported, its checkpoint in our format.
    assert run.status == "finished" and run.steps == 0 and run.final_val_loss is None
    assert RunStore(db).metrics(run.id) == []
    record = imported_from(run)
    assert record["stored_as"] == ("bfloat16" if dtype == torch.bfloat16 else "float32")
    assert record["loaded_as"] == "float32"
    model, tok, _ = load_checkpoint(RunStore(db).checkpoint_path(run.id))
    assert tok == tokenizer and model.cfg.kv_heads == kv and model.cfg.tie_embeddings == tied
    assert model.cfg.rope_scaling == scaling and model.cfg.ffn_hidden == 96
    assert next(model.parameters()).dtype == torch.float32

    ids = torch.tensor([tok.encode(TEXT)])
    assert ids.shape[1] + 16 <= 64  # prompt and greedy text within the context
    with torch.no_grad():
        theirs = reference(ids).logits
        ours = model(ids)
    assert (ours - theirs).abs().max() < 1e-4
    greedy = reference.generate(ids, max_new_tokens=16, do_sample=False)
    assert torch.equal(model.generate(ids, 16, temperature=0), greedy)
    assert tok.decode(greedy[0]).startswith(TEXT)


def test_sharded_weights_import_like_one_file(tmp_path, capsys, tokenizer):
    reference = make_checkpoint(tmp_path / "sharded", tokenizer, shard="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    db = tmp_path / "llama_lab.db"
    code, out, _ = import_cli([str(tmp_path / "sharded"), "--name", "shards", "--json",
                               "--db", str(db)], capsys)
    assert code == 0
    run = RunStore(db).get_run(json.loads(out)["run_id"])
    assert run.name == "shards"
    model, tok, _ = load_checkpoint(RunStore(db).checkpoint_path(run.id))
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        assert (model(ids) - reference(ids).logits).abs().max() < 1e-4


BAD_CONFIGS = [
    ({"hidden_act": "gelu"}, "gelu"),
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"model_type": "gpt2"}, "'gpt2' model, not a Llama"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn RoPE scaling"),
    ({"head_dim": 32}, "head_dim of 32"),
]


@pytest.mark.parametrize("change,phrase", BAD_CONFIGS, ids=[p for _, p in BAD_CONFIGS])
def test_a_config_that_is_not_llama_is_one_sentence_and_nothing_is_written(
        tmp_path, capsys, tokenizer, change, phrase):
    folder = tmp_path / "model"
    make_checkpoint(folder, tokenizer)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    runs = tmp_path / "runs"
    code, out, err = import_cli([str(folder), "--db", str(runs / "llama_lab.db")], capsys)
    assert code == 2 and out == ""
    message = err.removeprefix("error: ").strip()
    assert phrase in message
    assert_one_sentence(message)
    assert RunStore(runs / "llama_lab.db").list_runs() == []
    assert [p.name for p in runs.iterdir() if p.is_dir()] == []


def test_missing_files_are_one_sentence_each(tmp_path, capsys, tokenizer):
    folder = tmp_path / "model"
    make_checkpoint(folder, tokenizer)
    db = str(tmp_path / "llama_lab.db")
    (folder / "tokenizer.json").unlink()
    for broken, phrase in ((lambda: None, "no tokenizer.json"),
                           (lambda: (folder / "model.safetensors").unlink(),
                            "neither model.safetensors")):
        broken()
        code, _, err = import_cli([str(folder), "--db", db], capsys)
        assert code == 2 and phrase in err
        assert_one_sentence(err.removeprefix("error: ").strip())
    code, _, err = import_cli([str(tmp_path / "nowhere"), "--db", db], capsys)
    assert code == 2 and "There is no folder" in err


def test_a_missing_weight_is_named(tmp_path, tokenizer):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    make_checkpoint(folder, tokenizer)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    from llama_core.hf_folder import open_hf_folder

    with pytest.raises(hf.NotLlamaError) as e:
        open_hf_folder(folder)
    assert "model.layers.1.mlp.up_proj.weight" in str(e.value)
    assert_one_sentence(str(e.value))


def test_a_model_larger_than_memory_is_refused_before_anything_is_read(tmp_path, capsys,
                                                                       tokenizer):
    """A config claiming about 60 billion parameters; no weights are needed to refuse it."""
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 8192,
        "intermediate_size": 28672, "num_hidden_layers": 64, "num_attention_heads": 64,
        "num_key_value_heads": 8, "max_position_embeddings": 8192}))
    code, _, err = import_cli([str(folder), "--db", str(tmp_path / "l.db")], capsys)
    assert code == 2 and "of memory to import as float32" in err
    assert_one_sentence(err.removeprefix("error: ").strip())


def test_a_hub_id_offline_is_one_sentence(tmp_path, capsys, monkeypatch):
    # huggingface_hub's own offline switch (read from HF_HUB_OFFLINE when it is first
    # imported, so set on the module too): no test ever reaches the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    code, _, err = import_cli(["HuggingFaceTB/SmolLM2-135M", "--db",
                               str(tmp_path / "l.db")], capsys)
    assert code == 2 and "could not be downloaded" in err
    assert_one_sentence(err.removeprefix("error: ").strip())


# --- The permutation ------------------------------------------------------------------

@pytest.mark.parametrize("heads,head_dim", [(4, 16), (2, 8), (1, 64)])
def test_the_permutation_round_trips_and_is_transformers_own(heads, head_dim):
    w = torch.randn(heads * head_dim, 24)
    assert torch.equal(hf.from_hf_rows(hf.to_hf_rows(w, heads), heads), w)
    assert torch.equal(hf.to_hf_rows(hf.from_hf_rows(w, heads), heads), w)
    # transformers' permute from convert_llama_weights_to_hf.py, written out
    dim1, dim2 = w.shape
    permute = w.view(heads, dim1 // heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)
    assert torch.equal(hf.to_hf_rows(w, heads), permute)


def test_adjacent_pairs_on_our_rows_are_rotate_half_on_theirs():
    """The reason for the permutation: Meta's rotation of our rows equals Hugging Face's
    rotate_half of the permuted rows, permuted."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    head_dim, T = 16, 10
    x = torch.randn(1, 1, T, head_dim)
    freqs = rope_table(head_dim, T)
    ours = apply_rope(x, freqs)
    angles = torch.cat([torch.angle(freqs)] * 2, dim=-1)  # rotate_half's cos/sin layout
    theirs, _ = apply_rotary_pos_emb(hf.to_hf_rows(x[0, 0].T, 1).T[None, None],
                                     x, angles.cos(), angles.sin(), unsqueeze_dim=0)
    assert torch.allclose(hf.to_hf_rows(ours[0, 0].T, 1).T, theirs[0, 0], atol=1e-5)


def test_the_pitfall_is_an_import_without_the_permutation(tmp_path, tokenizer):
    """The hf_without_permutation bug's model with correctly loaded weights computes
    exactly what the correct model computes with the rows left unpermuted, far from
    transformers' logits; its probe fires, the correct model's does not."""
    from llama_core.hf_folder import open_hf_folder, read_weights

    reference = make_checkpoint(tmp_path / "m", tokenizer, kv=2)
    ckpt = open_hf_folder(tmp_path / "m")
    right, unpermuted = read_weights(ckpt), read_weights(ckpt, permute=False)
    correct = Llama(ckpt.config).eval()
    correct.load_state_dict(right)
    careless = Llama(ckpt.config).eval()
    careless.load_state_dict(unpermuted)
    import dataclasses

    buggy = Llama(dataclasses.replace(ckpt.config, bug="hf_without_permutation")).eval()
    buggy.load_state_dict(right)
    ids = torch.tensor([tokenizer.encode(TEXT)])
    with torch.no_grad():
        theirs = reference(ids).logits
        assert (correct(ids) - theirs).abs().max() < 1e-4
        assert (careless(ids) - theirs).abs().max() > 1.0
        assert torch.allclose(buggy(ids), careless(ids), atol=1e-4)
    assert probe_rope_pairs(buggy)["fired"] and not probe_rope_pairs(correct)["fired"]


# --- The real targets' shapes, without their weights -----------------------------------

REAL_CONFIGS = {  # the fields of their released config.json that shape the model
    "SmolLM2-135M": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         max_position_embeddings=8192, rope_theta=100000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True),
    "TinyLlama-1.1B": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                           num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                           max_position_embeddings=2048, rope_theta=10000.0,
                           rms_norm_eps=1e-5, tie_word_embeddings=False),
    "Llama-3.2-1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                         max_position_embeddings=131072, rope_theta=500000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192}),
}


@pytest.mark.parametrize("name", list(REAL_CONFIGS))
def test_a_real_targets_config_gives_transformers_weight_names_and_shapes(name):
    """Built on the meta device (no memory): every weight transformers' LlamaForCausalLM
    has for the released config, Llama Lab's model has under the mapped name with the
    same shape, and the parameter counts agree."""
    from llama_core.memory import parameter_count, parameter_shapes

    fields = REAL_CONFIGS[name]
    cfg, notes = hf.from_hf_config({"model_type": "llama", "hidden_act": "silu",
                                    **json.loads(json.dumps(fields))}, name)
    assert cfg.ffn_hidden == fields["intermediate_size"] and cfg.kv_heads == fields[
        "num_key_value_heads"]
    assert bool(notes) == (fields["max_position_embeddings"] > hf.MAX_CONTEXT)
    with torch.device("meta"):
        theirs = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            **json.loads(json.dumps(fields))))
    their_shapes = {n: tuple(p.shape) for n, p in theirs.named_parameters()}
    ours = {n: shape for n, (shape, _) in parameter_shapes(cfg).items()}
    names = hf.hf_names(cfg)
    assert set(names.values()) == set(their_shapes)  # a tied head is one parameter in both
    assert all(their_shapes[names[n]] == shape for n, shape in ours.items())
    assert parameter_count(cfg) == sum(p.numel() for p in theirs.parameters())


def test_a_character_vocabulary_smaller_than_the_embedding_imports_and_loads(tmp_path,
                                                                            capsys):
    """Llama Lab's character layout of tokenizer.json with spare embedding rows (95
    characters, 320 rows): kept as a byte-pair tokenizer, so the checkpoint loads."""
    from llama_core.data import CharTokenizer
    from llama_core.tokenizer import char_tokenizer_json

    make_checkpoint(tmp_path / "m", BytePairTokenizer.train_from_text("ab " * 400, 257))
    chars = CharTokenizer([chr(32 + i) for i in range(95)])
    (tmp_path / "m" / "tokenizer.json").write_text(char_tokenizer_json(chars))
    db = tmp_path / "llama_lab.db"
    code, out, _ = import_cli([str(tmp_path / "m"), "--db", str(db), "--json"], capsys)
    assert code == 0
    model, tok, _ = load_checkpoint(RunStore(db).checkpoint_path(json.loads(out)["run_id"]))
    assert tok.vocab_size == 95 and model.cfg.vocab_size == 320
    assert tok.encode("Hi there") == chars.encode("Hi there")
