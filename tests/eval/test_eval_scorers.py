"""Scorers on hand-made answers; ROUGE-L values were computed with the `rouge` 1.0.1 package."""

from __future__ import annotations

import pytest

from sliminfer.eval import scorers
from sliminfer.eval.scorers import score


def test_string_match_all_is_recall_and_case_insensitive():
    assert score("string_match_all", "The numbers are 12 and 34.", ["12", "34", "56", "78"]) == 0.5
    assert score("string_match_all", "answer: ABCDE", ["abcde"]) == 1.0
    assert score("string_match_all", "", ["1"]) == 0.0


def test_string_match_part_needs_one_alternative():
    assert score("string_match_part", "It is Paris.", ["London", "paris"]) == 1.0
    assert score("string_match_part", "It is Rome.", ["London", "Paris"]) == 0.0


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("the cat", "a cat sat", 2 / 3),  # normalized: ["cat"] vs ["cat", "sat"]
        ("The Cat sat!", "a cat sat", 1.0),
        ("dog", "a cat sat", 0.0),
        ("cat cat sat", "cat sat sat", 2 / 3),
    ],
)
def test_qa_f1(prediction, truth, expected):
    assert scorers.qa_f1(prediction, truth) == pytest.approx(expected)


def test_normalize_answer_drops_articles_punctuation_and_case():
    assert scorers.normalize_answer("  The  Eiffel-Tower, an icon! ") == "eiffeltower icon"


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("the cat sat on the mat. It was happy", "the cat was on the mat", 0.7692307644970415),
        ("A cat sat", "The cat sat", 0.6666666616666668),
        (
            "police cleared the park. Protesters stayed",
            "protesters stayed in the park. police watched",
            0.6153846104142012,
        ),
    ],
)
def test_rouge_l_matches_the_rouge_package(prediction, truth, expected):
    assert scorers.rouge_l(prediction, truth) == pytest.approx(expected, abs=1e-12)


def test_rouge_l_without_sentences_scores_zero():
    assert scorers.rouge_l("...", "a reference") == 0.0
    assert scorers.rouge_l("", "a reference") == 0.0


def test_lcs_tie_breaking_follows_rouge():
    # Both "a" and "b" are an LCS of length 1; on ties rouge steps back in the second sequence.
    assert scorers._lcs_words(["a", "b"], ["b", "a"]) == ["b"]


def test_classification_shares_credit_between_named_classes():
    classes = ["Location", "Person", "Number"]
    assert score("classification", "Person", ["Person"], all_classes=classes) == 1.0
    assert score("classification", "Person or Location", ["Person"], all_classes=classes) == 0.5
    assert score("classification", "Number", ["Person"], all_classes=classes) == 0.0
    # LongBench drops a named class that is a substring of the true one.
    assert (
        score("classification", "Abbreviation", ["Abbreviation"], all_classes=["Abbreviation", "Abb"]) == 1.0
    )


def test_retrieval_and_count_share_of_numbers():
    assert score("retrieval", "Paragraph 7", ["Paragraph 7"]) == 1.0
    assert score("retrieval", "Paragraph 7 or 8", ["Paragraph 7"]) == 0.5
    assert score("retrieval", "no idea", ["Paragraph 7"]) == 0.0
    assert score("count", "There are 12 paragraphs, not 11.", ["12"]) == 0.5


def test_code_similarity_uses_first_code_line():
    truth = "return x + 1"
    assert score("code_sim", "# comment\nreturn x + 1\nmore", [truth]) == 1.0
    assert score("code_sim", "```python\nreturn x + 2", [truth]) == pytest.approx(
        scorers.fuzz_ratio("return x + 2", truth) / 100
    )
    assert scorers.fuzz_ratio("return x + 2", truth) == 92  # difflib: 2 * 11 / 24
    assert score("code_sim", "", [truth]) == 0.0


def test_longbench_scorers_take_the_best_reference():
    assert score("qa_f1", "Paris", ["London", "Paris"]) == 1.0
    assert score("rouge", "a b c", []) == 0.0


def test_cost_table_marks_unpruned_slim():
    from sliminfer.eval.summary import is_unpruned_slim

    assert is_unpruned_slim([{"config": {"keep_schedule": [[1, 0.5]]}, "prefill_fraction": 1.0}])
    assert not is_unpruned_slim([{"config": {"keep_schedule": [[1, 0.5]]}, "prefill_fraction": 0.4}])
    assert not is_unpruned_slim([{"config": None, "prefill_fraction": 1.0}])
