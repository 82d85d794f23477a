"""Made-up facts for the synthetic QA task: a supporting fact plus distractors of the same form.

Entities are invented names, so a model cannot answer from memory: it has to find the fact in
the context. Each template yields (fact, question, answer); distractors reuse the template with
other entities, so the question's entity is what tells the facts apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ren",
    "tor",
    "vel",
    "sa",
    "dun",
    "bri",
    "mar",
    "zel",
    "qui",
    "ost",
    "ra",
    "fen",
    "gal",
    "hu",
    "ith",
    "jor",
    "nak",
    "pel",
    "sor",
    "tam",
    "ul",
    "wen",
    "yor",
    "dra",
    "es",
)
_ANIMALS = ("parrot", "tortoise", "goat", "ferret", "owl", "donkey", "hedgehog", "lizard")

# (fact, question, answer slot); slots: person, place, name, animal, year. Every answer is
# invented or a random year, so it cannot be guessed from a short list.
TEMPLATES = (
    ("{person} was born in the town of {place}.", "In which town was {person} born?", "place"),
    (
        "The capital of the island of {place} is {name}.",
        "What is the capital of the island of {place}?",
        "name",
    ),
    (
        "{person} keeps a pet {animal} named {name}.",
        "What is the name of the pet {animal} of {person}?",
        "name",
    ),
    ("The lighthouse of {place} was built by {person}.", "Who built the lighthouse of {place}?", "person"),
    (
        "The ship {name} was launched in the year {year}.",
        "In which year was the ship {name} launched?",
        "year",
    ),
)


@dataclass(frozen=True)
class Fact:
    """A fact, a question about it, its answer, and the fact's words up to the answer.

    `statement` is the completion-style cue ("The ship Kalo was launched in the year"): small
    models answer a question far more reliably when the answer only has to be continued.
    """

    fact: str
    question: str
    answer: str
    statement: str


def invented_name(rng: random.Random, syllables: int) -> str:
    """A capitalized made-up word such as 'Kavelmi'."""
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables)).capitalize()


def draw_facts(rng: random.Random, count: int) -> list[Fact]:
    """`count` facts of one randomly chosen template, with pairwise different entities/answers."""
    fact_template, question_template, answer_slot = rng.choice(TEMPLATES)
    facts: list[Fact] = []
    used: set[str] = set()
    while len(facts) < count:
        slots = {
            "person": f"{invented_name(rng, 2)} {invented_name(rng, 3)}",
            "place": invented_name(rng, 3),
            "name": invented_name(rng, 2),
            "animal": rng.choice(_ANIMALS),
            "year": str(rng.randint(1700, 1899)),
        }
        question = question_template.format(**slots)
        answer = slots[answer_slot]
        if answer in used or question in used:
            continue
        used |= {answer, question}
        statement = fact_template.split("{" + answer_slot + "}")[0].format(**slots).rstrip()
        facts.append(Fact(fact_template.format(**slots), question, answer, statement))
    return facts
