"""Synthetic generators: deterministic, sized to the budget, needles where they were asked to be."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from sliminfer.errors import UserError
from sliminfer.eval import haystack, synthetic
from sliminfer.eval.haystack import fit_largest, noise_sentences, place_needles
from sliminfer.eval.sample import render
from sliminfer.eval.scorers import score
from sliminfer.eval.synthetic import TASKS, make_sample

LENGTHS = [1024, 2048]


@pytest.mark.parametrize("task", list(TASKS))
def test_same_seed_same_sample_other_seed_other_content(task, words):
    first = make_sample(task, 1024, 2, words, seed=1)
    assert first == make_sample(task, 1024, 2, words, seed=1)
    assert first.expected != make_sample(task, 1024, 2, words, seed=2).expected
    assert first.expected != make_sample(task, 1024, 3, words, seed=1).expected


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("length", LENGTHS)
def test_prompt_fills_the_budget(task, length, words):
    sample = make_sample(task, length, 0, words)
    budget = length - sample.max_new_tokens
    assert budget * 0.97 <= words(sample) <= budget


@pytest.mark.parametrize("task", [t for t in TASKS if t != "cwe"])
def test_every_expected_item_is_in_the_context(task, words):
    sample = make_sample(task, 2048, 1, words)
    assert score(sample.metric, sample.prompt, sample.expected) == 1.0


@pytest.mark.parametrize("task", ["passkey", "multikey", "qa"])
@pytest.mark.parametrize("index", range(5))
def test_needle_sits_at_its_depth(task, index, words):
    sample = make_sample(task, 2048, index, words)
    context_start = sample.prompt.index("\n\n") + 2 if task != "multikey" else sample.prompt.index("\n") + 1
    context_end = sample.prompt.rindex("\n")
    context = sample.prompt[context_start:context_end]
    position = context.index(sample.expected[0]) / len(context)
    assert position == pytest.approx(sample.depth, abs=0.04)


def test_depths_spread_over_the_context():
    first_five = sorted(synthetic.DEPTHS[:5])
    assert first_five == [0.1, 0.3, 0.5, 0.7, 0.9]


def test_cwe_common_words_are_the_most_frequent(words):
    sample = make_sample("cwe", 2048, 0, words)
    listed = re.findall(r"\d+\. (\w+)", sample.prompt.split("\n")[1])
    counts = {w: listed.count(w) for w in set(listed)}
    rare_max = max(c for w, c in counts.items() if w not in sample.expected)
    assert all(counts[w] == synthetic.common_word_frequency(2048) > rare_max for w in sample.expected)


def test_qa_prefix_restates_the_fact_up_to_the_answer(words):
    sample = make_sample("qa", 1024, 4, words)
    statement = sample.answer_prefix.removeprefix(" Answer: ")
    assert f"{statement} {sample.expected[0]}" in sample.prompt
    assert sample.expected[0] not in sample.answer_prefix


def test_vartrack_expects_the_whole_chain(words):
    sample = make_sample("vartrack", 2048, 0, words)
    assert len(sample.expected) == 5
    value = sample.prompt.split("assigned the value ")[-1].split(" ")[0]
    assert f"VAR {sample.expected[0]} = {value}." in sample.prompt


def test_haystack_override_and_unknown_haystack(words):
    assert "The grass is green." in make_sample("qa", 1024, 0, words, haystack="noise").prompt
    assert "The grass is green." not in make_sample("qa", 1024, 0, words).prompt
    with pytest.raises(UserError, match="haystack"):
        make_sample("passkey", 1024, 0, words, haystack="essays")


def test_too_short_length_is_a_user_error(words):
    with pytest.raises(UserError, match="even without haystack"):
        make_sample("vartrack", 128, 0, words)


def test_chat_rendering_puts_prefix_after_the_assistant_header(words):
    sample = make_sample("passkey", 1024, 0, words)
    text = render(sample, chat=lambda t: f"<user>{t}</user><assistant>")
    assert text.endswith("</user><assistant>The pass key is")
    assert render(sample).endswith("What is the pass key? The pass key is")
    assert render(replace(sample, chat_allowed=False), chat=lambda t: "x") == render(sample)


def test_place_needles_at_edges_and_middle():
    text = place_needles(noise_sentences(0, 10), [(0.5, "MID"), (0.0, "START"), (1.0, "END")])
    assert text.startswith("START The grass is green.")
    assert text.endswith("There and back again. END")
    assert 0.4 < text.index("MID") / len(text) < 0.6
    with pytest.raises(ValueError, match="depth"):
        place_needles(["a."], [(1.5, "x")])


def test_fit_largest_finds_the_boundary():
    assert fit_largest(lambda n: 10 + 3 * n, 100) == 30
    assert fit_largest(lambda n: 10 + 3 * n, 100, upper=7) == 7
    with pytest.raises(UserError):
        fit_largest(lambda n: 200 + n, 100)


def test_docs_corpus_is_plain_prose():
    corpus = haystack.docs_corpus()
    assert len(corpus) > 1000
    assert all(s[0].isupper() and s.endswith(".") and ">>>" not in s for s in corpus)
    assert len(haystack.vocabulary()) > 1000


def test_real_tokenizer_fit(tiny_loaded):
    """A real HF tokenizer through the model backend: the budget is met to within one sentence.

    With one token per byte, a docstring sentence is up to 300 tokens.
    """
    from sliminfer.eval.backend import ModelBackend

    backend = ModelBackend(tiny_loaded)
    for task in ("passkey", "qa"):
        sample = make_sample(task, 2048, 0, backend.count_tokens)
        budget = 2048 - sample.max_new_tokens
        assert budget - 300 <= backend.count_tokens(sample) <= budget


def test_smollm2_tokenizer_fit():
    """The embedded model's tokenizer, if its converted copy is cached (loading it takes < 1 s)."""
    from sliminfer.loading import cache_root

    folders = sorted(Path(cache_root(), "models").glob("SmolLM2-135M-Instruct*/tokenizer_config.json"))
    if not folders:
        pytest.skip("embedded model not converted yet (run `sliminfer generate` once to cache it)")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folders[0].parent)

    def count(sample):
        return len(tokenizer(render(sample))["input_ids"])

    for task in ("passkey", "multikey", "cwe"):
        sample = make_sample(task, 4096, 0, count)
        assert 0.98 * (4096 - sample.max_new_tokens) <= count(sample) <= 4096 - sample.max_new_tokens


def test_backend_reports_the_active_set_diagnostic_only_with_decode_selection(tiny_loaded):
    """A decode budget below 1 records how often the active set held the top-ranked block."""
    from sliminfer.eval.backend import ModelBackend
    from sliminfer.methods import parse_method
    from tiny import TINY_SLIM

    backend = ModelBackend(tiny_loaded)
    sample = make_sample("passkey", 1024, 0, backend.count_tokens)
    selected = backend.answer(sample, parse_method("slim[decode_budget=0.25]", TINY_SLIM))
    plain = backend.answer(sample, parse_method("slim", TINY_SLIM))
    assert 0.0 <= selected.top_block_hit_rate <= 1.0
    assert plain.top_block_hit_rate is None
