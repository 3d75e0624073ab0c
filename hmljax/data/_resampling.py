"""Oversampling baselines for hierarchical multi-label data: LPROS and HROS-PD (numpy, seeded).

Both return a :class:`Resampled` training set: row indices into the original
arrays (originals first, then the copies) and the labels of every row. LPROS
copies labels verbatim; HROS-PD relabels each copy with a single term (and its
ancestors), which is why labels travel with the indices. Feed
``Resampled.indices`` to :class:`EpochSampler` (or gather ``X[indices]``) and
compute node weights from ``Resampled.labels`` for "resample, then weight".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Resampled", "lpros", "hros_pd", "LPROS_ROUNDINGS"]

LPROS_ROUNDINGS = ("real", "java", "integer")


class Resampled(NamedTuple):
    """indices: int64 ``[N']`` rows of the original split; labels: uint8 ``[N', C]``; num_added = N' - N."""

    indices: np.ndarray
    labels: np.ndarray
    num_added: int


def _check_labels(labels_NxC) -> np.ndarray:
    Y = np.asarray(labels_NxC)
    if Y.ndim != 2 or Y.shape[0] == 0:
        raise ValueError(f"resampling needs a non-empty [N, C] label matrix, got shape {Y.shape}")
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("resampling needs 0/1 labels")
    return Y.astype(np.uint8, copy=False)


def lpros(labels_NxC, *, p: float = 0.25, seed: int, rounding: str = "real") -> Resampled:
    """Label-powerset random oversampling (Charte et al. 2015), every hierarchy node a label.

    Rows are grouped into bags by exact labelset; ``meanSize = N / #labelsets``;
    bags smaller than meanSize are the minority; ``samples_to_clone = floor(N p)``
    are spread over them, ``meanInc = samples_to_clone / #minority`` each, and
    each minority bag gets ``min(meanSize - |bag|, meanInc)`` random members
    cloned (drawn with replacement). Minority bags are visited smallest first,
    ties in a seeded random order.

    On HML data labelsets are nearly unique (cellcycle_FUN: 1154 of 1628), so
    meanSize is about 1.4 and the per-bag quota is a fraction of a row; the
    rounding decides everything (REFERENCE.md §2.6), and is explicit here:

    - ``real`` (default): real-valued meanSize and meanInc, at most
      ``ceil(quota)`` clones per bag; a bag's unused quota is handed on to the
      bags after it, and the total never exceeds ``samples_to_clone``.
    - ``java``: Pereira et al.'s mulan implementation as it behaves: the same
      per-bag ``ceil`` without the total cap (about one clone of every
      singleton bag, far more than ``N p``).
    - ``integer``: ``meanSize = ceil(N / #labelsets)``, ``meanInc =
      samples_to_clone // #minority``, floors everywhere; on FUN/GO this clones
      nothing.
    """
    Y = _check_labels(labels_NxC)
    if not 0 <= p:
        raise ValueError(f"lpros: p must be >= 0, got {p}")
    if rounding not in LPROS_ROUNDINGS:
        raise ValueError(f"lpros: rounding must be one of {LPROS_ROUNDINGS}, got {rounding!r}")
    rng = np.random.default_rng(seed)
    n = Y.shape[0]
    _, inverse, sizes = np.unique(np.packbits(Y, axis=1), axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1])
    to_clone = math.floor(n * p)
    mean_size = n / len(sizes)
    if rounding == "integer":
        mean_size = math.ceil(mean_size)
    minority = np.flatnonzero(sizes < mean_size)
    # Smallest bags first; ties in a seeded random order rather than by labelset bytes.
    minority = minority[np.lexsort((rng.permutation(len(minority)), sizes[minority]))]
    clones = []
    remaining = to_clone
    for k, b in enumerate(minority):
        if rounding == "integer":
            quota = min(mean_size - sizes[b], to_clone // max(len(minority), 1))
        elif rounding == "java":
            quota = math.ceil(min(mean_size - sizes[b], to_clone / len(minority)))
        else:
            if remaining <= 0:
                break
            inc = remaining / (len(minority) - k)  # unused quota is handed on
            quota = min(math.ceil(min(mean_size - sizes[b], inc)), remaining)
        if quota > 0:
            clones.append(rng.choice(members[b], size=int(quota), replace=True))
            remaining -= int(quota)
    added = np.concatenate(clones) if clones else np.zeros(0, np.int64)
    indices = np.concatenate([np.arange(n), added]).astype(np.int64)
    return Resampled(indices, Y[indices], int(added.size))


def hros_pd(labels_NxC, hierarchy, *, s: float = 0.1, seed: int) -> Resampled:
    """Hierarchical random oversampling with partial-depth relabelling (Pereira et al. 2021), for trees.

    1. A row's annotated terms are its most specific positive nodes; ``count_i``
       sums them over i's subtree (the root gets everything).
    2. Over the non-root nodes with a nonzero count: ``IRLbP_i = max count / count_i``,
       ``HMeanIR`` their mean; minority nodes have ``IRLbP > HMeanIR``.
    3. ``samples = floor(s · count_root)``, ``meanSize = ceil(count_root / #nonzero
       non-root nodes)``, ``maxIncrease = ceil(samples / #minority)``.
    4. Bottom-up by depth: every minority node at the current deepest level gets
       ``min(maxIncrease, meanSize - count)`` copies of rows annotated with it
       (else rows below it), drawn with replacement, each relabelled with only
       that term and its ancestors; counts are updated up the path and the
       minority test is redone with the original HMeanIR.

    Raises:
        ValueError: on a DAG. The method is defined for trees, and its path
            enumeration explodes on GO; use LPROS or node weights there.
    """
    Y = _check_labels(labels_NxC)
    C = hierarchy.num_nodes
    if Y.shape[1] != C:
        raise ValueError(f"hros_pd: labels have {Y.shape[1]} columns, the hierarchy {C} nodes")
    if not hierarchy.is_tree:
        multi = sum(len(p) > 1 for p in hierarchy.parents)
        raise ValueError(
            f"hros_pd is defined for tree hierarchies; this one is a DAG ({multi} nodes have several parents). "
            "Use lpros or node weighting on DAGs."
        )
    rng = np.random.default_rng(seed)
    R = np.asarray(hierarchy.ancestry, bool)  # R[i, j]: j is i or below i
    A = np.zeros((C, C), np.int64)  # A[p, c] = 1 for each edge
    for c, par in hierarchy.edges:
        A[par, c] = 1
    Yi = Y.astype(np.int64)
    most_specific = (Yi == 1) & ((Yi @ A.T) == 0)
    counts = R.astype(np.int64) @ most_specific.sum(0)
    is_root = np.zeros(C, bool)
    is_root[hierarchy.roots] = True
    count_root = int(counts[is_root].sum())
    live = (counts > 0) & ~is_root
    if not live.any():
        return Resampled(np.arange(Y.shape[0]), Y.copy(), 0)
    ir = counts[live].max() / counts[live]
    hmean_ir = float(ir.mean())
    n_minority = int((ir > hmean_ir).sum())
    if n_minority == 0:
        return Resampled(np.arange(Y.shape[0]), Y.copy(), 0)
    samples = math.floor(s * count_root)
    mean_size = math.ceil(count_root / int(live.sum()))
    max_increase = math.ceil(samples / n_minority)
    depth = np.asarray(hierarchy.depth_min)
    src_rows, new_labels = [], []
    for d in range(int(depth[live].max()), 0, -1):
        for j in np.flatnonzero(live & (depth == d)):
            if counts[live].max() / counts[j] <= hmean_ir:
                continue
            n_dup = min(max_increase, mean_size - int(counts[j]))
            if n_dup <= 0:
                continue
            pool = np.flatnonzero(most_specific[:, j])
            if pool.size == 0:
                pool = np.flatnonzero(Y[:, j])
            src_rows.append(rng.choice(pool, size=n_dup, replace=True))
            new_labels.append(np.repeat(R[:, j][None].astype(np.uint8), n_dup, axis=0))  # j and its ancestors
            counts[R[:, j]] += n_dup
    if not src_rows:
        return Resampled(np.arange(Y.shape[0]), Y.copy(), 0)
    added = np.concatenate(src_rows)
    indices = np.concatenate([np.arange(Y.shape[0]), added]).astype(np.int64)
    return Resampled(indices, np.concatenate([Y, *new_labels]), int(added.size))
