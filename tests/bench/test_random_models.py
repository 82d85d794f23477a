"""Random-weight architectures: built via meta + to_empty, rotary rebuilt, finite, seeded."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from sliminfer.bench.random_models import (
    DECODE_HEADROOM_TOKENS,
    RANDOM_WEIGHTS_NOTE,
    build_random_model,
    random_config,
)


def test_tiny_build_on_cpu_gives_finite_logits_and_a_rebuilt_rotary():
    loaded = build_random_model("tiny-llama", device="cpu")
    model = loaded.model
    assert loaded.tokenizer is None and RANDOM_WEIGHTS_NOTE in loaded.name
    assert loaded.max_context == 4096 + DECODE_HEADROOM_TOKENS
    assert model.config._attn_implementation == "sdpa" and not model.training
    fresh = AutoModelForCausalLM.from_config(random_config("tiny-llama")).model.rotary_emb
    for name, buffer in fresh.named_buffers():
        assert torch.equal(dict(model.model.rotary_emb.named_buffers())[name], buffer), name
    assert all(torch.all(p == 1) for n, p in model.named_parameters() if n.endswith("norm.weight"))
    with torch.no_grad():
        logits = model(torch.arange(0, 256).view(1, -1) % 256).logits
    assert torch.isfinite(logits).all() and logits.std() > 0


def test_same_seed_same_weights():
    a = build_random_model("tiny-llama", device="cpu", seed=1).model.state_dict()
    b = build_random_model("tiny-llama", device="cpu", seed=1).model.state_dict()
    c = build_random_model("tiny-llama", device="cpu", seed=2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])


def test_public_configs_carry_rope_scaling_and_positions():
    llama = random_config("llama-3.1-8b")
    assert llama.rope_parameters == {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    assert (llama.max_position_embeddings, llama.rms_norm_eps, llama.tie_word_embeddings) == (
        131072,
        1e-5,
        False,
    )
    qwen = random_config("qwen2.5-7b")
    assert qwen.rope_parameters["rope_theta"] == 1e6 and qwen.max_position_embeddings == 32768
    assert qwen.model_type == "qwen2" and not qwen.tie_word_embeddings  # Qwen2 attention has q/k/v biases
