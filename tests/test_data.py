"""Corpora, the tokenizer and the batches: what every run's numbers rest on.

The built-in corpus is built once into the real data folder (later runs reuse it);
every other file a test needs lives in tmp_path. The network is switched off for the
whole module: a test that tries to download fails instead of quietly succeeding.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re

import pytest
import torch

from llama_core import data
from llama_core.data import (BUILTIN, CharTokenizer, Corpus, CorpusInfo, corpus_text,
                             list_corpora, load_corpus, validate_text)
from llama_core.errors import CorpusError, UnknownCharactersError

TINY_CHARS = 1_115_394


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Replace the downloader; tests read ``calls`` to prove nothing was fetched."""
    calls = []

    def refuse(url, timeout):
        calls.append((url, timeout))
        raise OSError("the network is off in these tests")

    monkeypatch.setattr(data, "_download", refuse)
    return calls


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    """A fresh DATA_DIR and no LLAMA_LAB_DATA, so only what the test puts there exists."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setattr(data, "DATA_DIR", folder)
    monkeypatch.delenv("LLAMA_LAB_DATA", raising=False)
    return folder


@pytest.fixture(scope="module")
def shakespeare() -> Corpus:
    return load_corpus(BUILTIN)


def sample_text(lines: int = 60, seed: int = 0) -> str:
    """About 2,000 characters of varied words: enough for a corpus, quick to tokenize."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(6)) for _ in range(lines)) + "\n"


@pytest.fixture
def small() -> Corpus:
    return Corpus.from_text("small", sample_text())


def assert_one_sentence(message: str) -> None:
    assert message.endswith("."), message
    assert "\n" not in message, message
    assert not re.search(r"[.!?] [A-Z]", message), f"more than one sentence: {message}"


# --- The built-in corpus ------------------------------------------------------------

def test_builtin_corpus_has_the_tinyshakespeare_layout(shakespeare):
    text = shakespeare.text
    assert (data.DATA_DIR / data.SHAKESPEARE_FILE).is_file()
    assert len(text) > 1_000_000
    assert text.endswith("\n") and not text.startswith("\n")
    for marker in "#*_[]":
        assert marker not in text, f"markdown or stage-direction markup {marker!r} left in"
    speeches = text.rstrip("\n").split("\n\n")
    assert len(speeches) > 10_000
    for speech in speeches:
        speaker, *lines = speech.split("\n")
        assert speaker.endswith(":") and speaker[:-1].strip() == speaker[:-1], speech[:80]
        assert lines and all(line.strip() for line in lines), speech[:80]
    speakers = {speech.split("\n", 1)[0] for speech in speeches}
    assert {"First Citizen:", "HAMLET:", "BISHOP OF WINCHESTER:"} <= speakers


def test_builtin_vocabulary_is_close_to_tinyshakespeare(shakespeare):
    assert set(shakespeare.tokenizer.chars) <= data.SHAKESPEARE_CHARS
    assert 55 <= shakespeare.vocab_size <= 65
    assert shakespeare.sha256 == hashlib.sha256(shakespeare.text.encode()).hexdigest()


def test_builtin_corpus_drops_stage_directions(shakespeare):
    lines = shakespeare.text.split("\n")
    assert not any(re.match(r"(Enter|Exit|Exeunt) [A-Z]{2,}", line) for line in lines)
    assert not any(re.fullmatch(r"[^a-z]*[A-Z]{2}[^a-z]*", line) and not line.endswith(":")
                   for line in lines), "a running head in capitals was kept"


PLAY = """# A Made-up Play

## ACT I

### SCENE I. A room.

_Enter ALPHA and BETA_

**ALPHA**  
Good morrow, friend \\-- how now?  
_\\[Aside]_ I speak aside.

**First Watchman**  
What news?

_Exit ALPHA_

And so I stay.

_Enter GAMMA, with a long train of
followers and Attendants_

BISHOP

**OF NOWHERE**  
Peace\u2014be "still" (quiet).
A bill of 3 pence.

### SCENE II. Elsewhere.

Nobody says this.
"""


def test_markdown_play_becomes_speeches():
    assert data.play_to_speeches(PLAY) == [
        ("ALPHA", ["Good morrow, friend -- how now?", "I speak aside."]),
        ("First Watchman", ["What news?", "And so I stay."]),
        ("BISHOP OF NOWHERE", ["Peace--be 'still' quiet."]),
    ]


def test_shakespeare_text_joins_plays_in_tinyshakespeare_layout(tmp_path):
    (tmp_path / "b-play.md").write_text(PLAY)
    (tmp_path / "a-play.md").write_text("# Other\n\n**ZED**  \nFirst of all.\n")
    assert data.shakespeare_text(tmp_path) == (
        "ZED:\nFirst of all.\n\nALPHA:\nGood morrow, friend -- how now?\nI speak aside.\n\n"
        "First Watchman:\nWhat news?\nAnd so I stay.\n\n"
        "BISHOP OF NOWHERE:\nPeace--be 'still' quiet.\n")


# --- The tokenizer ------------------------------------------------------------------

def test_tokenizer_round_trip_and_sorted_vocabulary():
    text = "To be, or not to be: that is the question.\n"
    tok = CharTokenizer.from_text(text)
    assert tok.chars == tuple(sorted(set(text)))
    assert tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert tok.encode_tensor(text).dtype == torch.int64
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_tokenizer_handles_characters_beyond_ascii():
    text = "naïve café — 東京 🙂"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("é") == [tok.chars.index("é")]


def test_unknown_characters_are_named_in_order_of_first_appearance():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(UnknownCharactersError) as caught:
        tok.encode("cab zx yz!")
    assert caught.value.chars == ["z", "x", "y", "!"]
    assert "'z'" in str(caught.value)
    assert_one_sentence(str(caught.value))
    assert tok.unknown("cab zx yz!") == ["z", "x", "y", "!"]
    assert tok.unknown("abc") == []


def test_decode_refuses_ids_outside_the_vocabulary_and_2d_tensors():
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(ValueError):
        tok.decode([0, 2])
    with pytest.raises(ValueError):
        tok.decode([-1])
    with pytest.raises(ValueError):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


def test_tokenizer_json_round_trip():
    tok = CharTokenizer.from_text("Hello, world!\n\"quoted\" é")
    saved = tok.to_json()
    json.loads(saved)
    again = CharTokenizer.from_json(saved)
    assert again == tok and again.chars == tok.chars
    assert again.encode("Hello") == tok.encode("Hello")


@pytest.mark.parametrize("saved", ["not json", "[]", '{"type": "bpe", "chars": ["a"]}',
                                   '{"type": "char", "chars": ["ab"]}',
                                   '{"type": "char", "chars": []}'])
def test_damaged_tokenizer_json_is_a_corpus_error(saved):
    with pytest.raises(CorpusError) as caught:
        CharTokenizer.from_json(saved)
    assert_one_sentence(str(caught.value))


# --- Split and batches --------------------------------------------------------------

def test_split_is_ninety_ten_by_position(small):
    n = len(small.data)
    assert n == len(small.text)
    assert len(small.train) == int(0.9 * n)
    assert torch.equal(torch.cat([small.train, small.val]), small.data)
    assert small.tokenizer.decode(small.train) == small.text[:int(0.9 * n)]
    assert small.tokenizer.decode(small.val) == small.text[int(0.9 * n):]
    assert small.data.dtype == torch.int64


def _is_window_of(split: torch.Tensor, x_row: torch.Tensor, y_row: torch.Tensor) -> bool:
    windows = split.unfold(0, len(x_row) + 1, 1)
    target = torch.cat([x_row, y_row[-1:]])
    return bool((windows == target).all(dim=1).any())


def test_batch_targets_are_inputs_shifted_by_one(small):
    generator = torch.Generator().manual_seed(3)
    x, y = small.batch("train", 8, 16, generator)
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row in range(8):
        assert _is_window_of(small.train, x[row], y[row])


def test_batch_follows_nanogpt_offsets(small):
    x, y = small.batch("val", 4, 10, torch.Generator().manual_seed(5))
    starts = torch.randint(len(small.val) - 10, (4,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, torch.stack([small.val[i:i + 10] for i in starts]))
    assert torch.equal(y, torch.stack([small.val[i + 1:i + 11] for i in starts]))


def _take(stream, n):
    return [next(stream) for _ in range(n)]


def _same(a, b) -> bool:
    return all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_same_seed_gives_the_same_stream_whatever_else_uses_randomness(small):
    first = _take(small.batches(seed=7, batch_size=4, context_window=16), 5)
    torch.manual_seed(999)  # a different model init must not move the data stream
    stream = small.batches(seed=7, batch_size=4, context_window=16)
    second = []
    for _ in range(5):
        torch.randn(100)  # dropout, sampling ... anything on the global generator
        second.append(next(stream))
    assert _same(first, second)


def test_different_seeds_give_different_streams(small):
    a = _take(small.batches(seed=1, batch_size=4, context_window=16), 3)
    b = _take(small.batches(seed=2, batch_size=4, context_window=16), 3)
    assert not _same(a, b)


def test_stream_is_identical_across_two_loads(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(sample_text(seed=4))
    first = load_corpus(str(path))
    data.clear_corpus_cache()
    second = load_corpus(str(path))
    assert first is not second
    assert _same(_take(first.batches(11, 4, 8), 4), _take(second.batches(11, 4, 8), 4))


def test_fixed_batches_are_deterministic_and_ignore_the_run_seed(small):
    torch.manual_seed(1)
    _take(small.batches(seed=1, batch_size=4, context_window=16), 3)
    a = small.fixed_batches("val", 3, 4, 16)
    torch.manual_seed(2)
    _take(small.batches(seed=2, batch_size=4, context_window=16), 7)
    b = small.fixed_batches("val", 3, 4, 16)
    assert len(a) == 3 and _same(a, b)
    for x, y in a:
        for row in range(4):
            assert _is_window_of(small.val, x[row], y[row])
    assert not _same(a, small.fixed_batches("val", 3, 4, 16, seed=1))


def test_fixed_train_batches_differ_from_a_training_stream_with_the_same_seed(small):
    fixed = small.fixed_batches("train", 2, 4, 16, seed=0)
    assert not _same(fixed, _take(small.batches(seed=0, batch_size=4, context_window=16), 2))


def test_unknown_split_is_refused(small):
    with pytest.raises(ValueError):
        small.batch("test", 2, 4, torch.Generator())


def test_check_context_names_the_largest_window_that_fits():
    corpus = Corpus.from_text("short", sample_text()[:1000])
    assert len(corpus.val) == 100
    corpus.check_context(98)
    corpus.batch("val", 2, 98, torch.Generator().manual_seed(0))
    with pytest.raises(CorpusError) as caught:
        corpus.check_context(99)
    assert "context_window below 99" in str(caught.value)
    assert "shorter than the context window" in str(caught.value)
    assert_one_sentence(str(caught.value))
    with pytest.raises(CorpusError):
        corpus.batches(0, 2, 200)
    with pytest.raises(CorpusError):
        corpus.fixed_batches("val", 1, 2, 99)
    with pytest.raises(CorpusError):
        corpus.batch("val", 2, 99, torch.Generator())


# --- Checking files and uploads -----------------------------------------------------

BAD_FILES = {
    "empty": (b"", "is empty"),
    "whitespace": (b" \n\t\n   \n" * 300, "only whitespace"),
    "one-character": (b"a" * 5000, "only one distinct character"),
    "latin-1": ("caf\u00e9 cr\u00e8me ".encode("latin-1") * 200, "not valid UTF-8"),
    "nul": (b"hello\x00world " * 200, "NUL"),
    "control-characters": (bytes(range(1, 32)) * 100, "binary"),
    "too-short": (b"ab" * 100, "too short to train on; use at least 1,000 characters"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_corpus_files_raise_one_clear_sentence(kind, tmp_path):
    content, phrase = BAD_FILES[kind]
    path = tmp_path / f"{kind}.txt"
    path.write_bytes(content)
    for load in (corpus_text, load_corpus):
        with pytest.raises(CorpusError) as caught:
            load(str(path))
        assert phrase in str(caught.value)
        assert_one_sentence(str(caught.value))
    with pytest.raises(CorpusError, match=re.escape(phrase)):
        validate_text(content)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(CorpusError, match="No file at") as caught:
        load_corpus(str(tmp_path / "missing.txt"))
    assert_one_sentence(str(caught.value))
    with pytest.raises(CorpusError, match="is a folder") as caught:
        corpus_text(str(tmp_path))
    assert_one_sentence(str(caught.value))


def test_too_big_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_CORPUS_BYTES", 1024)
    path = tmp_path / "big.txt"
    path.write_text(sample_text())
    with pytest.raises(CorpusError, match="over the") as caught:
        corpus_text(str(path))
    assert_one_sentence(str(caught.value))
    with pytest.raises(CorpusError, match="over the"):
        validate_text(sample_text())


def test_unknown_name_lists_the_builtin_corpora():
    with pytest.raises(CorpusError) as caught:
        corpus_text("shakespear")
    message = str(caught.value)
    assert "Unknown corpus 'shakespear'" in message
    assert "shakespeare" in message and "tinyshakespeare" in message
    assert_one_sentence(message)
    with pytest.raises(CorpusError, match="No file at"):
        corpus_text("shakespear.txt")


def test_validate_text_decodes_uploads_and_normalises_line_endings():
    raw = "\ufeff".encode() + sample_text().replace("\n", "\r\n").encode("utf-8")
    text = validate_text(raw)
    assert isinstance(text, str)
    assert text == sample_text()
    assert validate_text(bytearray(raw)) == text
    with pytest.raises(TypeError):
        validate_text(12345)


def test_load_corpus_returns_the_same_object_until_the_file_changes(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text(sample_text(seed=1))
    first = load_corpus(str(path))
    assert load_corpus(str(path)) is first
    assert first.name == "notes.txt"
    path.write_text(sample_text(seed=2))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = load_corpus(str(path))
    assert second is not first and second.text == sample_text(seed=2)


def test_builtin_load_is_cached():
    first = load_corpus(BUILTIN)
    assert load_corpus(BUILTIN) is first
    assert corpus_text(BUILTIN) == first.text


def test_cache_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "corpus.txt"
    data._write_atomically(target, b"first")
    assert target.read_bytes() == b"first"

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(data.os, "replace", crash)
    with pytest.raises(OSError):
        data._write_atomically(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["corpus.txt"]


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMA_LAB_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv("LLAMA_LAB_DATA_DIR")
    assert data.default_data_dir() == data.Path(data.__file__).resolve().parent.parent / "data"


# --- TinyShakespeare ----------------------------------------------------------------

def test_tinyshakespeare_from_llama_lab_data(tinyshakespeare_dir, empty_data_dir,
                                             monkeypatch, no_network):
    monkeypatch.setenv("LLAMA_LAB_DATA", str(tinyshakespeare_dir))
    corpus = load_corpus("tinyshakespeare")
    assert len(corpus.text) == TINY_CHARS
    assert corpus.vocab_size == 65
    assert corpus.sha256 == data.TINYSHAKESPEARE_SHA256
    assert corpus.text.startswith("First Citizen:\n")
    assert no_network == []
    listed = {info.name: info for info in list_corpora()}
    assert listed["tinyshakespeare"] == CorpusInfo(
        "tinyshakespeare", listed["tinyshakespeare"].description, True, TINY_CHARS)


def test_tinyshakespeare_missing_offline_says_to_set_llama_lab_data(empty_data_dir,
                                                                   no_network):
    with pytest.raises(CorpusError, match="set LLAMA_LAB_DATA") as caught:
        corpus_text("tinyshakespeare")
    assert_one_sentence(str(caught.value))
    assert no_network == [(data.TINYSHAKESPEARE_URL, 20.0)]
    listed = {info.name: info for info in list_corpora()}
    assert listed["tinyshakespeare"].available is False
    assert listed["tinyshakespeare"].chars is None


def test_downloaded_tinyshakespeare_is_checked_against_its_checksum(empty_data_dir,
                                                                   monkeypatch):
    monkeypatch.setattr(data, "_download", lambda url, timeout: sample_text().encode())
    with pytest.raises(CorpusError, match="checksum") as caught:
        corpus_text("tinyshakespeare")
    assert_one_sentence(str(caught.value))
    assert not (empty_data_dir / "tinyshakespeare.txt").exists()


def test_downloaded_tinyshakespeare_is_cached_once(tinyshakespeare_dir, empty_data_dir,
                                                  monkeypatch):
    good = (tinyshakespeare_dir / "tinyshakespeare.txt").read_bytes()
    fetched = []
    monkeypatch.setattr(data, "_download",
                        lambda url, timeout: fetched.append(url) or good)
    assert len(corpus_text("tinyshakespeare")) == TINY_CHARS
    assert (empty_data_dir / "tinyshakespeare.txt").read_bytes() == good
    assert len(corpus_text("tinyshakespeare")) == TINY_CHARS
    assert fetched == [data.TINYSHAKESPEARE_URL]


def test_list_corpora_reports_the_builtins(shakespeare):
    infos = list_corpora()
    assert [info.name for info in infos] == ["shakespeare", "tinyshakespeare"]
    builtin = infos[0]
    assert builtin.available is True
    assert builtin.chars == len(shakespeare.text)
    assert all(info.description.endswith(".") for info in infos)
