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

__all__ = ["EpochBatches", "Sampler", "EpochSampler", "ClassAwareSampler"]


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
        for idx, w in zip(eb.indices, eb.where, strict=True):
            yield (w, *(np.asarray(a[idx]) for a in arrays))


class ClassAwareSampler:
    """Class-aware re-sampling (RS; DB's ``ClassAwareSampler``, REFERENCE.md §4.2): classes visited in a shuffled
    round robin, ``per_visit`` consecutive rows taken from the visited class's shuffled cyclic list of rows.

    An epoch draws ``max_k n_k · C' / reduce`` rows (C' the classes with a positive; DB: ``reduce = 4``),
    in fixed-shape batches. The class order and each class's list are reshuffled whenever they wrap
    around, as in DB. Unlike DB, whose iterators run on across epochs, every epoch starts afresh from
    ``default_rng((seed, epoch))``, so a resumed run that knows its epoch draws the same batches.
    Classes without a positive row are never visited (DB's would fail on them).

    Args:
        labels: 0/1 ``[N, C]`` of the rows trained on.
        batch_size: B.
        seed: base seed.
        per_visit: rows taken per class visit (DB: 3).
        reduce: the epoch-length divisor (DB: 4).
        drop_remainder: drop the last partial batch, or pad it (``where=False``).
    """

    def __init__(self, labels: np.ndarray, batch_size: int, *, seed: int, per_visit: int = 3, reduce: float = 4.0,
                 drop_remainder: bool = True):
        Y = np.asarray(labels)
        if Y.ndim != 2 or Y.shape[0] == 0:
            raise ValueError(f"ClassAwareSampler: labels must be [N, C] with N >= 1, got shape {Y.shape}")
        if per_visit < 1 or not reduce > 0 or batch_size < 1:
            raise ValueError(f"ClassAwareSampler: per_visit >= 1, reduce > 0 and batch_size >= 1 needed, got "
                             f"{per_visit}, {reduce}, {batch_size}")
        self.rows_of = [np.flatnonzero(Y[:, k]).astype(np.int32) for k in range(Y.shape[1])]
        self.classes = np.array([k for k, r in enumerate(self.rows_of) if r.size], np.int64)
        if self.classes.size == 0:
            raise ValueError("ClassAwareSampler: no class has a positive row")
        max_count = max(r.size for r in self.rows_of)
        self.num_samples = max(int(max_count * self.classes.size / reduce), 1)
        if drop_remainder and self.num_samples < batch_size:
            raise ValueError(f"ClassAwareSampler: an epoch of {self.num_samples} rows is shorter than "
                             f"batch_size={batch_size} with drop_remainder=True")
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.per_visit, self.drop_remainder = int(per_visit), drop_remainder

    @property
    def steps_per_epoch(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    def _cycled(self, rng, items: np.ndarray, length: int) -> np.ndarray:
        # ``length`` items from a list reshuffled at every wrap-around.
        reps = -(-length // items.size)
        return np.concatenate([items[rng.permutation(items.size)] for _ in range(reps)])[:length]

    def epoch(self, epoch: int) -> EpochBatches:
        rng = np.random.default_rng((self.seed, int(epoch), 7))
        visits = -(-self.num_samples // self.per_visit)
        order = self._cycled(rng, self.classes, visits)  # the class of each visit
        rows = np.empty((visits, self.per_visit), np.int32)
        for k in np.unique(order):
            at = np.flatnonzero(order == k)
            rows[at] = self._cycled(rng, self.rows_of[k], at.size * self.per_visit).reshape(at.size, self.per_visit)
        flat = rows.reshape(-1)[: self.num_samples]
        s, b = self.steps_per_epoch, self.batch_size
        if self.drop_remainder:
            idx = flat[: s * b].reshape(s, b)
            return EpochBatches(idx, np.ones_like(idx, dtype=bool))
        padded = np.zeros(s * b, np.int32)
        padded[: flat.size] = flat
        where = np.zeros(s * b, bool)
        where[: flat.size] = True
        return EpochBatches(padded.reshape(s, b), where.reshape(s, b))
