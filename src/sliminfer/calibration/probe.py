"""Where can the question find what it needs? Per-layer block scores on needle prompts.

Calibration's evidence: synthetic needle prompts (the harness's own generators, with their own
seed and haystacks, never the RULER essays an evaluation uses), rendered the way the model is
used (its chat template when it has one), run once unpruned while *every* layer records how its
last `window` queries score the prompt's blocks, exactly as a cut would score them. The answer
needles' blocks are known from the text, so each layer's ranking can be checked offline for any
keep fraction, score-layer set and cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..attention import use_sliminfer_attention
from ..config import SlimConfig
from ..errors import UserError
from ..eval.backend import ModelBackend
from ..eval.sample import Sample
from ..eval.synthetic import make_sample
from ..loading import LoadedModel
from ..scoring import forced_blocks, prompt_block_scores
from ..state import ForwardState

PROBE_TASKS = ("passkey", "multikey", "multivalue", "vartrack", "qa")
"""Tasks whose answers occur in their needles and not in the question or the template, so the
needles' blocks are known: numbers (passkey, multikey, multivalue), the names along a chain of
variable assignments (vartrack) and a fact's answer (qa). The number tasks alone are too easy:
their needles share a key with the question, so even an early layer finds them by lexical match
(on Qwen2.5-Coder-1.5B layer 2 kept them all at keep 0.1), while following a chain or finding the
fact that answers a question needs deeper layers; a schedule chosen on numbers alone lost vt and
qa answers on RULER."""
PROBE_SEED = 7919
"""Seed of the probe prompts: other content than an evaluation's default seed 0."""


@dataclass(frozen=True)
class ProbedPrompt:
    """One probe prompt's evidence.

    Attributes:
        task, length, index: what was generated.
        prompt_tokens: its length in tokens.
        layer_scores: `[num_layers, n_blocks]` float32, each layer's block scores normalized to
            sum 1 (the window queries' view, as a cut at the next layer would see it).
        needle_blocks: per answer needle, the blocks its text occupies (a needle is found when
            any of them is kept).
        forced: `[n_blocks]` bool, blocks every cut keeps (sinks, final window).
    """

    task: str
    length: int
    index: int
    prompt_tokens: int
    layer_scores: torch.Tensor
    needle_blocks: tuple[tuple[int, ...], ...]
    forced: torch.Tensor


def probe_samples(backend: ModelBackend, lengths: list[int], per_length: int) -> Iterator[Sample]:
    """`per_length` probe samples per length, cycling through `PROBE_TASKS`."""
    for length in lengths:
        for index in range(per_length):
            task = PROBE_TASKS[index % len(PROBE_TASKS)]
            yield make_sample(task, length, index, backend.count_tokens, seed=PROBE_SEED, haystack="docs")


def needle_token_spans(text: str, offsets: list[tuple[int, int]], answers: tuple[str, ...]) -> list[list[int]]:
    """Per answer, the tokens whose characters overlap any occurrence of it in `text`.

    Args:
        offsets: per token, its `(start, end)` characters in `text` (special tokens `(0, 0)`).
    """
    spans = []
    for answer in answers:
        chars = []
        start = text.find(answer)
        while start >= 0:
            chars.append((start, start + len(answer)))
            start = text.find(answer, start + 1)
        if not chars:
            raise UserError(f"probe prompt lost its needle {answer!r}: the template or tokenizer changed the text")
        spans.append([i for i, (a, b) in enumerate(offsets) if b > a and any(a < e and b > s for s, e in chars)])
    return spans


@torch.inference_mode()
def layer_block_scores(loaded: LoadedModel, input_ids: torch.Tensor, config: SlimConfig) -> torch.Tensor:
    """`[num_layers, n_blocks]`: every layer's normalized block scores for one unpruned forward.

    Runs the stock model through the "sliminfer" attention with every layer recording the
    window queries' unit scores (`config`'s window, pooling and head aggregation).
    """
    num_layers = loaded.model.config.num_hidden_layers
    n = input_ids.shape[1]
    state = ForwardState.for_config(config, frozenset(range(num_layers)))
    with use_sliminfer_attention(loaded.model):
        loaded.model(input_ids=input_ids, slim=state, use_cache=False, logits_to_keep=1)
    positions = torch.arange(n, device=input_ids.device)[None]
    n_blocks = math.ceil(n / config.block_size)
    rows = [prompt_block_scores(state.unit_scores[layer], positions, n_blocks, config)[0] for layer in range(num_layers)]
    return torch.stack(rows).cpu()


@dataclass(frozen=True)
class ProbePrompt:
    """A probe prompt ready to run: its ids `[1, n]` and its answer needles' token spans."""

    sample: Sample
    input_ids: torch.Tensor
    needle_spans: tuple[tuple[int, ...], ...]


def build_probe_prompts(
    loaded: LoadedModel, lengths: list[int], per_length: int, on_step: Callable[[], None] | None = None
) -> list[ProbePrompt]:
    """The probe prompts, built once (sizing a long prompt takes many tokenizations) and
    reusable across scoring variants."""
    backend = ModelBackend(loaded, chat=bool(loaded.tokenizer is not None and loaded.tokenizer.chat_template))
    prompts = []
    for sample in probe_samples(backend, lengths, per_length):
        text = backend.render(sample)
        encoded = loaded.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        spans = needle_token_spans(text, encoded["offset_mapping"], sample.expected)
        ids = torch.tensor([encoded["input_ids"]], device=loaded.device)
        prompts.append(ProbePrompt(sample, ids, tuple(tuple(span) for span in spans)))
        if on_step is not None:
            on_step()
    return prompts


def probe(
    loaded: LoadedModel,
    config: SlimConfig,
    prompts: list[ProbePrompt],
    on_step: Callable[[], None] | None = None,
) -> list[ProbedPrompt]:
    """Record every layer's block scores, the way `config` scores, on each probe prompt."""
    probed = []
    for prompt in prompts:
        n = prompt.input_ids.shape[1]
        probed.append(
            ProbedPrompt(
                task=prompt.sample.task,
                length=prompt.sample.length,
                index=prompt.sample.index,
                prompt_tokens=n,
                layer_scores=layer_block_scores(loaded, prompt.input_ids, config),
                needle_blocks=tuple(tuple(sorted({t // config.block_size for t in span})) for span in prompt.needle_spans),
                forced=forced_blocks(n, config.block_size, config.sink_tokens, config.window),
            )
        )
        if on_step is not None:
            on_step()
    return probed
