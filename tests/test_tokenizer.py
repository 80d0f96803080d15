"""One tokenizer interface: the character tokenizer and a byte-pair one learned with the
``tokenizers`` library on the built-in corpus; a character vocabulary written as a
tokenizer.json that ``tokenizers`` and ``transformers`` read back exactly."""

from __future__ import annotations

import json

import pytest

from helpers_text import assert_one_sentence
from llama_core.corpora import shakespeare_text
from llama_core.data import CharTokenizer
from llama_core.errors import UnknownCharactersError
from llama_core.tokenizer import (BytePairTokenizer, Tokenizer, TokenizerError,
                                  char_tokenizer_json, read_tokenizer_file,
                                  tokenizer_from_json)

PROMPT = "ROMEO:\nWhat light through yonder window breaks?\n\n"


@pytest.fixture(scope="module")
def corpus() -> str:
    return shakespeare_text()[:200_000]


@pytest.fixture(scope="module")
def bpe(corpus) -> BytePairTokenizer:
    return BytePairTokenizer.train_from_text(corpus, 512)


def test_both_tokenizers_answer_the_interface(corpus, bpe):
    for tok in (CharTokenizer.from_text(corpus), bpe):
        assert isinstance(tok, Tokenizer)
        ids = tok.encode(PROMPT)
        assert tok.decode(ids) == PROMPT
        assert tok.encode_tensor(PROMPT).tolist() == ids
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert "".join(tok.token_text(i) for i in ids) == PROMPT
        assert tokenizer_from_json(tok.to_json()) == tok


def test_byte_pair_merges_frequent_words_and_takes_any_text(corpus, bpe):
    assert bpe.vocab_size == 512
    ids = bpe.encode(PROMPT)
    assert len(ids) < 0.7 * len(PROMPT)  # merged pieces: fewer tokens than characters
    assert any(len(bpe.token_text(i)) > 2 for i in ids)
    odd = "naïve ☃ 東京"  # characters the corpus never had: bytes, never unknown
    assert bpe.unknown(odd) == []
    assert bpe.decode(bpe.encode(odd)) == odd
    # A token that is only part of a character's bytes is labelled by its name.
    snowman = bpe.encode("☃")
    assert len(snowman) == 3 and all(bpe.token_text(i) and "\ufffd" not in bpe.token_text(i)
                                     for i in snowman)


def test_byte_pair_saves_and_loads_as_tokenizer_json(tmp_path, bpe):
    path = bpe.save(tmp_path / "tokenizer.json")
    assert json.loads(path.read_text())["model"]["type"] == "BPE"
    again = read_tokenizer_file(path)
    assert isinstance(again, BytePairTokenizer) and again == bpe
    assert again.encode(PROMPT) == bpe.encode(PROMPT)


def test_vocab_size_out_of_range_is_one_sentence(corpus):
    for bad in (100, 10**6, 3.5):
        with pytest.raises(TokenizerError) as e:
            BytePairTokenizer.train_from_text(corpus, bad)
        assert_one_sentence(str(e.value))


def test_a_file_that_is_not_a_tokenizer_is_one_sentence(tmp_path):
    for body in ("not json", "[1, 2]", '{"model": {"type": "Nope"}}'):
        (tmp_path / "tokenizer.json").write_text(body)
        with pytest.raises(TokenizerError) as e:
            read_tokenizer_file(tmp_path / "tokenizer.json")
        assert_one_sentence(str(e.value))


def test_a_character_vocabulary_as_tokenizer_json_round_trips_in_transformers(tmp_path,
                                                                            corpus):
    from tokenizers import Tokenizer as Backend
    from transformers import AutoTokenizer

    chars = CharTokenizer.from_text(corpus)
    (tmp_path / "tokenizer.json").write_text(char_tokenizer_json(chars))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}))
    text = corpus[:5000]
    ids = chars.encode(text)
    backend = Backend.from_file(str(tmp_path / "tokenizer.json"))
    assert backend.encode(text, add_special_tokens=False).ids == ids
    assert backend.decode(ids) == text
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.encode(text, add_special_tokens=False) == ids
    assert hf.decode(ids) == text
    # Reading it back gives the character tokenizer itself, not a byte-pair stand-in.
    assert read_tokenizer_file(tmp_path / "tokenizer.json") == chars


def test_character_tokenizer_still_refuses_unknown_characters(corpus):
    chars = CharTokenizer.from_text(corpus)
    with pytest.raises(UnknownCharactersError):
        chars.encode("☃")
    assert chars.token_text(chars.encode("\n")[0]) == "\n"
