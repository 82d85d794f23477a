"""Incremental detokenization with stop strings, for streaming text as it is generated."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from transformers import PreTrainedTokenizerBase

INCOMPLETE_CHAR = "\ufffd"


class TextStream:
    """Turns generated token ids into text deltas, honouring stop strings.

    Text that could still turn out to be the start of a stop string, or that ends in an
    incomplete UTF-8 sequence, is held back until it is settled, so a consumer never receives
    text that is later retracted.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | None,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.on_text = on_text
        self.ids: list[int] = []
        self.text = ""
        self._emitted = 0
        self._holdback = max((len(s) for s in self.stop), default=1) - 1

    def push(self, token_id: int) -> bool:
        """Add one token; returns True when the text now contains a stop string (cut before it)."""
        self.ids.append(token_id)
        if self.tokenizer is None:
            return False
        previous = len(self.text)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        search_from = max(0, previous - self._holdback)
        hits = [i for i in (text.find(s, search_from) for s in self.stop) if i >= 0]
        if hits:
            self.text = text[: min(hits)]
            self._emit(len(self.text))
            return True
        self.text = text
        settled = len(text) - self._holdback
        if text.endswith(INCOMPLETE_CHAR):
            settled = min(settled, len(text.rstrip(INCOMPLETE_CHAR)))
        self._emit(settled)
        return False

    def close(self) -> None:
        """Flush what was held back (generation ended without a stop string)."""
        self._emit(len(self.text))

    def _emit(self, upto: int) -> None:
        if upto > self._emitted:
            delta = self.text[self._emitted : upto]
            self._emitted = upto
            if self.on_text is not None:
                self.on_text(delta)
