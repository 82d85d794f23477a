"""LongBench (v1) from local JSONL files: reader, prompt templates, generation lengths, truncation.

Nothing is downloaded: `--data DIR` holds `<task>.jsonl` files in LongBench's published format
(one JSON object per line with input, context, answers, length, dataset, language, all_classes,
_id). Templates, generation lengths, metrics, the tasks run without a chat template and the
first-line rule of the few-shot tasks follow THUDM/LongBench `pred.py`, `eval.py` and
`config/*.json`, so scores are comparable with published tables when the truncation length
matches.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from ..errors import UserError
from .sample import Sample

FIELDS = ("input", "context", "answers", "length", "dataset", "language", "all_classes", "_id")

DATASET2PROMPT = {
    "narrativeqa": "You are given a story, which can be either a novel or a movie script, and a question. Answer the question as concisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the story as concisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:",
    "qasper": 'You are given a scientific article and a question. Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write "unanswerable". If the question is a yes/no question, answer "yes", "no", or "unanswerable". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write "unanswerable". If the question is a yes/no question, answer "yes", "no", or "unanswerable". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:',
    "multifieldqa_en": "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
    "hotpotqa": "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
    "2wikimqa": "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
    "musique": "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
    "gov_report": "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:",
    "qmsum": "You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:",
    "multi_news": "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:",
    "trec": "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}",
    "triviaqa": "Answer the question based on the given passage. Only give me the answer and do not output any other words. The following are some examples.\n\n{context}\n\n{input}",
    "samsum": "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}",
    "passage_count": "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: ",
    "passage_retrieval_en": 'Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be like "Paragraph 1", "Paragraph 2", etc.\n\nThe answer is: ',
    "lcc": "Please complete the code given below. \n{context}Next line of code:\n",
    "repobench-p": "Please complete the code given below. \n{context}{input}Next line of code:\n",
}

DATASET2MAXLEN = {
    "narrativeqa": 128,
    "qasper": 128,
    "multifieldqa_en": 64,
    "hotpotqa": 32,
    "2wikimqa": 32,
    "musique": 32,
    "gov_report": 512,
    "qmsum": 512,
    "multi_news": 512,
    "trec": 64,
    "triviaqa": 32,
    "samsum": 128,
    "passage_count": 32,
    "passage_retrieval_en": 32,
    "lcc": 64,
    "repobench-p": 64,
}

DATASET2METRIC = {
    "narrativeqa": "qa_f1",
    "qasper": "qa_f1",
    "multifieldqa_en": "qa_f1",
    "hotpotqa": "qa_f1",
    "2wikimqa": "qa_f1",
    "musique": "qa_f1",
    "gov_report": "rouge",
    "qmsum": "rouge",
    "multi_news": "rouge",
    "trec": "classification",
    "triviaqa": "qa_f1",
    "samsum": "rouge",
    "passage_count": "count",
    "passage_retrieval_en": "retrieval",
    "lcc": "code_sim",
    "repobench-p": "code_sim",
}

NO_CHAT_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"})
FIRST_LINE_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht"})
TASKS = tuple(DATASET2PROMPT)
NEWLINE_MARKER = re.compile(r" ?NEWLINE_CHAR ?")


@dataclass(frozen=True)
class TokenCodec:
    """The two tokenizer operations middle truncation needs (no special tokens either way)."""

    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]


def read_jsonl(path: str) -> Iterator[dict]:
    """Yield LongBench records from one JSONL file, checking the published fields."""
    if not os.path.exists(path):
        raise UserError(f"LongBench file {path!r} does not exist: --data must hold <task>.jsonl files")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            missing = [name for name in ("context", "answers") if name not in record]
            if missing:
                raise UserError(
                    f"{path}:{number}: missing LongBench field(s) {missing}; expected {list(FIELDS)}"
                )
            yield record


def fill_template(task: str, record: dict, newline_markers: bool = False) -> str:
    """The task's LongBench prompt for one record.

    multi_news (and other news data) mark line breaks with the literal NEWLINE_CHAR. LongBench
    passes them through verbatim; by default we turn them back into line breaks, which costs
    fewer tokens and reads naturally. `newline_markers=True` keeps LongBench's exact prompt.
    """
    fields = {"input": record.get("input", ""), "context": record["context"]}
    if not newline_markers:
        fields = {key: NEWLINE_MARKER.sub("\n", value) for key, value in fields.items()}
    return DATASET2PROMPT[task].format(**fields)


def truncate_middle(token_ids: Sequence[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """LongBench's truncation: keep the first and last `max_tokens // 2` tokens.

    The head and tail hold the instructions and the question; the middle of the context goes.
    Returns (head, tail), tail empty when nothing had to be cut.
    """
    if len(token_ids) <= max_tokens:
        return list(token_ids), []
    half = max_tokens // 2
    return list(token_ids[:half]), list(token_ids[len(token_ids) - half :])


def truncated_prompt(prompt: str, max_tokens: int, codec: TokenCodec) -> str:
    """The prompt cut in the middle to `max_tokens` tokens, decoded back to text as LongBench does."""
    head, tail = truncate_middle(codec.encode(prompt), max_tokens)
    return codec.decode(head) + codec.decode(tail) if tail else prompt


class LongBenchSource:
    """Samples of the tasks found in `data_dir` as `<task>.jsonl`, truncated to a token length.

    Args:
        codec: the model tokenizer's encode/decode, for middle truncation.
        overhead_tokens: tokens the prompt format adds around a sample's prompt (BOS, chat
            template), given the sample: subtracted from the budget so prompt and answer fit.
        newline_markers: keep NEWLINE_CHAR verbatim (see `fill_template`).
    """

    def __init__(
        self,
        data_dir: str,
        codec: TokenCodec,
        overhead_tokens: Callable[[Sample], int] = lambda sample: 0,
        newline_markers: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.codec = codec
        self.overhead_tokens = overhead_tokens
        self.newline_markers = newline_markers
        self._records: dict[str, list[dict]] = {}

    def records(self, task: str) -> list[dict]:
        if task not in DATASET2PROMPT:
            raise UserError(f"LongBench task {task!r}: supported English tasks are {list(TASKS)}")
        if task not in self._records:
            self._records[task] = list(read_jsonl(os.path.join(self.data_dir, f"{task}.jsonl")))
        return self._records[task]

    def available(self, task: str) -> int:
        return len(self.records(task))

    def sample(self, task: str, length: int, index: int) -> Sample:
        """Record `index` (file order) of `task`, its prompt cut in the middle to fit `length`."""
        record = self.records(task)[index]
        answers = record["answers"]
        sample = Sample(
            task=task,
            length=length,
            index=index,
            prompt=fill_template(task, record, self.newline_markers),
            answer_prefix="",
            expected=tuple(str(a) for a in (answers if isinstance(answers, list) else [answers])),
            metric=DATASET2METRIC[task],
            max_new_tokens=DATASET2MAXLEN[task],
            chat_allowed=task not in NO_CHAT_TASKS,
            first_line_only=task in FIRST_LINE_TASKS,
            stop=("\n",) if task == "samsum" else (),
            all_classes=tuple(record.get("all_classes") or ()),
        )
        budget = length - sample.max_new_tokens - self.overhead_tokens(replace(sample, prompt=""))
        if budget <= 0:
            raise UserError(
                f"length {length}: too short for LongBench {task} ({sample.max_new_tokens} new tokens)"
            )
        return replace(sample, prompt=truncated_prompt(sample.prompt, budget, self.codec))
