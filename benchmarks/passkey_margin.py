"""First-token margin of a pass-key answer under several configs: is a lost key a coin flip?

The embedded model often answers the pass key on a knife edge: it continues "The pass key is"
with the key's first token or with " the" (as in "the pass key is the pass key"), and the two
differ by a fraction of a nat. This prints, for one sample of the synthetic suite, that margin
(log-probability of the key's first token minus the best other token; > 0 means the key comes
first) for full and for each given config, plus whether the needle's block survived the cuts.

    python benchmarks/passkey_margin.py --length 2048 --index 12 \\
        "" "keep_schedule=8:0.8" "preserve_layers=10;keep_schedule=10:0.2"

Each variant is `key=value;key=value` on top of the model's default config ("" = the default).
`min_prompt_tokens` is set to 0 for every variant, so short prompts are pruned too.
One line per variant. CPU is fine (a 2k prefill takes seconds).
"""

from __future__ import annotations

import argparse

import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.config import SlimConfig
from sliminfer.eval.backend import ModelBackend
from sliminfer.eval.synthetic import SyntheticSource
from sliminfer.generate import encode_prompt
from sliminfer.loading import LoadedModel, load_model
from sliminfer.models import model_parts
from sliminfer.prefill import slim_prefill


def first_token_margin(
    loaded: LoadedModel, prompt_ids: list[int], answer_token: int, config: SlimConfig | None
) -> tuple[float, torch.Tensor]:
    """(margin in nats of `answer_token` over the best other first token, `[n_kept]` positions
    the last layer computed) for one prefill with `config` (None: full)."""
    cache = SlimCache(model_parts(loaded.model).num_layers, reserve_tokens=1)
    with torch.inference_mode(), use_sliminfer_attention(loaded.model):
        result = slim_prefill(loaded.model, torch.tensor([prompt_ids], device=loaded.device), cache, config)
    log_probs = result.logits[0].float().log_softmax(-1)
    others = log_probs.clone()
    others[answer_token] = float("-inf")
    return float(log_probs[answer_token] - others.max()), result.kept_positions[-1][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=[""], help="config overrides, 'k=v;k=v' ('' = default)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    loaded = load_model(args.model, device="cpu")
    backend = ModelBackend(loaded)
    sample = SyntheticSource(backend.count_tokens, seed=args.seed).sample("passkey", args.length, args.index)
    text = backend.render(sample)
    key = sample.expected[0]
    prompt_ids = encode_prompt(loaded, text)
    needle = len(encode_prompt(loaded, text[: text.index(f"The pass key is {key}")]))
    answer_token = loaded.tokenizer(f" {key}", add_special_tokens=False)["input_ids"][0]
    print(f"sample {args.index} at {args.length}: {len(prompt_ids)} tokens, depth {sample.depth}, key {key} at token {needle}")
    variants: list[tuple[str, SlimConfig | None]] = [("full", None)]
    base = loaded.default_config.with_overrides(["min_prompt_tokens=0"])
    variants += [(spec or "default", base.with_overrides([a for a in spec.split(";") if a])) for spec in args.variants]
    for name, config in variants:
        margin, kept = first_token_margin(loaded, prompt_ids, answer_token, config)
        print(f"{name:50s} margin {margin:+.2f} nats  last layer computes {kept.numel()} tokens, needle kept: {bool((kept == needle).any())}")


if __name__ == "__main__":
    main()
