"""Eval fixtures: a word-counting fake tokenizer and a tiny random Llama with a byte-level tokenizer."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from sliminfer.eval.longbench import TokenCodec
from sliminfer.eval.sample import Sample, render
from tiny import TINY_SIZES

WORD = re.compile(r"\w+|[^\w\s]")
REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "longbench"


def count_words(sample: Sample) -> int:
    """Fake token count: words and punctuation marks of the rendered prompt."""
    return len(WORD.findall(render(sample)))


def word_codec() -> TokenCodec:
    """Fake tokenizer for truncation: one id per whitespace-separated word."""
    vocab: dict[str, int] = {}
    words: list[str] = []

    def encode(text: str) -> list[int]:
        ids = []
        for word in text.split(" "):
            if word not in vocab:
                vocab[word] = len(words)
                words.append(word)
            ids.append(vocab[word])
        return ids

    def decode(ids: list[int]) -> str:
        return " ".join(words[i] for i in ids)

    return TokenCodec(encode=encode, decode=decode)


def save_tiny_model(folder: Path, max_positions: int = 4096) -> Path:
    """A 4-layer random Llama whose tokenizer maps each byte to one token, saved as an HF folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    eos = len(vocab)
    vocab["<|endoftext|>"] = eos
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    torch.manual_seed(0)
    sizes = {**TINY_SIZES, "vocab_size": len(vocab), "max_position_embeddings": max_positions}
    config = LlamaConfig(**sizes, bos_token_id=eos, eos_token_id=eos)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def load_benchmark():
    """Import `benchmarks/NAME.py` by path (the scripts are not a package)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def words() -> object:
    """The fake token counter `count_words`."""
    return count_words


@pytest.fixture
def codec() -> TokenCodec:
    return word_codec()


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-byte-llama"))


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir: Path):
    from sliminfer.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")
