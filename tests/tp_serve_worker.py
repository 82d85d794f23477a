"""Both ranks of `test_parallel.test_serving_ranks_follow_rank_0`, run under torchrun: rank 0 plays
`sliminfer serve`'s model thread (`serve.tensor_parallel.leader`), the other rank its follower;
rank 0 writes what its requests returned as JSON."""

from __future__ import annotations

import dataclasses
import json
import sys

import torch.distributed as dist

from sliminfer import parallel
from sliminfer.errors import UserError
from sliminfer.generate import SamplingParams, generate
from sliminfer.loading import load_model
from sliminfer.serve.engine import model_runner
from sliminfer.serve.schemas import GenerationRequest
from sliminfer.serve.tensor_parallel import follow, leader, stop_followers
from tiny import TINY_SLIM, random_ids

PROMPT_TOKENS, NEW_TOKENS, CANCEL_AFTER = 300, 10, 3
REQUEST = GenerationRequest(
    prompt=random_ids(PROMPT_TOKENS, seed=7)[0].tolist(), chat=False, method="slim", config=TINY_SLIM,
    max_tokens=NEW_TOKENS, temperature=0.0, top_p=1.0, seed=None, stop=(), stream=False, include_usage=False,
)


def single_process(folder: str) -> list[int]:
    """The reference: the same request's tokens from one process."""
    sampling = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0.0)
    return generate(load_model(folder), REQUEST.prompt, config=TINY_SLIM, sampling=sampling).token_ids


def lead(folder: str) -> dict:
    run = leader(model_runner(load_model(folder)))
    served = {"greedy": run(REQUEST, None, lambda: False).token_ids}
    try:
        run(dataclasses.replace(REQUEST, prompt=[1] * 100_000), None, lambda: False)
    except UserError:
        served["error"] = "too long"
    served["after_error"] = run(REQUEST, None, lambda: False).token_ids
    polls = iter(range(1, 1000))
    cancelled = run(REQUEST, None, lambda: next(polls) >= CANCEL_AFTER)
    served["cancelled"] = {"finish_reason": cancelled.finish_reason, "tokens": len(cancelled.token_ids)}
    stop_followers()
    return served


if __name__ == "__main__":
    parallel.init_process_group()
    if parallel.is_main():
        result = lead(sys.argv[1])
        with open(sys.argv[2], "w", encoding="utf-8") as handle:
            json.dump(result, handle)
    else:
        follow(model_runner(load_model(sys.argv[1])))
    dist.destroy_process_group()
