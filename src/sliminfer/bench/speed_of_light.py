"""The device's own limits, measured in the same run as the benchmark they bound.

A spec sheet's peak is not what the kernels reach (an H100's dense bf16 matmuls run well below
its 989 TF/s), so the FLOP-bound TTFT floor divides by a measured dense matmul rate instead.
"""

from __future__ import annotations

from typing import Any

import torch

from .harness import timed

MATMUL_SIZE = 8192
COPY_BYTES = 512 * 2**20


def measure_matmul_tflops(device: torch.device, size: int = MATMUL_SIZE, iters: int = 20) -> float:
    """Dense `size`^3 bf16 matmul rate in TFLOP/s (2 size^3 FLOPs per product), after a warm-up."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    out = torch.empty_like(a)

    def run() -> None:
        for _ in range(iters):
            torch.matmul(a, b, out=out)

    run()
    seconds, _ = timed(run, device)
    return 2 * size**3 * iters / seconds / 1e12


def measure_h2d_gbps(device: torch.device, nbytes: int = COPY_BYTES, iters: int = 5) -> float:
    """Pinned host-to-device copy bandwidth in GB/s (1e9 bytes) for one large copy."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    target = torch.empty(nbytes, dtype=torch.uint8, device=device)

    def run() -> None:
        for _ in range(iters):
            target.copy_(host, non_blocking=True)

    run()
    seconds, _ = timed(run, device)
    return nbytes * iters / seconds / 1e9


def speed_of_light(device: torch.device) -> dict[str, Any] | None:
    """Measured matmul TFLOP/s and H2D GB/s on a CUDA `device`; None elsewhere (not measured)."""
    if device.type != "cuda":
        return None
    return {
        "matmul_tflops": measure_matmul_tflops(device),
        "matmul_shape": [MATMUL_SIZE] * 3,
        "h2d_gbps": measure_h2d_gbps(device),
        "h2d_copy_bytes": COPY_BYTES,
    }
