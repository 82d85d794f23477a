"""One evaluation item, whatever suite it comes from, and how it becomes the model's prompt."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """A prompt, what a correct answer contains, and how to score it.

    Attributes:
        task: task name, e.g. "passkey" or "multi_news".
        length: the token budget the sample was built for (prompt plus generation).
        index: position of the sample within (task, length); with the seed it fixes the content.
        prompt: the instruction, context and question (the user turn in chat style).
        answer_prefix: text the answer starts with, appended after the prompt (completion
            style) or after the assistant header (chat style); "" for none.
        expected: reference answers (RULER: every item to find; LongBench: alternatives).
        metric: a key of `sliminfer.eval.scorers.METRICS`.
        max_new_tokens: generation limit for this task.
        depth: relative position of the main needle in the context, None if there is none.
        haystack: the haystack source ("noise", "docs") or None.
        chat_allowed: False for tasks that LongBench always runs without the chat template.
        first_line_only: score only the first line of the answer (LongBench few-shot tasks).
        stop: stop strings for generation.
        all_classes: the label set of classification tasks.
    """

    task: str
    length: int
    index: int
    prompt: str
    answer_prefix: str
    expected: tuple[str, ...]
    metric: str
    max_new_tokens: int
    depth: float | None = None
    haystack: str | None = None
    chat_allowed: bool = True
    first_line_only: bool = False
    stop: tuple[str, ...] = ()
    all_classes: tuple[str, ...] = field(default=())


ChatFormatter = Callable[[str], str]


def render(sample: Sample, chat: ChatFormatter | None = None) -> str:
    """The exact text the model is given.

    With `chat` (a function wrapping a user message in the model's chat template, ending
    with the assistant header), the prompt becomes the user turn and the answer prefix starts
    the assistant turn, as RULER does for chat models.
    """
    if chat is not None and sample.chat_allowed:
        return chat(sample.prompt) + sample.answer_prefix.lstrip()
    return sample.prompt + sample.answer_prefix


def text_digest(text: str) -> str:
    """A short stable fingerprint of a prompt, stored with each result to audit resumed runs."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
