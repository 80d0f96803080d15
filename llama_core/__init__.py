"""Llama Lab's library: build Llama one modification at a time, train it, look inside.

    from llama_core import Llama, ModelConfig, TrainConfig, train, load_checkpoint, PRESETS

Where to look:
    config.py, presets.py   ModelConfig and TrainConfig (every toggle), the named presets
    model.py                Llama: one class per toggle, to read beside Meta's llama/model.py
    pitfalls.py             the classic bugs, each one swapped-in module and its probe
    data.py, corpora.py     the character tokenizer and batches; which texts to train on
    training.py             the training loop; checkpoint.py, distributed.py, generate.py
    inspect.py, probes.py   attention, rotary, parameter and FLOP counts; bug signatures
    stats.py, speed.py, memory.py   error bars, time and memory estimates
    lab/                    the machinery around it: run store, jobs, classroom, sweeps,
                            class set, report and the command line (python -m llama_core)

Never imports streamlit. Llama, train and load_checkpoint import torch on first use, so
the run store and the command line stay light.
"""

import importlib

from .config import ModelConfig, TrainConfig
from .errors import ConfigError, CorpusError, UnknownCharactersError, UserError
from .presets import PRESETS, build_configs

# Names that need torch, and the module each comes from.
_TORCH_NAMES = {"Llama": "model", "train": "training", "load_checkpoint": "checkpoint"}

__all__ = ["Llama", "ModelConfig", "TrainConfig", "train", "load_checkpoint", "PRESETS",
           "build_configs", "UserError", "ConfigError", "CorpusError",
           "UnknownCharactersError"]


def __getattr__(name: str):
    """Import a torch-backed name the first time it is asked for."""
    if name not in _TORCH_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_TORCH_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value
