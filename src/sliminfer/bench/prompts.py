"""Text-like benchmark prompts of an exact token count, deterministic for a seed.

Timing does not depend on token values, but pruning does (scores, kept blocks), and zeros or
uniform noise are not what a model sees. The text is English prose that ships with every
Python: the docstrings of many standard-library modules, repeated as needed. A model with a
tokenizer gets that text tokenized; a random-weight model without one (the GPU machine has
no tokenizer files) gets each word mapped to an id by a stable hash, which keeps the Zipf
word statistics of the text.
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Any

from ..corpus import corpus_paragraphs

_WORD = re.compile(r"\w+|[^\w\s]")


def hashed_word_ids(text: str, vocab_size: int) -> list[int]:
    """Map each word and punctuation mark of `text` to a stable id in [0, vocab_size).

    The same word always gets the same id (crc32, not Python's salted `hash`), so frequent
    words give frequent ids, as a tokenizer would.
    """
    return [zlib.crc32(word.encode("utf-8")) % vocab_size for word in _WORD.findall(text)]


class TextPrompts:
    """Prompts of exact lengths cut from one token stream of the corpus.

    Args:
        tokenizer: a transformers tokenizer, or None to hash words into `vocab_size`.
        vocab_size: the id range for hashed words (required without a tokenizer).
        seed: picks where in the (cyclic) stream prompts start; same seed, same prompts.
    """

    def __init__(self, tokenizer: Any = None, vocab_size: int | None = None, seed: int = 0) -> None:
        if tokenizer is None and not vocab_size:
            raise ValueError("TextPrompts needs a tokenizer or a vocab_size")
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.seed = seed
        self._stream: list[int] | None = None

    def stream(self) -> list[int]:
        """The corpus as one list of ids (tokenized once, then cached)."""
        if self._stream is None:
            paragraphs = list(corpus_paragraphs())
            if self.tokenizer is None:
                self._stream = [i for p in paragraphs for i in hashed_word_ids(p + "\n\n", self.vocab_size)]
            else:
                # Paragraph by paragraph: fast, and no "longer than max length" warning.
                encoded = self.tokenizer([p + "\n\n" for p in paragraphs], add_special_tokens=False)
                self._stream = [i for ids in encoded["input_ids"] for i in ids]
        return self._stream

    def ids(self, length: int) -> list[int]:
        """`length` token ids: BOS (if the tokenizer has one) then text, wrapping around the corpus."""
        if length < 1:
            raise ValueError(f"prompt length {length}: must be >= 1")
        stream = self.stream()
        bos = getattr(self.tokenizer, "bos_token_id", None)
        head = [bos] if bos is not None else []
        start = random.Random(self.seed).randrange(len(stream))
        body_length = length - len(head)
        repeats = (start + body_length) // len(stream) + 1
        body = (stream * repeats)[start : start + body_length]
        return (head + body)[:length]
