"""Hugging Face's files on disk: a Llama model folder read (``open_hf_folder``, then
``read_weights``) and written (``write_hf_folder``).

A folder holds ``config.json``, the weights as one ``model.safetensors`` or as shards
listed in ``model.safetensors.index.json``, and ``tokenizer.json``. Everything that can
be checked from the files' headers is checked before a tensor is read: that the config
is a Llama (llama_core.hf), that every weight is there with the shape the config implies
and a float dtype, that the tokenizer fits the embedding, and that the weights fit in
this machine's memory once in float32, the dtype Llama Lab's model computes in
(bfloat16 and float16 weights are widened to float32, exactly). Each refusal is one
sentence.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import ModelConfig
from .errors import UserError
from .hf import (check_hf_names, from_hf_config, from_hf_state_dict, hf_names,
                 to_hf_config, to_hf_state_dict)
from .memory import human_bytes, mem_available, parameter_shapes
from .tokenizer import (BytePairTokenizer, CharTokenizer, char_tokenizer_json,
                        read_tokenizer_file)

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
FLOAT_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
LOADED_AS = "float32"  # what Llama Lab's model computes in


class HFFolderError(UserError):
    """A Hugging Face model folder that cannot be read as a Llama."""


@dataclass
class HFCheckpoint:
    """A Hugging Face Llama folder, checked from its headers; no tensor read yet."""

    label: str
    folder: Path
    config: ModelConfig
    hf_config: dict
    tokenizer: CharTokenizer | BytePairTokenizer
    files: dict[str, Path]          # Hugging Face tensor name -> the file holding it
    dtypes: dict[str, str]          # tensor name -> safetensors dtype ("BF16", ...)
    notes: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(math.prod(shape) for shape, _ in parameter_shapes(self.config).values())

    @property
    def source_dtype(self) -> str:
        """The weights' dtype as stored, e.g. bfloat16 (or "float16 and float32")."""
        kinds = sorted({DTYPE_NAMES[d] for d in self.dtypes.values()})
        return " and ".join(kinds)


def open_hf_folder(folder: str | Path, label: str | None = None) -> HFCheckpoint:
    """Check a Hugging Face Llama folder from its headers (see the module docstring)."""
    from safetensors import safe_open

    folder = Path(folder)
    label = label or folder.name
    if not folder.is_dir():
        raise HFFolderError(f"{label} is not a folder; give a folder holding config.json, "
                            "the safetensors weights and tokenizer.json, or a Hugging Face "
                            "model id.")
    hf_config = read_json(folder / "config.json", label)
    cfg, notes = from_hf_config(hf_config, label)
    check_memory_for(cfg, label)  # from the config alone: nothing else is read first
    files = _weight_files(folder, label)
    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    where: dict[str, Path] = {}
    for path in sorted(set(files.values()) if files else [folder / SINGLE]):
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    s = f.get_slice(name)
                    layout[name] = (tuple(s.get_shape()), s.get_dtype())
                    where[name] = path
        except Exception:
            raise HFFolderError(f"{label}/{path.name} is not a readable safetensors file; "
                                "download it again.") from None
    names = check_hf_names(layout, cfg, label)
    expected = {theirs: parameter_shapes(cfg)[ours][0] for ours, theirs in hf_names(cfg).items()}
    for name in names:
        shape, dtype = layout[name]
        if dtype not in FLOAT_DTYPES:
            raise HFFolderError(f"{label}'s {name} is stored as {dtype}, not float32, float16 "
                                "or bfloat16; use unquantized weights.")
        if shape != expected[name]:
            raise HFFolderError(f"{label}'s {name} has shape {_shape(shape)} where its "
                                f"config.json implies {_shape(expected[name])}; use the "
                                "config.json that came with these weights.")
    tokenizer = _tokenizer(folder, label, cfg)
    return HFCheckpoint(label, folder, cfg, dict(hf_config), tokenizer,
                        {n: where[n] for n in names}, {n: layout[n][1] for n in names}, notes)


def check_memory(ckpt: HFCheckpoint) -> None:
    """Refuse, before any tensor is read, weights that will not fit in memory as float32."""
    check_memory_for(ckpt.config, ckpt.label)


def check_memory_for(cfg: ModelConfig, label: str) -> None:
    """The same check from the config alone (before a download): the float32 weights,
    and a second copy while the checkpoint file is written."""
    params = sum(math.prod(shape) for shape, _ in parameter_shapes(cfg).values())
    need, free = 2 * params * 4, mem_available()
    if free is not None and need > free:
        raise HFFolderError(
            f"{label} has {params / 1e9:.2f} billion parameters, which need about "
            f"{human_bytes(need)} of memory to import as {LOADED_AS} but this machine has "
            f"{human_bytes(free)} free; import it on a machine with more memory.")


def read_weights(ckpt: HFCheckpoint, permute: bool = True) -> dict[str, torch.Tensor]:
    """The weights as a Llama Lab float32 state dict (names and rotary rows converted;
    ``permute=False`` leaves the rows in Hugging Face's order: the pitfall)."""
    from safetensors import safe_open

    check_memory(ckpt)
    tensors: dict[str, torch.Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for name, path in ckpt.files.items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():
        with safe_open(str(path), framework="pt") as f:
            for name in names:
                tensors[name] = f.get_tensor(name).to(torch.float32)
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise HFFolderError(f"{ckpt.label}'s {name} holds values that are not finite "
                                "numbers; download the weights again.")
    return from_hf_state_dict(tensors, ckpt.config, permute=permute)


def _weight_files(folder: Path, label: str) -> dict[str, Path]:
    """Tensor name -> shard from the index, or {} for a single model.safetensors."""
    index = folder / INDEX
    if index.is_file():
        data = read_json(index, label, INDEX)
        weight_map = data.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise HFFolderError(f"{label}'s {INDEX} has no weight_map; download it again.")
        out = {}
        for name, file in weight_map.items():
            path = folder / str(file)
            if Path(str(file)).name != str(file) or not path.is_file():
                raise HFFolderError(f"{label}'s {INDEX} names a shard {str(file)[:80]!r} "
                                    "that is not in the folder; download every shard.")
            out[name] = path
        return out
    if not (folder / SINGLE).is_file():
        raise HFFolderError(f"{label} has neither {SINGLE} nor {INDEX}; Llama Lab reads "
                            "safetensors weights, so download those (not pytorch_model.bin).")
    return {}


def _tokenizer(folder: Path, label: str, cfg: ModelConfig):
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise HFFolderError(f"{label} has no tokenizer.json; Llama Lab needs the model's "
                            "tokenizer.json (its fast tokenizer) to read and write text.")
    tokenizer = read_tokenizer_file(path)
    if isinstance(tokenizer, CharTokenizer) and tokenizer.vocab_size != cfg.vocab_size:
        # A Llama Lab checkpoint's character vocabulary fills the embedding exactly; with
        # spare rows it is kept as the byte-pair tokenizer it also is.
        tokenizer = BytePairTokenizer.from_file(path)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise HFFolderError(f"{label}'s tokenizer.json has {tokenizer.vocab_size:,} tokens but "
                            f"its embedding only {cfg.vocab_size:,} rows; use the tokenizer "
                            "that came with these weights.")
    return tokenizer


def read_json(path: Path, label: str, what: str | None = None) -> dict:
    """A JSON object from the folder, or one sentence naming the file."""
    what = what or path.name
    if not path.is_file():
        raise HFFolderError(f"{label} has no {what}; give a folder holding config.json, the "
                            "safetensors weights and tokenizer.json.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise HFFolderError(f"{label}'s {what} is not valid JSON; download it again.") from None
    if not isinstance(data, dict):
        raise HFFolderError(f"{label}'s {what} is JSON but not an object; download it again.")
    return data


def _shape(shape) -> str:
    return " x ".join(map(str, shape)) if shape else "a scalar"


# --- Writing ------------------------------------------------------------------------

def write_hf_folder(state: dict[str, torch.Tensor], cfg: ModelConfig, tokenizer,
                    folder: str | Path, bos_token_id=None, eos_token_id=None) -> Path:
    """Write config.json, model.safetensors (Hugging Face's names, float32),
    generation_config.json, tokenizer.json and tokenizer_config.json into ``folder``,
    which must be new or empty. Everything is written to a temporary folder beside it
    first and moved in at the end, so a failure leaves no half-written model."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder.name} already exists and is not an empty folder; export "
                        "into a new folder.")
    tensors = to_hf_state_dict(state, cfg)  # refuses a config that is not a Llama first
    parent = folder.absolute().parent
    if not parent.is_dir():
        raise UserError(f"The folder {parent.name} to export into does not exist; create it "
                        "first or choose another place.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    try:
        config = to_hf_config(cfg, bos_token_id, eos_token_id)
        _write_json(tmp / "config.json", config)
        save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()},
                  str(tmp / SINGLE), metadata={"format": "pt"})
        _write_json(tmp / "generation_config.json", {
            "bos_token_id": bos_token_id, "eos_token_id": eos_token_id,
            "pad_token_id": None, "do_sample": False})
        if isinstance(tokenizer, CharTokenizer):
            (tmp / "tokenizer.json").write_text(char_tokenizer_json(tokenizer), encoding="utf-8")
        else:
            tokenizer.save(tmp / "tokenizer.json")
        _write_json(tmp / "tokenizer_config.json", {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
            "model_max_length": cfg.context_window})
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
