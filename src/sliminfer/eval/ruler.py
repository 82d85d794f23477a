"""RULER's task formats on RULER's own data: needle variants, variable tracking, common words, QA.

Templates, answer prefixes, needle sentences, generation lengths and metrics follow RULER
(`long_context_eval`'s `synthetic.yaml` and `constants.py`); the generators are our own and
seeded, and the prompt is sized in the model's own tokens (prompt + generation = length), as
RULER sizes `max_seq_length`. Haystacks: `essay` (Paul Graham essays, sentence-split without
nltk), `repeat` (RULER's noise sentences) and `needle` (distractor needles). QA draws its item
and distractor documents from SQuAD (qa_1) or HotpotQA (qa_2) as RULER reads them.

Deviations, all for determinism or to reuse the harness: the queried needle's depth cycles
through `synthetic.DEPTHS` (other needles at seeded random depths), so a sample's depth does not
depend on --samples; keys are two-word keys from the harness vocabulary rather than wonderwords'
lists; vt and cwe are the harness's RULER-format generators (vt's answer prefix without RULER's
"assgined" typo; cwe's words from the harness vocabulary).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from .haystack import noise_sentences, place_needles
from .ruler_data import essay_sentences, qa_set
from .sample import Sample
from .synthetic import Draft, SyntheticSource, SyntheticTask, _key, draw_cwe, draw_vartrack

NIAH_TEMPLATE = (
    "Some special magic {kind} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {kind} afterwards.\n{{context}}\n"
    "What are all the special magic {kind} for {query} mentioned in the provided text?"
)
NIAH_PREFIX = " The special magic {kind} for {query} mentioned in the provided text are"
NEEDLE = "One of the special magic {kind} for {key} is: {value}."
QA_INSTRUCTION = "Answer the question based on the given documents. Only give me the answer and do not output any other words."
DEFAULT_TASKS = ("niah_single_2", "niah_multikey_1", "niah_multivalue", "niah_multiquery", "vt", "cwe", "qa_1", "qa_2")


def _value(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return _key(rng)


def _singular(text: str) -> str:
    """RULER's wording when one value is asked for ("A special magic number ... is")."""
    return text.replace("Some", "A").replace("are all", "is").replace("are", "is")


def niah(haystack: str, keys: str, values: str, n_keys: int = 1, n_values: int = 1, n_queries: int = 1):
    """A needle-in-a-haystack generator in RULER's format (see `synthetic.yaml`'s niah rows)."""

    def draw(rng: random.Random, depth: float, source: str, length: int) -> Draft:
        key_list = [_value(rng, keys) for _ in range(n_keys)]
        value_lists = [[_value(rng, values) for _ in range(n_values)] for _ in key_list]
        queried = sorted(rng.sample(range(n_keys), n_queries))
        needles = [
            NEEDLE.format(kind=values, key=k, value=v) for k, vs in zip(key_list, value_lists, strict=True) for v in vs
        ]
        first = queried[0] * n_values  # the queried key's first needle sits at the sample's depth
        placed = [(depth if i == first else rng.random(), text) for i, text in enumerate(needles)]
        query = ", ".join(key_list[i] for i in queried[:-1]) + (", and " if n_queries > 1 else "") + key_list[queried[-1]]
        kind = values if n_values * n_queries > 1 else values[:-1]
        template, prefix = NIAH_TEMPLATE.format(kind=kind, query=query), NIAH_PREFIX.format(kind=kind, query=query)
        if n_values * n_queries == 1:
            template, prefix = _singular(template), _singular(prefix)
        filler_seed = rng.randrange(2**32)
        return Draft(
            template=template,
            answer_prefix=prefix,
            expected=tuple(v for i in queried for v in value_lists[i]),
            context=lambda n: _haystack(haystack, n, placed, keys, values, filler_seed),
            depth=depth,
            max_units=len(essay_sentences()) if haystack == "essay" else None,
        )

    return draw


def _haystack(kind: str, n: int, needles: list[tuple[float, str]], keys: str, values: str, seed: int) -> str:
    """`n` units of RULER's haystack `kind` with the needles at their depths."""
    if kind == "essay":
        return place_needles(essay_sentences()[:n], needles)
    if kind == "repeat":
        return place_needles(noise_sentences(0, n), needles)
    rng = random.Random(seed)
    distractors = [NEEDLE.format(kind=values, key=_value(rng, keys), value=_value(rng, values)) for _ in range(n)]
    return place_needles(distractors, needles)


def qa(dataset: str):
    """RULER's QA: a question's gold documents among distractors (its related ones first)."""

    def draw(rng: random.Random, depth: float, source: str, length: int) -> Draft:
        data = qa_set(dataset)
        item = data.items[rng.randrange(len(data.items))]
        others = [i for i in item.related if i not in item.gold]
        order_seed = rng.randrange(2**32)

        def context(n: int) -> str:
            chosen = list(item.gold) + others[: max(0, n - len(item.gold))]
            pool_rng = random.Random(order_seed)
            while len(chosen) < n:
                candidate = pool_rng.randrange(len(data.docs))
                if candidate not in chosen:
                    chosen.append(candidate)
            random.Random(order_seed + 1).shuffle(chosen)
            return "\n\n".join(f"Document {i + 1}:\n{data.docs[doc]}" for i, doc in enumerate(chosen))

        return Draft(
            template=(
                f"{QA_INSTRUCTION}\n\nThe following are given documents.\n\n{{context}}\n\n{QA_INSTRUCTION}\n\n"
                f"Question: {item.question}"
            ),
            answer_prefix=" Answer:",
            expected=item.answers,
            context=context,
            max_units=len(data.docs),
        )

    return draw


TASKS: dict[str, SyntheticTask] = {
    task.name: task
    for task in (
        SyntheticTask("niah_single_1", niah("repeat", "words", "numbers"), "string_match_all", 128, None),
        SyntheticTask("niah_single_2", niah("essay", "words", "numbers"), "string_match_all", 128, None),
        SyntheticTask("niah_single_3", niah("essay", "words", "uuids"), "string_match_all", 128, None),
        SyntheticTask("niah_multikey_1", niah("essay", "words", "numbers", n_keys=4), "string_match_all", 128, None),
        SyntheticTask("niah_multikey_2", niah("needle", "words", "numbers"), "string_match_all", 128, None),
        SyntheticTask("niah_multikey_3", niah("needle", "uuids", "uuids"), "string_match_all", 128, None),
        SyntheticTask("niah_multivalue", niah("essay", "words", "numbers", n_values=4), "string_match_all", 128, None),
        SyntheticTask("niah_multiquery", niah("essay", "words", "numbers", n_keys=4, n_queries=4), "string_match_all", 128, None),
        SyntheticTask("vt", draw_vartrack, "string_match_all", 30, "noise"),
        SyntheticTask("cwe", draw_cwe, "string_match_all", 120, None),
        SyntheticTask("qa_1", qa("squad"), "string_match_part", 32, None),
        SyntheticTask("qa_2", qa("hotpotqa"), "string_match_part", 32, None),
    )
}


def ruler_source(count_tokens: Callable[[Sample], int], seed: int = 0) -> SyntheticSource:
    """RULER samples on demand, sized with `count_tokens` (the model's tokenizer and format);
    every task is generated, QA drawing its items from thousands."""
    return SyntheticSource(count_tokens, seed=seed, tasks=TASKS, suite="ruler")
