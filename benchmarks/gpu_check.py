"""First look on the GPU machine: which SDPA backend our attention gets, and TTFT hf/full/slim.

Run there as `PYTHONPATH=src python3 benchmarks/gpu_check.py --out $OUT/check`. Random-weight
Llama-3.1-8B architecture: every figure is a speed figure only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sliminfer.attention import use_sliminfer_attention
from sliminfer.attention.sdpa import causal_attention
from sliminfer.bench.random_models import build_random_model
from sliminfer.cache import SlimCache
from sliminfer.envinfo import environment
from sliminfer.generate import SamplingParams, generate
from sliminfer.prefill import slim_prefill
from sliminfer.report import write_json


def timed(fn, repeats: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def attention_variants(n: int, heads: int = 32, kv_heads: int = 8) -> dict[str, float]:
    """Seconds for one causal GQA attention (d=128) of n tokens."""
    q = torch.randn(1, heads, n, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, kv_heads, n, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    groups = heads // kv_heads
    k_rep, v_rep = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    variants = {
        "ours (cudnn first, enable_gqa)": lambda: causal_attention(q, k, v, 128**-0.5),
        "default priority, enable_gqa (HF-like)": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        "cudnn only, enable_gqa": lambda: _only(SDPBackend.CUDNN_ATTENTION, q, k, v, True),
        "cudnn only, repeated kv": lambda: _only(SDPBackend.CUDNN_ATTENTION, q, k_rep, v_rep, False),
        "flash only, enable_gqa": lambda: _only(SDPBackend.FLASH_ATTENTION, q, k, v, True),
        "flash only, repeated kv": lambda: _only(SDPBackend.FLASH_ATTENTION, q, k_rep, v_rep, False),
        "default priority, repeated kv": lambda: F.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=True),
    }
    out = {}
    for name, fn in variants.items():
        try:
            out[name] = timed(fn)
        except RuntimeError as exc:
            out[name] = f"error: {str(exc).splitlines()[0][:120]}"
    return out


def _only(backend, q, k, v, gqa):
    with sdpa_kernel([backend]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)


def ttft(loaded, n: int) -> dict[str, float]:
    ids = torch.randint(1000, 100000, (1, n), device="cuda")
    model = loaded.model

    def hf():
        with torch.inference_mode():
            model(ids, logits_to_keep=1)

    def ours(config):
        def run():
            cache = SlimCache(model.config.num_hidden_layers)
            with torch.inference_mode(), use_sliminfer_attention(model):
                slim_prefill(model, ids, cache, config)
        return run

    return {
        "hf": timed(hf),
        "full": timed(ours(None)),
        "slim": timed(ours(loaded.default_config)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {"environment": environment("cuda")}
    results["attention_s_qwen_28_4"] = {n: attention_variants(n, 28, 4) for n in (8192, 32768)}
    print(results, flush=True)
    loaded = build_random_model("qwen2.5-7b")
    results["ttft_s_qwen"] = {n: ttft(loaded, n) for n in (8192,)}
    print(results["ttft_s_qwen"], flush=True)
    del loaded
    torch.cuda.empty_cache()
    loaded = build_random_model("llama-3.1-8b")
    results["decode"] = decode_check(loaded, 8192)
    print(results["decode"], flush=True)
    write_json(os.path.join(args.out, "gpu_check.json"), results)


def decode_check(loaded, n: int) -> dict:
    """Graphed vs eager decode: same tokens, ms per token."""
    ids = torch.randint(1000, 100000, (n,)).tolist()
    sampling = SamplingParams(max_new_tokens=64, ignore_eos=True)
    out = {}
    for graph in (True, False, True):
        config = loaded.default_config.with_overrides([f"cuda_graph_decode={str(graph).lower()}"])
        result = generate(loaded, ids, config=config, sampling=sampling)
        out[f"graph={graph}"] = {"decode_ms": result.decode_ms_per_token, "ttft_s": result.ttft_s, "tokens": result.token_ids[:16]}
    out["same_tokens"] = out["graph=True"]["tokens"] == out["graph=False"]["tokens"]
    return out


if __name__ == "__main__":
    main()
