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


def attention_variants(n: int) -> dict[str, float]:
    """Seconds for one causal GQA attention (32 q heads, 8 kv heads, d=128) of n tokens."""
    q = torch.randn(1, 32, n, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    k_rep, v_rep = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
    variants = {
        "ours (cudnn first, enable_gqa)": lambda: causal_attention(q, k, v, 128**-0.5),
        "default priority, enable_gqa (HF-like)": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        "cudnn only, enable_gqa": lambda: _only(SDPBackend.CUDNN_ATTENTION, q, k, v, True),
        "cudnn only, repeated kv": lambda: _only(SDPBackend.CUDNN_ATTENTION, q, k_rep, v_rep, False),
        "flash only, enable_gqa": lambda: _only(SDPBackend.FLASH_ATTENTION, q, k, v, True),
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
    results["attention_s"] = {n: attention_variants(n) for n in (32768, 131072)}
    print(results, flush=True)
    loaded = build_random_model("llama-3.1-8b")
    results["ttft_s"] = {n: ttft(loaded, n) for n in (8192, 32768)}
    print(results["ttft_s"], flush=True)
    write_json(os.path.join(args.out, "gpu_check.json"), results)


if __name__ == "__main__":
    main()
