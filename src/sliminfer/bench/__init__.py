"""`sliminfer bench`: timing harness, FLOP model and speed of light, random-weight architectures.

- `flops`: analytic prefill FLOPs and KV bytes from a model's shape and kept tokens (pure).
- `harness`: synchronized timing, peak memory, warm-up, alternation, median and spread.
- `prompts`: text-like prompts of exact token counts (tokenized, or words hashed into a vocab).
- `random_models`: Llama-3.1-8B / Qwen2.5-7B shapes with random weights, for speed figures.
- `speed_of_light`: the device's measured matmul rate and host-to-device bandwidth.
- `methods`: one timed `hf` / `full` / `slim` generation per call.
- `results`: the resumable results.json, its derived rows, table.md and plots.
- `runner`: the (length x method) matrix behind `sliminfer bench`.
"""
