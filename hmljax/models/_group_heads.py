"""HMT-Net's network: an encoder, then one classifier head per class group, each on its own noisy copy of
the feature (Flax Linen)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from hmljax.models._mlp import dense_layer

__all__ = ["GroupHeadsNet"]


class GroupHeadsNet(nn.Module):
    """``x -> f = encoder(x)``; head g maps ``f + δ_g`` (``δ_g ~ N(0, σ_g² I)``, training only) to the scores
    of group g's classes; the heads' outputs are scattered back into class order.

    Attributes:
        group_index: per group, the class indices it holds (a tuple of tuples; every class in exactly one).
        sigmas: σ_g per group, the noise scale (0: no noise).
        hidden: width of the encoder's hidden layers.
        encoder_layers: hidden layers of the MLP encoder (ReLU, dropout); 0: the features are the input
            itself (e.g. a frozen image encoder's cached features).
        dropout: drop probability after each hidden layer.
        init_scheme: 'torch' (``nn.Linear``'s uniform) or 'flax'.

    Returns logits ``[B, C]``. The noise draws come from the ``dropout`` rng stream (one independent
    draw per row and per group), so the engine's ensembles and MC passes handle it unchanged.
    """

    group_index: tuple[tuple[int, ...], ...]
    sigmas: tuple[float, ...]
    hidden: int = 256
    encoder_layers: int = 2
    dropout: float = 0.2
    init_scheme: str = "torch"

    def _dense(self, width: int, fan_in: int, name: str) -> nn.Dense:
        return dense_layer(width, fan_in, scheme=self.init_scheme, name=name)

    @nn.compact
    def __call__(self, x: Float[Array, "B D"], *, train: bool) -> Float[Array, "B C"]:
        if len(self.sigmas) != len(self.group_index):
            raise ValueError(f"{len(self.sigmas)} sigmas for {len(self.group_index)} groups")
        f = x
        for k in range(self.encoder_layers):
            f = nn.relu(self._dense(self.hidden, f.shape[-1], f"encoder_{k}")(f))
            f = nn.Dropout(self.dropout, deterministic=not train)(f)
        outs = []
        for g, (classes, sigma) in enumerate(zip(self.group_index, self.sigmas, strict=True)):
            f_g = f
            if train and sigma > 0:
                f_g = f + sigma * jax.random.normal(self.make_rng("dropout"), f.shape, f.dtype)
            outs.append(self._dense(len(classes), f.shape[-1], f"head_{g}")(f_g))
        order = np.concatenate([np.asarray(c, np.int64) for c in self.group_index])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)  # a permutation: class c's score sits at position inverse[c]
        return jnp.concatenate(outs, axis=-1)[..., inverse]
