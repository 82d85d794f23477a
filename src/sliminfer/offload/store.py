"""`PinnedBlockStore`: the immutable retained prompt KV of managed slim layers, block by block.

One tensor per layer, `[n_blocks, 2 (K, V), kv_heads, block_size, head_dim]`: a block's K and V
are one contiguous chunk (`2 * kv_heads * block_size * head_dim` elements; 256 KiB for
Llama-3.1-8B at 64-token blocks in bf16), so gathering blocks is a row gather and a set of
blocks can leave in one large copy. The prompt's last block is zero-padded to `block_size`.

With `kv_offload="cpu"` the store lives in host memory, pinned when CUDA is present (pageable
host memory turns async copies into synchronous ones); with `kv_offload="none"` and a decode
budget it lives on the accelerator, and the same manager code gathers from it there. Prompt KV
never changes after prefill, so the store is written once and blocks are never written back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from ..errors import HostMemoryError

logger = logging.getLogger(__name__)

MAX_HOST_MEMORY_FRACTION = 0.8
"""Pin at most this share of the host's available memory; the rest is left to the OS and Python."""


class PinnedBlockStore:
    """Per managed layer, its retained prompt blocks `[n_blocks, 2, kv_heads, block_size, head_dim]`.

    The caller checks host memory first (`check_host_memory`), together with its staging buffers.

    Args:
        block_counts: layer -> retained blocks.
        block_shape: `(kv_heads, block_size, head_dim)`.
        dtype: the KV dtype.
        device: where the blocks live (`cpu` to offload).
        pin: page-lock host memory (only meaningful for a CPU store on a CUDA machine).
    """

    def __init__(
        self,
        block_counts: Mapping[int, int],
        block_shape: tuple[int, int, int],
        dtype: torch.dtype,
        device: torch.device,
        pin: bool = False,
    ) -> None:
        self.block_shape = block_shape
        self.device = torch.device(device)
        self.pinned = pin and self.device.type == "cpu"
        needed = sum(block_counts.values()) * block_bytes(block_shape, dtype)
        try:
            self.blocks = {
                layer: torch.empty(count, 2, *block_shape, dtype=dtype, device=self.device, pin_memory=self.pinned)
                for layer, count in block_counts.items()
            }
        except RuntimeError as exc:
            raise HostMemoryError(
                f"kv_offload: could not allocate {needed / 2**30:.2f} GiB for the prompt KV store ({exc}); "
                "use a shorter prompt, a smaller keep schedule or kv_offload=none"
            ) from None

    def __getitem__(self, layer: int) -> torch.Tensor:
        return self.blocks[layer]

    @property
    def nbytes(self) -> int:
        return sum(blocks.numel() * blocks.element_size() for blocks in self.blocks.values())


def block_bytes(block_shape: tuple[int, int, int], dtype: torch.dtype) -> int:
    """Bytes of one block's K and V."""
    kv_heads, block_size, head_dim = block_shape
    return 2 * kv_heads * block_size * head_dim * torch.empty((), dtype=dtype).element_size()


def available_host_bytes() -> int | None:
    """The host's available memory (`MemAvailable` of /proc/meminfo, else psutil), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def check_host_memory(needed: int, what: str, available: int | None = None) -> None:
    """Raise `HostMemoryError` unless `needed` bytes fit in `MAX_HOST_MEMORY_FRACTION` of free host memory."""
    available = available_host_bytes() if available is None else available
    if available is None:
        logger.warning("cannot tell how much host memory is available; allocating %d bytes for %s", needed, what)
        return
    if needed > MAX_HOST_MEMORY_FRACTION * available:
        raise HostMemoryError(
            f"kv_offload='cpu' needs {needed / 2**30:.2f} GiB of host memory for {what} but only "
            f"{available / 2**30:.2f} GiB is available (at most {MAX_HOST_MEMORY_FRACTION:.0%} is used): "
            "use a shorter prompt, a smaller keep schedule or kv_offload=none"
        )
