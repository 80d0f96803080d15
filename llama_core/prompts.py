"""A prompt as a model reads it: checked for characters the tokenizer lacks, cut to the
last tokens a context window holds, each token's text for a chart's axes, and what one
token is called in a sentence ("characters" or "tokens").

Why one place: the Attention, Rotary, Generate and Inference pages each read a prompt
typed by a user, and they must refuse it, cut it and name its unit the same way for a
character model and a byte-pair one.
"""

from __future__ import annotations

from .data import CharTokenizer
from .errors import UnknownCharactersError, UserError


def check_prompt(tokenizer, prompt: str) -> None:
    """Raise the user-facing error for an empty prompt or one with unknown characters."""
    if not prompt:
        raise UserError("Type at least one character of prompt.")
    unknown = tokenizer.unknown(prompt)
    if unknown:
        raise UnknownCharactersError(unknown)


def fit_tokens(tokenizer, prompt: str, context_window: int
               ) -> tuple[list[int], list[str], bool]:
    """The prompt as the model reads it, token by token: its last ``context_window``
    token ids, each token's text (a character, or a byte-pair token such as " the") for
    the axes, and whether it was cut."""
    ids = list(tokenizer.encode(prompt))
    cut = len(ids) > context_window
    ids = ids[-context_window:]
    return ids, [tokenizer.token_text(i) for i in ids], cut


def token_unit(tokenizer) -> str:
    """What one token of this tokenizer is called in a sentence."""
    return "characters" if isinstance(tokenizer, CharTokenizer) else "tokens"
