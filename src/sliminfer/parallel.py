"""Tensor parallelism over processes: transformers shards the model, this module keeps ranks in step.

Under `torchrun --nproc-per-node N -m sliminfer ...` (or `sliminfer ... --tp N`, which launches
exactly that) every process is one tensor-parallel rank of one model. transformers
(`DistributedConfig(tp_plan="auto")`) splits each attention layer's heads and each MLP's columns
over the ranks and all-reduces their outputs, so hidden states and logits are replicated on
every rank and our loop keeps calling the stock decoder layers. What sliminfer adds is that
every rank takes the same decisions:
- unit scores: each rank's attention sees only its own query heads, so the head aggregation
  is reduced across ranks (`aggregate_heads`) before any block is chosen; every rank then keeps
  and gathers the same positions, in prefill and in decode-time selection;
- sampling: every rank draws with the same seed from the same logits (`shared_seed`);
- I/O: rank 0 reads the prompt and prints; the others get its inputs by `broadcast`.

sliminfer runs tensor parallelism only, so the world group is the tensor-parallel group.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

import torch
import torch.distributed as dist
from transformers import DistributedConfig

from .errors import UserError
from .models import ModelShape
from .scoring import aggregate_heads as aggregate_local_heads

LAUNCHER = [sys.executable, "-m", "torch.distributed.run"]
"""`torchrun`, through the running interpreter (the `torchrun` script may not be on PATH)."""


def launched() -> bool:
    """Whether this process is one of several started by torchrun (`WORLD_SIZE` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """Whether a process group of more than one rank is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (torchrun's `RANK` before the process group is up; 0 without torchrun)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def is_main() -> bool:
    """Rank 0, the process that reads inputs and writes results (True without parallelism)."""
    return rank() == 0


def init_process_group() -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) once; returns this rank's device.

    On CUDA each rank takes GPU `LOCAL_RANK`, as transformers' tensor-parallel loading expects.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            device_id=device if device.type == "cuda" else None,
        )
    return device


def check_tp(tp: int, heads: int, kv_heads: int, gpus: int | None) -> None:
    """Raise `UserError` unless `tp` ranks can split the model: at most the `gpus` there are
    (None: on CPU, any number of gloo ranks) and dividing the attention and the KV heads."""
    if tp < 1:
        raise UserError(f"--tp {tp}: must be >= 1")
    if gpus is not None and tp > gpus:
        raise UserError(f"--tp {tp}: only {gpus} GPU(s) visible on this machine")
    if heads % tp or kv_heads % tp:
        raise UserError(
            f"--tp {tp}: must divide the model's {heads} attention heads and {kv_heads} KV heads"
        )


def check_model_split(config: Any) -> None:
    """`check_tp` for the running world size and a transformers `config` (no-op without parallelism)."""
    if not launched():
        return
    shape = ModelShape.from_hf_config(config)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else None
    check_tp(int(os.environ["WORLD_SIZE"]), shape.heads, shape.kv_heads, gpus)


def from_pretrained_kwargs() -> dict[str, Any]:
    """What `from_pretrained` needs to shard the model over torchrun's ranks (nothing without)."""
    if not launched():
        return {}
    return {"distributed_config": DistributedConfig(tp_plan="auto", tp_size=int(os.environ["WORLD_SIZE"]))}


def launch_command(tp: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs `sliminfer ARGV` (without `--tp`) on `tp` local ranks."""
    return [*LAUNCHER, "--standalone", f"--nproc-per-node={tp}", "-m", "sliminfer", *argv]


def aggregate_heads(per_head: torch.Tensor, how: str, topk: int = 2) -> torch.Tensor:
    """`scoring.aggregate_heads` over the heads of every rank: `[batch, local_heads, n_units]` ->
    `[batch, n_units]`, identical on all ranks.

    transformers gives rank r the r-th contiguous slice of the query heads, so the ranks' heads
    together are the model's. `mean` all-reduces per-rank sums and `max` per-rank maxima (a few
    KB); `topk` needs every head's score per unit, so it all-gathers them.
    """
    if not is_distributed():
        return aggregate_local_heads(per_head, how, topk)
    if how == "mean":
        total = per_head.sum(1)
        dist.all_reduce(total)
        return total / (per_head.shape[1] * world_size())
    if how == "max":
        best = per_head.amax(1)
        dist.all_reduce(best, op=dist.ReduceOp.MAX)
        return best
    parts = [torch.empty_like(per_head) for _ in range(world_size())]
    dist.all_gather(parts, per_head.contiguous())
    return aggregate_local_heads(torch.cat(parts, dim=1), how, topk)


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (any picklable object; the value itself without parallelism)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on any of them: a decision one rank makes alone
    (rank 0's client cancelled) that every rank must take at the same step (False without
    parallelism unless `flag`)."""
    if not is_distributed():
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    votes = torch.tensor([int(flag)], device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())


def shared_seed(seed: int | None) -> int | None:
    """A sampling seed every rank shares: `seed`, or one rank 0 draws (None without parallelism,
    where the global generator is used as before)."""
    if not is_distributed():
        return seed
    return broadcast(seed if seed is not None else random.getrandbits(63))
