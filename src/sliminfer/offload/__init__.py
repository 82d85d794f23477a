"""Decode-time block selection and KV offload for slim layers (SlimInfer's second half).

`selection` chooses each step's active blocks, `policy` is the swap rule, `store` holds the
immutable prompt blocks, `transfer` moves them, `manager` ties them together per layer. Nothing
here imports model code: the manager sees layer indices, block ids and K/V buffers.
"""

from .manager import OffloadManager, uses_manager
from .store import HostMemoryError

__all__ = ["HostMemoryError", "OffloadManager", "uses_manager"]
