"""Text to token ids and back: one interface, two tokenizers.

Llama Lab trains on characters (``CharTokenizer``, one token per character, in data.py);
real checkpoints ship a byte-pair tokenizer as Hugging Face's ``tokenizer.json``
(``BytePairTokenizer``, backed by the ``tokenizers`` library). Both answer the same
questions, so generation, the attention maps and every chart work with either:

- ``vocab_size``, ``encode(text) -> ids``, ``encode_tensor``, ``decode(ids) -> text``;
- ``unknown(text)``: the characters it cannot encode (a prompt is refused naming them);
- ``token_text(id)``: one token as text for a chart's axis ("the", " Rome", "\\n");
- ``to_json()`` / ``tokenizer_from_json``: how a checkpoint stores it.

A character vocabulary can also be written as a ``tokenizer.json`` (``char_tokenizer_json``:
a byte-pair model with the characters as its vocabulary and no merges, decoded by
joining the tokens) that ``tokenizers`` and ``transformers`` load and that encodes and
decodes exactly as ``CharTokenizer`` does; reading such a file gives the
``CharTokenizer`` back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .data import CharTokenizer
from .errors import UnknownCharactersError, UserError

__all__ = ["Tokenizer", "CharTokenizer", "BytePairTokenizer", "TokenizerError",
           "tokenizer_from_json", "char_tokenizer_json", "read_tokenizer_file",
           "MIN_BYTE_PAIR_VOCAB", "MAX_BYTE_PAIR_VOCAB"]

# A byte-level vocabulary starts with the 256 byte symbols; merges add to that.
MIN_BYTE_PAIR_VOCAB = 257
MAX_BYTE_PAIR_VOCAB = 65536


class TokenizerError(UserError):
    """A tokenizer file or setting that cannot be used."""


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer answers (CharTokenizer and BytePairTokenizer)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, s: str) -> list[int]: ...

    def encode_tensor(self, s: str) -> torch.Tensor: ...

    def decode(self, ids) -> str: ...

    def unknown(self, s: str) -> list[str]: ...

    def token_text(self, token_id: int) -> str: ...

    def to_json(self) -> str: ...


class BytePairTokenizer:
    """A ``tokenizers`` byte-pair tokenizer (what SmolLM2, TinyLlama and Llama 3 ship).

    Text is split into byte or character pieces that learned merges join into frequent
    words and word parts, so one token is often a whole word with its leading space.
    Encoding adds no special tokens (no beginning-of-text marker): the ids are exactly
    the text's, as with the character tokenizer.
    """

    def __init__(self, backend):
        from tokenizers import Tokenizer as Backend

        if not isinstance(backend, Backend):
            raise TypeError(f"BytePairTokenizer wraps a tokenizers.Tokenizer, not "
                            f"{type(backend).__name__}.")
        kind = json.loads(backend.model.__getstate__()).get("type")
        if kind != "BPE":
            raise TokenizerError(f"This tokenizer.json holds a {kind} model, not a byte-pair "
                                 "(BPE) one as Llama checkpoints ship; use the model's own "
                                 "tokenizer.json.")
        self.backend = backend
        self._unk = backend.model.unk_token
        state = json.loads(backend.to_str())
        # Byte-level pre-tokenizing or byte fallback: every text has tokens.
        self._covers_every_text = bool(state["model"].get("byte_fallback")) or (
            '"ByteLevel"' in json.dumps(state.get("pre_tokenizer")))

    # --- Making one ---------------------------------------------------------------

    @classmethod
    def from_str(cls, text: str, what: str = "The tokenizer") -> BytePairTokenizer:
        from tokenizers import Tokenizer as Backend

        try:
            backend = Backend.from_str(text)
        except Exception:
            raise TokenizerError(f"{what} is not a tokenizer.json that the tokenizers "
                                 "library can read; use the model's own tokenizer.json."
                                 ) from None
        return cls(backend)

    @classmethod
    def from_file(cls, path: str | Path) -> BytePairTokenizer:
        return cls.from_str(_read_text(path), f"{Path(path).name}")

    @classmethod
    def train_from_text(cls, text: str, vocab_size: int) -> BytePairTokenizer:
        """Learn a byte-level byte-pair vocabulary of ``vocab_size`` tokens from a text,
        as GPT-2, SmolLM2 and Llama 3 do: the 256 byte symbols, then merges of the most
        frequent adjacent pairs until the vocabulary is full (or no pair repeats)."""
        from tokenizers import Tokenizer as Backend, decoders, models, pre_tokenizers, trainers

        if (isinstance(vocab_size, bool) or not isinstance(vocab_size, int)
                or not MIN_BYTE_PAIR_VOCAB <= vocab_size <= MAX_BYTE_PAIR_VOCAB):
            raise TokenizerError(f"A byte-pair vocabulary holds the 256 bytes and at least one "
                                 f"merge: vocab_size must be a whole number from "
                                 f"{MIN_BYTE_PAIR_VOCAB} to {MAX_BYTE_PAIR_VOCAB:,}, not "
                                 f"{vocab_size!r}.")
        if not isinstance(text, str) or not text:
            raise TokenizerError("A byte-pair tokenizer is learned from some text; give it a "
                                 "non-empty corpus.")
        backend = Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        backend.train_from_iterator([text], trainer=trainer)
        return cls(backend)

    def save(self, path: str | Path) -> Path:
        """Write Hugging Face's ``tokenizer.json``."""
        path = Path(path)
        path.write_text(self.backend.to_str(pretty=True), encoding="utf-8")
        return path

    # --- The interface ----------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, s: str) -> list[int]:
        unknown = self.unknown(s)
        if unknown:
            raise UnknownCharactersError(unknown)
        return self.backend.encode(s, add_special_tokens=False).ids

    def encode_array(self, s: str) -> np.ndarray:
        return np.asarray(self.encode(s), dtype=np.int64)

    def encode_tensor(self, s: str) -> torch.Tensor:
        return torch.tensor(self.encode(s), dtype=torch.long)

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes a 1-D tensor of ids, not shape "
                                 f"{tuple(ids.shape)}.")
            ids = ids.tolist()
        elif hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

    def unknown(self, s: str) -> list[str]:
        """Characters that would become the unknown token. A byte-level vocabulary has
        none (every byte is a token); a character-level one names what it never saw."""
        if self._covers_every_text:
            return []
        vocab = self.backend.get_vocab(with_added_tokens=True)
        unk_id = vocab.get(self._unk) if self._unk is not None else None
        out = []
        for c in dict.fromkeys(s):
            ids = self.backend.encode(c, add_special_tokens=False).ids
            if not ids or (unk_id is not None and unk_id in ids):
                out.append(c)
        return out

    def token_text(self, token_id: int) -> str:
        """One token as a chart labels it: the text it decodes to, or, for a token that
        is only part of a character's bytes (decoding alone gives U+FFFD), the token's
        own name in the vocabulary."""
        text = self.backend.decode([int(token_id)], skip_special_tokens=False)
        if text and "\ufffd" not in text:
            return text
        name = self.backend.id_to_token(int(token_id))
        return name if name is not None else f"<{int(token_id)}>"

    def to_json(self) -> str:
        return json.dumps({"type": "bpe", "tokenizer": json.loads(self.backend.to_str())})

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BytePairTokenizer)
                and self.backend.to_str() == other.backend.to_str())

    def __hash__(self) -> int:
        return hash(self.backend.to_str())

    def __repr__(self) -> str:
        return f"BytePairTokenizer(vocab_size={self.vocab_size})"


# --- Character vocabularies as tokenizer.json ----------------------------------------

def char_tokenizer_json(tokenizer: CharTokenizer) -> str:
    """A ``tokenizer.json`` for a character vocabulary: a byte-pair model whose vocabulary
    is the characters (ids in Llama Lab's sorted order) with no merges, no normaliser
    and no pre-tokenizer, so every character is its own token; the ``Fuse`` decoder joins
    tokens without spaces. Encoding and decoding match ``CharTokenizer`` exactly."""
    from tokenizers import Tokenizer as Backend, decoders, models

    backend = Backend(models.BPE(vocab={c: i for i, c in enumerate(tokenizer.chars)},
                                 merges=[]))
    backend.decoder = decoders.Fuse()
    return backend.to_str(pretty=True)


def _as_char_tokenizer(state: dict) -> CharTokenizer | None:
    """The CharTokenizer a tokenizer.json describes when it is ``char_tokenizer_json``'s
    layout (every token one character, sorted, no merges, nothing else), else None."""
    model = state.get("model") or {}
    vocab = model.get("vocab")
    if (model.get("type") != "BPE" or model.get("merges") or state.get("normalizer")
            or state.get("pre_tokenizer") or state.get("post_processor")
            or state.get("added_tokens") or (state.get("decoder") or {}).get("type") != "Fuse"
            or not isinstance(vocab, dict) or not vocab):
        return None
    chars = sorted(vocab, key=vocab.get)
    if (any(len(c) != 1 for c in chars) or chars != sorted(chars)
            or [vocab[c] for c in chars] != list(range(len(chars)))):
        return None
    return CharTokenizer(chars)


def read_tokenizer_file(path: str | Path) -> CharTokenizer | BytePairTokenizer:
    """A ``tokenizer.json``: the CharTokenizer when it is a character vocabulary written
    by Llama Lab, else a BytePairTokenizer. A file that is not one is one sentence."""
    text = _read_text(path)
    try:
        state = json.loads(text)
    except ValueError:
        raise TokenizerError(f"{Path(path).name} is not JSON, so not a tokenizer.json; use "
                             "the model's own tokenizer.json.") from None
    if not isinstance(state, dict):
        raise TokenizerError(f"{Path(path).name} is JSON but not a tokenizer.json; use the "
                             "model's own tokenizer.json.")
    return _as_char_tokenizer(state) or BytePairTokenizer.from_str(text, Path(path).name)


def tokenizer_from_json(text: str) -> CharTokenizer | BytePairTokenizer:
    """The tokenizer a checkpoint stored with ``to_json``: {"type": "char", ...} or
    {"type": "bpe", "tokenizer": <tokenizer.json>}."""
    try:
        saved = json.loads(text)
    except (ValueError, RecursionError):
        saved = None
    if isinstance(saved, dict) and saved.get("type") == "bpe":
        if not isinstance(saved.get("tokenizer"), dict):
            raise TokenizerError("The saved byte-pair tokenizer is damaged; load a checkpoint "
                                 "saved by Llama Lab.")
        return BytePairTokenizer.from_str(json.dumps(saved["tokenizer"]),
                                          "The saved byte-pair tokenizer")
    return CharTokenizer.from_json(text)


def _read_text(path: str | Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise TokenizerError(f"{path.name} cannot be read as UTF-8 text; use the model's "
                             "own tokenizer.json.") from None
