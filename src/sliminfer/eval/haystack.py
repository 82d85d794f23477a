"""Haystack text for the synthetic tasks, generated offline and deterministically.

Two sources of sentences:
- `noise`: RULER's repetitive filler ("The grass is green. The sky is blue. ..."), which makes
  any needle stand out and measures retrieval alone;
- `docs`: natural English from the docstrings of Python's standard library (the corpus
  `sliminfer.bench.prompts` also uses), in a fixed order, so the needle must be found among
  real prose. The text is the same on every machine with the same Python minor version.

`place_needles` inserts needles between sentences at relative depths, and `fit_largest` finds
how much haystack fits a token budget, measured with the model's own tokenizer. The other
contexts of RULER's formats (variable chains, numbered word lists) and its keys are built here
too, for both the synthetic and the ruler suite.
"""

from __future__ import annotations

import bisect
import functools
import random
import re
from collections.abc import Callable, Sequence

from ..corpus import corpus_paragraphs
from ..errors import UserError

NOISE_SENTENCES = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PLAIN_SENTENCE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'()\-]+[.]$")
HaystackSource = Callable[[int, int], list[str]]


def noise_sentences(start: int, count: int) -> list[str]:
    """`count` filler sentences, cycling through `NOISE_SENTENCES` from index `start`."""
    return [NOISE_SENTENCES[(start + i) % len(NOISE_SENTENCES)] for i in range(count)]


def docs_sentences(start: int, count: int) -> list[str]:
    """`count` consecutive docstring sentences from `start` (wrapping around the corpus)."""
    corpus = docs_corpus()
    return [corpus[(start + i) % len(corpus)] for i in range(count)]


HAYSTACKS: dict[str, HaystackSource] = {"noise": noise_sentences, "docs": docs_sentences}


@functools.lru_cache(maxsize=1)
def docs_corpus() -> tuple[str, ...]:
    """Plain prose sentences of the bench's standard-library docstring corpus, deduplicated, in order.

    Only sentences made of words and light punctuation are kept (no code, no markup, no
    numbers longer than 3 digits), so that they cannot be mistaken for a needle.
    """
    seen: dict[str, None] = {}
    for doc in corpus_paragraphs():
        for sentence in _sentences(doc):
            seen.setdefault(sentence, None)
    return tuple(seen)


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Distinct lower-case words of 4-9 letters from `docs_corpus`, sorted: keys and CWE words."""
    words = {w for s in docs_corpus() for w in re.findall(r"\b[a-z]{4,9}\b", s)}
    return tuple(sorted(words))


def split_sentences(text: str) -> list[str]:
    """`text` cut after '.', '!' or '?' followed by whitespace and a capital letter.

    A regex rather than nltk's punkt (which downloads its model at run time); requiring the
    capital keeps "e.g. this" and "3.5 times" whole.
    """
    return _SENTENCE_END.split(text)


def random_key(rng: random.Random, words: Sequence[str]) -> str:
    """A needle key of two random words, "word-word" (RULER's keys are "adjective-noun")."""
    return f"{rng.choice(words)}-{rng.choice(words)}"


def _sentences(doc: str) -> list[str]:
    """Prose sentences of a docstring: paragraphs joined, code and short fragments dropped."""
    out = []
    for paragraph in doc.split("\n\n"):
        lines = paragraph.splitlines()
        if any(line.startswith((" ", ">>>", "..")) for line in lines):
            continue
        for sentence in split_sentences(" ".join(line.strip() for line in lines)):
            if (
                40 <= len(sentence) <= 300
                and _PLAIN_SENTENCE.match(sentence)
                and not re.search(r"\d{4}", sentence)
            ):
                out.append(sentence)
    return out


def place_needles(
    sentences: Sequence[str], needles: Sequence[tuple[float, str]], separator: str = " "
) -> str:
    """Join `sentences` with the needle texts inserted at relative depths (0 = start, 1 = end).

    Depth is measured in characters, which tracks tokens well, and a needle always goes between
    two sentences. Needles that land on the same boundary keep their given order. `separator`
    joins every piece (RULER's repeated-noise and needle haystacks use a line break).
    """
    ends = []
    total = 0
    for sentence in sentences:
        total += len(sentence) + 1
        ends.append(total)
    slots: dict[int, list[str]] = {}
    for depth, text in needles:
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"needle depth {depth!r}: must be in [0, 1]")
        boundary = bisect.bisect_left([0, *ends[:-1]], depth * total) if sentences else 0
        slots.setdefault(min(boundary, len(sentences)), []).append(text)
    parts: list[str] = []
    for index in range(len(sentences) + 1):
        parts += slots.get(index, [])
        if index < len(sentences):
            parts.append(sentences[index])
    return separator.join(parts)


def fit_largest(
    measure: Callable[[int], int], budget: int, what: str = "prompt", upper: int | None = None
) -> int:
    """The largest n in [0, upper] with measure(n) <= budget, for a measure that grows with n.

    Doubles n until the budget is exceeded, then bisects: about 2 log2(n) measurements.

    Raises:
        UserError: if even n = 0 (the bare template) exceeds the budget.
    """
    if measure(0) > budget:
        raise UserError(f"{what} needs more than {budget} tokens even without haystack: use a longer length")

    def fits(n: int) -> bool:
        return (upper is None or n <= upper) and measure(n) <= budget

    low, high = 0, 16
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def variable_chain(rng: random.Random, hops: int = 4, letters: int = 5) -> tuple[str, list[str]]:
    """A five-digit value and the `hops + 1` distinct upper-case variable names bound to it, in order."""
    value = str(rng.randint(10000, 99999))
    names: list[str] = []
    while len(names) < hops + 1:
        name = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(letters))
        if name not in names:
            names.append(name)
    return value, names


def numbered(words: list[str]) -> str:
    """RULER's word-list format: "1. word 2. word ..."."""
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(words))


def word_list(
    common: list[str], frequency: int, rare: list[str], rare_frequency: int, seed: int
) -> Callable[[int], str]:
    """CWE's context for n rare words: each common word `frequency` times, each of the first n rare
    words `rare_frequency` times, shuffled (by `seed`) and numbered."""

    def context(n: int) -> str:
        words = common * frequency + rare[:n] * rare_frequency
        random.Random(seed).shuffle(words)
        return numbered(words)

    return context
