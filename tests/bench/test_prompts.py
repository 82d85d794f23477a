"""Benchmark prompts: exact length, deterministic per seed, text-like ids (not zeros or noise)."""

from __future__ import annotations

from collections import Counter

import pytest

from sliminfer.bench import prompts
from sliminfer.bench.prompts import TextPrompts, hashed_word_ids
from sliminfer.corpus import corpus_paragraphs


def test_corpus_is_real_prose():
    text = " ".join(corpus_paragraphs())
    assert len(text.split()) > 50_000
    assert " the " in text


@pytest.mark.parametrize("length", [1, 7, 1000, 8192])
def test_hashed_prompts_have_the_exact_length_and_are_deterministic(length):
    ids = TextPrompts(vocab_size=128256, seed=3).ids(length)
    assert len(ids) == length
    assert ids == TextPrompts(vocab_size=128256, seed=3).ids(length)
    assert all(0 <= i < 128256 for i in ids)


def test_seed_moves_the_prompt_and_word_statistics_are_zipf_like():
    a, b = TextPrompts(vocab_size=50000, seed=0).ids(4096), TextPrompts(vocab_size=50000, seed=1).ids(4096)
    assert a != b
    counts = Counter(a).most_common()
    assert len(counts) > 500  # many distinct words ...
    assert counts[0][1] > 20 * counts[len(counts) // 2][1]  # ... and a few very frequent ones


def test_words_and_punctuation_map_to_stable_ids():
    ids = hashed_word_ids("the cat, the hat", 1000)
    assert len(ids) == 5 and ids[0] == ids[3] and ids[1] != ids[4]
    assert ids[2] == hashed_word_ids(",", 1000)[0]


def test_prompts_wrap_around_a_short_corpus(monkeypatch):
    monkeypatch.setattr(prompts, "corpus_paragraphs", lambda: ("alpha beta gamma",))
    ids = TextPrompts(vocab_size=10**6, seed=0).ids(10)
    assert len(ids) == 10 and len(set(ids)) == 3
    assert ids[:3] == ids[3:6] == ids[6:9]


class WordTokenizer:
    """A stand-in tokenizer: one id per word, BOS = 1."""

    bos_token_id = 1

    def __call__(self, texts, add_special_tokens):
        assert not add_special_tokens
        return {"input_ids": [[2 + len(w) for w in text.split()] for text in texts]}


def test_tokenizer_prompts_start_with_bos_and_have_the_exact_length():
    ids = TextPrompts(WordTokenizer(), seed=5).ids(3000)
    assert len(ids) == 3000 and ids[0] == 1 and 1 not in ids[1:]
