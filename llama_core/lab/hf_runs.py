"""Runs and Hugging Face models: a real checkpoint imported as a run, a run exported as
a Hugging Face Llama folder.

An imported model is an ordinary run in the store: status finished, zero steps, no
metrics (no training curve), its checkpoint in Llama Lab's format with the model's own
tokenizer, so every page that opens a run's checkpoint opens it. Its train_config says
where it came from instead of how it trained: ``{"imported": {"source": ..., "stored_as":
"bfloat16", "loaded_as": "float32", "tokenizer": "BytePairTokenizer", ...}}``
(``imported_from`` reads it).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import UserError
from .store import RunStore

IMPORTED = "imported"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json",
             "tokenizer.json", "tokenizer_config.json", "generation_config.json"]


def imported_from(run) -> dict | None:
    """The import record of a run that was imported (source, stored_as, loaded_as, ...),
    None for a run trained here."""
    record = (run.train_config or {}).get(IMPORTED)
    return record if isinstance(record, dict) else None


# --- Import -----------------------------------------------------------------------

def import_model(store: RunStore, source: str, name: str | None = None) -> dict:
    """Import a Hugging Face Llama (a local folder, or a hub id when online) as a finished
    run; return what was imported. Every problem is refused with one sentence before the
    store or the runs folder is touched; a failure while writing leaves neither a run
    nor a file behind."""
    from ..hf_folder import LOADED_AS, check_memory, open_hf_folder, read_weights

    folder, label = resolve_source(source)
    ckpt = open_hf_folder(folder, label)
    check_memory(ckpt)
    _check_disk(store, ckpt.params * 4, label)
    state = read_weights(ckpt)
    hf = ckpt.hf_config
    record = {"source": label, "stored_as": ckpt.source_dtype, "loaded_as": LOADED_AS,
              "architectures": hf.get("architectures"), "notes": ckpt.notes,
              "bos_token_id": hf.get("bos_token_id"), "eos_token_id": hf.get("eos_token_id"),
              "tokenizer": type(ckpt.tokenizer).__name__}  # what a token is, for the pages
    train_config = {IMPORTED: record, "device": "cpu"}
    run_id = store.create_run(ckpt.config, train_config, name=name or label,
                              pid=os.getpid())
    try:
        path = _save(store, run_id, ckpt.config, state, ckpt.tokenizer, train_config)
        del state
        store.finish_run(run_id, "finished", result={
            "checkpoint": path, "params": ckpt.params, "steps": 0, "tokens": 0,
            "device": "cpu"})
    except BaseException:
        store.finish_run(run_id, "failed", error="The import did not complete.")
        store.delete_runs([run_id])
        raise
    cfg = ckpt.config
    return {"run_id": run_id, "name": store.get_run(run_id).name, "source": label,
            "params": ckpt.params, "stored_as": ckpt.source_dtype, "loaded_as": LOADED_AS,
            "tokenizer": type(ckpt.tokenizer).__name__,
            "tokenizer_tokens": ckpt.tokenizer.vocab_size, "vocab_size": cfg.vocab_size,
            "context_window": cfg.context_window,
            "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "n_kv_heads": cfg.kv_heads,
            "tie_embeddings": cfg.tie_embeddings, "rope_scaling": cfg.rope_scaling,
            "notes": ckpt.notes, "checkpoint": str(path)}


def _save(store: RunStore, run_id: str, cfg, state, tokenizer, train_config) -> Path:
    """Write the run's checkpoint from a state dict: the model is built on the meta
    device (no memory, no random start) and given the imported tensors themselves."""
    import torch

    from ..checkpoint import save_checkpoint
    from ..model import Llama

    with torch.device("meta"):
        model = Llama(cfg)
    model.load_state_dict(state, assign=True)
    path = store.run_dir(run_id, create=True) / "model.safetensors"
    return save_checkpoint(path, model, tokenizer, train_config,
                           {"step": 0, "tokens": 0, "seconds": 0.0})


def _check_disk(store: RunStore, need: int, label: str) -> None:
    from ..memory import human_bytes

    store.runs_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(store.runs_dir).free
    if need * 1.05 > free:
        raise UserError(f"{label} needs about {human_bytes(need)} of disk in the runs folder "
                        f"as float32 but it has {human_bytes(free)} free; free some space or "
                        "set LLAMA_LAB_RUNS to a larger disk.")


def resolve_source(source: str) -> tuple[Path, str]:
    """(folder, label) for a local folder or a Hugging Face hub id (downloaded: config.json
    first, checked, then the weights). An id needs an online machine and the
    huggingface_hub package; without them, one sentence."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path, path.resolve().name
    if path.exists():
        raise UserError(f"{source} is a file, not a folder; give the folder holding "
                        "config.json, the safetensors weights and tokenizer.json.")
    if not HUB_ID.match(source) or source.startswith((".", "/", "~")):
        raise UserError(f"There is no folder {source}; give a folder holding config.json, "
                        "the safetensors weights and tokenizer.json, or a Hugging Face model "
                        "id such as HuggingFaceTB/SmolLM2-135M.")
    return _download(source), source


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{repo_id} is not a folder here, and downloading it needs the "
                        "huggingface_hub package (pip install huggingface_hub); or give a "
                        "local folder.") from None
    from ..hf import from_hf_config
    from ..hf_folder import read_json, check_memory_for

    try:
        first = Path(snapshot_download(repo_id, allow_patterns=["config.json"]))
        cfg, _ = from_hf_config(read_json(first / "config.json", repo_id), repo_id)
        check_memory_for(cfg, repo_id)
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except UserError:
        raise
    except Exception as e:
        reason = type(e).__name__
        raise UserError(f"{repo_id} could not be downloaded from the Hugging Face Hub "
                        f"({reason}); check the id, that this machine is online and that "
                        "the model's licence is accepted, or give a local folder.") from None


# --- Export -----------------------------------------------------------------------

def export_run(store: RunStore, run_id: str, folder: str | Path) -> dict:
    """Write a run's checkpoint as a Hugging Face Llama folder (``hf_folder.write_hf_folder``);
    a run that is not a Llama is refused naming what is not, before anything is read."""
    from ..checkpoint import load_checkpoint
    from ..config import model_from_dict
    from ..hf import check_exportable
    from ..hf_folder import write_hf_folder

    run = store.get_run(run_id)
    check_exportable(model_from_dict(run.model_config))
    path = store.checkpoint_path(run_id)
    if path is None or not path.is_file():
        raise UserError(f"Run {run_id} has no checkpoint to export (it is {run.status}); "
                        "export a run that finished training.")
    model, tokenizer, info = load_checkpoint(path)
    record = imported_from(run) or {}
    out = write_hf_folder(model.state_dict(), model.cfg, tokenizer, folder,
                          record.get("bos_token_id"), record.get("eos_token_id"))
    return {"run_id": run_id, "folder": str(out), "params": model.num_params(),
            "files": sorted(p.name for p in out.iterdir()),
            "tokenizer": type(tokenizer).__name__}
