"""Device-side samplers: state in the epoch's ``lax.scan`` carry, no host round trip per batch.

A device sampler is four pure functions over a state pytree. Per epoch the engine calls
``begin_epoch`` once, then per step ``select`` (which rows to train on) and, after the step,
``update`` with the step's per-sample losses, all inside one compiled scan:

    state = init(key)                                   # once per run
    state = begin_epoch(state, key_e, epoch)            # per epoch (key_e = fold_in(key, epoch))
    index [B], where [B], state = select(state, key_t, t)
    state = update(state, index, where, per_sample_loss [B])

Host-side samplers (:class:`hmljax.data.EpochSampler`: a numpy ``[S, B]`` index array per epoch) stay
the fastest choice when the batches do not depend on training; the engine takes either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["DeviceSampler", "is_device_sampler", "device_shuffle"]


class DeviceSampler(NamedTuple):
    """A sampler whose state lives on the device (see the module docstring).

    Attributes:
        init: ``init(key) -> state``.
        begin_epoch: ``begin_epoch(state, key, epoch) -> state``.
        select: ``select(state, key, t) -> (index int32 [B], where bool [B], state)``.
        update: ``update(state, index [B], where [B], per_sample_loss [B]) -> state``.
        steps_per_epoch: S.
        batch_size: B.
    """

    init: Callable[[jax.Array], Any]
    begin_epoch: Callable[..., Any]
    select: Callable[..., tuple]
    update: Callable[..., Any]
    steps_per_epoch: int
    batch_size: int


def is_device_sampler(sampler) -> bool:
    return isinstance(sampler, DeviceSampler)


def device_shuffle(num_rows: int, batch_size: int, *, drop_remainder: bool = False) -> DeviceSampler:
    """A fresh permutation per epoch drawn on the device; the last partial batch padded and masked.

    The loss-free baseline of the device interface (``sampler=device_shuffle``): the same
    distribution of batches as :class:`hmljax.data.EpochSampler`, other random draws.
    """
    if num_rows < 1 or batch_size < 1:
        raise ValueError(f"device_shuffle needs num_rows >= 1 and batch_size >= 1, got {num_rows}, {batch_size}")
    steps = num_rows // batch_size if drop_remainder else -(-num_rows // batch_size)
    if steps < 1:
        raise ValueError(f"batch_size={batch_size} exceeds the {num_rows} rows with drop_remainder=True")
    total = steps * batch_size

    def init(key):
        return {"order": jnp.arange(num_rows, dtype=jnp.int32)}

    def begin_epoch(state, key, epoch):
        return {"order": jax.random.permutation(key, num_rows).astype(jnp.int32)}

    def select(state, key, t):
        pos = t * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
        where = pos < min(num_rows, total)
        index = state["order"][jnp.minimum(pos, num_rows - 1)]
        return jnp.where(where, index, 0), where, state

    def update(state, index, where, per_sample):
        return state

    return DeviceSampler(init, begin_epoch, select, update, steps, batch_size)
