"""RULER-style synthetic tasks: seeded generators, completion-style templates, string scorers.

Each task draws its content (keys, values, facts, words) from a seeded RNG, then the haystack is
grown until the rendered prompt fills `length - max_new_tokens` tokens of the model's own
tokenizer, as RULER sizes `max_seq_length`. Content never depends on how much haystack fits,
so a sample is the same whatever the tokenizer, apart from the amount of filler.

Tasks (RULER counterpart in brackets): passkey (niah_single_1), multikey with three distractor
keys (niah_multikey_1), multivalue with four values of one key (niah_multivalue), vartrack
with one chain of four hops (vt), cwe (common words extraction) and qa (a made-up supporting
fact among distractor facts, in place of SQuAD/HotpotQA, which are not available offline; the
answer prefix restates the fact up to its answer, completion style).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UserError
from .facts import draw_facts
from .haystack import (
    HAYSTACKS,
    fit_largest,
    noise_sentences,
    place_needles,
    random_key,
    variable_chain,
    vocabulary,
    word_list,
)
from .sample import Sample

# Needle depths cycle through this order, so any number of samples covers the context evenly
# and sample i has the same depth whatever --samples is (resumed runs stay consistent).
DEPTHS = (0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0, 1.0)

NIAH_INTRO = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the numbers afterwards.\n"
)
QA_INSTRUCTION = "Answer the question based on the given documents. Only give me the answer and do not output any other words."
# RULER's QA template (the ruler suite's qa_1 and qa_2 use it as is).
QA_TEMPLATE = (
    f"{QA_INSTRUCTION}\n\nThe following are given documents.\n\n{{context}}\n\n{QA_INSTRUCTION}\n\n"
    "Question: {question}"
)


@dataclass(frozen=True)
class Draft:
    """A sample's seeded content; `context(n)` renders it with n haystack units."""

    template: str  # the prompt with a {context} slot
    answer_prefix: str
    expected: tuple[str, ...]
    context: Callable[[int], str]
    depth: float | None = None
    max_units: int | None = None


Draw = Callable[[random.Random, float, str, int, int], Draft]  # (rng, depth, haystack source, length, index)


@dataclass(frozen=True)
class SyntheticTask:
    """A generator and how its answers are scored.

    `size`, for tasks whose items come from a data set (RULER's QA), returns how many there are:
    sample i asks item i, so there are no more samples than items.
    """

    name: str
    draw: Draw
    metric: str
    max_new_tokens: int
    haystack: str | None  # default source; None if the task builds its own context
    size: Callable[[], int] | None = None


def haystack_context(source: str, start: int, needles: list[tuple[float, str]]) -> Callable[[int], str]:
    """n sentences of `source` from `start`, with the needles placed at their depths."""
    return lambda n: place_needles(HAYSTACKS[source](start, n), needles)


def draw_passkey(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    key = str(rng.randint(10000, 99999))
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    return Draft(
        template=(
            "There is an important piece of information hidden inside a lot of irrelevant text. "
            "Find it and memorize it. I will quiz you about the important information there.\n\n"
            "{context}\n\nWhat is the pass key?"
        ),
        answer_prefix=" The pass key is",
        expected=(key,),
        context=haystack_context(source, rng.randrange(10_000), [(depth, needle)]),
        depth=depth,
    )


def draw_multikey(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    keys = [random_key(rng, vocabulary()) for _ in range(4)]
    values = [str(rng.randint(1_000_000, 9_999_999)) for _ in keys]
    needles = [(depth, f"One of the special magic numbers for {keys[0]} is: {values[0]}.")]
    needles += [
        (rng.random(), f"One of the special magic numbers for {k} is: {v}.")
        for k, v in zip(keys[1:], values[1:], strict=True)
    ]
    return Draft(
        template=NIAH_INTRO
        + "{context}\n"
        + f"What is the special magic number for {keys[0]} mentioned in the provided text?",
        answer_prefix=f" The special magic number for {keys[0]} mentioned in the provided text is",
        expected=(values[0],),
        context=haystack_context(source, rng.randrange(10_000), needles),
        depth=depth,
    )


def draw_multivalue(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    key = random_key(rng, vocabulary())
    values = [str(rng.randint(1_000_000, 9_999_999)) for _ in range(4)]
    needles = [
        ((depth + i / 4) % 1.0, f"One of the special magic numbers for {key} is: {v}.")
        for i, v in enumerate(values)
    ]
    return Draft(
        template=NIAH_INTRO
        + "{context}\n"
        + f"What are all the special magic numbers for {key} mentioned in the provided text?",
        answer_prefix=f" The special magic numbers for {key} mentioned in the provided text are",
        expected=tuple(values),
        context=haystack_context(source, rng.randrange(10_000), needles),
        depth=depth,
    )


def _variable_chain(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A value, the variable names bound to it, and the assignments in chain order."""
    value, names = variable_chain(rng)
    lines = [f"VAR {names[0]} = {value}."] + [
        f"VAR {b} = VAR {a}." for a, b in zip(names[:-1], names[1:], strict=True)
    ]
    return value, names, lines


def _vartrack_question(value: str, count: int) -> tuple[str, str]:
    return (
        f"Question: Find all variables that are assigned the value {value} in the text above.",
        f" Answer: According to the chain(s) of variable assignment in the text above, {count} variables "
        f"are assigned the value {value}, they are:",
    )


def draw_vartrack(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    intro = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
    # One short solved example first, as RULER does, so the answer format is clear.
    ex_value, ex_names, ex_lines = _variable_chain(rng)
    ex_text = place_needles(noise_sentences(0, 10), [(i / 5 + 0.1, line) for i, line in enumerate(ex_lines)])
    ex_question, ex_prefix = _vartrack_question(ex_value, len(ex_names))
    example = f"{intro}{ex_text}\n{ex_question}{ex_prefix} {' '.join(ex_names)}\n\n"
    value, names, lines = _variable_chain(rng)
    hop_depths = sorted(rng.random() for _ in lines)
    question, prefix = _vartrack_question(value, len(names))
    return Draft(
        template=example + intro + "{context}\n" + question,
        answer_prefix=prefix,
        expected=tuple(names),
        context=haystack_context(source, rng.randrange(10_000), list(zip(hop_depths, lines, strict=True))),
    )


def common_word_frequency(length: int) -> int:
    """How often each of the 10 common words appears: 30 as in RULER from 6k tokens, fewer below.

    RULER's 30 repeats of 10 words alone take ~1.5k tokens, more than a 1k prompt holds.
    """
    return max(4, min(30, length // 200))


def draw_cwe(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    pool = list(vocabulary())
    rng.shuffle(pool)
    common, rare = pool[:10], pool[10:]
    frequency = common_word_frequency(length)
    return Draft(
        template=(
            "Below is a numbered list of words. In these words, some appear more often than others. "
            "Memorize the ones that appear most often.\n{context}\n"
            "Question: What are the 10 most common words in the above list?"
        ),
        answer_prefix=" Answer: The top 10 words that appear most often in the list are:",
        expected=tuple(common),
        context=word_list(common, frequency, rare, 3, rng.randrange(2**32)),
        max_units=len(rare),
    )


def draw_qa(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    support, *distractors = draw_facts(rng, 4)
    needles = [(depth, support.fact)] + [(rng.random(), d.fact) for d in distractors]
    return Draft(
        template=QA_TEMPLATE.replace("{question}", support.question),
        answer_prefix=f" Answer: {support.statement}",
        expected=(support.answer,),
        context=haystack_context(source, rng.randrange(10_000), needles),
        depth=depth,
    )


TASKS: dict[str, SyntheticTask] = {
    task.name: task
    for task in (
        SyntheticTask("passkey", draw_passkey, "string_match_all", 16, "noise"),
        SyntheticTask("multikey", draw_multikey, "string_match_all", 24, "docs"),
        SyntheticTask("multivalue", draw_multivalue, "string_match_all", 64, "docs"),
        SyntheticTask("vartrack", draw_vartrack, "string_match_all", 32, "noise"),
        SyntheticTask("cwe", draw_cwe, "string_match_all", 120, None),
        SyntheticTask("qa", draw_qa, "string_match_part", 24, "docs"),
    )
}


def make_sample(
    task_name: str,
    length: int,
    index: int,
    count_tokens: Callable[[Sample], int],
    *,
    seed: int = 0,
    haystack: str | None = None,
    tasks: dict[str, SyntheticTask] | None = None,
) -> Sample:
    """Build sample `index` of `task_name` whose rendered prompt fits `length` minus generation.

    Args:
        count_tokens: tokens of a sample's rendered prompt (the model's tokenizer and template).
        haystack: override the task's haystack source ("noise" or "docs").
        tasks: the task table (default this suite's `TASKS`; the ruler suite passes its own).
    """
    task = (tasks or TASKS)[task_name]
    source = haystack or task.haystack
    if source is not None and source not in HAYSTACKS:
        raise UserError(f"haystack {source!r}: must be one of {sorted(HAYSTACKS)}")
    rng = random.Random(f"{seed}:{task_name}:{length}:{index}")
    depth = DEPTHS[index % len(DEPTHS)]
    draft = task.draw(rng, depth, source or "noise", length, index)

    def build(n: int) -> Sample:
        return Sample(
            task=task_name,
            length=length,
            index=index,
            prompt=draft.template.replace("{context}", draft.context(n)),
            answer_prefix=draft.answer_prefix,
            expected=draft.expected,
            metric=task.metric,
            max_new_tokens=task.max_new_tokens,
            depth=draft.depth,
            haystack=source,
        )

    budget = length - task.max_new_tokens
    units = fit_largest(
        lambda n: count_tokens(build(n)), budget, what=f"{task_name} at {length}", upper=draft.max_units
    )
    return build(units)


class SyntheticSource:
    """Generated samples on demand, sized with `count_tokens` (the model's tokenizer and format).

    `tasks` is the task table: this suite's `TASKS` by default, the ruler suite's for RULER.
    """

    def __init__(
        self,
        count_tokens: Callable[[Sample], int],
        seed: int = 0,
        haystack: str | None = None,
        tasks: dict[str, SyntheticTask] | None = None,
        suite: str = "synthetic",
    ) -> None:
        self.count_tokens = count_tokens
        self.seed = seed
        self.haystack = haystack
        self.tasks = tasks or TASKS
        self.suite = suite

    def available(self, task: str) -> int | None:
        """How many samples `task` has: None (no limit) for a generator, the item count for data."""
        if task not in self.tasks:
            raise UserError(f"{self.suite} task {task!r}: must be one of {list(self.tasks)}")
        size = self.tasks[task].size
        return None if size is None else size()

    def sample(self, task: str, length: int, index: int) -> Sample:
        return make_sample(
            task, length, index, self.count_tokens, seed=self.seed, haystack=self.haystack, tasks=self.tasks
        )
