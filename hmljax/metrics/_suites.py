"""Metric suites: how a method's predictions are scored, as one value the engine calls."""

from __future__ import annotations

import numpy as np

from hmljax.metrics._metrics import evaluate_predictions

__all__ = ["hierarchical_suite", "flat_suite", "check_probabilities"]


def check_probabilities(probs: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Refuses predictions that cannot be scored: NaN or infinite, outside [0, 1], or of the wrong shape."""
    probs = np.asarray(probs)
    if labels is not None and probs.shape != np.shape(labels):
        raise ValueError(f"predictions {probs.shape} and labels {np.shape(labels)} differ in shape")
    if not np.all(np.isfinite(probs)):
        bad = np.argwhere(~np.isfinite(probs))[0]
        raise ValueError(f"predictions hold {int((~np.isfinite(probs)).sum())} non-finite values (first at row "
                         f"{bad[0]}, column {bad[-1]}): refusing to score them (a NaN or inf in the input "
                         "features or diverged parameters)")
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(f"predictions must be probabilities in [0, 1], got [{probs.min()}, {probs.max()}]")
    return probs


def hierarchical_suite(hierarchy, *, threshold: float = 0.5, inclusive: bool = False, groups=None):
    """The HMC papers' metrics (:func:`evaluate_predictions`): micro AUPRC (the headline), node-wise
    P/R/F1, micro P/R/F1, binary AP and recall per depth, over the evaluated nodes; with ``groups``
    ``[C]`` (head 0 / middle 1 / tail 2) also node-wise F1, recall and precision per group."""
    from hmljax.engine import MetricSuite

    def evaluate(labels, probs):
        probs = check_probabilities(probs, labels)
        return evaluate_predictions(np.asarray(labels), probs, evaluated=hierarchy.evaluated,
                                    depth=hierarchy.depth_min, threshold=threshold, inclusive=inclusive,
                                    groups=groups)

    def table(m):
        rows = [("AUPRC (micro)", m["auprc"])]
        rows += [(k, m[k]) for k in ("node_f1", "node_precision", "node_recall", "node_f1_with_positives",
                                     "micro_f1", "binary_ap") if k in m]
        rows += [(f"recall @ depth {d}", r) for d, r in sorted(m.get("recall_per_depth", {}).items(),
                                                                key=lambda kv: int(kv[0]))]
        return rows

    return MetricSuite("hierarchical", evaluate, "auprc", table)


def flat_suite(*, threshold: float = 0.5, inclusive: bool = False, auc_convention: str = "adaptive_code",
               train_counts=None, groups=None):
    """The flat multi-label metrics (:func:`hmljax.metrics.evaluate_flat`): macro-AUC (the headline, as the
    adaptive-batch paper selects models by it), macro/micro-F1, ranking, hamming, one-error, coverage, mAP,
    and mAP per head/middle/tail group when ``train_counts`` (or explicit ``groups`` [Q]) is given."""
    from hmljax.engine import MetricSuite
    from hmljax.metrics._flat import evaluate_flat

    def evaluate(labels, probs):
        probs = check_probabilities(probs, labels)
        return evaluate_flat(np.asarray(labels), probs, threshold=threshold, inclusive=inclusive,
                             auc_convention=auc_convention, train_counts=train_counts, groups=groups)

    def table(m):
        return [(k, v) for k, v in m.items() if isinstance(v, float)]

    return MetricSuite("flat", evaluate, "macro_auc", table)
