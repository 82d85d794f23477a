"""`LayerPlan`: every per-layer decision of a prefill, made once from the config alone.

Which layers score, where the prompt is cut, how many tokens each layer computes (and so keeps
KV for), and which layers decode-time selection manages all follow from the config, the prompt
length and the layer count, never from the scores. So memory and budgets are known before any
work starts, and prefill, the offload manager, bench and the peer scripts read one object
instead of re-deriving the schedule. "Full" (no pruning) is the plan without cuts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import SlimConfig
from .scoring import blocks_to_keep, forced_blocks, kept_block_count

UNPRUNED_NOTE = "unpruned (< min_prompt_tokens)"
"""How results label a slim run whose prompt was too short to prune."""


@dataclass(frozen=True)
class Cut:
    """One pruning point.

    Attributes:
        layer: the first layer that runs on the reduced token set.
        keep: fraction of the original prompt it keeps (before the `min_keep_tokens` floor).
        score_layers: layers (all before `layer`) whose window attention ranks the blocks.
        kept_blocks: blocks it keeps (an upper bound with `keep_mass`).
    """

    layer: int
    keep: float
    score_layers: tuple[int, ...]
    kept_blocks: int

    @property
    def decode_score_layer(self) -> int:
        """The layer whose decode query chooses the active blocks of this cut's layers: the
        deepest of its score layers (deeper layers find the question's blocks more reliably)."""
        return max(self.score_layers)


@dataclass(frozen=True)
class LayerPlan:
    """The per-layer plan of one prefill.

    Attributes:
        prompt_tokens: tokens in the prompt.
        kept_tokens: per layer, the prompt tokens it computes (upper bounds with `keep_mass`).
        cuts: the pruning points, shallowest first; empty for a full (unpruned) prefill.
    """

    prompt_tokens: int
    kept_tokens: tuple[int, ...]
    cuts: tuple[Cut, ...] = ()

    @classmethod
    def full(cls, prompt_tokens: int, num_layers: int) -> LayerPlan:
        return cls(prompt_tokens, (prompt_tokens,) * num_layers)

    @classmethod
    def build(cls, config: SlimConfig | None, prompt_tokens: int, num_layers: int) -> LayerPlan:
        """The plan of `config` (None: full) for a prompt of `prompt_tokens` tokens.

        A cut keeps `blocks_to_keep` blocks, at least the forced ones (sinks, final window) and
        at most those left; the prompt's final partial block counts once.
        """
        if not prunes(config, prompt_tokens):
            return cls.full(prompt_tokens, num_layers)
        config.check_model(num_layers)
        block = config.block_size
        padding = math.ceil(prompt_tokens / block) * block - prompt_tokens
        cuts, tokens_from, current = [], {}, prompt_tokens
        for (layer, keep), scorers in zip(config.keep_schedule, config.cut_score_layers, strict=True):
            forced = int(forced_blocks(current, block, config.sink_tokens, config.window).sum())
            wanted = blocks_to_keep(keep, prompt_tokens, block, config.min_keep_tokens)
            n_blocks = kept_block_count(wanted, forced, math.ceil(current / block))
            cuts.append(Cut(layer, keep, scorers, n_blocks))
            current = tokens_from[layer] = n_blocks * block - padding
        kept, current = [], prompt_tokens
        for layer in range(num_layers):
            current = tokens_from.get(layer, current)
            kept.append(current)
        return cls(prompt_tokens, tuple(kept), tuple(cuts))

    @property
    def num_layers(self) -> int:
        return len(self.kept_tokens)

    @property
    def pruned(self) -> bool:
        return bool(self.cuts)

    @property
    def score_layers(self) -> frozenset[int]:
        """Every layer whose window attention some cut reads."""
        return frozenset(layer for cut in self.cuts for layer in cut.score_layers)

    def cut_at(self, layer: int) -> Cut | None:
        """The cut whose reduced set starts at `layer`, if any."""
        return next((cut for cut in self.cuts if cut.layer == layer), None)

    def last_use(self, score_layer: int) -> int:
        """The last cut layer that reads `score_layer`'s scores (so they can be dropped after)."""
        return max(cut.layer for cut in self.cuts if score_layer in cut.score_layers)

    @property
    def prefill_fraction(self) -> float:
        """Tokens computed over all layers / (layers x prompt tokens): the linear-FLOP share."""
        return sum(self.kept_tokens) / (self.num_layers * self.prompt_tokens)

    @property
    def decode_score_layers(self) -> frozenset[int]:
        return frozenset(cut.decode_score_layer for cut in self.cuts)

    def decode_groups(self) -> list[tuple[Cut, tuple[int, ...]]]:
        """`(cut, managed layers)` per cut: the layers from the cut up to the next one, minus
        the decode score layers (they keep all their prompt keys on the device: selection
        reads them)."""
        keep_resident = self.decode_score_layers
        ends = [*(cut.layer for cut in self.cuts[1:]), self.num_layers]
        return [
            (cut, tuple(layer for layer in range(cut.layer, end) if layer not in keep_resident))
            for cut, end in zip(self.cuts, ends, strict=True)
        ]

    def sparse_layers(self, config: SlimConfig) -> frozenset[int]:
        """The layers whose prefill attention is block-sparse (`config.sparse_prefill`): those
        before the first cut (`sparse_layers="dense"`) or every layer (`"all"`), where the
        layer computes at least `sparse_min_tokens` tokens."""
        if config.sparse_prefill == "off":
            return frozenset()
        end = self.cuts[0].layer if self.cuts and config.sparse_layers == "dense" else self.num_layers
        return frozenset(layer for layer in range(end) if self.kept_tokens[layer] >= config.sparse_min_tokens)

    def lagged_layers(self, config: SlimConfig) -> tuple[int, ...]:
        """The layers `offload_preserve_layers` manages: all before the first cut's decode score
        layer (they run before it, so its choice reaches them one step late)."""
        if not config.offload_preserve_layers or not self.cuts:
            return ()
        return tuple(range(self.cuts[0].decode_score_layer))


def prunes(config: SlimConfig | None, prompt_tokens: int) -> bool:
    """Whether `config` prunes a prompt of `prompt_tokens` tokens (None means full)."""
    return config is not None and bool(config.keep_schedule) and prompt_tokens >= config.min_prompt_tokens
