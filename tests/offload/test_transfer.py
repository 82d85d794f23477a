"""Store + transfer round trips in the vLLM manner: source unchanged, mapped slots equal the
source, unmapped slots unchanged (CPU path here; tests/offload/test_cuda.py runs the CUDA one)."""

import pytest
import torch

from sliminfer.offload.store import HostMemoryError, PinnedBlockStore, block_bytes, check_host_memory
from sliminfer.offload.transfer import TransferEngine, block_runs

KV_HEADS, BLOCK, HEAD_DIM = 2, 4, 3
SHAPE = (KV_HEADS, BLOCK, HEAD_DIM)


def slot_tokens(buffer, slot):
    return buffer[0, :, slot * BLOCK : (slot + 1) * BLOCK]


def make_engine(device="cpu", store_device="cpu", staging=6):
    return TransferEngine(torch.device(device), torch.device(store_device), {7: staging}, SHAPE, torch.float32)


def test_store_is_laid_out_by_block_and_sized():
    store = PinnedBlockStore({3: 5, 4: 2}, SHAPE, torch.float32, torch.device("cpu"))
    assert store[3].shape == (5, 2, *SHAPE) and store[4].shape == (2, 2, *SHAPE)
    assert store.nbytes == 7 * block_bytes(SHAPE, torch.float32) == 7 * 2 * 2 * 4 * 3 * 4


def test_write_store_splits_tokens_into_padded_blocks():
    tokens = 10  # 3 blocks, the last one half full
    keys, values = torch.randn(1, KV_HEADS, tokens, HEAD_DIM), torch.randn(1, KV_HEADS, tokens, HEAD_DIM)
    store = PinnedBlockStore({7: 3}, SHAPE, torch.float32, torch.device("cpu"))
    engine = make_engine()
    engine.write_store(store[7], keys, values)
    for block in range(3):
        end = min((block + 1) * BLOCK, tokens)
        torch.testing.assert_close(store[7][block, 0, :, : end - block * BLOCK], keys[0, :, block * BLOCK : end], rtol=0, atol=0)
        torch.testing.assert_close(store[7][block, 1, :, : end - block * BLOCK], values[0, :, block * BLOCK : end], rtol=0, atol=0)
    assert store[7][2, :, :, 2:].abs().sum() == 0
    assert engine.finish().store_write_bytes == store.nbytes


def test_submit_round_trip_maps_only_the_given_slots():
    store = torch.randn(6, 2, *SHAPE)
    src_before = store.clone()
    n_slots, capacity = 5, 5 * BLOCK + 3
    buffers = (torch.randn(1, KV_HEADS, capacity, HEAD_DIM), torch.randn(1, KV_HEADS, capacity, HEAD_DIM))
    before = tuple(b.clone() for b in buffers)
    mapping = {4: 0, 1: 3, 5: 1}  # block -> slot
    engine = make_engine()
    ticket = engine.submit(7, store, list(mapping), buffers, list(mapping.values()), n_slots)
    engine.wait(ticket)
    assert torch.equal(store, src_before)
    for which in range(2):
        for block, slot in mapping.items():
            assert torch.equal(slot_tokens(buffers[which], slot), store[block, which])
        for slot in set(range(n_slots)) - set(mapping.values()):
            assert torch.equal(slot_tokens(buffers[which], slot), slot_tokens(before[which], slot))
        assert torch.equal(buffers[which][:, :, n_slots * BLOCK :], before[which][:, :, n_slots * BLOCK :])
    totals = engine.finish()
    assert totals.copied_bytes == ticket.nbytes == 3 * block_bytes(SHAPE, torch.float32) and totals.jobs == 1


def test_host_memory_check_raises_a_user_error_naming_the_sizes():
    check_host_memory(2**30, "x", available=4 * 2**30)
    with pytest.raises(HostMemoryError, match=r"needs 3.00 GiB of host memory for the store but only 2.00 GiB"):
        check_host_memory(3 * 2**30, "the store", available=2 * 2**30)


def test_block_runs_coalesce_consecutive_ids():
    assert block_runs([2, 3, 4, 9, 11, 12]) == [(0, 2, 3), (3, 9, 1), (4, 11, 2)]
    assert block_runs([5]) == [(0, 5, 1)] and block_runs([]) == []


def test_host_store_path_copies_runs_into_the_given_slots():
    """The path a pinned store takes on CUDA (one copy per run), exercised here on CPU tensors."""
    store = torch.randn(8, 2, *SHAPE)
    buffers = (torch.zeros(1, KV_HEADS, 6 * BLOCK, HEAD_DIM), torch.zeros(1, KV_HEADS, 6 * BLOCK, HEAD_DIM))
    engine = make_engine()
    engine.host_store = True
    mapping = {1: 4, 2: 0, 3: 2, 6: 1}  # block -> slot; runs [1, 2, 3] and [6]
    engine.submit(7, store, list(mapping), buffers, list(mapping.values()), 6)
    for which in range(2):
        for block, slot in mapping.items():
            assert torch.equal(slot_tokens(buffers[which], slot), store[block, which])
        assert slot_tokens(buffers[which], 3).abs().sum() == 0 and slot_tokens(buffers[which], 5).abs().sum() == 0
    assert engine.finish().transfers == 2
