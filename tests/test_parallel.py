"""Tensor parallelism on CPU: 2 ranks (gloo, transformers' `tp_plan`) keep exactly the positions
and produce exactly the tokens of 1 process; bad `--tp` values are one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from sliminfer.cli.main import main
from sliminfer.errors import UserError
from sliminfer.parallel import check_shardable, relaunch_with_torchrun

WORKER = Path(__file__).with_name("tp_worker.py")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A 4-layer random Llama (4 heads, 2 KV heads) with the embedded model's tokenizer."""
    from sliminfer.loading import _dequantized_folder, default_gguf_path

    folder = tmp_path_factory.mktemp("tp") / "tiny"
    tokenizer = AutoTokenizer.from_pretrained(_dequantized_folder(default_gguf_path()))
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=8192)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_worker(folder: Path, out: Path, method: str, ranks: int) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)] if ranks > 1 else [sys.executable]
    done = subprocess.run([*launcher, str(WORKER), str(folder), str(out), method], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(Path(f"{out}-rank{r}.json").read_text()) for r in range(ranks)]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["slim", "full"])
def test_two_ranks_keep_the_positions_and_tokens_of_one(tiny_folder, tmp_path, method):
    (one,) = run_worker(tiny_folder, tmp_path / "one", method, 1)
    two = run_worker(tiny_folder, tmp_path / "two", method, 2)
    assert [rank["tokens"] for rank in two] == [one["tokens"]] * 2
    assert [rank["positions"] for rank in two] == [one["positions"]] * 2
    if method == "slim":
        assert [len(p) for p in one["positions"]] != [len(one["positions"][0])] * 4  # it pruned


def test_tp_must_divide_the_heads():
    check_shardable(32, 8, 4)
    with pytest.raises(UserError, match="--tp 3: must divide the model's 32 attention heads and 8 KV heads"):
        check_shardable(32, 8, 3)


def test_tp_larger_than_the_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="--tp 2: only 1 GPU"):
        relaunch_with_torchrun(2, "auto", ["generate"])


def test_tp_outside_generate_is_a_one_line_error(capsys, tmp_path):
    assert main(["bench", "--tp", "2", "--out", str(tmp_path)]) == 2
    assert "only ['generate'] run tensor-parallel" in capsys.readouterr().err
