import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from hmljax.metrics import (
    average_precision,
    binary_ap,
    evaluate_predictions,
    micro_auprc,
    micro_prf,
    node_prf,
    recall_per_depth,
)


@pytest.mark.parametrize("decimals", [None, 1, 2], ids=["distinct", "heavy-ties", "ties"])
def test_micro_auprc_equals_sklearn(rng, decimals):
    y = (rng.random((200, 30)) < 0.1).astype(np.uint8)
    s = rng.random((200, 30)) + 0.3 * y
    if decimals is not None:
        s = np.round(s, decimals)
    ev = np.ones(30, bool)
    ev[[0, 5]] = False
    ref = average_precision_score(y[:, ev], s[:, ev], average="micro")
    assert micro_auprc(y, s, evaluated=ev) == pytest.approx(ref, abs=1e-12)


def test_average_precision_hand_case():
    # scores 0.9(+) 0.8(-) 0.7(+): P@1 = 1, P@3 = 2/3 -> AP = 0.5*1 + 0.5*2/3
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([0, 0], [0.1, 0.2]) == 0.0


def test_node_prf_zero_conventions():
    y = np.array([[1, 0, 0, 1], [1, 0, 0, 0]])
    p = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    # node0: P=1 R=.5 F=2/3; node1: P=0 (FP only) R=0 F=0; node2: never predicted, no positives -> 0;
    # node3: P=0 (never predicted) R=0 F=0.
    out = node_prf(y, p)
    assert out["precision"] == pytest.approx(0.25) and out["recall"] == pytest.approx(0.125)
    assert out["f1"] == pytest.approx((2 / 3) / 4)
    pos = node_prf(y, p, only_with_positives=True)
    assert pos["nodes"] == 2 and pos["f1"] == pytest.approx((2 / 3) / 2)


def test_node_prf_matches_sklearn_macro_on_nodes_with_positives(rng):
    y = (rng.random((100, 12)) < 0.3).astype(int)
    y[:, 0] = np.maximum(y[:, 0], 1)
    p = (rng.random((100, 12)) < 0.3).astype(int)
    out = node_prf(y, p)
    assert out["f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert out["precision"] == pytest.approx(precision_score(y, p, average="macro", zero_division=0))
    assert out["recall"] == pytest.approx(recall_score(y, p, average="macro", zero_division=0))
    m = micro_prf(y, p)
    assert m["f1"] == pytest.approx(f1_score(y, p, average="micro"))
    assert m["precision"] == pytest.approx(precision_score(y, p, average="micro"))


def test_binary_ap_closed_form(rng):
    # RARE App.: Bin.AP = P_micro * R_micro + (1 - R_micro) * pi, pi = positive rate.
    y = (rng.random((80, 10)) < 0.2).astype(int)
    p = (rng.random((80, 10)) < 0.25).astype(int)
    m = micro_prf(y, p)
    closed = m["precision"] * m["recall"] + (1 - m["recall"]) * y.mean()
    assert binary_ap(y, p) == pytest.approx(closed)
    assert binary_ap(y, p) == pytest.approx(average_precision_score(y, p, average="micro"))


def test_recall_per_depth_and_evaluate():
    y = np.array([[1, 1, 0], [1, 0, 1]])
    p = np.array([[1, 0, 0], [1, 0, 1]])
    depth = np.array([0, 1, 1])
    assert recall_per_depth(y, p, depth) == {0: 1.0, 1: 0.5}
    out = evaluate_predictions(y, p * 0.9, evaluated=np.array([False, True, True]), depth=depth)
    assert out["recall_per_depth"] == {1: 0.5}
    assert out["micro_recall"] == 0.5 and out["micro_precision"] == 1.0
    assert evaluate_predictions(y, np.full(y.shape, 0.5), evaluated=np.ones(3, bool))["micro_recall"] == 0.0
    assert evaluate_predictions(y, np.full(y.shape, 0.5), evaluated=np.ones(3, bool), inclusive=True)[
        "micro_recall"] == 1.0


def test_public_metrics_refuse_what_they_cannot_score(rng):
    # NaN scores (a diverged model) used to give a plausible AUPRC: a NaN sorts last, as if below every score.
    y = (rng.random((6, 4)) < 0.5).astype(np.float32)
    y[0] = 1
    p = rng.random((6, 4)).astype(np.float32)
    bad = p.copy()
    bad[2, 1] = np.nan
    ev = np.ones(4, bool)
    for f in (lambda s: average_precision(y, s), lambda s: micro_auprc(y, s, evaluated=ev)):
        with pytest.raises(ValueError, match="scores must be finite; 1 are not"):
            f(bad)
    with pytest.raises(ValueError, match=r"probs must be finite; probs\[2, 1\] = nan"):
        evaluate_predictions(y, bad, evaluated=ev)
    with pytest.raises(ValueError, match="2-D"):  # a row, a column too few: a message, not an IndexError
        evaluate_predictions(y[0], p[0], evaluated=ev)
    with pytest.raises(ValueError, match="of one shape"):
        evaluate_predictions(y, p[:, :3], evaluated=ev)
    with pytest.raises(ValueError, match=r"evaluated must be a bool \[C\] mask with C = 4"):
        evaluate_predictions(y, p, evaluated=ev[:3])
    assert np.isfinite(evaluate_predictions(y, p, evaluated=ev)["auprc"])


def test_hierarchical_metrics_refuse_labels_and_predictions_that_are_not_0_1():
    """astype(bool) would read any nonzero value as a positive: swapped arguments scored AP 1.0 silently."""
    from hmljax.metrics import binary_ap, micro_prf, node_prf, recall_per_depth

    rng = np.random.default_rng(0)
    y = (rng.random((20, 5)) < 0.3).astype(np.uint8)
    p = rng.random((20, 5))
    good = micro_auprc(y, p)
    assert micro_auprc(y.astype(np.float32), p) == micro_auprc(y.astype(bool), p) == good
    with pytest.raises(ValueError, match=r"labels must be 0 or 1; labels\[0, 0\] = .*arguments swapped"):
        micro_auprc(p, y)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        micro_auprc(np.where(y == 1, np.nan, 0.0), p)
    with pytest.raises(ValueError, match="labels must be bool or numeric"):
        micro_auprc(y.astype(str), p)
    for fn in (node_prf, micro_prf, binary_ap):
        with pytest.raises(ValueError, match="preds .*threshold the probabilities"):
            fn(y, p)
    with pytest.raises(ValueError, match="preds"):
        recall_per_depth(y, p, np.arange(5))
    with pytest.raises(ValueError, match="arguments swapped"):
        evaluate_predictions(p, y.astype(np.float64), evaluated=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\] \(sigmoid your logits\)"):
        evaluate_predictions(y, np.log(p / (1 - p)), evaluated=np.ones(5, bool))
    # bool and 0/1 predictions still score as before
    assert node_prf(y, p > 0.5) == node_prf(y, (p > 0.5).astype(np.int64))
