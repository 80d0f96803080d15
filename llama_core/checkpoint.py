"""The checkpoint file: writing it, checking it, reading it.

A checkpoint is one safetensors file that carries everything needed to use or resume a
run: the model's weights (``model.<name>``), for resuming AdamW's moments and step
(``optim.<kind>.<name>``) and the random-number states (``rng.batches``, ``rng.torch``),
and as JSON metadata the two configs, the tokenizer and the run's state. It is written
to a temporary name first, so a crash never leaves half a checkpoint.

A ``model.safetensors`` can also be damaged or hostile: metadata that is not JSON or not
an object, a config of the wrong types or claiming a model far larger than memory,
weights missing, extra, of the wrong dtype or shape, a tokenizer that does not match the
embedding. Every reader goes through ``check_header``, which refuses all of these with
one sentence naming the file, from the safetensors header alone (names, dtypes and
shapes; no tensor data is touched) against the shapes the config implies on the meta
device, and refuses a file that would not fit in memory before anything is loaded.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ModelConfig, TrainConfig, model_from_dict, to_dict
from .data import CharTokenizer
from .errors import UserError
from .memory import check_loadable, parameter_shapes
from .model import Llama
from .tokenizer import BytePairTokenizer, Tokenizer, tokenizer_from_json

CHECKPOINT_FORMAT = "llama-lab-checkpoint-1"
METADATA_OBJECTS = ("model_config", "train_config", "tokenizer", "state")
STATE_NUMBERS = ("step", "tokens", "seconds")
SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
OPTIMIZER_MOMENTS = ("exp_avg", "exp_avg_sq")
RNG_TENSORS = ("rng.batches", "rng.torch")


class CheckpointError(UserError):
    """A checkpoint file that cannot be used as it is."""


@dataclass(frozen=True)
class CheckpointHeader:
    """A checkpoint's metadata, parsed and checked, and its tensors' names."""

    label: str                  # how messages name the file: run folder / file name
    model_config: ModelConfig
    train_config: dict
    state: dict
    tokenizer: Tokenizer  # CharTokenizer, or an imported model's BytePairTokenizer
    tensor_bytes: dict[str, int]  # every tensor's name -> bytes, from the header

    @property
    def weight_names(self) -> list[str]:
        return [n for n in self.tensor_bytes if n.startswith("model.")]


# --- Writing --------------------------------------------------------------------------

def save_checkpoint(path: Path, model: Llama, tokenizer: Tokenizer,
                    train_cfg: TrainConfig | dict,
                    state: dict, optimizer: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None) -> Path:
    """Write the weights (and, to resume, the optimizer's moments and the RNG states) as
    one safetensors file, via a temporary name so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                st = optimizer.state.get(p, {})
                for key in (*OPTIMIZER_MOMENTS, "step"):
                    if key in st:
                        tensors[f"optim.{key}.{names[id(p)]}"] = (
                            torch.as_tensor(st[key]).detach().cpu().float().reshape(-1)
                            if key == "step" else st[key].detach().cpu().contiguous())
    if generator is not None:
        tensors["rng.batches"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "model_config": json.dumps(to_dict(model.cfg)),
        # A dict for an imported model: where it came from rather than how it trained.
        "train_config": json.dumps(train_cfg if isinstance(train_cfg, dict)
                                   else to_dict(train_cfg)),
        "tokenizer": tokenizer.to_json(),
        "state": json.dumps(state),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


# --- Checking -------------------------------------------------------------------------


def label_of(path: Path) -> str:
    """The run folder and file name: enough to find it, without the server's paths."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def damaged(label: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{label} is damaged ({problem}); train the run again or "
                           "choose another checkpoint.")


def check_header(path: Path, *, weights_only: bool = False) -> CheckpointHeader:
    """Everything about a checkpoint that can be checked without reading a tensor;
    raises CheckpointError (one sentence naming the file) for anything wrong, and for a
    file whose tensors (only the model's with ``weights_only``) would not fit in memory."""
    path = Path(path)
    label = label_of(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {label}; check the path or train the run "
                              "first.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            layout = {name: (tuple(f.get_slice(name).get_shape()),
                             f.get_slice(name).get_dtype()) for name in f.keys()}
    except Exception:  # a file far larger than memory cannot even be mapped
        check_loadable(label, _file_size(path))
        raise CheckpointError(f"{label} is not a readable safetensors checkpoint; use a "
                              "model.safetensors written by Llama Lab.") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{label} was not written by Llama Lab; use a checkpoint "
                              "from a Llama Lab run.")
    objects = {key: _json_object(label, meta, key) for key in METADATA_OBJECTS}
    try:
        cfg = model_from_dict(objects["model_config"])
    except UserError as e:
        raise damaged(label, f"its model config cannot work: {_clause(e)}") from None
    _check_state(label, objects["state"])
    _check_tensors(label, cfg, layout)
    sizes = {name: math.prod(shape) * _itemsize(dtype) for name, (shape, dtype)
             in layout.items()}
    read = sum(b for n, b in sizes.items() if n.startswith("model.") or not weights_only)
    check_loadable(label, read + sum(b for n, b in sizes.items() if n.startswith("model.")))
    tokenizer = _tokenizer(label, meta["tokenizer"], cfg)
    return CheckpointHeader(label, cfg, objects["train_config"], objects["state"],
                            tokenizer, sizes)


def _json_object(label: str, meta: dict, key: str) -> dict:
    if key not in meta:
        raise damaged(label, f"its metadata has no {key}")
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):
        raise damaged(label, f"its {key} metadata is not valid JSON") from None
    if not isinstance(value, dict):
        raise damaged(label, f"its {key} metadata is JSON but not an object")
    return value


def _check_state(label: str, state: dict) -> None:
    for key in STATE_NUMBERS:
        v = state.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                math.isfinite(v) and v >= 0):
            raise damaged(label, f"its state has no valid {key}")


def _check_tensors(label: str, cfg: ModelConfig, layout: dict) -> None:
    """Every weight the config implies, with its dtype and shape; optimizer moments and
    RNG states only where a resume expects them; nothing else."""
    expected = {f"model.{name}": (shape, SAFETENSORS_DTYPES.get(dtype, str(dtype)))
                for name, (shape, dtype) in parameter_shapes(cfg).items()}
    for name in expected:
        if name not in layout:
            raise damaged(label, f"the weight {name} is missing")
    rng_state = (tuple(torch.get_rng_state().shape), "U8")
    for name, got in layout.items():
        want = _expected_layout(name, expected, rng_state)
        if want is None:
            raise damaged(label, f"it holds a tensor {_short(name)} that no Llama Lab "
                                 "checkpoint of this config has")
        if got[1] != want[1]:
            raise damaged(label, f"{_short(name)} is stored as {got[1]}, not {want[1]}")
        if got[0] != want[0]:
            raise damaged(label, f"{_short(name)} has shape {_shape(got[0])} where its "
                                 f"config implies {_shape(want[0])}")


def _expected_layout(name: str, expected: dict, rng_state: tuple):
    """(shape, dtype) a tensor of this name must have, or None if it has no place."""
    if name in expected:
        return expected[name]
    if name in RNG_TENSORS:
        return rng_state
    if name.startswith("optim."):
        _, kind, param = (name.split(".", 2) + ["", ""])[:3]
        weight = expected.get(f"model.{param}")
        if weight is not None and kind in OPTIMIZER_MOMENTS:
            return weight
        if weight is not None and kind == "step":
            return (1,), "F32"
    return None


def _tokenizer(label: str, text: str, cfg: ModelConfig) -> CharTokenizer | BytePairTokenizer:
    """The character tokenizer of a run trained here, or the byte-pair one an imported
    model came with (which may have fewer tokens than embedding rows, never more)."""
    try:
        tokenizer = tokenizer_from_json(text)
    except UserError:
        raise damaged(label, "its tokenizer is not a Llama Lab character "
                             "tokenizer") from None
    if isinstance(tokenizer, BytePairTokenizer):
        if tokenizer.vocab_size > cfg.vocab_size:
            raise damaged(label, f"its tokenizer has {tokenizer.vocab_size} tokens but its "
                                 f"embedding has {cfg.vocab_size} rows")
        return tokenizer
    if tokenizer.vocab_size != cfg.vocab_size:
        raise damaged(label, f"its tokenizer has {tokenizer.vocab_size} characters but "
                             f"its embedding has {cfg.vocab_size} rows")
    return tokenizer


def check_finite(label: str, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse weights or optimizer moments that hold NaN or infinity: a run that
    diverges saves no checkpoint, so such a file was damaged after the fact."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise damaged(label, f"{_short(name)} holds values that are not finite numbers")


# --- Reading --------------------------------------------------------------------------

def read_checkpoint(path: Path, *, weights_only: bool = False
                    ) -> tuple[CheckpointHeader, dict[str, torch.Tensor]]:
    """The checked header and the tensors of a Llama Lab checkpoint (only the model's
    weights with ``weights_only``). A damaged, foreign or too large file is refused
    with one sentence before any tensor is read."""
    header = check_header(path, weights_only=weights_only)
    names = header.weight_names if weights_only else list(header.tensor_bytes)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in names}
    except Exception:
        raise damaged(header.label, "its tensors cannot be read") from None
    check_finite(header.label, tensors)
    return header, tensors


def load_checkpoint(path: Path, device: str | torch.device = "cpu"
                    ) -> tuple[Llama, Tokenizer, dict]:
    """A ready-to-use model in eval mode, its tokenizer and its metadata."""
    header, weights = read_checkpoint(path, weights_only=True)
    model = Llama(header.model_config)
    try:
        model.load_state_dict(_model_weights(weights))
    except RuntimeError:  # the file changed since its header was checked
        raise damaged(header.label, "its weights do not match its config") from None
    model.to(device).eval()
    info = {"model_config": header.model_config, "train_config": header.train_config,
            "state": header.state}
    return model, header.tokenizer, info


def restore_training(path: Path, model: Llama, optimizer: torch.optim.Optimizer,
                     batch_gen: torch.Generator, device: torch.device
                     ) -> tuple[int, int, float]:
    """Put a run back where its checkpoint left it: weights, optimizer moments and RNG
    states, so training goes on exactly as if never stopped; return step, tokens and
    seconds trained so far."""
    header, tensors = read_checkpoint(path)
    if header.model_config != model.cfg:
        raise UserError("The checkpoint was trained with a different model config; "
                        "resume it with the config it was saved with.")
    if "rng.torch" not in tensors:
        raise damaged(header.label, "it holds no random-number state to resume from")
    model.load_state_dict(_model_weights(tensors))
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        if key.startswith("optim."):  # names and shapes checked against the config
            _, kind, name = key.split(".", 2)
            st = optimizer.state.setdefault(params[name], {})
            st[kind] = value.reshape(()).to(device) if kind == "step" else value.to(device)
    if "rng.batches" in tensors:
        batch_gen.set_state(tensors["rng.batches"])
    torch.set_rng_state(tensors["rng.torch"])
    state = header.state
    return int(state["step"]), int(state["tokens"]), float(state["seconds"])


def _model_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict from a checkpoint's tensors (``model.`` names, unprefixed)."""
    return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _itemsize(dtype: str) -> int:
    return {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2,
            "BF16": 2, "I16": 2, "U16": 2}.get(dtype, 1)


def _shape(shape: tuple) -> str:
    return " x ".join(map(str, shape)) if shape else "a scalar"


def _short(name: str) -> str:
    """A tensor name from the file, quoted and cut, since the file may be hostile."""
    return repr(name[:60] + ("..." if len(name) > 60 else ""))


def _clause(error: Exception, limit: int = 200) -> str:
    """A one-sentence message as a clause inside another sentence, cut to ``limit``
    characters (it may quote a hostile value at length)."""
    text = str(error).rstrip(".")
    return text if len(text) <= limit else text[:limit - 3] + "..."
