"""Long-tailed subsets of a multi-label label matrix, and head/middle/tail class groups (numpy, seeded).

The construction of VOC-LT and COCO-LT (Wu et al., "Distribution-Balanced Loss for Multi-Label
Classification in Long-Tailed Datasets", ECCV 2020; their ``tools/create_longtail_dataset.py``;
REFERENCE.md section 4.3), written for hmljax:

1. a reference profile: ``C`` per-class targets read off a Pareto(alpha) density
   (:func:`pareto_profile`), the largest equal to ``max_count``;
2. a class order: descending column sums of the conditional co-occurrence matrix
   ``P(col | row)`` (:func:`cooccurrence_order`), so the classes that come along with many
   others (VOC's person) get the largest targets;
3. one greedy pass over the classes in that order (:func:`longtail_subset`): the ``i``-th class
   gets target ``i``; rows holding it are added at random while its count is below the target,
   or removed at random while above. Every label of an added or removed row is counted.

The pass visits each class once. A later class's additions and removals also move the counts
of the classes already visited (through co-occurring labels), so the final counts follow the
profile only roughly, as in the published sets (VOC-LT: targets 800 ... 1, counts 775 ... 4).

Head / middle / tail: ``n >= 100`` / ``20 <= n < 100`` / ``n < 20`` training rows
(DB's ``class_split.pkl``; HMT-Net, REFERENCE.md section 4.1), see :func:`class_groups`.
"""

from __future__ import annotations

import operator

import numpy as np

__all__ = ["pareto_profile", "cooccurrence_order", "longtail_subset", "class_groups", "group_summary"]

GROUP_NAMES = ("head", "middle", "tail")
GROUP_MODES = ("thresholds", "quantile")


def _count(name: str, value) -> int:
    """A non-negative integer argument, or a ValueError naming it."""
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def _labels(labels_NxC) -> np.ndarray:
    """The label matrix as bool ``[N, C]``, or a ValueError (not 2-D, not 0/1, no classes)."""
    Y = np.asarray(labels_NxC)
    if Y.ndim != 2:
        raise ValueError(f"labels_NxC must be a 2-D [N, C] matrix, got shape {Y.shape}")
    if Y.shape[1] == 0:
        raise ValueError("labels_NxC has no classes (C = 0)")
    if Y.dtype != bool:
        if not (np.issubdtype(Y.dtype, np.number)) or (Y.size and not np.isin(Y, (0, 1)).all()):
            raise ValueError("labels_NxC must hold only 0/1 (or bool) values")
    return Y.astype(bool, copy=False)


def _class_counts(class_counts_C) -> np.ndarray:
    n_C = np.asarray(class_counts_C)
    if n_C.ndim != 1:
        raise ValueError(f"class_counts_C must be 1-D [C], got shape {n_C.shape}")
    if not (np.issubdtype(n_C.dtype, np.integer) or np.issubdtype(n_C.dtype, np.floating)):
        raise ValueError(f"class_counts_C must be numeric, got dtype {n_C.dtype}")
    if n_C.size and not np.isfinite(n_C).all():
        raise ValueError("class_counts_C must be finite")
    if n_C.size and (n_C < 0).any():
        raise ValueError(f"class_counts_C must be >= 0, got a minimum of {n_C.min()}")
    return n_C


def _pareto_pdf(x, alpha: float):
    """Pareto(alpha) density with scale 1: ``alpha / x**(alpha + 1)`` for ``x >= 1`` (0 below)."""
    x = np.asarray(x, np.float64)
    return np.where(x >= 1.0, alpha * np.power(np.maximum(x, 1.0), -(alpha + 1.0)), 0.0)


def _pareto_ppf(q, alpha: float):
    """Pareto(alpha) quantile with scale 1: ``(1 - q) ** (-1 / alpha)``, ``q`` in ``[0, 1)``."""
    return np.power(1.0 - np.asarray(q, np.float64), -1.0 / alpha)


def pareto_profile(num_classes: int, *, max_count: int, min_count: int, alpha: float = 6.0) -> np.ndarray:
    """Per-class target counts of a long-tailed subset, read off a Pareto density (DB's reference profile).

    ``x = linspace(ppf(0), ppf(0.99), C)`` of a Pareto(alpha) with scale 1 (so ``x`` runs from 1 to
    ``100 ** (1 / alpha)``) and ``target_i = floor(pdf(x_i) * (max_count - min_count) / alpha + min_count)``.
    Since ``pdf(1) = alpha``, the first target is ``max_count``; the targets fall towards ``min_count``
    but stop at ``floor((max_count - min_count) * 100 ** -(1 + 1/alpha) + min_count)`` (VOC: 4, not 1).

    Args:
        num_classes: ``C >= 1``.
        max_count: the first (largest) target.
        min_count: the floor of the profile, ``0 <= min_count <= max_count``.
        alpha: the Pareto shape, ``> 0``; larger means a steeper fall (DB uses 6).

    Returns:
        int64 ``[C]``, non-increasing, ``target[0] == max_count`` and every ``target >= min_count``.
        VOC-LT: ``pareto_profile(20, max_count=800, min_count=1)``; COCO-LT: ``(80, 1200, 1)``.

    Example:
        >>> pareto_profile(5, max_count=800, min_count=1).tolist()
        [800, 136, 33, 11, 4]
    """
    c = _count("num_classes", num_classes)
    if c < 1:
        raise ValueError(f"num_classes must be >= 1, got {c}")
    hi, lo = _count("max_count", max_count), _count("min_count", min_count)
    if hi < lo:
        raise ValueError(f"max_count ({hi}) must be >= min_count ({lo})")
    alpha = float(alpha)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
    x_C = np.linspace(_pareto_ppf(0.0, alpha), _pareto_ppf(0.99, alpha), c)
    target_C = np.floor(_pareto_pdf(x_C, alpha) * (hi - lo) / alpha + lo).astype(np.int64)
    # Float rounding must not move the ends: pdf(1)/alpha is 1 in exact arithmetic.
    target_C[0] = hi
    return np.clip(target_C, lo, hi)


def cooccurrence_order(labels_NxC) -> np.ndarray:
    """Classes ranked by how much they come along with the others (DB's class order for the profile).

    ``P[i, j] = cooc[i, j] / cooc[i, i]``, the fraction of class ``i``'s rows that also hold ``j``
    (``cooc = Y^T Y``); the score of class ``j`` is the column sum ``sum_i P(j | i)``. A class with
    no positive row conditions nothing: its row of ``P`` is all zeros (DB's code divides by 0 and
    gets NaN everywhere). Its own column is zero too, so it scores 0 and ranks last.

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]``.

    Returns:
        int64 ``[C]``: class indices, highest score first; equal scores keep the lower index first
        (a stable sort; DB's unstable ``argsort`` leaves ties to the sort algorithm).

    Example:
        >>> cooccurrence_order(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 1, 0]])).tolist()
        [0, 1, 2]
    """
    Y = _labels(labels_NxC)
    Yf_NxC = Y.astype(np.float64)
    cooc_CxC = Yf_NxC.T @ Yf_NxC
    pos_C = np.diag(cooc_CxC).copy()
    cond_CxC = np.zeros_like(cooc_CxC)
    np.divide(cooc_CxC, pos_C[:, None], out=cond_CxC, where=pos_C[:, None] > 0)
    score_C = cond_CxC.sum(0)
    return np.argsort(-score_C, kind="stable").astype(np.int64)


def longtail_subset(
    labels_NxC,
    *,
    max_count: int,
    min_count: int = 1,
    alpha: float = 6.0,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Rows of a long-tailed subset of a multi-label set: DB's VOC-LT / COCO-LT greedy pass.

    The ``i``-th class of :func:`cooccurrence_order` gets the ``i``-th target of
    :func:`pareto_profile`. For each class in that order, with ``n`` its count in the rows chosen so far:

    - ``n < target``: add ``target - n`` rows drawn at random (without replacement) from the rows
      that hold the class and are not chosen yet; if fewer are left, add them all (DB caps this for
      COCO only; uncapped, its VOC run would fail on such a class);
    - ``n > target``: remove ``n - target`` rows drawn at random from the chosen rows that hold the
      class (only those: a removal must lower this class's count);
    - every label of an added or removed row updates the counts.

    Each class is visited once, in order; later classes move earlier ones' counts, which are not
    revisited, so the final counts follow the profile only roughly, and a class can even end below
    ``min_count`` (DB's published sets have the same property). The draws use
    ``np.random.default_rng(seed)`` over the candidate rows in index order, so the result depends on
    the seed and the row order only. It cannot reproduce DB's files, which came from Python's
    ``random.sample`` over sets.

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]`` of the pool (VOC: VOC2012 trainval).
        max_count: the first target (VOC-LT 800, COCO-LT 1200).
        min_count: the profile's floor (DB: 1).
        alpha: the Pareto shape (DB: 6).
        seed: an int seed or a ``np.random.Generator`` (which is then advanced).

    Returns:
        int64 ``[M]``: the chosen row indices, unique and sorted ascending.

    References:
        Wu, Huang, Luo, Hu & Lin, Distribution-Balanced Loss for Multi-Label Classification in
        Long-Tailed Datasets, ECCV 2020 (section 5.1; ``tools/create_longtail_dataset.py``).
    """
    Y = _labels(labels_NxC)
    target_C = pareto_profile(Y.shape[1], max_count=max_count, min_count=min_count, alpha=alpha)
    order_C = cooccurrence_order(Y)
    rng = np.random.default_rng(seed)
    Yi_NxC = Y.astype(np.int64)
    chosen_N = np.zeros(Y.shape[0], bool)
    count_C = np.zeros(Y.shape[1], np.int64)
    for target, cls in zip(target_C.tolist(), order_C.tolist(), strict=True):
        have = int(count_C[cls])
        if have < target:
            pool = np.flatnonzero(Y[:, cls] & ~chosen_N)
            rows = rng.choice(pool, size=min(target - have, pool.size), replace=False)
            chosen_N[rows] = True
            count_C += Yi_NxC[rows].sum(0)
        elif have > target:
            pool = np.flatnonzero(Y[:, cls] & chosen_N)
            rows = rng.choice(pool, size=have - target, replace=False)
            chosen_N[rows] = False
            count_C -= Yi_NxC[rows].sum(0)
    return np.flatnonzero(chosen_N).astype(np.int64)


def class_groups(class_counts_C, *, head: int = 100, tail: int = 20, mode: str = "thresholds") -> np.ndarray:
    """Head / middle / tail group of each class from its training count.

    Args:
        class_counts_C: rows per class in the training set, ``[C]``, non-negative.
        head: ``mode="thresholds"``: a class with ``n >= head`` is head (DB and HMT-Net: 100).
        tail: ``mode="thresholds"``: a class with ``n < tail`` is tail (DB and HMT-Net: 20);
            ``0 <= tail < head``.
        mode: ``"thresholds"``: 0 head (``n >= head``), 1 middle (``tail <= n < head``), 2 tail
            (``n < tail``); groups may be empty. ``"quantile"``: the classes ranked by count, highest
            first, are cut into three groups of sizes ``ceil``/``floor`` of ``C/3`` (``np.array_split``:
            the larger groups first, e.g. 7/7/6 for 20 classes), for small datasets where the thresholds
            leave a group empty; ``head`` and ``tail`` are ignored. Ties are ranked by class index (the
            lower index towards the head), so classes with equal counts can fall in different groups.

    Returns:
        int8 ``[C]``: 0 head, 1 middle, 2 tail.

    Example:
        >>> class_groups(np.array([775, 100, 99, 20, 19, 4])).tolist()
        [0, 0, 1, 1, 2, 2]
    """
    n_C = _class_counts(class_counts_C)
    if mode not in GROUP_MODES:
        raise ValueError(f"mode must be one of {GROUP_MODES}, got {mode!r}")
    if mode == "quantile":
        rank_C = np.argsort(-n_C, kind="stable")
        out_C = np.empty(n_C.shape, np.int8)
        for g, members in enumerate(np.array_split(rank_C, 3)):
            out_C[members] = g
        return out_C
    for name, value in (("head", head), ("tail", tail)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if tail < 0:
        raise ValueError(f"tail must be >= 0, got {tail}")
    if head <= tail:
        raise ValueError(f"head ({head}) must be > tail ({tail})")
    return np.where(n_C >= head, 0, np.where(n_C >= tail, 1, 2)).astype(np.int8)


def group_summary(class_counts_C, groups_C) -> dict:
    """Per-group statistics of the class counts (e.g. VOC-LT: 6 / 6 / 8 classes, means 332.8 / 46.2 / 9.0).

    Args:
        class_counts_C: rows per class, ``[C]``, non-negative.
        groups_C: 0 head, 1 middle, 2 tail per class, ``[C]`` (as from :func:`class_groups`).

    Returns:
        ``{"head": {...}, "middle": {...}, "tail": {...}}``, each with ``num_classes`` (int) and
        ``mean_count``, ``min_count``, ``max_count`` (floats; ``None`` for an empty group), plus
        ``"classes"``: the class indices in the group (ints, ascending).
    """
    n_C = _class_counts(class_counts_C)
    g_C = np.asarray(groups_C)
    if g_C.shape != n_C.shape:
        raise ValueError(f"groups_C must have the shape of class_counts_C {n_C.shape}, got {g_C.shape}")
    if g_C.size and not np.isin(g_C, (0, 1, 2)).all():
        raise ValueError("groups_C must hold only 0 (head), 1 (middle) or 2 (tail)")
    out = {}
    for g, name in enumerate(GROUP_NAMES):
        members = np.flatnonzero(g_C == g)
        vals = n_C[members].astype(np.float64)
        out[name] = {
            "num_classes": int(members.size),
            "mean_count": float(vals.mean()) if members.size else None,
            "min_count": float(vals.min()) if members.size else None,
            "max_count": float(vals.max()) if members.size else None,
            "classes": members.tolist(),
        }
    return out
