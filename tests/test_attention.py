"""Our attention kernels against explicit softmax(QK^T)V with a bottom-right causal mask."""

import pytest
import torch

from sliminfer.attention.sdpa import causal_attention, single_query_attention


def reference(query, key, value, scaling):
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    q_len, kv_len = query.shape[2], key.shape[2]
    scores = (query @ key.transpose(-1, -2)) * scaling
    allowed = torch.arange(kv_len)[None, :] <= torch.arange(kv_len - q_len, kv_len)[:, None]
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return (probs @ value).transpose(1, 2)


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (6, 2), (7, 1)])
@pytest.mark.parametrize("q_len, kv_len", [(1, 61), (27, 27), (3, 113), (64, 64)])
def test_causal_attention_matches_reference(heads, kv_heads, q_len, kv_len):
    torch.manual_seed(q_len + kv_len)
    query = torch.randn(2, heads, q_len, 16)
    key, value = torch.randn(2, kv_heads, kv_len, 16), torch.randn(2, kv_heads, kv_len, 16)
    torch.testing.assert_close(causal_attention(query, key, value, 0.25), reference(query, key, value, 0.25), rtol=1e-5, atol=1e-5)


def test_single_query_attention_ignores_slots_past_the_valid_length():
    torch.manual_seed(0)
    query, key, value = torch.randn(1, 6, 1, 8), torch.randn(1, 2, 40, 8), torch.randn(1, 2, 40, 8)
    garbage_key, garbage_value = key.clone(), value.clone()
    garbage_key[:, :, 25:], garbage_value[:, :, 25:] = 1e4, -1e4
    got = single_query_attention(query, garbage_key, garbage_value, 0.3, valid_length=torch.tensor(25))
    torch.testing.assert_close(got, reference(query, key[:, :, :25], value[:, :, :25], 0.3), rtol=1e-5, atol=1e-5)
