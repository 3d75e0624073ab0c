"""Host-side evaluation metrics (numpy), as the HML papers define them.

All functions take ``labels`` (0/1 ``[n, C]``), scores or 0/1 predictions of
the same shape, and an optional ``evaluated`` bool ``[C]`` mask (the nodes that
count; C-HMCNN drops the roots).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "average_precision",
    "micro_auprc",
    "node_prf",
    "micro_prf",
    "binary_ap",
    "recall_per_depth",
    "evaluate_predictions",
]


def _select(a, evaluated):
    a = np.asarray(a)
    return a if evaluated is None else a[:, np.asarray(evaluated, bool)]


def as_binary(a, *, name: str, other=None) -> np.ndarray:
    """``a`` as a bool array; ValueError unless it is bool or numeric with only 0s and 1s.

    Casting with ``astype(bool)`` would read any nonzero value as 1, so scores passed where labels
    (or probabilities where 0/1 predictions) belong would be scored without a word: arguments swapped
    against the ``(labels, scores)`` order give an AP of 1.0. ``other``, the array passed beside it,
    only sharpens the message when it is the one that looks binary.
    """
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must be bool or numeric 0/1, got dtype {a.dtype}")
    bad = (a != 0) & (a != 1)  # NaN lands here too
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        hint = ""
        if other is not None:
            o = np.asarray(other)
            if o.dtype == bool or (o.size and np.isin(o, (0, 1)).all()):
                hint = " (arguments swapped? the order is labels first)"
        raise ValueError(f"{name} must be 0 or 1; {name}[{', '.join(map(str, idx))}] = {a[idx].item()}{hint}")
    return a == 1


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise average precision of flat arrays; equal to sklearn's ``average_precision_score``.

    AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds, from the
    highest score down; tied scores form one threshold.
    """
    y = as_binary(labels, name="labels", other=scores).ravel()
    s = np.asarray(scores).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in size: {y.size} vs {s.size}")
    if not np.isfinite(s).all():  # a NaN sorts last and would give a plausible AP for a diverged model
        raise ValueError(f"scores must be finite; {int((~np.isfinite(s)).sum())} are not (first at flat index "
                         f"{int(np.flatnonzero(~np.isfinite(s))[0])}: {s[~np.isfinite(s)][0]})")
    n_pos = int(y.sum())
    if n_pos == 0:
        return 0.0  # sklearn warns and returns 0 here too (recall is undefined)
    # Recall only moves at thresholds equal to a positive's score, so sort the (few)
    # positives, and count how many scores clear each threshold by bisecting a plain
    # sort of all scores: ~4x faster than sklearn's full argsort on GO-sized inputs.
    pos_desc = np.sort(s[y])[::-1]
    last = np.flatnonzero(np.r_[pos_desc[1:] != pos_desc[:-1], True])
    thresholds = pos_desc[last]
    tp_k = last + 1
    n_above = s.size - np.searchsorted(np.sort(s), thresholds, side="left")
    precision = tp_k / n_above
    recall_step = np.diff(np.r_[0, tp_k]) / n_pos
    return float(np.sum(recall_step * precision))


def micro_auprc(labels: np.ndarray, scores: np.ndarray, *, evaluated: np.ndarray | None = None) -> float:
    """The papers' "AP"/AU(PRC): micro-averaged AP over all (sample, evaluated node) pairs.

    Equals ``sklearn.metrics.average_precision_score(y[:, ev], p[:, ev], average='micro')``.
    """
    return average_precision(_select(labels, evaluated), _select(scores, evaluated))


def _counts(labels, preds):
    y = as_binary(labels, name="labels", other=preds)
    p = as_binary(preds, name="preds (0/1 predictions: threshold the probabilities)")
    tp = (y & p).sum(0).astype(np.float64)
    fp = (~y & p).sum(0).astype(np.float64)
    fn = (y & ~p).sum(0).astype(np.float64)
    return tp, fp, fn


def node_prf(
    labels: np.ndarray, preds: np.ndarray, *, evaluated: np.ndarray | None = None, only_with_positives: bool = False
) -> dict[str, float]:
    """Node-wise precision, recall and F1, macro-averaged over nodes (RARE's ``node_f1``).

    Zero conventions: precision 0 if a node is never predicted, recall 0 if it
    has no positives, F1 0 if P + R = 0. By default the average runs over every
    evaluated node, including nodes absent from the test set (RARE's reading);
    ``only_with_positives=True`` restricts it to nodes with at least one positive.
    """
    y, p = _select(labels, evaluated), _select(preds, evaluated)
    tp, fp, fn = _counts(y, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        rec = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    keep = (tp + fn > 0) if only_with_positives else np.ones_like(tp, bool)
    if not keep.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "nodes": 0}
    return {
        "precision": float(prec[keep].mean()),
        "recall": float(rec[keep].mean()),
        "f1": float(f1[keep].mean()),
        "nodes": int(keep.sum()),
    }


def micro_prf(labels: np.ndarray, preds: np.ndarray, *, evaluated: np.ndarray | None = None) -> dict[str, float]:
    """Micro precision, recall and F1 over all (sample, node) pairs (sklearn's ``average='micro'``)."""
    tp, fp, fn = (c.sum() for c in _counts(_select(labels, evaluated), _select(preds, evaluated)))
    prec = tp / (tp + fp) if tp + fp > 0 else 0.0
    rec = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"precision": float(prec), "recall": float(rec), "f1": float(f1)}


def binary_ap(labels: np.ndarray, preds: np.ndarray, *, evaluated: np.ndarray | None = None) -> float:
    """RARE's "Bin. AP": micro AP computed on the 0/1 predictions themselves."""
    preds = as_binary(preds, name="preds (0/1 predictions: threshold the probabilities)")
    return micro_auprc(labels, preds.astype(np.float64), evaluated=evaluated)


def recall_per_depth(
    labels: np.ndarray, preds: np.ndarray, depth: np.ndarray, *, evaluated: np.ndarray | None = None
) -> dict[int, float]:
    """Micro recall of the (sample, node) positives at each node depth.

    Args:
        depth: int ``[C]`` depth of every node (e.g. ``hierarchy.depth_min``).

    Returns:
        depth -> recall, for depths with at least one positive among evaluated nodes.
    """
    y = as_binary(labels, name="labels", other=preds)
    p = as_binary(preds, name="preds (0/1 predictions: threshold the probabilities)")
    ev = np.ones(y.shape[1], bool) if evaluated is None else np.asarray(evaluated, bool)
    out = {}
    for d in np.unique(depth[ev]):
        cols = ev & (depth == d)
        pos = y[:, cols].sum()
        if pos:
            out[int(d)] = float((y[:, cols] & p[:, cols]).sum() / pos)
    return out


def evaluate_predictions(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    evaluated: np.ndarray,
    depth: np.ndarray | None = None,
    threshold: float = 0.5,
    inclusive: bool = False,
    groups: np.ndarray | None = None,
) -> dict:
    """All the papers' metrics from constrained probabilities.

    Predictions are ``probs > threshold`` (the released code), or ``>=`` with
    ``inclusive=True`` (the RARE paper's text). ``groups`` (int ``[C]``: 0 head, 1 middle, 2 tail,
    -1 none) adds ``node_{f1,recall,precision}_{head,middle,tail}``: node-wise scores averaged over the
    group's nodes having a test positive.
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.ndim != 2 or labels.shape != probs.shape:
        raise ValueError(f"labels and probs must be 2-D [n, C] of one shape; got {labels.shape} and {probs.shape}")
    labels = as_binary(labels, name="labels", other=probs)  # once: every metric below then takes bool as is
    if np.shape(evaluated) != (labels.shape[1],):
        raise ValueError(f"evaluated must be a bool [C] mask with C = {labels.shape[1]}; "
                         f"got shape {np.shape(evaluated)}")
    if not np.isfinite(probs).all():
        r, c = np.argwhere(~np.isfinite(probs))[0]
        raise ValueError(f"probs must be finite; probs[{r}, {c}] = {probs[r, c]} (a NaN or inf in the input features "
                         "or diverged parameters)")
    if probs.size and (probs.min() < 0 or probs.max() > 1):  # logits would be thresholded at 0.5 as they are
        r, c = np.argwhere((probs < 0) | (probs > 1))[0]
        raise ValueError(f"probs must be probabilities in [0, 1] (sigmoid your logits); probs[{r}, {c}] = "
                         f"{probs[r, c]}")
    preds = probs >= threshold if inclusive else probs > threshold
    node = node_prf(labels, preds, evaluated=evaluated)
    node_pos = node_prf(labels, preds, evaluated=evaluated, only_with_positives=True)
    micro = micro_prf(labels, preds, evaluated=evaluated)
    out = {
        "auprc": micro_auprc(labels, probs, evaluated=evaluated),
        "binary_ap": binary_ap(labels, preds, evaluated=evaluated),
        "node_precision": node["precision"],
        "node_recall": node["recall"],
        "node_f1": node["f1"],
        "node_f1_with_positives": node_pos["f1"],
        "node_precision_with_positives": node_pos["precision"],
        "node_recall_with_positives": node_pos["recall"],
        "micro_precision": micro["precision"],
        "micro_recall": micro["recall"],
        "micro_f1": micro["f1"],
    }
    if depth is not None:
        out["recall_per_depth"] = recall_per_depth(labels, preds, depth, evaluated=evaluated)
    if groups is not None:
        g_C = np.asarray(groups)
        for g, name in enumerate(("head", "middle", "tail")):
            member = (g_C == g) & np.asarray(evaluated, bool)
            if member.any():
                r = node_prf(labels, preds, evaluated=member, only_with_positives=True)
                out.update({f"node_{k}_{name}": r[k] for k in ("f1", "recall", "precision")})
    return out
