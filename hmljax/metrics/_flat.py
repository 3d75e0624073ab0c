"""Flat multi-label metrics (numpy, host side): F1, macro-AUC, ranking metrics, mAP.

Shape legend here: ``N`` instances (rows), ``Q`` labels (columns), as in the
multi-label literature's n and q. Every function takes ``labels`` (0/1, bool or
integer ``[N, Q]``) and ``scores`` (probabilities in [0, 1], ``[N, Q]``), and
refuses anything else with a ``ValueError``.

Ranking metrics follow scikit-learn (which matches MULAN's definitions up to the
offset of ``coverage``); macro-AUC offers the adaptive-batch code's convention
(ties count as correct, sum divided by all Q labels) and sklearn's.

References:
    Zhang & Zhou, "A review on multi-label learning algorithms", TKDE 2014 (definitions).
    Zhou et al., "Multi-label adaptive batch selection by highlighting hard and
    imbalanced samples" (official code: CquptZA/MLAdaBatch) for ``macro_auc``'s
    ``"adaptive_code"`` convention.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hmljax.metrics._metrics import as_binary

__all__ = [
    "macro_f1",
    "micro_f1",
    "macro_auc",
    "ranking_loss",
    "hamming_loss",
    "one_error",
    "coverage",
    "mean_average_precision",
    "map_per_group",
    "evaluate_flat",
]

_AUC_CONVENTIONS = ("adaptive_code", "sklearn")


# ----------------------------------------------------------------------------- validation


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validated (bool labels_NxQ, float scores_NxQ); ValueError on anything else."""
    labels_NxQ = np.asarray(labels)
    scores_NxQ = np.asarray(scores)
    if labels_NxQ.ndim != 2 or scores_NxQ.ndim != 2:
        raise ValueError(f"labels and scores must be 2-D [N, Q]; got shapes {labels_NxQ.shape} and {scores_NxQ.shape}")
    if labels_NxQ.shape != scores_NxQ.shape:
        raise ValueError(f"labels and scores differ in shape: {labels_NxQ.shape} vs {scores_NxQ.shape}")
    if labels_NxQ.size == 0:
        raise ValueError(f"labels and scores are empty: shape {labels_NxQ.shape}")
    labels_NxQ = as_binary(labels_NxQ, name="labels", other=scores_NxQ)
    if scores_NxQ.dtype == bool or np.issubdtype(scores_NxQ.dtype, np.integer):
        scores_NxQ = scores_NxQ.astype(np.float64)
    elif not np.issubdtype(scores_NxQ.dtype, np.floating):
        raise ValueError(f"scores must be real probabilities, got dtype {scores_NxQ.dtype}")
    finite = np.isfinite(scores_NxQ)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise ValueError(f"scores must be finite; scores[{r}, {c}] = {scores_NxQ[r, c].item()}")
    out = (scores_NxQ < 0) | (scores_NxQ > 1)
    if out.any():
        r, c = np.argwhere(out)[0]
        value = scores_NxQ[r, c].item()
        raise ValueError(f"scores must be probabilities in [0, 1] (sigmoid your logits); scores[{r}, {c}] = {value}")
    return labels_NxQ, scores_NxQ


def _check_threshold(threshold: float) -> None:
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")


def _check_zero_division(zero_division: float) -> None:
    if zero_division not in (0.0, 1.0):
        raise ValueError(f"zero_division must be 0.0 or 1.0, got {zero_division!r}")


def _predict(scores_NxQ: np.ndarray, threshold: float, inclusive: bool) -> np.ndarray:
    return scores_NxQ >= threshold if inclusive else scores_NxQ > threshold


# ----------------------------------------------------------------------------- rank counts


class _RankCounts(NamedTuple):
    """Per-row sums over each row's positives; a row here is an instance or (transposed) a label."""

    n_pos: np.ndarray  # [R] positives in the row
    neg_lt: np.ndarray  # [R] sum over positives of #negatives scoring strictly lower
    neg_le: np.ndarray  # [R] ... scoring lower or equal
    neg_ge: np.ndarray  # [R] ... scoring higher or equal
    ap: np.ndarray  # [R] average precision of the row (0 where it has no positives)
    cover: np.ndarray  # [R] #entries scoring >= the row's lowest positive (0 where none)


_GATHER_MAX_LEN = 128  # rows up to this long: compare directly; longer rows: sort and bisect
_GATHER_CHUNK = 1 << 22  # elements per comparison block, bounds the memory used


def _count_at_or_below(scores_RxL, r, values, bounds):
    """For each positive (row r, score v): #entries of row r scoring < v and <= v."""
    length = scores_RxL.shape[1]
    all_lt = np.empty(r.size, np.int64)
    all_le = np.empty(r.size, np.int64)
    if length <= _GATHER_MAX_LEN:
        # Short rows (few labels, many instances): one vectorised comparison per positive.
        step = max(1, _GATHER_CHUNK // length)
        for lo in range(0, r.size, step):
            rows_PxL = scores_RxL[r[lo : lo + step]]
            v_Px1 = values[lo : lo + step, None]
            all_lt[lo : lo + step] = np.count_nonzero(rows_PxL < v_Px1, axis=1)
            all_le[lo : lo + step] = np.count_nonzero(rows_PxL <= v_Px1, axis=1)
        return all_lt, all_le
    # Long rows: bisect a sorted copy, one row at a time; ~3x faster than one argsort of the
    # whole matrix with vectorised tie groups, as the loop only visits rows with positives.
    sorted_RxL = np.sort(scores_RxL, axis=1)
    for i in np.flatnonzero(np.diff(bounds)):
        lo, hi = bounds[i], bounds[i + 1]
        all_lt[lo:hi] = sorted_RxL[i].searchsorted(values[lo:hi], side="left")
        all_le[lo:hi] = sorted_RxL[i].searchsorted(values[lo:hi], side="right")
    return all_lt, all_le


def _rank_counts(labels_RxL: np.ndarray, scores_RxL: np.ndarray) -> _RankCounts:
    """Tie-aware rank counts, computed only at the (sparse) positives."""
    num_rows, length = scores_RxL.shape
    r, c = np.nonzero(labels_RxL)
    values = scores_RxL[r, c]
    order = np.lexsort((values, r))  # by row, then ascending score
    r, values = r[order], values[order]
    n_pos = np.bincount(r, minlength=num_rows)
    bounds = np.r_[0, np.cumsum(n_pos)]  # row i's positives are [bounds[i], bounds[i + 1])
    first = bounds[r]

    # Among the row's positives: how many score < and <= each one (tie groups of the sorted list).
    idx = np.arange(r.size)
    new = np.ones(r.size, bool)
    new[1:] = (r[1:] != r[:-1]) | (values[1:] != values[:-1])
    last = np.ones(r.size, bool)
    last[:-1] = new[1:]
    pos_lt = np.maximum.accumulate(np.where(new, idx, 0)) - first
    pos_le = np.minimum.accumulate(np.where(last, idx, r.size - 1)[::-1])[::-1] + 1 - first

    all_lt, all_le = _count_at_or_below(scores_RxL, r, values, bounds)

    all_ge = length - all_lt
    pos_ge = n_pos[r] - pos_lt

    def per_row(per_positive):
        return np.bincount(r, weights=per_positive, minlength=num_rows)

    with np.errstate(divide="ignore", invalid="ignore"):
        # AP = mean over positives of precision at their score: #positives >= s / #entries >= s.
        ap = np.where(n_pos > 0, per_row(pos_ge / all_ge) / n_pos, 0.0)
    cover = np.zeros(num_rows)
    cover[n_pos > 0] = all_ge[bounds[:-1][n_pos > 0]]  # the row's first positive is its lowest
    return _RankCounts(
        n_pos=n_pos,
        neg_lt=per_row(all_lt - pos_lt),
        neg_le=per_row(all_le - pos_le),
        neg_ge=per_row(all_ge - pos_ge),
        ap=ap,
        cover=cover,
    )


def _label_counts(labels_NxQ, scores_NxQ) -> _RankCounts:
    return _rank_counts(np.ascontiguousarray(labels_NxQ.T), np.ascontiguousarray(scores_NxQ.T))


# ----------------------------------------------------------------------------- reductions


def _macro_auc_from(counts: _RankCounts, num_rows: int, convention: str) -> float:
    if convention not in _AUC_CONVENTIONS:
        raise ValueError(f"convention must be one of {_AUC_CONVENTIONS}, got {convention!r}")
    n_pos = counts.n_pos
    both = (n_pos > 0) & (n_pos < num_rows)
    pairs = (n_pos * (num_rows - n_pos))[both].astype(np.float64)
    if convention == "adaptive_code":
        # Ties count as correct; labels lacking a class add 0 but still count in the mean.
        return float(np.sum(counts.neg_le[both] / pairs) / n_pos.size)
    if not both.any():
        return float("nan")
    # Mann-Whitney U with ties counting 1/2 = sklearn's roc_auc_score.
    return float(np.mean((counts.neg_lt[both] + counts.neg_le[both]) / (2.0 * pairs)))


def _map_from(counts: _RankCounts, where: np.ndarray | None = None) -> float:
    keep = counts.n_pos > 0
    if where is not None:
        keep = keep & where
    return float(counts.ap[keep].mean()) if keep.any() else float("nan")


def _ranking_loss_from(counts: _RankCounts, num_labels: int) -> float:
    n_pos = counts.n_pos
    defined = (n_pos > 0) & (n_pos < num_labels)
    per_row = np.zeros(n_pos.size)
    per_row[defined] = counts.neg_ge[defined] / (n_pos[defined] * (num_labels - n_pos[defined]))
    return float(per_row.mean())


def _f1(labels_NxQ, preds_NxQ):
    """Per-label (tp, fp, fn) as float64 [Q] arrays."""
    tp = (labels_NxQ & preds_NxQ).sum(0).astype(np.float64)
    fp = preds_NxQ.sum(0) - tp
    fn = labels_NxQ.sum(0) - tp
    return tp, fp, fn


def _macro_f1_from(tp, fp, fn, zero_division):
    denom = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        f1_Q = np.where(denom > 0, 2 * tp / denom, zero_division)
    return float(f1_Q.mean())


def _micro_f1_from(tp, fp, fn, zero_division):
    denom = 2 * tp.sum() + fp.sum() + fn.sum()
    return float(2 * tp.sum() / denom) if denom > 0 else float(zero_division)


def _group_masks(train_counts, num_labels, thresholds, at_least):
    counts_Q = np.asarray(train_counts)
    if counts_Q.shape != (num_labels,):
        raise ValueError(f"train_counts must have shape ({num_labels},), got {counts_Q.shape}")
    if not np.issubdtype(counts_Q.dtype, np.number) or not np.all(np.isfinite(counts_Q)) or np.any(counts_Q < 0):
        raise ValueError("train_counts must be finite non-negative numbers")
    head_t, tail_t = thresholds
    if not head_t > tail_t:
        raise ValueError(f"thresholds must be (head, tail) with head > tail, got {thresholds!r}")
    if at_least:
        head = counts_Q >= head_t
        tail = counts_Q < tail_t
    else:
        head = counts_Q > head_t
        tail = counts_Q <= tail_t
    return {"head": head, "middle": ~head & ~tail, "tail": tail}


# ----------------------------------------------------------------------------- public API


def macro_f1(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float = 0.5,
    inclusive: bool = False,
    zero_division: float = 0.0,
) -> float:
    """Macro-averaged F1: the mean over all Q labels of per-label F1 at a threshold.

    Per label, F1 = 2 TP / (2 TP + FP + FN), equal to sklearn's
    ``f1_score(labels, preds, average="macro", zero_division=zero_division)``.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1] (0/1 predictions work too).
        threshold: a label is predicted when its score is ``> threshold``.
        inclusive: predict with ``>=`` instead of ``>``.
        zero_division: F1 of a label with no positives and no predicted positives
            (TP + FP + FN = 0). Default 0.0, which makes such labels pull the mean
            down, as in the adaptive-batch code; 1.0 counts them as perfect.

    Returns:
        Macro F1 in [0, 1] over all Q labels, higher is better.
    """
    _check_threshold(threshold)
    _check_zero_division(zero_division)
    labels_NxQ, scores_NxQ = _check(labels, scores)
    counts = _f1(labels_NxQ, _predict(scores_NxQ, threshold, inclusive))
    return _macro_f1_from(*counts, zero_division)


def micro_f1(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float = 0.5,
    inclusive: bool = False,
    zero_division: float = 0.0,
) -> float:
    """Micro-averaged F1 over all (instance, label) pairs at a threshold.

    Equal to sklearn's ``f1_score(labels, preds, average="micro")``.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1] (0/1 predictions work too).
        threshold: a label is predicted when its score is ``> threshold``.
        inclusive: predict with ``>=`` instead of ``>``.
        zero_division: the value returned when there are no positives and no
            predicted positives at all.

    Returns:
        Micro F1 in [0, 1], higher is better.
    """
    _check_threshold(threshold)
    _check_zero_division(zero_division)
    labels_NxQ, scores_NxQ = _check(labels, scores)
    counts = _f1(labels_NxQ, _predict(scores_NxQ, threshold, inclusive))
    return _micro_f1_from(*counts, zero_division)


def macro_auc(labels: np.ndarray, scores: np.ndarray, *, convention: str = "adaptive_code") -> float:
    """Macro-averaged ROC AUC over labels, under one of two tie/absent-label conventions.

    Per label j with P_j positives and N - P_j negatives, the AUC is the fraction
    of (positive, negative) pairs the scores order correctly, computed from
    ranks in O(N log N) per label.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1].
        convention: ``"adaptive_code"`` (default) reproduces the adaptive-batch
            released code: a pair counts as correct when
            ``score_pos >= score_neg`` (**ties count as correct**), and the sum
            over labels having both classes is divided by **all Q labels**, so a
            label without both classes contributes 0. ``"sklearn"``: ties count
            1/2 (sklearn's ``roc_auc_score``), averaged over the labels having
            both classes only.

    Returns:
        Macro-AUC, higher is better. ``"adaptive_code"`` returns 0.0 and
        ``"sklearn"`` NaN when no label has both classes.
    """
    labels_NxQ, scores_NxQ = _check(labels, scores)
    if convention not in _AUC_CONVENTIONS:
        raise ValueError(f"convention must be one of {_AUC_CONVENTIONS}, got {convention!r}")
    return _macro_auc_from(_label_counts(labels_NxQ, scores_NxQ), labels_NxQ.shape[0], convention)


def ranking_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Ranking loss: the fraction of (relevant, irrelevant) label pairs ordered wrongly, per instance.

    sklearn's ``label_ranking_loss`` (= MULAN's and the adaptive-batch code's):
    per instance, the number of pairs with ``score_irrelevant >= score_relevant``
    (ties count as errors) over ``|Y_i| (Q - |Y_i|)``; instances with no
    relevant label or with all labels relevant score 0 and still count in the
    mean over all N instances.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1].

    Returns:
        Ranking loss in [0, 1], lower is better.
    """
    labels_NxQ, scores_NxQ = _check(labels, scores)
    return _ranking_loss_from(_rank_counts(labels_NxQ, scores_NxQ), labels_NxQ.shape[1])


def hamming_loss(labels: np.ndarray, scores: np.ndarray, *, threshold: float = 0.5, inclusive: bool = False) -> float:
    """Hamming loss: the fraction of (instance, label) pairs predicted wrongly.

    sum |Y xor P| / (N Q), with P = ``scores > threshold``; equal to sklearn's
    ``hamming_loss(labels, preds)`` and to MULAN's.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1] (0/1 predictions work too).
        threshold: a label is predicted when its score is ``> threshold``.
        inclusive: predict with ``>=`` instead of ``>``.

    Returns:
        Hamming loss in [0, 1], lower is better.
    """
    _check_threshold(threshold)
    labels_NxQ, scores_NxQ = _check(labels, scores)
    return float(np.mean(labels_NxQ != _predict(scores_NxQ, threshold, inclusive)))


def one_error(labels: np.ndarray, scores: np.ndarray, *, ignore_empty: bool = False) -> float:
    """One-error: the fraction of instances whose top-scored label is irrelevant.

    The top label is ``argmax`` over the row, so among tied top scores the
    lowest label index wins (as in the adaptive-batch code). sklearn has no
    one-error.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1].
        ignore_empty: by default an instance with no relevant label always
            counts as an error (its top label cannot be relevant; the
            adaptive-batch code's convention). True drops such instances from
            both numerator and denominator (NaN if every instance is empty).

    Returns:
        One-error in [0, 1], lower is better.
    """
    labels_NxQ, scores_NxQ = _check(labels, scores)
    top_N = np.argmax(scores_NxQ, axis=1)
    wrong_N = ~labels_NxQ[np.arange(labels_NxQ.shape[0]), top_N]
    if ignore_empty:
        keep_N = labels_NxQ.any(axis=1)
        return float(wrong_N[keep_N].mean()) if keep_N.any() else float("nan")
    return float(wrong_N.mean())


def coverage(labels: np.ndarray, scores: np.ndarray) -> float:
    """Coverage: how far down each instance's ranking one must go to reach all its relevant labels.

    sklearn's ``coverage_error``: per instance, the number of labels scoring
    ``>=`` the lowest-scored relevant label (ties resolved pessimistically);
    instances with no relevant label score 0 and still count in the mean over
    all N. MULAN and Zhang & Zhou (2014) report this value minus 1.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1].

    Returns:
        Mean coverage in [0, Q] (sklearn's 1-based count), lower is better.
    """
    labels_NxQ, scores_NxQ = _check(labels, scores)
    return float(_rank_counts(labels_NxQ, scores_NxQ).cover.mean())


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """mAP: the mean over labels with at least one positive of per-label average precision.

    Per-label AP is the step-wise AP of ``average_precision`` (equal to sklearn's
    ``average_precision_score`` on that column; tied scores form one threshold).

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1].

    Returns:
        mAP in [0, 1], higher is better; NaN when no label has a positive.
    """
    labels_NxQ, scores_NxQ = _check(labels, scores)
    return _map_from(_label_counts(labels_NxQ, scores_NxQ))


def map_per_group(
    labels: np.ndarray,
    scores: np.ndarray,
    train_counts: np.ndarray,
    *,
    thresholds: tuple[float, float] = (100, 20),
    at_least: bool = False,
) -> dict[str, float]:
    """mAP of head, middle and tail labels, grouped by their training-set positive counts.

    With ``thresholds=(h, t)`` (default (100, 20)): head = count > h,
    middle = t < count <= h, tail = count <= t. ``at_least=True`` switches to
    head = count >= h, middle = t <= count < h, tail = count < t, the HMT-Net
    paper's formal definition and the DB long-tail ``class_split`` files; the two
    differ only for labels with a count exactly h or t.

    Args:
        labels: 0/1 ``[N, Q]`` test ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1].
        train_counts: ``[Q]`` number of training positives of each label.
        thresholds: ``(head, tail)`` boundaries, head > tail.
        at_least: use the ``>=`` / ``<`` boundaries described above.

    Returns:
        ``{"head", "middle", "tail"}`` -> mAP over the group's labels having at
        least one test positive (NaN for an empty group), plus
        ``"num_head"``, ``"num_middle"``, ``"num_tail"``: the group sizes.
    """
    labels_NxQ, scores_NxQ = _check(labels, scores)
    masks = _group_masks(train_counts, labels_NxQ.shape[1], thresholds, at_least)
    counts = _label_counts(labels_NxQ, scores_NxQ)
    out: dict[str, float] = {name: _map_from(counts, mask) for name, mask in masks.items()}
    out.update({f"num_{name}": int(mask.sum()) for name, mask in masks.items()})
    return out


def evaluate_flat(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float = 0.5,
    inclusive: bool = False,
    auc_convention: str = "adaptive_code",
    train_counts: np.ndarray | None = None,
    zero_division: float = 0.0,
    group_thresholds: tuple[float, float] = (100, 20),
    group_at_least: bool = False,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Every flat multi-label metric at once, with one ranking pass per axis (labels, instances).

    Validates the inputs once: raises ``ValueError`` for NaN/inf scores, scores
    outside [0, 1], labels other than 0/1, and shape mismatches.

    Args:
        labels: 0/1 ``[N, Q]`` ground truth.
        scores: ``[N, Q]`` probabilities in [0, 1].
        threshold: predictions are ``scores > threshold`` (the adaptive-batch
            code rounds at 0.5, i.e. ``>``).
        inclusive: predict with ``>=`` instead.
        auc_convention: see ``macro_auc``.
        train_counts: ``[Q]`` training positives per label; adds
            ``map_head``, ``map_middle``, ``map_tail`` (see ``map_per_group``).
        zero_division: see ``macro_f1``.
        group_thresholds: ``thresholds`` of ``map_per_group``.
        group_at_least: ``at_least`` of ``map_per_group``.
        groups: int ``[Q]``, each label's group (0 head, 1 middle, 2 tail, -1 none; e.g. from
            :func:`hmljax.data.class_groups`): the group mAPs over these groups instead of
            ``train_counts``' thresholds.

    Returns:
        ``macro_f1``, ``micro_f1``, ``macro_auc``, ``ranking_loss``,
        ``hamming_loss``, ``one_error``, ``coverage``, ``map`` as floats (each
        as its own function documents), plus the group mAPs when
        ``train_counts`` is given.
    """
    _check_threshold(threshold)
    _check_zero_division(zero_division)
    if auc_convention not in _AUC_CONVENTIONS:
        raise ValueError(f"auc_convention must be one of {_AUC_CONVENTIONS}, got {auc_convention!r}")
    labels_NxQ, scores_NxQ = _check(labels, scores)
    num_rows, num_labels = labels_NxQ.shape
    masks = None
    if groups is not None:
        g_Q = np.asarray(groups)
        if g_Q.shape != (num_labels,):
            raise ValueError(f"groups must have shape ({num_labels},), got {g_Q.shape}")
        masks = {"head": g_Q == 0, "middle": g_Q == 1, "tail": g_Q == 2}
    elif train_counts is not None:
        masks = _group_masks(train_counts, num_labels, group_thresholds, group_at_least)

    preds_NxQ = _predict(scores_NxQ, threshold, inclusive)
    f1_counts = _f1(labels_NxQ, preds_NxQ)
    by_label = _label_counts(labels_NxQ, scores_NxQ)
    by_row = _rank_counts(labels_NxQ, scores_NxQ)
    top_N = np.argmax(scores_NxQ, axis=1)
    out = {
        "macro_f1": _macro_f1_from(*f1_counts, zero_division),
        "micro_f1": _micro_f1_from(*f1_counts, zero_division),
        "macro_auc": _macro_auc_from(by_label, num_rows, auc_convention),
        "ranking_loss": _ranking_loss_from(by_row, num_labels),
        "hamming_loss": float(np.mean(labels_NxQ != preds_NxQ)),
        "one_error": float(np.mean(~labels_NxQ[np.arange(num_rows), top_N])),
        "coverage": float(by_row.cover.mean()),
        "map": _map_from(by_label),
    }
    if masks is not None:
        out.update({f"map_{name}": _map_from(by_label, mask) for name, mask in masks.items()})
    return out
