"""Under torchrun: do all tensor-parallel ranks keep the same prompt positions in every layer?

Each rank runs the slim prefill of a random-weight architecture (default Llama-3.1-8B) on its
shard, a greedy slim generation (whose decode CUDA graphs capture the sharded step, collectives
included) and one with decode-time block selection (`decode_budget`); rank 0 compares every
rank's kept positions per layer and generated tokens and writes JSON.
Random weights make attention near uniform, so block scores are close to ties: the check is
only passed because every rank chooses from the same cross-rank-reduced scores.

    torchrun --nproc-per-node 2 benchmarks/tp_kept_check.py --out $OUT/tp/kept.json
"""

from __future__ import annotations

import argparse
import hashlib

import torch
import torch.distributed as dist

from sliminfer import parallel
from sliminfer.attention import use_sliminfer_attention
from sliminfer.bench.prompts import TextPrompts
from sliminfer.bench.random_models import build_random_model
from sliminfer.cache import SlimCache
from sliminfer.cli.options import parse_lengths
from sliminfer.envinfo import environment
from sliminfer.generate import SamplingParams, generate
from sliminfer.prefill import slim_prefill
from sliminfer.report import write_json


def digest(positions: torch.Tensor) -> str:
    return hashlib.sha256(positions.cpu().numpy().tobytes()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--length", type=lambda text: parse_lengths(text)[0], default=32768, help="prompt tokens, e.g. 32k")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    parallel.init_process_group()
    loaded = build_random_model(args.model)
    config = loaded.default_config.with_overrides(args.overrides)
    ids = TextPrompts(vocab_size=loaded.model.config.vocab_size).ids(args.length)
    with torch.inference_mode(), use_sliminfer_attention(loaded.model):
        cache = SlimCache(loaded.model.config.num_hidden_layers)
        prefill = slim_prefill(loaded.model, torch.tensor([ids], device=loaded.device), cache, config)
    sampling = SamplingParams(max_new_tokens=args.new_tokens, ignore_eos=True)
    tokens = [
        generate(loaded, ids, method="slim", config=decode_config, sampling=sampling).token_ids
        for decode_config in (config, config.with_overrides(["decode_budget=0.5"]))
    ]
    mine = {"kept": [digest(p) for p in prefill.kept_positions], "tokens": tokens}
    every = [None] * parallel.world_size()
    dist.all_gather_object(every, mine)
    if parallel.is_main():
        write_json(args.out, {
            "model": loaded.name,
            "prompt_tokens": args.length,
            "ranks": len(every),
            "kept_tokens_per_layer": prefill.kept_tokens_per_layer,
            "kept_positions_identical": all(r["kept"] == every[0]["kept"] for r in every),
            "decode_tokens_identical": all(r["tokens"] == every[0]["tokens"] for r in every),
            "per_rank": every,
            "config": config.to_dict(),
            "environment": environment(loaded.device),
        })
        print(f"kept positions identical across {len(every)} ranks: "
              f"{all(r['kept'] == every[0]['kept'] for r in every)}; decode tokens identical: "
              f"{all(r['tokens'] == every[0]['tokens'] for r in every)}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
