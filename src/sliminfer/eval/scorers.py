"""Answer scorers: RULER's string matching and LongBench's metrics, without extra dependencies.

Every scorer takes the model's answer and the list of expected answers and returns a float in
[0, 1]. The LongBench ones reproduce THUDM/LongBench `metrics.py` (which uses the `rouge` and
`fuzzywuzzy` packages) closely enough to give the same numbers, quirks included, so results
are comparable with published LongBench tables.
"""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

Scorer = Callable[..., float]
_PUNCTUATION = frozenset(string.punctuation)


def string_match_all(prediction: str, expected: Sequence[str], **_: object) -> float:
    """RULER's recall: the fraction of expected items found (case-insensitive) in the answer."""
    lowered = prediction.lower()
    return sum(item.lower() in lowered for item in expected) / len(expected)


def string_match_part(prediction: str, expected: Sequence[str], **_: object) -> float:
    """RULER's QA score: 1 if any expected answer appears (case-insensitive) in the answer."""
    lowered = prediction.lower()
    return float(any(item.lower() in lowered for item in expected))


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction_tokens: Sequence[str], truth_tokens: Sequence[str]) -> float:
    """F1 of the multiset overlap of two token lists."""
    same = sum((Counter(prediction_tokens) & Counter(truth_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str, truth: str, **_: object) -> float:
    """LongBench `qa_f1_score`: token F1 after `normalize_answer`."""
    return token_f1(normalize_answer(prediction).split(), normalize_answer(truth).split())


def rouge_l(prediction: str, truth: str, **_: object) -> float:
    """LongBench `rouge_score`: the `rouge` package's (1.0.1) summary-level ROUGE-L F.

    That package splits each text into sentences at every '.', words at single spaces, is
    case-sensitive, and counts with sets (exclusive=True): m and n are the numbers of *distinct*
    words of reference and candidate, and the overlap is the number of distinct words in the
    union of the per-sentence-pair LCSs. Texts without any sentence score 0, as LongBench's
    `except: return 0.0` does.
    """
    candidate = _rouge_sentences(prediction)
    reference = _rouge_sentences(truth)
    if not candidate or not reference:
        return 0.0
    m = len({w for s in reference for w in s.split(" ")})
    n = len({w for s in candidate for w in s.split(" ")})
    union: set[str] = set()
    for ref_sentence in reference:
        for cand_sentence in candidate:
            union |= set(_lcs_words(ref_sentence.split(" "), cand_sentence.split(" ")))
    recall, precision = len(union) / m, len(union) / n
    return 2.0 * precision * recall / (precision + recall + 1e-8)


def _rouge_sentences(text: str) -> list[str]:
    return [" ".join(piece.split()) for piece in text.split(".") if piece]


def _lcs_words(x: Sequence[str], y: Sequence[str]) -> list[str]:
    """One longest common subsequence of x and y, chosen with `rouge`'s tie-breaking.

    The choice matters because ROUGE-L above counts distinct words: two LCSs of equal length
    can hold different words. Iterative backtracking (the package recurses, which fails past
    Python's recursion limit on very long sentences; here it does not).
    """
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    words, i, j = [], len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words[::-1]


def classification(prediction: str, truth: str, *, all_classes: Sequence[str] = (), **_: object) -> float:
    """LongBench `classification_score`: 1/k if the true class is among the k classes named.

    Reproduces LongBench exactly, including its removal of substring classes while iterating
    over the same list (which skips the element after each removal), and its fallback branch
    being unreachable (`list != 0` is always true).
    """
    matches = [name for name in all_classes if name in prediction]
    for term in matches:
        if term in truth and term != truth:
            matches.remove(term)
    return 1.0 / len(matches) if truth in matches else 0.0


def retrieval(prediction: str, truth: str, **_: object) -> float:
    """LongBench `retrieval_score`: share of the numbers in the answer that equal the paragraph id."""
    target = re.findall(r"Paragraph (\d+)", truth)[0]
    return _share_equal(prediction, target)


def count(prediction: str, truth: str, **_: object) -> float:
    """LongBench `count_score`: share of the numbers in the answer that equal the true count."""
    return _share_equal(prediction, str(truth))


def _share_equal(prediction: str, target: str) -> float:
    numbers = re.findall(r"\d+", prediction)
    return sum(number == target for number in numbers) / len(numbers) if numbers else 0.0


def code_similarity(prediction: str, truth: str, **_: object) -> float:
    """LongBench `code_sim_score`: fuzzywuzzy `fuzz.ratio` / 100 of the first code line.

    The first line that holds no '`', '#' or '//' is compared. `fuzz.ratio` without
    python-Levenshtein (LongBench does not install it) is difflib's ratio rounded to a whole
    percent; equal strings score 100 and an empty one 0.
    """
    line = next(
        (
            ln
            for ln in prediction.lstrip("\n").split("\n")
            if "`" not in ln and "#" not in ln and "//" not in ln
        ),
        "",
    )
    return fuzz_ratio(line, truth) / 100


def fuzz_ratio(first: str, second: str) -> int:
    """fuzzywuzzy's `fuzz.ratio` (pure-Python matcher): a whole percentage."""
    if first == second:
        return 100
    if not first or not second:
        return 0
    return int(round(100 * difflib.SequenceMatcher(None, first, second).ratio()))


def best_over_truths(scorer: Scorer) -> Scorer:
    """LongBench scores an answer against every reference and keeps the best."""

    def score(prediction: str, expected: Sequence[str], **kwargs: object) -> float:
        return max((scorer(prediction, truth, **kwargs) for truth in expected), default=0.0)

    return score


METRICS: dict[str, Scorer] = {
    "string_match_all": string_match_all,
    "string_match_part": string_match_part,
    "qa_f1": best_over_truths(qa_f1),
    "rouge": best_over_truths(rouge_l),
    "classification": best_over_truths(classification),
    "retrieval": best_over_truths(retrieval),
    "count": best_over_truths(count),
    "code_sim": best_over_truths(code_similarity),
}


def score(metric: str, prediction: str, expected: Sequence[str], **kwargs: object) -> float:
    """Score `prediction` with the metric named `metric` (a key of `METRICS`)."""
    return float(METRICS[metric](prediction, expected, **kwargs))
