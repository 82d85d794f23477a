"""Run by tests/test_parallel.py, alone or under torchrun: one slim prefill and one greedy
generation on FOLDER; every rank writes its kept positions and tokens to OUT-rank<r>.json."""

import json
import os
import sys

import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.config import SlimConfig
from sliminfer.generate import SamplingParams, generate
from sliminfer.loading import load_model
from sliminfer.prefill import slim_prefill

folder, out, method = sys.argv[1:4]
config = SlimConfig(preserve_layers=1, block_size=16, unit_size=4, keep_schedule=((1, 0.5), (3, 0.25)), window=8,
                    min_prompt_tokens=0, min_keep_tokens=0, head_aggregation="topk")
loaded = load_model(folder, device="cpu")
prompt = " ".join(f"word{i % 97} city{i % 13}" for i in range(400))
ids = torch.tensor([loaded.tokenizer(prompt)["input_ids"]])
positions = []
if method == "slim":
    cache = SlimCache(loaded.model.config.num_hidden_layers)
    with torch.inference_mode(), use_sliminfer_attention(loaded.model):
        positions = [p[0].tolist() for p in slim_prefill(loaded.model, ids, cache, config).kept_positions]
result = generate(loaded, prompt, method=method, config=config, sampling=SamplingParams(max_new_tokens=8, ignore_eos=True))
with open(f"{out}-rank{os.environ.get('RANK', '0')}.json", "w") as handle:
    json.dump({"tokens": result.token_ids, "positions": positions}, handle)
