"""Corpora: the built-in Shakespeare, TinyShakespeare, text files and their checks,
and loading one as a Corpus.

The built-in corpus is built once into the real data folder (later runs reuse it);
every other file a test needs lives in tmp_path. The network is switched off for the
whole module: a test that tries to download fails instead of quietly succeeding.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from helpers_text import assert_one_sentence, sample_text
from llama_core import corpora, data
from llama_core.corpora import (BUILTIN, CorpusInfo, corpus_text, list_corpora,
                                load_corpus)
from llama_core.data import Corpus, validate_text
from llama_core.errors import CorpusError


TINY_CHARS = 1_115_394


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Replace the downloader; tests read ``calls`` to prove nothing was fetched."""
    calls = []

    def refuse(url, timeout):
        calls.append((url, timeout))
        raise OSError("the network is off in these tests")

    monkeypatch.setattr(corpora, "_download", refuse)
    return calls


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    """A fresh DATA_DIR and no LLAMA_LAB_DATA, so only what the test puts there exists."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setattr(corpora, "DATA_DIR", folder)
    monkeypatch.delenv("LLAMA_LAB_DATA", raising=False)
    return folder


@pytest.fixture(scope="module")
def shakespeare() -> Corpus:
    return load_corpus(BUILTIN)


# --- The built-in corpus ------------------------------------------------------------


def test_builtin_corpus_has_the_tinyshakespeare_layout(shakespeare):
    text = shakespeare.text
    assert (corpora.DATA_DIR / corpora.SHAKESPEARE_FILE).is_file()
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
    assert set(shakespeare.tokenizer.chars) <= corpora.SHAKESPEARE_CHARS
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
    assert corpora.play_to_speeches(PLAY) == [
        ("ALPHA", ["Good morrow, friend -- how now?", "I speak aside."]),
        ("First Watchman", ["What news?", "And so I stay."]),
        ("BISHOP OF NOWHERE", ["Peace--be 'still' quiet."]),
    ]


def test_shakespeare_text_joins_plays_in_tinyshakespeare_layout(tmp_path):
    (tmp_path / "b-play.md").write_text(PLAY)
    (tmp_path / "a-play.md").write_text("# Other\n\n**ZED**  \nFirst of all.\n")
    assert corpora.shakespeare_text(tmp_path) == (
        "ZED:\nFirst of all.\n\nALPHA:\nGood morrow, friend -- how now?\nI speak aside.\n\n"
        "First Watchman:\nWhat news?\nAnd so I stay.\n\n"
        "BISHOP OF NOWHERE:\nPeace--be 'still' quiet.\n")


# --- Corpus files ---------------------------------------------------------------------


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


def test_cache_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "corpus.txt"
    corpora._write_atomically(target, b"first")
    assert target.read_bytes() == b"first"

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(corpora.os, "replace", crash)
    with pytest.raises(OSError):
        corpora._write_atomically(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["corpus.txt"]


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMA_LAB_DATA_DIR", str(tmp_path))
    assert corpora.default_data_dir() == tmp_path
    monkeypatch.delenv("LLAMA_LAB_DATA_DIR")
    repo_data = corpora.Path(corpora.__file__).resolve().parent.parent / "data"
    assert corpora.default_data_dir() == repo_data


# --- Loading a corpus -----------------------------------------------------------------


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


# --- TinyShakespeare ----------------------------------------------------------------


def test_tinyshakespeare_from_llama_lab_data(tinyshakespeare_dir, empty_data_dir,
                                             monkeypatch, no_network):
    monkeypatch.setenv("LLAMA_LAB_DATA", str(tinyshakespeare_dir))
    corpus = load_corpus("tinyshakespeare")
    assert len(corpus.text) == TINY_CHARS
    assert corpus.vocab_size == 65
    assert corpus.sha256 == corpora.TINYSHAKESPEARE_SHA256
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
    assert no_network == [(corpora.TINYSHAKESPEARE_URL, 20.0)]
    listed = {info.name: info for info in list_corpora()}
    assert listed["tinyshakespeare"].available is False
    assert listed["tinyshakespeare"].chars is None


def test_downloaded_tinyshakespeare_is_checked_against_its_checksum(empty_data_dir,
                                                                   monkeypatch):
    monkeypatch.setattr(corpora, "_download", lambda url, timeout: sample_text().encode())
    with pytest.raises(CorpusError, match="checksum") as caught:
        corpus_text("tinyshakespeare")
    assert_one_sentence(str(caught.value))
    assert not (empty_data_dir / "tinyshakespeare.txt").exists()


def test_downloaded_tinyshakespeare_is_cached_once(tinyshakespeare_dir, empty_data_dir,
                                                  monkeypatch):
    good = (tinyshakespeare_dir / "tinyshakespeare.txt").read_bytes()
    fetched = []
    monkeypatch.setattr(corpora, "_download",
                        lambda url, timeout: fetched.append(url) or good)
    assert len(corpus_text("tinyshakespeare")) == TINY_CHARS
    assert (empty_data_dir / "tinyshakespeare.txt").read_bytes() == good
    assert len(corpus_text("tinyshakespeare")) == TINY_CHARS
    assert fetched == [corpora.TINYSHAKESPEARE_URL]


def test_list_corpora_reports_the_builtins(shakespeare):
    infos = list_corpora()
    assert [info.name for info in infos] == ["shakespeare", "tinyshakespeare"]
    builtin = infos[0]
    assert builtin.available is True
    assert builtin.chars == len(shakespeare.text)
    assert all(info.description.endswith(".") for info in infos)
