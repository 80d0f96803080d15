"""The tokenizer, the check that a text can be trained on, and the batches: what every
run's numbers rest on. Texts are made up here; which corpora exist is test_corpora.py's.
"""

from __future__ import annotations

import json

import pytest
import torch

from helpers_text import assert_one_sentence, sample_text
from llama_core.corpora import clear_corpus_cache, load_corpus
from llama_core.data import CharTokenizer, Corpus, validate_text
from llama_core.errors import CorpusError, UnknownCharactersError


@pytest.fixture
def small() -> Corpus:
    return Corpus.from_text("small", sample_text())


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


# --- Checking a text ------------------------------------------------------------------


def test_validate_text_decodes_uploads_and_normalises_line_endings():
    raw = "\ufeff".encode() + sample_text().replace("\n", "\r\n").encode("utf-8")
    text = validate_text(raw)
    assert isinstance(text, str)
    assert text == sample_text()
    assert validate_text(bytearray(raw)) == text
    with pytest.raises(TypeError):
        validate_text(12345)


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
    clear_corpus_cache()
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
