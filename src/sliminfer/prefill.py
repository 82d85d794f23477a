"""The slim prefill: HF's own decoder layers in a plain loop, pruning hidden states between them.

Preserve layers run on every prompt token. Each score layer of the plan records how much the
last `window` queries attend to each token unit; its block scores are kept, normalized, in
original-prompt block space. Before each cut layer we combine its score layers' scores, keep
the best blocks, and gather the surviving hidden states, positions and RoPE cos/sin. Survivors
stay in ascending order, so plain causal attention on the compacted sequence equals the
original attention restricted to them, and pruned tokens never return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from .cache import SlimCache
from .config import SlimConfig
from .models import model_parts
from .schedule import Cut, LayerPlan
from .scoring import (
    block_ids_of,
    blocks_to_keep,
    combine_layers,
    forced_blocks,
    kept_token_indices,
    mass_block_count,
    prompt_block_scores,
    select_blocks,
)
from .state import ForwardState


@dataclass
class PrefillResult:
    """Outcome of one prefill.

    Attributes:
        logits: `[batch, vocab]` float32 logits of the last prompt position.
        kept_positions: per layer, `[batch, n_layer]` original positions that layer computed.
        pruned: whether any token was dropped.
        sparse_share: per block-sparse layer, the share of causal blocks its attention computed.
        cut_scores: per cut layer, `[batch, n_prompt_blocks]` the combined, normalized window
            scores it kept blocks by (original prompt blocks; blocks pruned earlier score 0).
            Decode-time selection pins the question's best blocks from them.
    """

    logits: torch.Tensor
    kept_positions: list[torch.Tensor]
    pruned: bool
    sparse_share: dict[int, float] = field(default_factory=dict)
    cut_scores: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def kept_tokens_per_layer(self) -> list[int]:
        return [int(positions.shape[-1]) for positions in self.kept_positions]

    @property
    def attention_density_per_layer(self) -> list[float]:
        """Per layer, the share of its causal prefill attention computed (1.0: dense)."""
        return [self.sparse_share.get(layer, 1.0) for layer in range(len(self.kept_positions))]


def slim_prefill(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    cache: SlimCache,
    config: SlimConfig | None = None,
) -> PrefillResult:
    """Prefill `input_ids` `[batch, n]` into `cache`, pruning per `config` (None: no pruning).

    The model must use the "sliminfer" attention implementation (see
    `attention.use_sliminfer_attention`); with `config=None` this equals the plain HF forward.
    """
    parts = model_parts(model)
    batch, prompt_tokens = input_ids.shape
    plan = LayerPlan.build(config, prompt_tokens, parts.num_layers)
    sparse_layers = plan.sparse_layers(config) if config else frozenset()
    state = ForwardState.for_config(config, plan.score_layers, sparse_layers=sparse_layers)
    positions = torch.arange(prompt_tokens, device=input_ids.device).expand(batch, prompt_tokens)
    hidden, (cos, sin) = parts.embed(input_ids, positions)
    mlp_chunk = config.prefill_chunk_tokens if config else 0
    n_prompt_blocks = math.ceil(prompt_tokens / config.block_size) if plan.pruned else 0
    layer_scores: dict[int, torch.Tensor] = {}
    cut_scores: dict[int, torch.Tensor] = {}
    kept_positions = []
    for index in range(parts.num_layers):
        cut = plan.cut_at(index)
        if cut is not None:
            cut_scores[index] = combine_layers([layer_scores[i] for i in cut.score_layers], config.score_combine)
            keep = tokens_to_keep(cut, cut_scores[index], positions, plan, config)
            hidden, positions, cos, sin = (gather_tokens(t, keep) for t in (hidden, positions, cos, sin))
            layer_scores = {i: s for i, s in layer_scores.items() if plan.last_use(i) > index}
        hidden = parts.run_layer(index, hidden, positions, (cos, sin), cache, mlp_chunk, slim=state)
        if index in plan.score_layers:
            layer_scores[index] = prompt_block_scores(state.unit_scores.pop(index), positions, n_prompt_blocks, config)
        kept_positions.append(positions)
    cache.end_prefill(prompt_tokens)
    sparse_share = {layer: float(share) for layer, share in state.sparse_share.items()}
    return PrefillResult(parts.last_logits(hidden), kept_positions, plan.pruned, sparse_share, cut_scores)


def tokens_to_keep(
    cut: Cut,
    cut_scores: torch.Tensor,
    positions: torch.Tensor,
    plan: LayerPlan,
    config: SlimConfig,
) -> torch.Tensor:
    """Indices `[batch, n_kept]` into the current (compacted) sequence of the tokens `cut` keeps.

    Args:
        cut_scores: `[batch, n_prompt_blocks]` the cut's combined score layers' scores.
        positions: `[batch, n]` original positions of the current sequence.
    """
    block = config.block_size
    current_tokens = positions.shape[1]
    scores = cut_scores.gather(1, block_ids_of(positions, block))
    forced = forced_blocks(current_tokens, block, config.sink_tokens, config.window)
    n_keep = cut.kept_blocks
    if config.keep_mass:
        floor = blocks_to_keep(0.0, plan.prompt_tokens, block, config.min_keep_tokens)
        n_keep = mass_block_count(scores, forced, config.keep_mass, floor, cut.kept_blocks)
    kept_blocks = select_blocks(scores, n_keep, forced)
    return kept_token_indices(kept_blocks, block, current_tokens)


def gather_tokens(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """`x[b, indices[b]]` for `x` `[batch, n, ...]` and `indices` `[batch, k]` -> `[batch, k, ...]`."""
    if x.shape[0] == 1:
        return x.index_select(1, indices[0])
    expanded = indices.view(*indices.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, expanded)
