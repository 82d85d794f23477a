"""sliminfer: long-context inference with SlimInfer's dynamic token pruning on stock HF models."""

__version__ = "0.1.0"
