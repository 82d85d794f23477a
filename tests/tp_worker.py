"""One rank of the tensor-parallel equivalence test (`test_parallel.py`): greedy tokens and kept
positions of every method on a tiny model folder. Run as a script under torchrun; rank 0 writes
every rank's results as JSON. With one process, `run` is the single-process reference."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from sliminfer import parallel
from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.generate import SamplingParams, generate
from sliminfer.loading import load_model
from sliminfer.prefill import slim_prefill
from tiny import TINY_SLIM, random_ids

PROMPT_TOKENS, NEW_TOKENS = 300, 12
CONFIGS = {
    "full": None,
    "slim": TINY_SLIM,
    "slim-max": TINY_SLIM.with_overrides(["head_aggregation=max"]),
    "slim-topk": TINY_SLIM.with_overrides(["head_aggregation=topk"]),
    "slim-decode-budget": TINY_SLIM.with_overrides(["decode_budget=0.5"]),
}


def run(folder: str) -> dict:
    """Per config: the greedy tokens of `generate` and the kept positions per layer of its prefill."""
    loaded = load_model(folder)
    ids = random_ids(PROMPT_TOKENS, seed=5)
    results = {}
    for name, config in CONFIGS.items():
        sampling = SamplingParams(max_new_tokens=NEW_TOKENS, ignore_eos=True)
        method = "full" if config is None else "slim"
        tokens = generate(loaded, ids[0].tolist(), method=method, config=config or TINY_SLIM, sampling=sampling).token_ids
        with torch.inference_mode(), use_sliminfer_attention(loaded.model):
            prefill = slim_prefill(loaded.model, ids, SlimCache(4), config)
        results[name] = {"tokens": tokens, "kept": [p[0].tolist() for p in prefill.kept_positions]}
    return results


if __name__ == "__main__":
    parallel.init_process_group()
    mine = run(sys.argv[1])
    every = [None] * parallel.world_size()
    dist.all_gather_object(every, mine)
    if parallel.is_main():
        with open(sys.argv[2], "w", encoding="utf-8") as handle:
            json.dump(every, handle)
    dist.destroy_process_group()
