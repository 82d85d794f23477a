"""Load test of `sliminfer serve`: requests/s and p50/p95 TTFT, slim vs full, at a few concurrencies.

Starts `sliminfer serve` on a free loopback port, then for each method and concurrency level sends
a fixed number of streamed completions (prompts of exactly `--prompt-tokens` tokens of English
prose, different per request) from that many client threads with the official `openai` client.
TTFT is measured by the client: from sending the request to the first streamed text, so it
includes the wait in the server's FIFO queue. Prints a markdown table and writes JSON.

    python benchmarks/serve_bench.py --prompt-tokens 4096 --concurrency 1 4 --requests 8
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai

from sliminfer.bench.prompts import TextPrompts
from sliminfer.envinfo import environment
from sliminfer.loading import load_model
from sliminfer.report import markdown_table, write_json

START_TIMEOUT_S = 300
CALL_TIMEOUT_S = 900


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompt-tokens", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens generated per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=8, help="timed requests per method and concurrency")
    parser.add_argument("--methods", nargs="+", default=["slim", "full"], choices=["slim", "full"])
    parser.add_argument("--json", default="serve_bench.json", help="where to write the results")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(model: str, max_queue: int) -> Iterator[str]:
    """A running `sliminfer serve`; yields its base URL and stops it on exit."""
    port = free_port()
    command = [sys.executable, "-m", "sliminfer.cli.main", "serve", "--model", model, "--port", str(port),
               "--max-queue", str(max_queue)]
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start (exit code {process.poll()})")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def one_request(api: openai.OpenAI, prompt: list[int], method: str, max_tokens: int) -> dict[str, Any]:
    """One streamed completion; client-side TTFT and latency plus the server's `sliminfer` field."""
    sent = time.perf_counter()
    ttft_s, extra = None, {}
    stream = api.completions.create(model="default", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                    stream=True, extra_body={"sliminfer": {"method": method}})
    for chunk in stream:
        if ttft_s is None and chunk.choices and chunk.choices[0].text:
            ttft_s = time.perf_counter() - sent
        extra = (chunk.model_extra or {}).get("sliminfer", extra)
    latency_s = time.perf_counter() - sent
    return {"ttft_s": ttft_s if ttft_s is not None else latency_s, "latency_s": latency_s,
            "server_ttft_s": extra.get("ttft_s"), "queue_s": extra.get("queue_s"),
            "kept_tokens_per_layer": extra.get("kept_tokens_per_layer")}


def run_level(api: openai.OpenAI, prompts: list[list[int]], method: str, concurrency: int,
              max_tokens: int) -> dict[str, Any]:
    """Send every prompt from `concurrency` threads (each takes the next prompt when done)."""
    samples: list[dict[str, Any]] = []
    next_index = itertools.count()
    lock = threading.Lock()

    def client() -> None:
        while (i := next(next_index)) < len(prompts):
            sample = one_request(api, prompts[i], method, max_tokens)
            with lock:
                samples.append(sample)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - started
    ttfts = sorted(s["ttft_s"] for s in samples)
    kept = samples[0]["kept_tokens_per_layer"]
    return {
        "method": method,
        "concurrency": concurrency,
        "requests": len(samples),
        "wall_s": wall_s,
        "requests_per_s": len(samples) / wall_s,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": percentile(ttfts, 95),
        "server_ttft_p50_s": statistics.median(s["server_ttft_s"] for s in samples),
        "kept_fraction": sum(kept) / (len(prompts[0]) * len(kept)),
        "samples": samples,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list."""
    position = (len(sorted_values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def main() -> None:
    args = parse_args()
    tokenizer = load_model(args.model).tokenizer
    prompts = [TextPrompts(tokenizer, seed=i).ids(args.prompt_tokens) for i in range(args.requests)]
    warmup = TextPrompts(tokenizer, seed=args.requests).ids(args.prompt_tokens)
    rows, levels = [], []
    with server(args.model, max_queue=max(args.concurrency)) as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=CALL_TIMEOUT_S)
        for method in args.methods:
            one_request(api, warmup, method, args.max_tokens)
            for concurrency in args.concurrency:
                level = run_level(api, prompts, method, concurrency, args.max_tokens)
                levels.append(level)
                rows.append([method, concurrency, level["requests"], level["requests_per_s"], level["ttft_p50_s"],
                             level["ttft_p95_s"], level["server_ttft_p50_s"], level["kept_fraction"]])
                print(f"{method} c={concurrency}: {level['requests_per_s']:.3f} req/s, "
                      f"TTFT p50 {level['ttft_p50_s']:.2f} s", file=sys.stderr, flush=True)
    headers = ["method", "concurrency", "requests", "req/s", "TTFT p50 (s)", "TTFT p95 (s)",
               "model TTFT p50 (s)", "kept fraction"]
    write_json(args.json, {"command": " ".join(sys.argv), "args": vars(args), "environment": environment("cpu"),
                           "levels": levels})
    print(markdown_table(headers, rows))
    print(json.dumps([{k: v for k, v in level.items() if k != "samples"} for level in levels], indent=2))


if __name__ == "__main__":
    main()
