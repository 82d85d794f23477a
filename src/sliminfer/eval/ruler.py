"""RULER's task formats on RULER's own data: needles in haystacks, variable tracking, word counts, QA.

Templates, answer prefixes, needle sentences, haystacks, example shots, generation lengths and
metrics follow NVIDIA RULER as packaged in `nvidia-long-context-eval` 26.3 (`long_context_eval`:
`data/synthetic/constants.py` for templates and generation lengths, `synthetic.yaml` for each
task's arguments, `data/synthetic/{niah,variable_tracking,common_words_extraction,
freq_words_extraction,qa}.py` for formats, `eval/synthetic/constants.py` for metrics). The
generators are our own, seeded per (seed, task, length, index), and sized in the model's tokens
by `synthetic.make_sample` (prompt + generation = length), as RULER sizes `max_seq_length`.

Deviations from RULER, each to keep samples reproducible or the harness uniform:
- the first asked needle (qa: the question's first gold paragraph) sits at a depth cycling
  through `synthetic.DEPTHS`, other needles and documents at seeded random places, so sample i
  does not depend on --samples; RULER draws every position at random (qa: one fixed shuffle);
- haystacks grow by whole sentences (essay), noise blocks or distractor needles, found by
  bisection; RULER steps by 500 words or 25 blocks;
- essays are cut into sentences with a regex (`haystack.split_sentences`), not nltk's punkt;
- keys and CWE words are words of the essays (`ruler_data.essay_vocabulary`), not wonderwords'
  lists, so the suite needs nothing beyond RULER's data;
- vt's and cwe's worked example is part of the user turn; RULER repeats its model template
  around it. vt's example has a fixed amount of noise rather than RULER's 500 tokens of the
  model's tokenizer, so content does not depend on the tokenizer;
- fwe's text leaves room for generation (RULER fills all of `max_seq_length`).
"""

from __future__ import annotations

import math
import random
import string
import uuid
from collections.abc import Callable, Sequence

from ..errors import UserError
from .haystack import NOISE_SENTENCES, numbered, place_needles, random_key, variable_chain, word_list
from .ruler_data import essay_sentences, essay_vocabulary, qa_set
from .sample import Sample
from .synthetic import QA_TEMPLATE, Draft, Draw, SyntheticSource, SyntheticTask

NIAH_TEMPLATE = (
    "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
    "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?"
)
NIAH_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
VT_TEMPLATE = (
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
    "Question: Find all variables that are assigned the value {query} in the text above."
)
# RULER's typo "assgined" kept: it is the prompt models are compared on.
VT_PREFIX = (
    " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables "
    "are assgined the value {query}, they are: "
)
CWE_TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n{context}\n"
    "Question: What are the 10 most common words in the above list?"
)
CWE_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three most "
    "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please "
    "ignore the dots '....'. What are the three most frequently appeared words in the above coded text?"
)
FWE_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
QA_PREFIX = " Answer:"
DOCUMENT = "Document {i}:\n{document}"

# RULER's tokens_to_generate per task family.
NIAH_TOKENS, VT_TOKENS, CWE_TOKENS, FWE_TOKENS, QA_TOKENS = 128, 30, 120, 50, 32
REPEAT_NOISE = " ".join(NOISE_SENTENCES)  # one unit of RULER's "repeat" haystack and of vt's noise
# Noise blocks in vt's example: what RULER's 500-token example holds with Llama-style tokenizers
# (it grows the noise 5 blocks at a time; 15 blocks pass 500 tokens).
VT_EXAMPLE_BLOCKS = 10
CWE_SHORT = 4096  # below this length RULER's cwe uses fewer repeats (example and task)
FWE_VOCAB_TOKENS = 50  # fwe draws length // 50 coded words
FWE_ALPHA = 2.0  # Zipf exponent of fwe's word counts; RULER normalises by zeta(2) = pi^2 / 6
FWE_ZETA = math.pi**2 / 6
DEFAULT_TASKS = (
    "niah_single_2",
    "niah_multikey_1",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "cwe",
    "qa_1",
    "qa_2",
)
DEFAULT_LENGTHS = (4096, 8192, 16384, 32768)


def _draw_value(rng: random.Random, kind: str) -> str:
    """A key or value of RULER's kind: "numbers" (7 digits), "uuids" or "words" (word-word)."""
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return random_key(rng, essay_vocabulary())


def _singular(text: str) -> str:
    """RULER's rewording when one value is asked for ("A special magic number is hidden ...")."""
    return text.replace("Some", "A").replace("are all", "is").replace("are", "is")


def niah(
    haystack: str, key_kind: str, value_kind: str, keys: int = 1, values: int = 1, queries: int = 1
) -> Draw:
    """RULER's needle in a haystack: `keys` keys with `values` values each, `queries` keys asked.

    Haystacks: "essay" (the essays' sentences from the start), "repeat" (RULER's noise block,
    one per line) and "needle" (one distractor needle of random key and value per line).
    """
    keys = max(keys, queries)

    def draw(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
        key_list: list[str] = []
        while len(key_list) < keys:
            key = _draw_value(rng, key_kind)
            key_list += [key] if key not in key_list else []
        value_lists = [[_draw_value(rng, value_kind) for _ in range(values)] for _ in key_list]
        queried = rng.sample(range(keys), queries)
        needles = [
            NEEDLE.format(type_needle_v=value_kind, key=k, value=v)
            for k, vs in zip(key_list, value_lists, strict=True)
            for v in vs
        ]
        first = queried[0] * values  # the first asked needle sits at the sample's depth
        placed = [(depth if i == first else rng.random(), text) for i, text in enumerate(needles)]
        asked = [key_list[i] for i in queried]
        query = ", ".join(asked[:-1]) + ", and " + asked[-1] if queries > 1 else asked[0]
        template, prefix, kind = NIAH_TEMPLATE, NIAH_PREFIX, value_kind
        if values * queries == 1:
            template, prefix, kind = _singular(template), _singular(prefix), kind[:-1]
        units, separator = _haystack_units(haystack, rng, key_kind, value_kind, set(key_list))
        return Draft(
            template=template.format(type_needle_v=kind, query=query, context="{context}"),
            answer_prefix=prefix.format(type_needle_v=kind, query=query),
            expected=tuple(v for i in queried for v in value_lists[i]),
            context=lambda n: place_needles(units(n), placed, separator),
            depth=depth,
            max_units=len(essay_sentences()) if haystack == "essay" else None,
        )

    return draw


def _haystack_units(
    haystack: str, rng: random.Random, key_kind: str, value_kind: str, taken: set[str]
) -> tuple[Callable[[int], Sequence[str]], str]:
    """n units of a niah haystack, and what joins them (RULER puts noise and needles one per line)."""
    if haystack == "essay":
        return lambda n: essay_sentences()[:n], " "
    if haystack == "repeat":
        return lambda n: [REPEAT_NOISE] * n, "\n"
    seed = rng.randrange(2**32)

    def distractors(n: int) -> list[str]:
        """n needles of keys other than `taken`: the first n of one seeded sequence, whatever n."""
        draws, out = random.Random(seed), []
        while len(out) < n:
            key = _draw_value(draws, key_kind)
            if key not in taken:
                out.append(
                    NEEDLE.format(type_needle_v=value_kind, key=key, value=_draw_value(draws, value_kind))
                )
        return out

    return distractors, "\n"


def _chain_lines(value: str, names: list[str]) -> list[str]:
    """RULER's assignments, spelled as RULER spells them (no period, a trailing space on hops)."""
    return [f"VAR {names[0]} = {value}"] + [
        f"VAR {b} = VAR {a} " for a, b in zip(names[:-1], names[1:], strict=True)
    ]


def _noise_with_chain(rng: random.Random, blocks: int, lines: list[str]) -> str:
    """`blocks` noise blocks (one per line) with the chain's lines in order at random depths."""
    placed = list(zip(sorted(rng.random() for _ in lines), lines, strict=True))
    return place_needles([REPEAT_NOISE + "\n"] * blocks, placed)


def draw_vt(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    """RULER's variable tracking: one chain of four hops in noise, after one solved example."""
    ex_value, ex_names = variable_chain(rng, letters=3)
    example = (
        VT_TEMPLATE.format(
            context=_noise_with_chain(rng, VT_EXAMPLE_BLOCKS, _chain_lines(ex_value, ex_names)),
            query=ex_value,
        )
        + VT_PREFIX.format(num_v=len(ex_names), query=ex_value)
        + f" {' '.join(ex_names)}\n\n\n\n"
    )
    value, names = variable_chain(rng)
    lines = _chain_lines(value, names)
    chain_seed = rng.randrange(2**32)
    return Draft(
        template=example + VT_TEMPLATE.format(context="{context}", query=value),
        answer_prefix=VT_PREFIX.format(num_v=len(names), query=value),
        expected=tuple(names),
        context=lambda n: _noise_with_chain(random.Random(chain_seed), n, lines),
    )


def draw_cwe(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    """RULER's common words extraction: 10 words repeated among rarer ones, after one example.

    From 4k tokens: example 10 common x10 + 30 rare x3, task 10 common x30 + rare x3; below:
    example 10 x3 + 10 x1, task 10 x6 + rare x1.
    """
    (ex_rare, ex_freq, ex_rare_freq), (freq, rare_freq) = (
        ((10, 3, 1), (6, 1)) if length < CWE_SHORT else ((30, 10, 3), (30, 3))
    )
    vocabulary = essay_vocabulary()
    ex_words = rng.sample(vocabulary, 10 + ex_rare)
    ex_context = word_list(ex_words[:10], ex_freq, ex_words[10:], ex_rare_freq, rng.randrange(2**32))(ex_rare)
    example = CWE_TEMPLATE.format(context=ex_context) + CWE_PREFIX + numbered(ex_words[:10]) + "\n"
    pool = list(vocabulary)
    rng.shuffle(pool)
    common, rare = pool[:10], pool[10:]
    return Draft(
        template=example + CWE_TEMPLATE,
        answer_prefix=CWE_PREFIX,
        expected=tuple(common),
        context=word_list(common, freq, rare, rare_freq, rng.randrange(2**32)),
        max_units=len(rare),
    )


def draw_fwe(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
    """RULER's frequent words extraction: coded words with Zipf counts; the top one is "..." noise.

    For n words the word of rank k appears int(n k^-alpha / zeta(alpha)) times; the answer is
    ranks 2-4.
    """
    codes: list[str] = []
    while len(codes) < max(4, length // FWE_VOCAB_TOKENS):
        code = "".join(rng.choice(string.ascii_lowercase) for _ in range(6))
        codes += [code] if code not in codes else []
    codes[0] = "..."
    order_seed = rng.randrange(2**32)

    def context(n: int) -> str:
        words = [
            code for rank, code in enumerate(codes, 1) for _ in range(int(n * rank**-FWE_ALPHA / FWE_ZETA))
        ]
        random.Random(order_seed).shuffle(words)
        return " ".join(words)

    return Draft(template=FWE_TEMPLATE, answer_prefix=FWE_PREFIX, expected=tuple(codes[1:4]), context=context)


def qa(dataset: str) -> Draw:
    """RULER's QA: question `index` of the data set, its gold paragraphs among distractors.

    Distractors are the question's related paragraphs first (SQuAD: the rest of its article),
    then random others, as RULER picks them.
    """

    def draw(rng: random.Random, depth: float, source: str, length: int, index: int) -> Draft:
        data = qa_set(dataset)
        if index >= len(data.items):
            raise UserError(
                f"RULER {dataset} has {len(data.items)} questions: sample index {index} is past the end"
            )
        item = data.items[index]
        related = list(item.related)
        rng.shuffle(related)
        taken = set(item.gold) | set(related)
        others = [i for i in range(len(data.docs)) if i not in taken]
        rng.shuffle(others)
        extras = related + others
        order_seed = rng.randrange(2**32)

        def context(n: int) -> str:
            docs = list(item.gold[1:]) + extras[:n]
            random.Random(order_seed).shuffle(docs)
            docs.insert(round(depth * len(docs)), item.gold[0])
            return "\n\n".join(DOCUMENT.format(i=i + 1, document=data.docs[d]) for i, d in enumerate(docs))

        return Draft(
            template=QA_TEMPLATE.replace("{question}", item.question),
            answer_prefix=QA_PREFIX,
            expected=item.answers,
            context=context,
            depth=depth if len(item.gold) == 1 else None,
            max_units=len(extras),
        )

    return draw


NIAH_TASKS = {
    "niah_single_1": niah("repeat", "words", "numbers"),
    "niah_single_2": niah("essay", "words", "numbers"),
    "niah_single_3": niah("essay", "words", "uuids"),
    "niah_multikey_1": niah("essay", "words", "numbers", keys=4),
    "niah_multikey_2": niah("needle", "words", "numbers"),
    "niah_multikey_3": niah("needle", "uuids", "uuids"),
    "niah_multivalue": niah("essay", "words", "numbers", values=4),
    "niah_multiquery": niah("essay", "words", "numbers", queries=4),
}
TASKS: dict[str, SyntheticTask] = {
    name: SyntheticTask(name, draw, "string_match_all", NIAH_TOKENS, None)
    for name, draw in NIAH_TASKS.items()
} | {
    task.name: task
    for task in (
        SyntheticTask("vt", draw_vt, "string_match_all", VT_TOKENS, None),
        SyntheticTask("cwe", draw_cwe, "string_match_all", CWE_TOKENS, None),
        SyntheticTask("fwe", draw_fwe, "string_match_all", FWE_TOKENS, None),
        SyntheticTask(
            "qa_1", qa("squad"), "string_match_part", QA_TOKENS, None, lambda: len(qa_set("squad").items)
        ),
        SyntheticTask(
            "qa_2",
            qa("hotpotqa"),
            "string_match_part",
            QA_TOKENS,
            None,
            lambda: len(qa_set("hotpotqa").items),
        ),
    )
}


def ruler_source(count_tokens: Callable[[Sample], int], seed: int = 0) -> SyntheticSource:
    """RULER samples on demand, sized with `count_tokens` (the model's tokenizer and format).

    Generated tasks have no sample limit; qa_1 and qa_2 have one sample per question.
    """
    return SyntheticSource(count_tokens, seed=seed, tasks=TASKS, suite="ruler")
