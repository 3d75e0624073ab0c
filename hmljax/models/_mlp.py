"""C-HMCNN's feed-forward network, in Flax Linen (parameters are plain pytrees)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["ChmcnnMLP", "torch_linear_init", "dense_layer"]


def torch_linear_init(fan_in: int) -> Callable:
    """PyTorch ``nn.Linear``'s default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weights and biases."""
    bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in, jnp.float32))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def dense_layer(width: int, fan_in: int, *, scheme: str, name: str) -> nn.Dense:
    """A Dense layer initialised as ``torch`` (``nn.Linear``'s uniform, weights and biases) or ``flax``."""
    if scheme == "torch":
        f = torch_linear_init(fan_in)
        return nn.Dense(width, kernel_init=f, bias_init=f, name=name)
    return nn.Dense(width, name=name)


class ChmcnnMLP(nn.Module):
    """in -> H -> H -> out, ReLU and dropout after the first two layers; returns logits.

    Attributes:
        hidden: H.
        num_outputs: C, one unit per hierarchy node (roots included; the loss masks them).
        num_layers: 3 in C-HMCNN.
        dropout: drop probability (0.7 in C-HMCNN).
        init_scheme: 'torch' (``nn.Linear``'s uniform, for faithful reproduction) or 'flax'
            (lecun-normal weights, zero biases).
    """

    hidden: int
    num_outputs: int
    num_layers: int = 3
    dropout: float = 0.7
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x: Float[Array, "B D"], *, train: bool) -> Float[Array, "B C"]:
        if self.init_scheme not in ("torch", "flax"):
            raise ValueError(f"init must be 'torch' or 'flax', got {self.init_scheme!r}")
        for k in range(self.num_layers):
            width = self.num_outputs if k == self.num_layers - 1 else self.hidden
            if self.init_scheme == "torch":
                f = torch_linear_init(x.shape[-1])
                layer = nn.Dense(width, kernel_init=f, bias_init=f, name=f"dense_{k}")
            else:
                layer = nn.Dense(width, name=f"dense_{k}")
            x = layer(x)
            if k < self.num_layers - 1:
                x = nn.relu(x)
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x
