"""Iterative stratification of multi-label data into folds (numpy, seeded).

Sechidis, Tsoumakas & Vlahavas, "On the stratification of multi-label data",
ECML PKDD 2011 (order 1), and Szymanski & Kajdanowicz, "A network perspective
on stratification of multi-label data", LIDTA 2017 (order 2: label pairs).

The greedy rule, with equal fold proportions ``1/K``: take the label (or label
pair) with the fewest rows still unassigned, hand each of those rows to the fold
that still wants most of that label; ties go to the fold that still wants most
rows, then to a seeded random fold. A fold's wants are its share of the counts,
less what it already has. Rows with no label form one more "label" of their own,
handled last, so they are spread evenly over the folds (counts differ by at most
one), the smaller folds getting the odd ones; they are not used to pad the
smallest folds as in Sechidis et al.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import numpy as np

__all__ = ["iterative_stratification", "kfold_splits"]


def _check(labels_NxC) -> np.ndarray:
    Y = np.asarray(labels_NxC)
    if Y.ndim != 2:
        raise ValueError(f"expected a [N, C] label matrix, got shape {Y.shape}")
    if Y.dtype != bool and Y.size and not np.isin(Y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return Y.astype(bool, copy=False)


def _evidence(Y_NxC: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray, int]:
    """CSR incidence of rows and what is stratified: (row_ptr, ids, number of ids).

    Order 1: the labels. Order 2: every pair of a row's labels, a label with itself
    included (``combinations_with_replacement``, as scikit-multilearn does). Rows
    without labels get one extra id, the last one.
    """
    n, c = Y_NxC.shape
    rows, cols = np.nonzero(Y_NxC)  # row-major, so each row's labels are contiguous
    per_row = np.bincount(rows, minlength=n)
    if order == 1:
        codes, counts = cols.astype(np.int64), per_row
    else:
        starts = np.concatenate([[0], np.cumsum(per_row)])
        chunks = []
        for r in range(n):
            lab = cols[starts[r] : starts[r + 1]].astype(np.int64)
            i, j = np.triu_indices(lab.size)
            chunks.append(lab[i] * c + lab[j])
        counts = per_row * (per_row + 1) // 2
        codes = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    _, ids = np.unique(codes, return_inverse=True)
    m = int(ids.max()) + 1 if ids.size else 0
    empty = counts == 0
    counts = np.where(empty, 1, counts)
    # Splice one id, m, into each empty row; other rows keep theirs in order.
    row_ptr = np.concatenate([[0], np.cumsum(counts)])
    out = np.full(int(row_ptr[-1]), m, dtype=np.int64)
    mask = np.ones(out.size, bool)
    mask[row_ptr[:-1][empty]] = False
    out[mask] = ids.reshape(-1)
    return row_ptr, out, m + int(empty.any())


def iterative_stratification(
    labels_NxC,
    n_folds: int,
    *,
    seed: int | np.random.Generator,
    order: int = 1,
) -> np.ndarray:
    """Assigns each row to one of ``n_folds`` folds, balancing every label across folds.

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]``.
        n_folds: number of folds ``K``, ``2 <= K <= N``; each gets about ``N / K`` rows.
        seed: an int seed or a ``np.random.Generator``; the same seed gives the
            same folds.
        order: 1 stratifies labels (Sechidis et al.); 2 stratifies label pairs,
            each label with itself included (Szymanski & Kajdanowicz), which also
            balances co-occurrences.

    Returns:
        int64 ``[N]``: the fold of each row, in ``0..K-1``.

    References:
        Sechidis, Tsoumakas & Vlahavas, ECML PKDD 2011; Szymanski & Kajdanowicz,
        LIDTA 2017.

    Example:
        >>> Y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1], [0, 0]])
        >>> np.bincount(iterative_stratification(Y, 2, seed=0), minlength=2)
        array([3, 3])
    """
    Y = _check(labels_NxC)
    n = Y.shape[0]
    if not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be an integer in 2..{n} (the number of rows), got {n_folds!r}")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    rng = np.random.default_rng(seed)
    row_ptr, ids, m = _evidence(Y, order)
    row_of = np.repeat(np.arange(n), np.diff(row_ptr))
    by_id = np.argsort(ids, kind="stable")
    rows_by_id, id_ptr = row_of[by_id], np.searchsorted(ids[by_id], np.arange(m + 1))

    remaining = np.bincount(ids, minlength=m).astype(np.int64)
    want_KxM = np.tile(remaining / n_folds, (n_folds, 1))
    want_K = np.full(n_folds, n / n_folds)
    fold = np.full(n, -1, dtype=np.int64)
    has_empty = not Y.any(1).all()  # then the last id (m - 1) is "no label"
    num_real = m - 1 if has_empty else m

    def distribute(j):
        rows = rows_by_id[id_ptr[j] : id_ptr[j + 1]]
        for r in rng.permutation(rows[fold[rows] < 0]):
            w = want_KxM[:, j]
            best = np.flatnonzero(w == w.max())
            if best.size > 1:
                best = best[want_K[best] == want_K[best].max()]
            f = best[0] if best.size == 1 else best[rng.integers(best.size)]
            fold[r] = f
            e = ids[row_ptr[r] : row_ptr[r + 1]]
            want_KxM[f, e] -= 1
            want_K[f] -= 1
            remaining[e] -= 1
            for k in e:
                if k != j and remaining[k] > 0:
                    heapq.heappush(heap, (int(remaining[k]), int(rank[k]), int(k)))

    # Fewest remaining rows first; a seeded random rank breaks ties. Counts only fall,
    # so every decrement pushes a fresh entry and stale ones are skipped when popped.
    rank = rng.permutation(m)
    heap = [(int(remaining[j]), int(rank[j]), j) for j in range(num_real)]
    heapq.heapify(heap)
    while heap:
        count, _, j = heapq.heappop(heap)
        if count == remaining[j] and count > 0:
            distribute(j)
    if has_empty:
        distribute(m - 1)
    return fold


def kfold_splits(
    labels_NxC,
    n_folds: int,
    *,
    seed: int | np.random.Generator,
    order: int = 1,
    valid_from_heldout: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Stratified K-fold splits: fold k is held out in the k-th split.

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]``.
        n_folds: number of folds ``K``.
        seed: an int seed or a ``np.random.Generator``.
        order: 1 or 2, as in :func:`iterative_stratification`.
        valid_from_heldout: halve each held-out fold, again by iterative
            stratification, into ``valid`` and ``test`` (the ADABATCH protocol:
            five folds, each held-out fold split 50/50).

    Yields:
        For each k, a dict of sorted int64 row indices: ``{"train", "test"}``, or
        ``{"train", "valid", "test"}``. The test sets (with the valid halves)
        partition the rows.
    """
    Y = _check(labels_NxC)
    rng = np.random.default_rng(seed)
    fold = iterative_stratification(Y, n_folds, seed=rng, order=order)
    half_seeds = rng.integers(0, 2**63 - 1, size=n_folds)
    for k in range(n_folds):
        held = np.flatnonzero(fold == k)
        out = {"train": np.flatnonzero(fold != k)}
        if not valid_from_heldout:
            out["test"] = held
        else:
            if held.size < 2:
                raise ValueError(f"fold {k} has {held.size} row(s): too few to halve into valid and test")
            half = iterative_stratification(Y[held], 2, seed=int(half_seeds[k]), order=order)
            out["valid"], out["test"] = held[half == 0], held[half == 1]
        yield out
