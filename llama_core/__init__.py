"""Llama Lab's library: build Llama one modification at a time, train it, look inside.

Never imports streamlit; the dashboard and the command line both stand on it.
"""

from .config import PRESETS, ModelConfig, TrainConfig, build_configs
from .errors import ConfigError, CorpusError, UnknownCharactersError, UserError

__all__ = ["ModelConfig", "TrainConfig", "PRESETS", "build_configs", "UserError",
           "ConfigError", "CorpusError", "UnknownCharactersError"]
