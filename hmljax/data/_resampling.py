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

__all__ = ["Resampled", "lpros", "hros_pd", "hierarchy_paths", "LPROS_ROUNDINGS", "HROS_RULES"]

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


def _most_specific(Y_NxC, hierarchy) -> np.ndarray:
    """bool ``[N, C]``: the positive nodes none of whose children is positive (a row's annotated terms)."""
    Yb = np.asarray(Y_NxC, bool)
    edges = np.asarray(hierarchy.edges, np.int64).reshape(-1, 2)  # (child, parent)
    child_pos_CxN = np.zeros((Yb.shape[1], Yb.shape[0]), bool)
    np.logical_or.at(child_pos_CxN, edges[:, 1], Yb.T[edges[:, 0]])  # sparse: no dense C x C product
    return Yb & ~child_pos_CxN.T


def hierarchy_paths(hierarchy, *, max_paths: int = 1_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every root-to-node path of a hierarchy as a tree (a DAG unrolled): ``(node_P, parent_P, depth_P)``.

    Path ``p`` ends at hierarchy node ``node_P[p]``; ``parent_P[p]`` is the path one edge shorter (-1 for a
    root) and ``depth_P[p]`` its length in edges. Parents come before children. On a tree there is one
    path per node. The GO hierarchies here unroll to 5x their nodes (eisen_GO: 3,574 nodes, 18,262 paths),
    but a DAG can have exponentially many paths: more than ``max_paths`` raises a ValueError.
    """
    children = hierarchy.children
    node, parent, depth = [], [], []
    for r in np.asarray(hierarchy.roots).tolist():
        node.append(r), parent.append(-1), depth.append(0)
    p = 0
    while p < len(node):  # breadth first: a path's extensions are appended after it
        for c in np.asarray(children[node[p]]).tolist():
            node.append(c), parent.append(p), depth.append(depth[p] + 1)
        if len(node) > max_paths:
            raise ValueError(f"the hierarchy has more than max_paths={max_paths} root-to-node paths "
                             f"({hierarchy.num_nodes} nodes); raise max_paths or use lpros / node weights")
        p += 1
    return np.asarray(node, np.int64), np.asarray(parent, np.int64), np.asarray(depth, np.int64)


HROS_RULES = ("code", "paths")


def hros_pd(labels_NxC, hierarchy, *, s: float = 0.1, seed: int, rule: str = "code",
            max_paths: int = 1_000_000) -> Resampled:
    """Hierarchical random oversampling with partial-depth relabelling (Pereira et al. 2021).

    The method is defined on a tree of label paths; on a DAG (GO) its statistics run, as the released
    RARE code's do, on the tree of every root-to-node path (:func:`hierarchy_paths`, at most
    ``max_paths`` of them), where a term reachable along k paths is counted k times.

    1. A row's annotated terms are its most specific positive nodes; a path's ``count``
       sums them over the path's subtree (the root path gets everything). Every path ending at one
       term has the same count (its subtree is the term's unrolled descendants).
    2. Over the non-root paths with a nonzero count: ``IRLbP_p = max count / count_p``,
       ``HMeanIR`` their mean; minority paths have ``IRLbP > HMeanIR``.
    3. ``samples = floor(s · count_root)``, ``meanSize = ceil(count_root / #nonzero
       non-root paths)``, ``maxIncrease = ceil(samples / #minority)``.
    4. Bottom-up by depth, a minority gets ``min(maxIncrease, meanSize - count)`` copies of rows
       annotated with its end term (else rows below it), drawn with replacement, each relabelled
       with only that term and its ancestors; the copies count on every path through the term.

    ``rule`` says what step 4 visits, when the minority test is redone (always with the original
    HMeanIR) and how far up the copies are counted:

    - ``code`` (default): the released code (``utils/imb_sample_utils.py``). Every *term* once, at its
      longest-path depth (deepest leaves first, then the leaves they leave), if its paths are a
      minority; the minority set is recomputed after each depth, so within a depth the test uses the
      largest count as it stood when the depth began. On a DAG the copies count on every path through
      the term, all the way up; on a tree (the code's FUN branch) on the term and its parent only, as
      the code's count update stops one level up. Checked against the released code on the train
      splits of all twelve FUN and GO datasets here: the copies per term agree on every one
      (cellcycle_FUN 492 copies, eisen_FUN 393, eisen_GO 632, cellcycle_GO 1,224).
    - ``paths``: every root-to-node *path* is a node of a tree, oversampled on its own (a term on k
      minority paths gets up to k times the copies), its copies counted all the way up that path, and
      the test uses the largest count as updated by every copy before it. What hmljax did before this
      option existed: on GO the copies made 76-81 % of the rows; cellcycle_FUN's train split 560.
    """
    if rule not in HROS_RULES:
        raise ValueError(f"hros_pd: rule must be one of {HROS_RULES}, got {rule!r}")
    Y = _check_labels(labels_NxC)
    C = hierarchy.num_nodes
    if Y.shape[1] != C:
        raise ValueError(f"hros_pd: labels have {Y.shape[1]} columns, the hierarchy {C} nodes")
    rng = np.random.default_rng(seed)
    R = np.asarray(hierarchy.ancestry, bool)  # R[i, j]: j is i or below i
    most_specific = _most_specific(Y, hierarchy)
    node_P, parent_P, depth_P = hierarchy_paths(hierarchy, max_paths=max_paths)
    counts = most_specific.sum(0).astype(np.int64)[node_P]
    for p in range(len(node_P) - 1, 0, -1):  # children come after their parents: accumulate bottom-up
        if parent_P[p] >= 0:
            counts[parent_P[p]] += counts[p]
    is_root = parent_P < 0
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
    src_rows, new_labels = [], []

    def copy_rows(j: int, n_dup: int) -> None:
        pool = np.flatnonzero(most_specific[:, j])
        if pool.size == 0:
            pool = np.flatnonzero(Y[:, j])
        src_rows.append(rng.choice(pool, size=n_dup, replace=True))
        new_labels.append(np.repeat(R[:, j][None].astype(np.uint8), n_dup, axis=0))  # j and its ancestors

    def add_up(p: int, n: int) -> None:  # the copies count on path p and every path it extends
        while p >= 0:
            counts[p] += n
            p = parent_P[p]

    if rule == "paths":
        max_count = int(counts[live].max())  # counts only grow: kept up to date below
        for d in range(int(depth_P[live].max()), 0, -1):
            at_d = np.flatnonzero(live & (depth_P == d))
            for p in at_d[np.argsort(node_P[at_d], kind="stable")]:
                if max_count / counts[p] <= hmean_ir:
                    continue
                n_dup = min(max_increase, mean_size - int(counts[p]))
                if n_dup <= 0:
                    continue
                copy_rows(int(node_P[p]), n_dup)
                add_up(int(p), n_dup)
                max_count = int(counts[live].max())
    else:
        first_path = np.full(C, -1, np.int64)
        first_path[node_P[::-1]] = np.arange(len(node_P))[::-1]  # any path will do: they share a count
        term_depth = np.zeros(C, np.int64)
        np.maximum.at(term_depth, node_P, depth_P)  # longest-path depth: the released code's leaf order
        tree = len(node_P) == C
        paths_of = np.split(np.argsort(node_P, kind="stable"), np.cumsum(np.bincount(node_P, minlength=C))[:-1])
        for d in range(int(term_depth.max()), 0, -1):
            max_count = int(counts[live].max())  # the minority set as it stood when this depth began
            for j in np.flatnonzero(term_depth == d).tolist():
                c = int(counts[first_path[j]])
                if c == 0 or max_count / c <= hmean_ir:
                    continue
                n_dup = min(max_increase, mean_size - c)
                if n_dup <= 0:
                    continue
                copy_rows(j, n_dup)
                if tree:  # the released code's FUN path: the new counts reach the term and its parent only
                    counts[first_path[j]] += n_dup
                    if parent_P[first_path[j]] >= 0:
                        counts[parent_P[first_path[j]]] += n_dup
                else:
                    for p in paths_of[j].tolist():
                        add_up(p, n_dup)
    if not src_rows:
        return Resampled(np.arange(Y.shape[0]), Y.copy(), 0)
    added = np.concatenate(src_rows)
    indices = np.concatenate([np.arange(Y.shape[0]), added]).astype(np.int64)
    return Resampled(indices, np.concatenate([Y, *new_labels]), int(added.size))
