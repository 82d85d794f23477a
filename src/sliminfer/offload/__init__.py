"""Decode-time block selection and KV offload for slim layers (SlimInfer's second half).

`selection` chooses each step's active blocks, `policy` is the swap rule, `store` holds the
immutable prompt blocks, `transfer` moves them, `manager` ties them together per layer, and
`graph_swap` runs the same rule inside a captured (fixed-shape) decode step. Nothing
here imports model code: the manager sees layer indices, block ids and K/V buffers.
"""

from .graph_swap import GraphSwapper
from .manager import OffloadManager, uses_manager
from .store import HostMemoryError

__all__ = ["GraphSwapper", "HostMemoryError", "OffloadManager", "uses_manager"]
