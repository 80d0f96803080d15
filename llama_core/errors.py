"""Errors a user can fix.

Every message is one sentence that says what to change. The command line prints it and
exits 2; the dashboard shows it with ``st.error``. Anything else is a bug in Llama Lab.
"""


class UserError(ValueError):
    """A mistake in the user's input: a config, a corpus, a prompt, a run id."""


class ConfigError(UserError):
    """A model or training setting that cannot work."""


class CorpusError(UserError):
    """A text file that cannot be used as a training corpus."""


class UnknownCharactersError(UserError):
    """A prompt holds characters the model's tokenizer has never seen."""

    def __init__(self, chars: list[str]):
        self.chars = chars
        shown = ", ".join(repr(c) for c in chars[:10]) + (" ..." if len(chars) > 10 else "")
        super().__init__(
            f"The prompt contains characters this model never saw in training ({shown}); "
            "remove or replace them."
        )
