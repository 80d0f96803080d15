"""Llama Lab's library: build Llama one modification at a time, train it, look inside.

    from llama_core import Llama, ModelConfig, TrainConfig, train, load_checkpoint, PRESETS

Where to look: ``config.py`` every toggle (ModelConfig, TrainConfig, PRESETS);
``model.py`` Llama, one class per toggle, to read beside Meta's llama/model.py;
``data.py`` corpora and the character tokenizer; ``train.py`` the training loop and
checkpoints; ``inspect.py`` attention, rotary and pitfall probes, parameter and FLOP
counts; ``ablation.py`` and ``stats.py`` paired multi-seed sweeps. The lab around it (run
store ``runs.py``, ``jobs.py``, ``classroom.py``, ``cli.py``) is imported only where used.

Never imports streamlit. Llama, train and load_checkpoint import torch on first use, so
the run store and the command line stay light. ``llama_core.train`` is the function;
the rest of that module comes with ``from llama_core.train import ...``.
"""

import importlib
import sys
import types

from .config import PRESETS, ModelConfig, TrainConfig, build_configs
from .errors import ConfigError, CorpusError, UnknownCharactersError, UserError

# Names that need torch, and the module each comes from.
_TORCH_NAMES = {"Llama": "model", "train": "train", "load_checkpoint": "train"}

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


class _Package(types.ModuleType):
    """Keeps ``llama_core.train`` the train function: importing the submodule of the same
    name would otherwise put the module there, and ``from llama_core import train``
    would then give a module or a function depending on what was imported before."""

    def __setattr__(self, name, value):
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
