"""What ran where: versions, device and git revision, recorded in every result file."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from typing import Any

import torch
import transformers

from . import __version__, parallel
from .attention.sparse import KERNEL_OPTIONS_ENV


def device_name(device: torch.device | str) -> str:
    """A human name for `device`, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} cpu ({torch.get_num_threads()} threads)"


def git_revision() -> str | None:
    """The current git commit, or None outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Versions, device, date and git revision as a JSON-ready dict. Under tensor parallelism
    `tp` is the number of ranks and the device reads e.g. '2 x NVIDIA H200'. A FlexAttention
    kernel-options override in the environment is recorded too (it changes sparse speed)."""
    tp = parallel.world_size()
    overrides = {KERNEL_OPTIONS_ENV: os.environ[KERNEL_OPTIONS_ENV]} if KERNEL_OPTIONS_ENV in os.environ else {}
    return {
        "sliminfer": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device_name(device) if tp == 1 else f"{tp} x {device_name(device)}",
        "tp": tp,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_revision(),
        **overrides,
    }
