"""The side-stream path: pinned store, staged copies, events (run on a CUDA machine)."""

import dataclasses

import pytest
import torch

from sliminfer.generate import SamplingParams, generate
from sliminfer.offload.store import PinnedBlockStore
from sliminfer.offload.transfer import TransferEngine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SHAPE = (2, 4, 3)


def on_cuda(loaded):
    return dataclasses.replace(loaded, model=loaded.model.to("cuda"), device=torch.device("cuda"))


@pytest.mark.parametrize("store_device", ["cpu", "cuda"])
def test_side_stream_round_trip(store_device):
    store = PinnedBlockStore({7: 6}, SHAPE, torch.float32, torch.device(store_device), pin=True)
    assert store.pinned == (store_device == "cpu") and (store[7].is_pinned() or store_device == "cuda")
    tokens = 22  # 6 blocks, the last one half full
    keys, values = torch.randn(1, 2, tokens, 3, device="cuda"), torch.randn(1, 2, tokens, 3, device="cuda")
    engine = TransferEngine(torch.device("cuda"), torch.device(store_device), {7: 4}, SHAPE, torch.float32)
    assert engine.stream != torch.cuda.current_stream()
    engine.write_store(store[7], keys, values)
    buffers = (torch.randn(1, 2, 23, 3, device="cuda"), torch.randn(1, 2, 23, 3, device="cuda"))
    before = tuple(b.clone() for b in buffers)
    mapping = {4: 0, 1: 3, 2: 1}  # block -> slot, 5 slots
    ticket = engine.submit(7, store[7], list(mapping), buffers, list(mapping.values()), 5)
    engine.wait(ticket)
    for which, source in enumerate((keys, values)):
        for block, slot in mapping.items():
            got = buffers[which][:, :, slot * 4 : slot * 4 + 4]
            assert torch.equal(got, source[:, :, block * 4 : block * 4 + 4])
        for slot in (2, 4):
            assert torch.equal(buffers[which][:, :, slot * 4 : slot * 4 + 4], before[which][:, :, slot * 4 : slot * 4 + 4])
    totals = engine.finish()
    assert totals.copy_s > 0 and totals.jobs == 1


@pytest.mark.parametrize("offload", ["none", "cpu"])
def test_cuda_full_budget_gamma_0_matches_plain_decoding(tiny_llama, offload):
    loaded = on_cuda(tiny_llama)
    ids = torch.randint(0, 256, (203,), generator=torch.Generator().manual_seed(3)).tolist()
    sampling = SamplingParams(max_new_tokens=8, ignore_eos=True)
    eager = loaded.default_config.with_overrides(["cuda_graph_decode=false"])
    plain = generate(loaded, ids, config=eager, sampling=sampling)
    managed = generate(
        loaded, ids, config=eager.with_overrides([f"kv_offload={offload}", "decode_budget=1000", "gamma=0"]), sampling=sampling
    )
    assert managed.token_ids == plain.token_ids
    assert managed.kv.managed_layers == 2 and managed.kv.initial_fill_bytes > 0
    assert (managed.kv.cpu_kv_bytes > 0) == (offload == "cpu")


def test_cuda_swaps_record_copy_and_stall_time(tiny_llama):
    loaded = on_cuda(tiny_llama)
    ids = torch.randint(0, 256, (403,), generator=torch.Generator().manual_seed(4)).tolist()
    config = loaded.default_config.with_overrides(["kv_offload=cpu", "decode_budget=0.5", "decode_pin=0", "gamma=1.0"])
    result = generate(loaded, ids, config=config, sampling=SamplingParams(max_new_tokens=12, ignore_eos=True))
    kv = result.kv
    assert kv.swaps > 0 and kv.copied_bytes > 0 and kv.copy_ms > 0
    assert kv.gpu_prompt_kv_bytes < kv.full_prompt_kv_bytes and kv.cpu_kv_bytes > 0


def test_cuda_offloaded_preserve_layers_decode_with_graphs(tiny_llama):
    """gamma=0 and every block resident: the graph decoder takes over after the first step
    (nothing queued for the lagged layers) and decodes as without offloading the preserve layers."""
    loaded = on_cuda(tiny_llama)
    ids = torch.randint(0, 256, (203,), generator=torch.Generator().manual_seed(3)).tolist()
    sampling = SamplingParams(max_new_tokens=8, ignore_eos=True)
    config = loaded.default_config.with_overrides(
        ["preserve_layers=3", "keep_schedule=3:0.5", "kv_offload=cpu", "decode_budget=1000", "gamma=0"]
    )
    kept = generate(loaded, ids, config=config, sampling=sampling)
    lagged = generate(loaded, ids, config=config.with_overrides(["offload_preserve_layers=true"]), sampling=sampling)
    assert lagged.token_ids == kept.token_ids
    assert lagged.kv.managed_layers == 3 and lagged.kv.cpu_kv_bytes > kept.kv.cpu_kv_bytes


@pytest.mark.parametrize("offload", ["none", "cpu"])
def test_cuda_graphed_swapping_steps(tiny_llama, offload):
    """gamma > 0: from the second step swaps run inside the captured graphs. With the store on
    the device a graphed step chooses as the eager manager does (same tokens); with a host store
    it reads the previous step's choice through one or two staged copies per step."""
    loaded = on_cuda(tiny_llama)
    ids = torch.randint(0, 256, (403,), generator=torch.Generator().manual_seed(4)).tolist()
    sampling = SamplingParams(max_new_tokens=12, ignore_eos=True)
    config = loaded.default_config.with_overrides([f"kv_offload={offload}", "decode_budget=0.5", "decode_pin=0", "gamma=1.0"])
    graphed = generate(loaded, ids, config=config, sampling=sampling)
    eager = generate(loaded, ids, config=config.with_overrides(["cuda_graph_decode=false"]), sampling=sampling)
    kv = graphed.kv
    assert kv.graphed_steps == 10 and kv.decode_steps == eager.kv.decode_steps == 11
    assert kv.swaps > 0 and kv.top_block_hit_rate is not None
    if offload == "none":
        assert graphed.token_ids == eager.token_ids and kv.swaps == eager.kv.swaps
    else:
        assert kv.swap_transfers >= 10 and kv.cpu_kv_bytes > eager.kv.cpu_kv_bytes  # + the pinned staging
