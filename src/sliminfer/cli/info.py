"""`sliminfer info`: versions, device, model summary and the default config."""

from __future__ import annotations

import argparse
import json

from ..envinfo import environment
from ..loading import load_model
from .options import add_model_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="versions, device, model summary, default config")
    add_model_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    config = loaded.model.config
    summary = {
        "environment": environment(loaded.device),
        "model": {
            "name": loaded.name,
            "class": type(loaded.model).__name__,
            "model_type": config.model_type,
            "layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "attention_heads": config.num_attention_heads,
            "kv_heads": config.num_key_value_heads,
            "max_context": loaded.max_context,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "dtype": str(loaded.model.dtype).removeprefix("torch."),
            "device": str(loaded.device),
        },
        "default_config": loaded.default_config.to_dict(),
    }
    print(json.dumps(summary, indent=2))
    return 0
