"""Seeded numpy samplers that hand out a whole epoch as one ``[steps, batch]`` index array.

Training code sees only the :class:`Sampler` protocol: ``epoch(e)`` returns the
epoch's indices (and a ``where`` mask for padding) as fixed-shape arrays, so an
epoch can be fused into one ``lax.scan``. Resampling (LPROS, HROS-PD) changes
the ``pool`` of row indices an epoch draws from (duplicates allowed). Samplers
that react to training (per-sample losses: adaptive batch selection) are
device-side instead (:class:`hmljax.engine.DeviceSampler`): their state rides in
the scan carry and each step updates it, with no host round trip. The engine
takes either kind (``sampler=NAME``).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = ["EpochBatches", "Sampler", "EpochSampler"]


class EpochBatches(NamedTuple):
    """One epoch of batches.

    Attributes:
        indices: int32 ``[S, B]`` row indices into the split's arrays.
        where: bool ``[S, B]``; False marks padding (only with ``drop_remainder=False``).
    """

    indices: np.ndarray
    where: np.ndarray

    @property
    def num_steps(self) -> int:
        return self.indices.shape[0]


@runtime_checkable
class Sampler(Protocol):
    """What training needs from a sampler."""

    batch_size: int

    @property
    def steps_per_epoch(self) -> int: ...

    def epoch(self, epoch: int) -> EpochBatches: ...


class EpochSampler:
    """Shuffled epochs with a fixed batch shape, deterministic in ``(seed, epoch)``.

    Args:
        pool: the row indices an epoch covers, int ``[P]`` (duplicates allowed,
            e.g. after oversampling), or an ``int`` n meaning ``arange(n)``.
        batch_size: B.
        seed: base seed; epoch ``e`` uses ``default_rng((seed, e))``, so a resumed
            run that knows its epoch number draws the same batches.
        drop_remainder: drop the last partial batch (True) or pad it with index 0
            and ``where=False`` (False).
        shuffle: False keeps the pool order (ADABATCH's warm-up uses fixed order).
    """

    def __init__(self, pool: np.ndarray | int, batch_size: int, *, seed: int, drop_remainder: bool = True,
                 shuffle: bool = True):
        pool = np.arange(pool) if np.isscalar(pool) else np.asarray(pool)
        if pool.ndim != 1 or pool.size == 0:
            raise ValueError(f"pool must be a non-empty 1-D index array, got shape {pool.shape}")
        if not np.issubdtype(pool.dtype, np.integer) or pool.min() < 0:
            raise ValueError("pool must hold non-negative integer row indices")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_remainder and pool.size < batch_size:
            raise ValueError(f"batch_size={batch_size} exceeds the {pool.size} rows with drop_remainder=True")
        self.pool = pool.astype(np.int32)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.drop_remainder = drop_remainder
        self.shuffle = shuffle

    @property
    def steps_per_epoch(self) -> int:
        n, b = self.pool.size, self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    def epoch(self, epoch: int) -> EpochBatches:
        order = self.pool
        if self.shuffle:
            order = order[np.random.default_rng((self.seed, int(epoch))).permutation(order.size)]
        s, b = self.steps_per_epoch, self.batch_size
        if self.drop_remainder:
            idx = order[: s * b].reshape(s, b)
            return EpochBatches(idx, np.ones_like(idx, dtype=bool))
        padded = np.zeros(s * b, dtype=np.int32)
        padded[: order.size] = order
        where = np.zeros(s * b, dtype=bool)
        where[: order.size] = True
        return EpochBatches(padded.reshape(s, b), where.reshape(s, b))

    def batches(self, epoch: int, *arrays: np.ndarray):
        """Yields ``(where, *arrays[idx])`` per step, gathered from (memmapped) arrays."""
        eb = self.epoch(epoch)
        for idx, w in zip(eb.indices, eb.where):
            yield (w, *(np.asarray(a[idx]) for a in arrays))
