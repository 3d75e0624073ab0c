"""Flax Linen models; no training logic."""

from hmljax.models._mlp import ChmcnnMLP, torch_linear_init

__all__ = ["ChmcnnMLP", "torch_linear_init"]
