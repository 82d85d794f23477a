"""The typed object that crosses the HF boundary: our loop -> decoder layer -> attention function.

HF passes unknown keyword arguments of a decoder layer through to the registered attention
function unchanged, so `slim=ForwardState(...)` is our explicit channel (no globals, no
inference of the phase from HF internals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import SlimConfig


@dataclass
class ForwardState:
    """What the attention function should record during one forward pass (the knobs' defaults
    are `SlimConfig`'s own).

    Attributes:
        score_layers: layers whose attention records window-query unit scores (the layer
            before each cut).
        window: how many trailing queries score the units.
        unit_size: tokens per token unit.
        unit_pooling, head_aggregation, head_topk: see `SlimConfig`.
        unit_scores: filled by the attention function: layer -> `[batch, n_units]`.
        score_keys: layer -> how many leading keys the window queries score (default: all);
            decode scores only a score layer's prompt keys, not the generated ones.
        sparse_layers: layers whose prefill attention is block-sparse (`LayerPlan.sparse_layers`),
            with `sparse_mode`, `sparse_density`, `sparse_mass` and `sparse_estimate` as in `SlimConfig`.
        sparse_share: filled by the attention function: layer -> 0-dim tensor, the share of
            causal blocks it computed (a tensor, so recording it does not sync the device).
        kv_valid_lengths: `[num_layers]` int64, set only by the CUDA-graph decoder, whose
            cache returns whole fixed-size buffers: layer i attends to its first
            `kv_valid_lengths[i]` slots.
    """

    score_layers: frozenset[int] = frozenset()
    window: int = SlimConfig.window
    unit_size: int = SlimConfig.unit_size
    unit_pooling: str = SlimConfig.unit_pooling
    head_aggregation: str = SlimConfig.head_aggregation
    head_topk: int = SlimConfig.head_topk
    unit_scores: dict[int, torch.Tensor] = field(default_factory=dict)
    score_keys: dict[int, int] = field(default_factory=dict)
    sparse_layers: frozenset[int] = frozenset()
    sparse_mode: str = SlimConfig.sparse_prefill
    sparse_density: float = SlimConfig.sparse_density
    sparse_mass: float = SlimConfig.sparse_mass
    sparse_estimate: str = SlimConfig.sparse_estimate
    sparse_share: dict[int, torch.Tensor] = field(default_factory=dict)
    kv_valid_lengths: torch.Tensor | None = None

    @classmethod
    def for_config(
        cls,
        config: SlimConfig | None,
        score_layers: frozenset[int],
        window: int | None = None,
        sparse_layers: frozenset[int] = frozenset(),
    ) -> ForwardState:
        """The state that makes `score_layers` record unit scores the way `config` scores
        (`window` overrides the config's, e.g. 1 for a decode step) and `sparse_layers` run
        block-sparse prefill attention; None: records nothing."""
        if config is None:
            return cls()
        return cls(
            score_layers=score_layers,
            window=config.window if window is None else window,
            unit_size=config.unit_size,
            unit_pooling=config.unit_pooling,
            head_aggregation=config.head_aggregation,
            head_topk=config.head_topk,
            sparse_layers=sparse_layers,
            sparse_mode=config.sparse_prefill,
            sparse_density=config.sparse_density,
            sparse_mass=config.sparse_mass,
            sparse_estimate=config.sparse_estimate,
        )
