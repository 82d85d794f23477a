"""Tensor parallelism on CPU: 2 gloo ranks give exactly the tokens and kept positions of 1 process;
`--tp` refuses what cannot be split with one line and exit code 2; cross-rank head aggregation
equals the single-process one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sliminfer import parallel
from sliminfer.cli.main import main, without_tp
from sliminfer.scoring import aggregate_heads
from tiny import save_tiny_folder

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_folder(folder)
    return folder


def run_two_ranks(script: str, tiny_folder: Path, out: Path) -> object:
    """`script FOLDER OUT` on 2 gloo ranks under torchrun; what rank 0 wrote to OUT."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    command = [*parallel.LAUNCHER, "--standalone", "--nproc-per-node=2", str(TESTS / script), str(tiny_folder), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_gloo_ranks_match_one_process(tiny_folder, tmp_path):
    import tp_worker

    ranks = run_two_ranks("tp_worker.py", tiny_folder, tmp_path / "ranks.json")
    single = tp_worker.run(str(tiny_folder))
    assert ranks[0] == ranks[1] == single
    assert len(single["slim"]["kept"][-1]) < tp_worker.PROMPT_TOKENS  # the schedule really prunes


def _aggregate_worker(rank: int, port: int, per_head: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        heads = per_head.shape[1] // 2
        mine = per_head[:, rank * heads : (rank + 1) * heads]
        out[rank] = {how: parallel.aggregate_heads(mine, how, 3) for how in ("mean", "max", "topk")}
    finally:
        dist.destroy_process_group()


def test_cross_rank_head_aggregation_equals_one_process():
    per_head = torch.rand(2, 8, 13, generator=torch.Generator().manual_seed(0))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_aggregate_worker, args=(port, per_head, out), nprocs=2, join=True)
        results = dict(out)
    for rank in (0, 1):
        for how, got in results[rank].items():
            torch.testing.assert_close(got, aggregate_heads(per_head, how, 3))


def _one_error_line(capsys, *argv) -> str:
    code = main(list(argv))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    return lines[0]


def test_tp_not_dividing_the_kv_heads(capsys, tiny_folder):
    line = _one_error_line(capsys, "generate", "--model", str(tiny_folder), "--prompt", "t5 t6", "--tp", "3")
    assert "--tp 3: must divide the model's 4 attention heads and 2 KV heads" in line


def test_tp_more_than_the_gpus(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    line = _one_error_line(capsys, "bench", "--model", "llama-3.1-70b", "--tp", "4", "--out", "unused")
    assert "--tp 4: only 2 GPU(s) visible on this machine" in line


def test_other_subcommands_refuse_torchrun(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    line = _one_error_line(capsys, "eval", "--model", "unused", "--out", "unused")
    assert "eval does not run tensor-parallel yet: only generate and bench and serve" in line


def test_serving_ranks_follow_rank_0(tiny_folder, tmp_path):
    """serve's protocol on 2 gloo ranks: rank 0 runs requests the other rank follows (one fails
    on both ranks, one is cancelled by rank 0 alone mid-way), then ends the followers' loop."""
    import tp_serve_worker

    served = run_two_ranks("tp_serve_worker.py", tiny_folder, tmp_path / "served.json")
    assert served["greedy"] == tp_serve_worker.single_process(str(tiny_folder))
    assert served["error"] == "too long" and served["after_error"] == served["greedy"]
    assert served["cancelled"] == {"finish_reason": "cancelled", "tokens": tp_serve_worker.CANCEL_AFTER}


def test_without_tp():
    assert without_tp(["bench", "--tp", "2", "--model", "m", "--tp=4", "--out", "o"]) == ["bench", "--model", "m", "--out", "o"]
