"""Tensor parallelism through transformers: who the ranks are, and the one collective slim adds.

Under `torchrun`, `load_model` asks transformers to shard the stock model (`tp_plan="auto"`:
NCCL on CUDA, gloo on CPU); each rank then holds a slice of every layer's attention heads and
runs our prefill loop on it. Everything slim decides from the hidden states (which blocks a cut
keeps, which blocks a decode step attends to) must be the same on every rank, yet each rank's
attention sees only its own heads. So the per-head window scores are gathered across ranks
(`gather_heads`, a few MB at 128k) before they are aggregated: every rank then ranks the same
scores and keeps the same positions. Greedy tokens agree because the logits are replicated.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys

import torch
import torch.distributed as dist

from .errors import UserError


def tp_size() -> int:
    """Ranks the model is sharded over: torchrun's WORLD_SIZE (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process does the I/O (rank 0; the only process without torchrun)."""
    return rank() == 0


def sharding_kwargs() -> dict:
    """`from_pretrained` keywords that shard the model over the ranks: transformers >= 5.18
    takes `distributed_config=DistributedConfig(tp_plan="auto")`, older ones `tp_plan="auto"`."""
    try:
        from transformers import DistributedConfig
    except ImportError:
        return {"tp_plan": "auto"}
    if "tp_plan" not in inspect.signature(DistributedConfig).parameters:
        return {"tp_plan": "auto"}
    return {"distributed_config": DistributedConfig(tp_plan="auto")}


def gather_heads(per_head: torch.Tensor) -> torch.Tensor:
    """`[batch, local_heads, n_units]` -> `[batch, heads, n_units]`, ranks' heads in rank order
    (transformers' column-wise shard gives rank r the r-th contiguous slice of heads)."""
    if tp_size() == 1 or not dist.is_initialized():
        return per_head
    parts = [torch.empty_like(per_head) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, per_head.contiguous())
    return torch.cat(parts, dim=1)


def check_shardable(heads: int, kv_heads: int, size: int) -> None:
    """One clear error when `size` ranks cannot split the model's heads evenly."""
    if heads % size or kv_heads % size:
        raise UserError(
            f"--tp {size}: must divide the model's {heads} attention heads and {kv_heads} KV heads"
        )


def relaunch_with_torchrun(size: int, device: str, argv: list[str]) -> int:
    """`--tp N` outside torchrun: run the same command as `torchrun --nproc-per-node N -m sliminfer`.

    Refuses more ranks than GPUs when the command runs on CUDA (on CPU the ranks use gloo).
    """
    if size < 1:
        raise UserError(f"--tp {size}: must be >= 1")
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_cuda and size > torch.cuda.device_count():
        raise UserError(f"--tp {size}: only {torch.cuda.device_count()} GPU(s) here")
    torchrun = shutil.which("torchrun")
    command = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    command += ["--nproc-per-node", str(size), "-m", "sliminfer", *argv]
    return subprocess.call(command)
