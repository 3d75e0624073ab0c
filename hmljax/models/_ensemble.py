"""Ensembles as vmapped parameter stacks, MC dropout, and a shared encoder with E heads.

Training code sees one interface, a *forward*: ``forward(params, x [B, D], *,
train, key) -> logits [E, B, C]``. A single network is E = 1; a stack of E full
networks is ``jax.vmap`` over a leading parameter axis (each member has its own
dropout key, so members differ in initialisation and dropout masks only, as in
RARE's ``MultiHeadedModel``); a shared encoder with E heads returns ``[E, B, C]``
itself.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["Forward", "single_forward", "stacked_forward", "init_stacked", "SharedEncoderHeads", "heads_forward"]

Forward = Callable[..., Float[Array, "E B C"]]


def single_forward(model: nn.Module) -> Forward:
    """One network as an ensemble of one: logits ``[1, B, C]``."""

    def forward(params, x, *, train: bool, key=None):
        rngs = {"dropout": key} if train else {}
        # tree_map: a network may return a tuple of arrays (HLSTM: global and local logits).
        return jax.tree_util.tree_map(lambda a: a[None], model.apply({"params": params}, x, train=train, rngs=rngs))

    return forward


def init_stacked(model: nn.Module, num_features: int, members: int, *, key: jax.Array):
    """E independently initialised parameter sets, stacked on a leading axis ``[E, ...]``."""
    x = jnp.zeros((1, num_features), jnp.float32)
    return jax.vmap(lambda k: model.init({"params": k}, x, train=False)["params"])(jax.random.split(key, members))


def stacked_forward(model: nn.Module, members: int) -> Forward:
    """E full networks in one vmapped call: ``params`` leaves are ``[E, ...]``, logits ``[E, B, C]``.

    Member e's logits depend only on its own parameter slice, so a loss summed
    over members gives each member the gradient of its own loss.
    """

    def forward(params, x, *, train: bool, key=None):
        if train:
            keys = jax.random.split(key, members)
            return jax.vmap(lambda p, k: model.apply({"params": p}, x, train=True, rngs={"dropout": k}))(params, keys)
        return jax.vmap(lambda p: model.apply({"params": p}, x, train=False))(params)

    return forward


class SharedEncoderHeads(nn.Module):
    """A shared encoder followed by E independent MLP heads (RARE's vision setting): logits ``[E, B, C]``.

    Attributes:
        encoder: any Linen module mapping ``[B, ...]`` to features ``[B, F]`` (called with ``train``).
        head: a Linen module class or factory for one head (e.g. ``ChmcnnMLP(...)``), called with ``train``.
        num_heads: E.
    """

    encoder: nn.Module
    head: nn.Module
    num_heads: int

    @nn.compact
    def __call__(self, x, *, train: bool):
        feats = self.encoder(x, train=train)
        heads = nn.vmap(
            lambda mdl, f: mdl(f, train=train),
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            axis_size=self.num_heads,
        )
        return heads(self.head, feats)


def heads_forward(model: SharedEncoderHeads) -> Forward:
    """The forward of a :class:`SharedEncoderHeads` (it already returns ``[E, B, C]``)."""

    def forward(params, x, *, train: bool, key=None):
        rngs = {"dropout": key} if train else {}
        return model.apply({"params": params}, x, train=train, rngs=rngs)

    return forward
