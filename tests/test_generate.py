import warnings

import pytest
import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.decode import decode_step
from sliminfer.decode_graph import GraphedDecoder
from sliminfer.errors import EmptyPromptError, PromptTooLongError, UserError
from sliminfer.generate import SamplingParams, generate
from sliminfer.models import model_parts
from sliminfer.prefill import slim_prefill
from sliminfer.sampling import sample_next_token
from sliminfer.streaming import TextStream
from tiny import TINY_SLIM, random_ids, reference_logits


def test_full_generation_equals_hf_greedy(tiny):
    ids = random_ids(150, seed=4)
    result = generate(tiny, ids[0].tolist(), method="full", sampling=SamplingParams(max_new_tokens=12, ignore_eos=True))
    with torch.inference_mode():
        want = tiny.model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert result.token_ids == want[0, 150:].tolist()
    assert result.new_tokens == 12 and result.finish_reason == "length" and result.method == "full"


@torch.inference_mode()
def test_slim_decode_equals_reference_on_kept_and_generated_tokens(tiny):
    n, steps = 203, 4
    ids = random_ids(n, seed=5)
    cache = SlimCache(4, reserve_tokens=steps)
    parts = model_parts(tiny.model)
    with use_sliminfer_attention(tiny.model):
        prefill = slim_prefill(tiny.model, ids, cache, TINY_SLIM)
        logits, sequence = prefill.logits, ids
        for step in range(steps):
            positions = [torch.cat([p, torch.arange(n, n + step)[None]], dim=1) for p in prefill.kept_positions]
            torch.testing.assert_close(logits, reference_logits(tiny.model, sequence, positions), rtol=1e-4, atol=1e-4)
            token = logits.argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, token], dim=1)
            logits = decode_step(parts, token, n + step, cache)
    assert [layer.length for layer in cache.layers] == [k + steps for k in prefill.kept_tokens_per_layer]


@torch.inference_mode()
def test_fixed_shape_decode_step_equals_eager_decode(tiny):
    """The step the CUDA graph replays (run eagerly here) gives the eager decoder's logits."""
    ids = random_ids(203, seed=8)
    caches = [SlimCache(4, reserve_tokens=6) for _ in range(2)]
    parts = model_parts(tiny.model)
    with use_sliminfer_attention(tiny.model):
        prefills = [slim_prefill(tiny.model, ids, cache, TINY_SLIM) for cache in caches]
        fixed = GraphedDecoder(parts, caches[1], 203, use_graph=False)
        token = prefills[0].logits.argmax(-1, keepdim=True)
        for step in range(5):
            eager_logits = decode_step(parts, token, 203 + step, caches[0])
            torch.testing.assert_close(fixed.step(token), eager_logits, rtol=1e-5, atol=1e-5)
            token = eager_logits.argmax(-1, keepdim=True)
        fixed.finish()
    for eager_layer, fixed_layer in zip(caches[0].layers, caches[1].layers, strict=True):
        assert fixed_layer.length == eager_layer.length
        torch.testing.assert_close(fixed_layer.keys, eager_layer.keys)


def test_slim_with_keep_everything_equals_full(tiny_llama):
    ids = random_ids(160, seed=6)[0].tolist()
    keep_all = TINY_SLIM.with_overrides(["keep_schedule=1:1.0"])
    sampling = SamplingParams(max_new_tokens=6, ignore_eos=True)
    slim = generate(tiny_llama, ids, method="slim", config=keep_all, sampling=sampling)
    full = generate(tiny_llama, ids, method="full", sampling=sampling)
    assert slim.token_ids == full.token_ids
    assert slim.kept_tokens_per_layer == [160] * 4 and slim.config["keep_schedule"] == [[1, 1.0]]


def test_slim_result_reports_pruning(tiny_llama):
    result = generate(tiny_llama, random_ids(200)[0].tolist(), sampling=SamplingParams(max_new_tokens=3, ignore_eos=True))
    assert result.method == "slim" and result.kept_tokens_per_layer[-1] < 200 and result.pruned
    short = TINY_SLIM.with_overrides(["min_prompt_tokens=201"])
    unpruned = generate(tiny_llama, random_ids(200)[0].tolist(), config=short, sampling=SamplingParams(max_new_tokens=2))
    assert not unpruned.pruned and unpruned.to_dict()["pruned"] is False
    assert result.kv_cache_bytes > 0 and result.ttft_s > 0 and result.total_s >= result.ttft_s


def test_sampling_is_seeded_and_degenerates_to_greedy():
    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(0))
    greedy = sample_next_token(logits)
    assert sample_next_token(logits, temperature=1.0, top_k=1).item() == greedy.item()
    assert sample_next_token(logits, temperature=1.0, top_p=1e-6).item() == greedy.item()
    draws = [sample_next_token(logits, temperature=2.0, generator=torch.Generator().manual_seed(7)).item() for _ in range(2)]
    assert draws[0] == draws[1]
    spread = {sample_next_token(logits, temperature=5.0, generator=torch.Generator().manual_seed(s)).item() for s in range(30)}
    assert len(spread) > 3


def test_top_p_keeps_the_smallest_sufficient_set():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    seen = {sample_next_token(logits, temperature=1.0, top_p=0.7, generator=torch.Generator().manual_seed(s)).item() for s in range(200)}
    assert seen == {0, 1}


class CharTokenizer:
    """One character per token id (ord)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def test_text_stream_holds_back_a_possible_stop_string():
    deltas = []
    stream = TextStream(CharTokenizer(), stop=("END",), on_text=deltas.append)
    stopped = [stream.push(ord(c)) for c in "abcENxEND!"]
    assert stopped.index(True) == 8 and stream.text == "abcENx"
    assert "".join(deltas) == "abcENx"


def test_text_stream_without_stop_flushes_on_close():
    deltas = []
    stream = TextStream(CharTokenizer(), on_text=deltas.append)
    for c in "hi!":
        stream.push(ord(c))
    stream.close()
    assert "".join(deltas) == "hi!"


def test_bad_inputs_raise_clear_errors(tiny_llama):
    for blank in ([], "", " \n\t ", [{"role": "user", "content": "  \n"}]):
        with pytest.raises(EmptyPromptError):
            generate(tiny_llama, blank)
    with pytest.raises(PromptTooLongError, match="prompt is 1025 tokens but the model's context is 1024 tokens"):
        generate(tiny_llama, [1] * 1025)
    with pytest.raises(UserError, match="method='fast'"):
        generate(tiny_llama, [1, 2], method="fast")
    with pytest.raises(UserError, match="max_new_tokens=0"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(UserError, match="top_p=0"):
        SamplingParams(top_p=0)
    with pytest.raises(UserError, match="has no tokenizer"):
        generate(tiny_llama, "text")


def test_generation_stops_at_the_context_limit(tiny_llama):
    result = generate(tiny_llama, [3] * 1020, method="full", sampling=SamplingParams(max_new_tokens=50, ignore_eos=True))
    assert result.new_tokens == 4 and result.finish_reason == "length"
    assert "context limit" in result.finish_detail and "max_new_tokens=50" in result.finish_detail
    asked = generate(tiny_llama, [3] * 20, method="full", sampling=SamplingParams(max_new_tokens=3, ignore_eos=True))
    assert asked.finish_reason == "length" and asked.finish_detail is None


def test_should_stop_cancels(tiny_llama):
    result = generate(tiny_llama, [5] * 20, sampling=SamplingParams(max_new_tokens=50, ignore_eos=True), should_stop=lambda: True)
    assert result.finish_reason == "cancelled" and result.new_tokens == 1


def test_generation_raises_no_future_warning(tiny_llama):
    """Every model call passes the cache by the keyword the installed transformers takes (the
    old `past_key_values` warns from transformers 5.2x on and goes away in 5.40)."""
    ids = random_ids(200, seed=2)[0].tolist()
    offload = TINY_SLIM.with_overrides(["kv_offload=cpu", "decode_budget=0.5"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for method, config in (("full", TINY_SLIM), ("slim", TINY_SLIM), ("slim", offload)):
            generate(tiny_llama, ids, method=method, config=config, sampling=SamplingParams(max_new_tokens=3))
