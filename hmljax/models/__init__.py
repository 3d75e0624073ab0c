"""Flax Linen models and ensemble forwards; no training logic."""

from hmljax.models._ensemble import (
    Forward,
    SharedEncoderHeads,
    heads_forward,
    init_stacked,
    single_forward,
    stacked_forward,
)
from hmljax.models._mlp import ChmcnnMLP, torch_linear_init

__all__ = ["ChmcnnMLP", "torch_linear_init", "Forward", "SharedEncoderHeads", "heads_forward", "init_stacked",
           "single_forward", "stacked_forward"]
