"""Label-imbalance statistics of a flat multi-label matrix (numpy, host side).

The MULAN / mldr definitions (Charte et al. 2015), as the adaptive batch
selection paper uses them (its eqs. 1-2; REFERENCE.md section 5.1), with
``C_j`` the number of rows positive for label ``j``:

- label cardinality: mean number of labels per row; density: cardinality / C;
- ``IRLbl_j = max_k C_k / C_j``: 1 for the most frequent label, larger for rarer ones;
- ``MeanIR``: the mean of ``IRLbl`` over the labels;
- minority labels: ``IRLbl_j > MeanIR``.

A label with no positive row has ``IRLbl = inf``. ``MeanIR`` averages over the
labels that have at least one positive (with them it would be ``inf``; the
ADABATCH code instead adds 1e-6 to the denominator, which makes such labels
dominate the mean). Such labels still count as minority labels (``inf >
MeanIR``). On the full MULAN datasets every label has positives, so the numbers
match the published tables; single splits (a train fold of Corel5k) may not.
"""

from __future__ import annotations

import numpy as np

from hmljax.data._stratify import _check

__all__ = ["label_cardinality", "label_density", "irlbl", "mean_ir", "minority_labels", "imbalance_summary"]


def label_cardinality(labels_NxC) -> float:
    """Mean number of positive labels per row (rows without labels count as 0).

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]``.

    Returns:
        ``sum(Y) / N`` (nan when N = 0).
    """
    Y = _check(labels_NxC)
    return float(Y.sum(1).mean()) if Y.shape[0] else float("nan")


def label_density(labels_NxC) -> float:
    """Label cardinality divided by the number of labels ``C``."""
    Y = _check(labels_NxC)
    return label_cardinality(Y) / Y.shape[1] if Y.shape[1] else float("nan")


def irlbl(labels_NxC) -> np.ndarray:
    """Imbalance ratio per label, ``IRLbl_j = max_k C_k / C_j`` (Charte et al. 2015).

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]``.

    Returns:
        float64 ``[C]``: 1 for the most frequent label, ``>= 1`` for the others,
        ``inf`` for a label with no positive row.

    Example:
        >>> irlbl(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]]))
        array([1. , 1.5, inf])
    """
    counts_C = _check(labels_NxC).sum(0).astype(np.float64)
    out_C = np.full(counts_C.shape, np.inf)
    np.divide(counts_C.max(initial=0.0), counts_C, out=out_C, where=counts_C > 0)
    return out_C


def mean_ir(labels_NxC) -> float:
    """MeanIR: the mean of :func:`irlbl` over the labels with at least one positive (nan if none)."""
    ir_C = irlbl(labels_NxC)
    finite = ir_C[np.isfinite(ir_C)]
    return float(finite.mean()) if finite.size else float("nan")


def minority_labels(labels_NxC) -> np.ndarray:
    """Indices of the minority labels, ``IRLbl_j > MeanIR`` (labels without positives included).

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]``.

    Returns:
        int64 label indices, ascending.

    References:
        Charte et al., "Addressing imbalance in multilabel classification",
        Neurocomputing 2015; adaptive batch selection for multi-label learning, eqs. 1-2.
    """
    ir_C = irlbl(labels_NxC)
    m = mean_ir(labels_NxC)
    if np.isnan(m):
        return np.flatnonzero(np.isinf(ir_C))
    return np.flatnonzero(ir_C > m)


def imbalance_summary(labels_NxC, *, names=None) -> dict:
    """Every statistic above in one JSON-friendly dict.

    Args:
        labels_NxC: 0/1 (or bool) labels ``[N, C]``.
        names: optional ``C`` label names; minority labels are then reported by name.

    Returns:
        ``rows``, ``labels``, ``label_cardinality``, ``label_density``,
        ``rows_without_labels``, ``labels_without_positives``, ``irlbl_min`` and
        ``irlbl_max`` (over labels with positives, so always finite), ``mean_ir``,
        ``num_minority`` and ``minority_labels`` (indices, or names when given).
    """
    Y = _check(labels_NxC)
    if names is not None and len(names) != Y.shape[1]:
        raise ValueError(f"{len(names)} names for {Y.shape[1]} labels")
    ir_C = irlbl(Y)
    finite = ir_C[np.isfinite(ir_C)]
    minority = minority_labels(Y)
    return {
        "rows": int(Y.shape[0]),
        "labels": int(Y.shape[1]),
        "label_cardinality": label_cardinality(Y),
        "label_density": label_density(Y),
        "rows_without_labels": int((~Y.any(1)).sum()),
        "labels_without_positives": int((~Y.any(0)).sum()),
        "irlbl_min": float(finite.min()) if finite.size else float("nan"),
        "irlbl_max": float(finite.max()) if finite.size else float("nan"),
        "mean_ir": mean_ir(Y),
        "num_minority": int(minority.size),
        "minority_labels": [names[j] for j in minority] if names is not None else minority.tolist(),
    }
