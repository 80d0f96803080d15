"""Text as numbers: the character tokenizer, the check that a text can be trained on,
and the train/val batches every run draws from.

Batches are deterministic functions of a seed, so two runs with the same seed, batch
size and context see the same text in the same order: that is what pairs an ablation.
Which texts there are, and where they live, is llama_core.corpora's business.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import CorpusError, UnknownCharactersError

# ``Tokenizer`` in the annotations below is llama_core.tokenizer's interface; it is not
# imported, since tokenizer.py imports this module (CharTokenizer) and the layers check
# (tests/test_layers.py) allows no import loop, not even one for type checkers.

MAX_CORPUS_BYTES = 50 * 1024 * 1024
MIN_CORPUS_CHARS = 1_000
TRAIN_FRACTION = 0.9

# --- The character tokenizer ----------------------------------------------------------

class CharTokenizer:
    """One token per character; the vocabulary is the text's sorted distinct characters.

    Sorting makes the ids a pure function of the character set, so a checkpoint only
    needs the characters (``to_json``) to rebuild the exact same mapping.
    """

    def __init__(self, chars: Sequence[str]):
        unique = sorted(set(chars))
        bad = [c for c in unique if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"A tokenizer vocabulary holds single characters, not {bad[:3]!r}.")
        if not unique:
            raise ValueError("A tokenizer needs at least one character.")
        self.chars: tuple[str, ...] = tuple(unique)
        self._stoi = {c: i for i, c in enumerate(self.chars)}
        # Sorted code points, so a whole text encodes with one vectorised searchsorted.
        self._codepoints = np.array([ord(c) for c in self.chars], dtype=np.int64)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown(self, s: str) -> list[str]:
        """Characters of ``s`` outside the vocabulary, in order of first appearance."""
        missing = set(s).difference(self._stoi)
        if not missing:
            return []
        return list(dict.fromkeys(c for c in s if c in missing))

    def encode_array(self, s: str) -> np.ndarray:
        """``s`` as an int64 array of ids; fast enough for a 50 MB corpus."""
        if not s:
            return np.zeros(0, dtype=np.int64)
        points = np.frombuffer(s.encode("utf-32-le", errors="surrogatepass"),
                               dtype=np.uint32).astype(np.int64)
        ids = np.searchsorted(self._codepoints, points)
        found = self._codepoints[np.minimum(ids, self.vocab_size - 1)] == points
        if not found.all():
            raise UnknownCharactersError(self.unknown(s))
        return ids.astype(np.int64, copy=False)

    def encode(self, s: str) -> list[int]:
        """Ids for ``s``; UnknownCharactersError names any character never seen."""
        return self.encode_array(s).tolist()

    def encode_tensor(self, s: str) -> torch.Tensor:
        """Ids for ``s`` as a 1-D int64 tensor, without a Python list in between."""
        return torch.from_numpy(self.encode_array(s))

    def decode(self, ids) -> str:
        """Text for a list of ids or a 1-D tensor of them."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes a 1-D tensor of ids, not shape {tuple(ids.shape)}.")
            ids = ids.tolist()
        elif hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"Token ids {bad[:5]} are outside the vocabulary "
                             f"(0 to {self.vocab_size - 1}).")
        return "".join(self.chars[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        """One token as a chart labels it: its character."""
        return self.decode([token_id])

    def to_json(self) -> str:
        return json.dumps({"type": "char", "chars": list(self.chars)})

    @classmethod
    def from_json(cls, s: str) -> CharTokenizer:
        """Rebuild a saved tokenizer; a damaged one is the user's file, so CorpusError."""
        try:
            saved = json.loads(s)
            chars = saved["chars"] if saved.get("type") == "char" else None
            if not isinstance(chars, list) or not chars:
                raise ValueError("no characters")
            return cls(chars)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise CorpusError("The saved tokenizer is damaged or not a Llama Lab character "
                              "tokenizer; load a checkpoint saved by Llama Lab.") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# --- Checking a text ------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_BINARY_CONTROL_SHARE = 0.01


def validate_text(text_or_bytes: str | bytes | bytearray | memoryview, *,
                  what: str = "The corpus") -> str:
    """Check that a text can be trained on and return it as ``str``.

    Bytes (an upload, a file) are decoded as UTF-8; a byte-order mark is dropped and
    Windows or old-Mac line endings become ``\\n`` so the vocabulary does not split on
    them. ``what`` names the text in the messages (e.g. the file's name).
    """
    if isinstance(text_or_bytes, (bytes, bytearray, memoryview)):
        raw = bytes(text_or_bytes)
        check_size(len(raw), what)
        if b"\x00" in raw:
            raise CorpusError(f"{what} contains NUL bytes, so it is a binary file, not "
                              "text; use a plain UTF-8 text file.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(f"{what} is not valid UTF-8 (byte {e.start:,} cannot be "
                              "decoded); save it as UTF-8 text and try again.") from None
    elif isinstance(text_or_bytes, str):
        text = text_or_bytes
        check_size(len(text.encode("utf-8", errors="surrogatepass")), what)
        if "\x00" in text:
            raise CorpusError(f"{what} contains NUL characters, so it is binary data, not "
                              "text; use a plain UTF-8 text file.")
    else:
        raise TypeError(f"validate_text takes str or bytes, not {type(text_or_bytes).__name__}.")

    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        raise CorpusError(f"{what} is empty; use a text file with some writing in it.")
    if not text.strip():
        raise CorpusError(f"{what} holds only whitespace; use a text file with some "
                          "writing in it.")
    controls = len(_CONTROL.findall(text))
    if controls > _BINARY_CONTROL_SHARE * len(text):
        raise CorpusError(f"{what} is {controls / len(text):.0%} control characters, so it "
                          "looks like a binary file; use a plain UTF-8 text file.")
    distinct = set(text)
    if len(distinct) < 2:
        raise CorpusError(f"{what} uses only one distinct character ({next(iter(distinct))!r}),"
                          " so there is nothing to predict; use a text with varied writing.")
    if len(text) < MIN_CORPUS_CHARS:
        raise CorpusError(f"{what} has only {len(text):,} characters, too short to train on; "
                          f"use at least {MIN_CORPUS_CHARS:,} characters.")
    return text


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:,.1f} KB"


def check_size(n_bytes: int, what: str) -> None:
    if n_bytes > MAX_CORPUS_BYTES:
        raise CorpusError(f"{what} is {_size(n_bytes)}, over the {_size(MAX_CORPUS_BYTES)} "
                          "limit; use a smaller text file.")


# --- The corpus as tensors ------------------------------------------------------------

# Evaluation batches draw from their own generators, offset so they never coincide with
# a training stream that happens to use the same seed.
_EVAL_SEED_OFFSET = {"train": 1_000_003, "val": 2_000_003}


@dataclass(eq=False)
class Corpus:
    """A text, its tokenizer, and the whole text as ids split 90/10 by position.

    Shared between runs by :func:`load_corpus`, so treat it as read-only.
    """

    name: str
    text: str = field(repr=False)
    tokenizer: Tokenizer  # CharTokenizer, or llama_core.tokenizer.BytePairTokenizer
    data: torch.Tensor = field(repr=False)
    train: torch.Tensor = field(repr=False)
    val: torch.Tensor = field(repr=False)
    sha256: str
    # Validation tokens per character of validation text: 1 for characters, about 0.3
    # for a byte-pair vocabulary. Turns a loss per token into bits per character.
    tokens_per_char: float = 1.0

    @classmethod
    def from_text(cls, name: str, text: str, tokenizer: Tokenizer | None = None
                  ) -> Corpus:
        """Validate, tokenize and split ``text``; the split is nanoGPT's, by position.
        Without a ``tokenizer``, its characters are the vocabulary."""
        text = validate_text(text)
        tokenizer = tokenizer or CharTokenizer.from_text(text)
        data = tokenizer.encode_tensor(text)
        n = int(TRAIN_FRACTION * len(data))
        val = data[n:]
        chars = len(val) if isinstance(tokenizer, CharTokenizer) else \
            len(tokenizer.decode(val.tolist()))
        return cls(name=name, text=text, tokenizer=tokenizer, data=data, train=data[:n],
                   val=val, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                   tokens_per_char=len(val) / max(chars, 1))

    def bits_per_char(self, loss: float) -> float:
        """A validation loss in nats per token as bits per character, the one unit in
        which runs with different tokenizers compare."""
        return loss * self.tokens_per_char / math.log(2)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def split(self, split: str) -> torch.Tensor:
        if split == "train":
            return self.train
        if split == "val":
            return self.val
        raise ValueError(f"split must be 'train' or 'val', not {split!r}.")

    def check_context(self, context_window: int) -> None:
        """Refuse a context window the splits cannot fill: a batch needs T + 1 tokens
        and at least two possible start offsets."""
        for name, label in (("val", "validation"), ("train", "training")):
            n = len(self.split(name))
            if n <= context_window + 1:
                raise CorpusError(
                    f"The {label} split of {self.name} ({n:,} tokens) is shorter than "
                    f"the context window; use a longer text or a context_window below "
                    f"{max(n - 1, 1):,}.")

    def batch(self, split: str, batch_size: int, context_window: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows of the split: inputs ``x`` and targets ``y``,
        ``y`` being ``x`` shifted one character on, both (B, T) int64."""
        source = self.split(split)
        if batch_size < 1 or context_window < 1:
            raise ValueError(f"batch_size and context_window must be positive, not "
                             f"{batch_size} and {context_window}.")
        if len(source) <= context_window + 1:
            self.check_context(context_window)
        starts = torch.randint(len(source) - context_window, (batch_size,),
                               generator=generator)
        positions = starts.unsqueeze(1) + torch.arange(context_window)
        return source[positions], source[positions + 1]

    def batches(self, seed: int, batch_size: int,
                context_window: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless training batches drawn from a generator seeded with ``seed`` alone,
        so runs that differ only in model settings train on identical text."""
        self.check_context(context_window)
        generator = torch.Generator().manual_seed(seed)

        def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            while True:
                yield self.batch("train", batch_size, context_window, generator)

        return stream()

    def fixed_batches(self, split: str, n: int, batch_size: int, context_window: int,
                      seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same ``n`` evaluation batches on every call, whatever the run's seed, so
        every run is scored on the same text."""
        self.split(split)
        self.check_context(context_window)
        generator = torch.Generator().manual_seed(_EVAL_SEED_OFFSET[split] + seed)
        return [self.batch(split, batch_size, context_window, generator) for _ in range(n)]

    def __repr__(self) -> str:
        return (f"Corpus(name={self.name!r}, chars={len(self.text):,}, "
                f"vocab_size={self.vocab_size}, sha256={self.sha256[:12]}...)")
