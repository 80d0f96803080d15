"""What one token of a run is and what its numbers are counted in: "characters" for a
run that reads characters, "tokens" for a byte-pair run (trained with tokenizer bpeN, or
imported with its own tokenizer), and its loss per character or per token.

Why one helper: the pages say "characters" in many sentences (prompt lengths, positions,
loss units); each must follow the run, and a scattered ``if`` would miss one.
"""

from __future__ import annotations

from charts.palette import LOSS_UNIT, TOKEN_LOSS_UNIT
from llama_core.lab.hf_runs import imported_from


def tokenizer_of(run) -> str:
    """A run's tokenizer setting ("char" for runs from before there was a choice). An
    imported run reads with its own tokenizer: "char" only for a character one, else
    "imported"."""
    record = imported_from(run)
    if record is not None:
        return "char" if record.get("tokenizer") == "CharTokenizer" else "imported"
    value = (run.train_config or {}).get("tokenizer", "char")
    return value if isinstance(value, str) else "char"


def token_unit_of(run) -> str:
    """What one token of ``run`` is called in a sentence: "characters" or "tokens"."""
    return "characters" if tokenizer_of(run) == "char" else "tokens"


def loss_unit_of(run) -> str:
    """The unit of ``run``'s training and validation loss: nats per character for a
    character run, nats per token for a byte-pair one."""
    return LOSS_UNIT if tokenizer_of(run) == "char" else TOKEN_LOSS_UNIT
