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


def tokenizer_unit(tokenizer: str) -> str:
    """What one token of a ``tokenizer`` setting ("char", "bpe512") is called in a
    sentence: "characters" or "tokens"."""
    return "characters" if tokenizer == "char" else "tokens"


def token_unit_of(run) -> str:
    """What one token of ``run`` is called in a sentence: "characters" or "tokens"."""
    return tokenizer_unit(tokenizer_of(run))


def tokenizer_loss_unit(tokenizer: str) -> str:
    """The loss unit of a ``tokenizer`` setting: nats per character or per token."""
    return LOSS_UNIT if tokenizer_unit(tokenizer) == "characters" else TOKEN_LOSS_UNIT


def loss_unit_of(run) -> str:
    """The unit of ``run``'s training and validation loss: nats per character for a
    character run, nats per token for a byte-pair one."""
    return tokenizer_loss_unit(tokenizer_of(run))


def shared_unit(runs) -> str:
    """The unit of runs shown together on one page: "characters" only when every run
    reads characters (an empty choice reads characters, the default tokenizer)."""
    return "characters" if all(token_unit_of(r) == "characters" for r in runs) else "tokens"


def one(unit: str) -> str:
    """One of ``unit``: "character" or "token"."""
    return unit.removesuffix("s")
