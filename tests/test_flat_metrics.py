"""Flat multi-label metrics and comparison statistics (the public hmljax.metrics)."""

import os
import time
import warnings

import numpy as np
import pytest

from hmljax import metrics as M
from hmljax.metrics import _flat as flat

sk = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")


def _problem(rng, n=120, q=9, density=0.25, ties=False):
    labels = (rng.random((n, q)) < density).astype(np.uint8)
    labels[:, 0] = 0  # a label with no positives
    labels[:, 1] = 1  # a label with no negatives
    labels[3] = 0  # a row with no labels
    labels[4] = 1  # a row with all labels
    scores = rng.integers(0, 6, (n, q)) / 5.0 if ties else rng.random((n, q))
    return labels, scores


@pytest.fixture(params=["gather", "bisect"])
def _count_path(request, monkeypatch):
    # _flat compares short rows directly and bisects sorted long rows; check both ways.
    monkeypatch.setattr(flat, "_GATHER_MAX_LEN", 10**9 if request.param == "gather" else 0)


@pytest.fixture(params=[False, True], ids=["continuous", "ties"])
def problem(request, rng, _count_path):
    return _problem(rng, ties=request.param)


def _sk_quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- against sklearn


@pytest.mark.parametrize("inclusive", [False, True], ids=["gt", "ge"])
@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_f1_matches_sklearn(problem, inclusive, zero_division):
    labels, scores = problem
    labels = labels.copy()
    labels[:, 2] = 0
    scores = scores.copy()
    scores[:, 2] = 0.0  # no positives and none predicted: zero_division decides
    preds = scores >= 0.4 if inclusive else scores > 0.4
    kw = dict(threshold=0.4, inclusive=inclusive, zero_division=zero_division)
    want = _sk_quiet(sk.f1_score, labels, preds, average="macro", zero_division=zero_division)
    assert M.macro_f1(labels, scores, **kw) == pytest.approx(want, abs=1e-12)
    want = _sk_quiet(sk.f1_score, labels, preds, average="micro", zero_division=zero_division)
    assert M.micro_f1(labels, scores, **kw) == pytest.approx(want, abs=1e-12)


def test_macro_auc_sklearn_convention(problem):
    labels, scores = problem
    both = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < labels.shape[0]]
    want = np.mean([sk.roc_auc_score(labels[:, j], scores[:, j]) for j in both])
    assert M.macro_auc(labels, scores, convention="sklearn") == pytest.approx(want, abs=1e-12)


def _auc_adaptive_loop(labels, scores):
    """The adaptive-batch code's pair count, written as a plain loop."""
    n, q = labels.shape
    total = 0.0
    for j in range(q):
        pos, neg = scores[labels[:, j] == 1, j], scores[labels[:, j] == 0, j]
        if pos.size and neg.size:
            total += np.sum(neg[None, :] <= pos[:, None]) / (pos.size * neg.size)
    return total / q


def test_macro_auc_adaptive_convention(problem):
    labels, scores = problem
    assert M.macro_auc(labels, scores) == pytest.approx(_auc_adaptive_loop(labels, scores), abs=1e-12)


def test_ranking_metrics_match_sklearn(problem):
    labels, scores = problem
    assert M.ranking_loss(labels, scores) == pytest.approx(sk.label_ranking_loss(labels, scores), abs=1e-12)
    assert M.coverage(labels, scores) == pytest.approx(sk.coverage_error(labels, scores), abs=1e-12)
    assert M.hamming_loss(labels, scores) == pytest.approx(sk.hamming_loss(labels, scores > 0.5), abs=1e-12)


def test_map_matches_sklearn_and_average_precision(problem):
    labels, scores = problem
    with_pos = [j for j in range(labels.shape[1]) if labels[:, j].any()]
    want = np.mean([sk.average_precision_score(labels[:, j], scores[:, j]) for j in with_pos])
    assert M.mean_average_precision(labels, scores) == pytest.approx(want, abs=1e-12)
    ours = np.mean([M.average_precision(labels[:, j], scores[:, j]) for j in with_pos])
    assert M.mean_average_precision(labels, scores) == pytest.approx(ours, abs=1e-12)


def test_one_error_matches_definition(problem):
    labels, scores = problem
    top = np.argmax(scores, axis=1)
    want = np.mean(labels[np.arange(labels.shape[0]), top] == 0)
    assert M.one_error(labels, scores) == pytest.approx(want)
    keep = labels.any(1)
    want = np.mean(labels[keep][np.arange(keep.sum()), top[keep]] == 0)
    assert M.one_error(labels, scores, ignore_empty=True) == pytest.approx(want)


def test_evaluate_flat_equals_individual_functions(problem):
    labels, scores = problem
    counts = np.arange(labels.shape[1]) * 30
    out = M.evaluate_flat(labels, scores, train_counts=counts, auc_convention="sklearn")
    assert out["macro_f1"] == M.macro_f1(labels, scores)
    assert out["micro_f1"] == M.micro_f1(labels, scores)
    assert out["macro_auc"] == M.macro_auc(labels, scores, convention="sklearn")
    assert out["ranking_loss"] == M.ranking_loss(labels, scores)
    assert out["hamming_loss"] == M.hamming_loss(labels, scores)
    assert out["one_error"] == M.one_error(labels, scores)
    assert out["coverage"] == M.coverage(labels, scores)
    assert out["map"] == M.mean_average_precision(labels, scores)
    groups = M.map_per_group(labels, scores, counts)
    for g in ("head", "middle", "tail"):
        assert out[f"map_{g}"] == groups[g] or (np.isnan(out[f"map_{g}"]) and np.isnan(groups[g]))
    assert "map_head" not in M.evaluate_flat(labels, scores)


def test_accepts_bool_labels_and_float32_scores(rng):
    labels, scores = _problem(rng)
    a = M.evaluate_flat(labels, scores)
    b = M.evaluate_flat(labels.astype(bool), scores.astype(np.float32).astype(np.float64))
    c = M.evaluate_flat(labels.astype(bool), scores.astype(np.float32))
    assert b == c
    assert a.keys() == c.keys()


# ----------------------------------------------------------------------------- hand-computed


def test_ties_adaptive_vs_sklearn_by_hand():
    # Label 0: positives score 0.8 and 0.5; negatives 0.5 and 0.2. Pairs: (0.8>0.5), (0.8>0.2),
    # (0.5=0.5 tie), (0.5>0.2). Ties correct: 4/4; ties half: 3.5/4.
    # Label 1: no positives -> excluded by sklearn, counts 0 over q=2 for the adaptive code.
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], np.uint8)
    scores = np.array([[0.8, 0.1], [0.5, 0.2], [0.5, 0.3], [0.2, 0.4]])
    assert M.macro_auc(labels, scores, convention="adaptive_code") == pytest.approx(1.0 / 2)
    assert M.macro_auc(labels, scores, convention="sklearn") == pytest.approx(3.5 / 4)


def test_all_tied_scores():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], np.uint8)
    scores = np.full((3, 3), 0.5)
    assert M.macro_auc(labels, scores) == pytest.approx(1.0)  # every pair tied = correct
    assert M.macro_auc(labels, scores, convention="sklearn") == pytest.approx(0.5)
    assert M.ranking_loss(labels, scores) == pytest.approx(1.0)  # ties count as errors
    assert M.coverage(labels, scores) == pytest.approx(3.0)  # pessimistic: all labels tie
    # AP with one threshold: precision = positives / N for every label.
    assert M.mean_average_precision(labels, scores) == pytest.approx(np.mean([2 / 3, 2 / 3, 1 / 3]))
    assert M.one_error(labels, scores) == pytest.approx(1 / 3)  # argmax picks label 0


def test_label_without_positives():
    labels = np.array([[1, 0], [0, 0], [1, 0]], np.uint8)
    scores = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.3]])
    # Label 0 perfect (F1 = 1); label 1: no positives, one false positive -> F1 = 0 either way.
    assert M.macro_f1(labels, scores) == pytest.approx(0.5)
    assert M.macro_f1(labels, scores, zero_division=1.0) == pytest.approx(0.5)
    scores[1, 1] = 0.4  # now label 1 has no positives and no predictions: zero_division decides
    assert M.macro_f1(labels, scores) == pytest.approx(0.5)
    assert M.macro_f1(labels, scores, zero_division=1.0) == pytest.approx(1.0)
    assert M.mean_average_precision(labels, scores) == pytest.approx(1.0)  # label 1 skipped
    assert M.macro_auc(labels, scores) == pytest.approx(0.5)  # 1.0 / q
    assert M.macro_auc(labels, scores, convention="sklearn") == pytest.approx(1.0)


def test_rows_without_labels():
    labels = np.array([[0, 0, 0], [1, 0, 0]], np.uint8)
    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.6, 0.4]])
    assert M.one_error(labels, scores) == pytest.approx(1.0)  # the empty row counts as an error
    assert M.one_error(labels, scores, ignore_empty=True) == pytest.approx(1.0)
    assert M.coverage(labels, scores) == pytest.approx((0 + 3) / 2)  # empty row scores 0
    assert M.ranking_loss(labels, scores) == pytest.approx((0 + 1.0) / 2)  # row 2: both pairs wrong
    assert M.hamming_loss(labels, scores) == pytest.approx(3 / 6)
    labels = np.zeros((2, 3), np.uint8)
    assert np.isnan(M.one_error(labels, scores, ignore_empty=True))
    assert np.isnan(M.mean_average_precision(labels, scores))
    assert M.macro_auc(labels, scores) == 0.0
    assert np.isnan(M.macro_auc(labels, scores, convention="sklearn"))


@pytest.mark.parametrize("at_least", [False, True], ids=["above", "at_least"])
def test_map_per_group_boundaries(at_least):
    # One label per train count; label j is perfectly ranked iff j is even (AP 1), else AP 1/2.
    counts = np.array([101, 100, 21, 20, 19, 500])
    labels = np.zeros((4, counts.size), np.uint8)
    labels[0] = 1
    scores = np.full((4, counts.size), 0.1)
    scores[0] = 0.9
    scores[1, 1::2] = 0.95  # odd labels: a negative outranks the positive -> AP 1/2
    out = M.map_per_group(labels, scores, counts, at_least=at_least)
    ap = np.where(np.arange(counts.size) % 2 == 0, 1.0, 0.5)
    if at_least:  # head >= 100, middle 20..99, tail < 20
        groups = {"head": [0, 1, 5], "middle": [2, 3], "tail": [4]}
    else:  # head > 100, middle 21..100, tail <= 20
        groups = {"head": [0, 5], "middle": [1, 2], "tail": [3, 4]}
    for name, members in groups.items():
        assert out[name] == pytest.approx(ap[members].mean()), name
        assert out[f"num_{name}"] == len(members)


def test_map_per_group_empty_group_is_nan():
    labels = np.array([[1, 1], [0, 0]], np.uint8)
    scores = np.array([[0.9, 0.8], [0.1, 0.2]])
    out = M.map_per_group(labels, scores, np.array([500, 300]))
    assert out["head"] == 1.0 and np.isnan(out["middle"]) and np.isnan(out["tail"])


# ----------------------------------------------------------------------------- refusals


def _bad_inputs():
    labels = np.array([[1, 0], [0, 1]], np.uint8)
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    nan, inf, big, neg = scores.copy(), scores.copy(), scores.copy(), scores.copy()
    nan[0, 1], inf[1, 0], big[0, 0], neg[1, 1] = np.nan, np.inf, 1.5, -0.1
    two = labels.copy()
    two[0, 0] = 2
    half = labels.astype(float)
    half[1, 0] = 0.5
    return {
        "nan_score": (labels, nan, "finite"),
        "inf_score": (labels, inf, "finite"),
        "score_above_1": (labels, big, r"\[0, 1\]"),
        "negative_score": (labels, neg, r"\[0, 1\]"),
        "label_2": (two, scores, "0 or 1"),
        "label_half": (half, scores, "0 or 1"),
        "shape_mismatch": (labels, scores[:, :1], "shape"),
        "one_dim": (labels[0], scores[0], "2-D"),
        "empty": (np.zeros((0, 2)), np.zeros((0, 2)), "empty"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
@pytest.mark.parametrize("fn", [M.evaluate_flat, M.macro_auc, M.ranking_loss, M.macro_f1, M.one_error])
def test_refuses_bad_inputs(case, fn):
    labels, scores, match = _bad_inputs()[case]
    with pytest.raises(ValueError, match=match):
        fn(labels, scores)


def test_refuses_bad_options():
    labels = np.array([[1, 0], [0, 1]], np.uint8)
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ValueError, match="convention"):
        M.macro_auc(labels, scores, convention="mulan")
    with pytest.raises(ValueError, match="zero_division"):
        M.macro_f1(labels, scores, zero_division=0.5)
    with pytest.raises(ValueError, match="train_counts"):
        M.evaluate_flat(labels, scores, train_counts=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="head > tail"):
        M.map_per_group(labels, scores, np.array([1, 2]), thresholds=(20, 100))


def test_evaluate_flat_is_fast():
    rng = np.random.default_rng(0)
    labels = (rng.random((3185, 983)) < 0.02).astype(np.uint8)
    scores = rng.random((3185, 983))
    counts = rng.integers(0, 300, 983)
    elapsed = []
    for _ in range(3):  # best of 3: the box is shared
        start = time.perf_counter()
        M.evaluate_flat(labels, scores, train_counts=counts)
        elapsed.append(time.perf_counter() - start)
    print(f"evaluate_flat 3185x983: best {min(elapsed):.3f} s of {[round(t, 3) for t in elapsed]}")
    assert min(elapsed) < 1.0  # ~0.2-0.35 s on a loaded 2-core box


# ----------------------------------------------------------------------------- statistics


def test_wilcoxon_matches_scipy():
    a = np.array([0.763, 0.599, 0.954, 0.628, 0.882, 0.936, 0.661, 0.583, 0.775, 1.000, 0.940, 0.619, 0.972, 0.957])
    b = np.array([0.768, 0.591, 0.971, 0.661, 0.888, 0.931, 0.668, 0.583, 0.838, 1.000, 0.962, 0.666, 0.981, 0.978])
    for zero_method in ("wilcox", "pratt", "zsplit"):
        want = stats.wilcoxon(a, b, zero_method=zero_method)
        got = M.wilcoxon_signed_rank(a, b, zero_method=zero_method)
        assert got.statistic == pytest.approx(want.statistic)
        assert got.pvalue == pytest.approx(want.pvalue)
    assert M.wilcoxon_signed_rank(a, a) == (0.0, 1.0)
    with pytest.raises(ValueError):
        M.wilcoxon_signed_rank(a, b[:-1])


def _demsar_table6():
    # Demsar (2006) Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 datasets.
    return np.array(
        [
            [0.763, 0.768, 0.771, 0.798],
            [0.599, 0.591, 0.590, 0.569],
            [0.954, 0.971, 0.968, 0.967],
            [0.628, 0.661, 0.654, 0.657],
            [0.882, 0.888, 0.886, 0.898],
            [0.936, 0.931, 0.916, 0.931],
            [0.661, 0.668, 0.609, 0.685],
            [0.583, 0.583, 0.563, 0.625],
            [0.775, 0.838, 0.866, 0.875],
            [1.000, 1.000, 1.000, 1.000],
            [0.940, 0.962, 0.965, 0.962],
            [0.619, 0.666, 0.614, 0.669],
            [0.972, 0.981, 0.975, 0.975],
            [0.957, 0.978, 0.946, 0.970],
        ]
    )


def test_friedman_matches_scipy_and_demsar():
    scores = _demsar_table6()
    res = M.friedman_test(scores, tie_correction=True)
    want = stats.friedmanchisquare(*scores.T)
    assert res.chi2 == pytest.approx(want.statistic)
    assert res.pvalue_chi2 == pytest.approx(want.pvalue)
    # Demsar's worked example (no tie correction): ranks 3.143 2.000 2.893 1.964, chi2 9.28, F 3.69.
    # His ranks come from unrounded AUCs: on the 13th dataset C4.5+cf edges out C4.5+m+cf.
    scores[12, 2] = 0.97501
    res = M.friedman_test(scores)
    np.testing.assert_allclose(res.avg_ranks, [3.143, 2.000, 2.893, 1.964], atol=1e-3)
    assert res.chi2 == pytest.approx(9.28, abs=0.01)
    assert res.f == pytest.approx(3.69, abs=0.01)
    assert res.pvalue == pytest.approx(stats.f.sf(res.f, 3, 39))
    assert res.pvalue < 0.05


def test_friedman_without_ties_matches_scipy(rng):
    scores = rng.random((8, 5))
    res = M.friedman_test(scores)
    want = stats.friedmanchisquare(*scores.T)
    assert res.chi2 == pytest.approx(want.statistic)
    assert res.pvalue_chi2 == pytest.approx(want.pvalue)
    perfect = np.tile(np.arange(4.0), (6, 1))
    res = M.friedman_test(perfect)
    assert np.isinf(res.f) and res.pvalue == 0.0
    np.testing.assert_allclose(res.avg_ranks, [4, 3, 2, 1])


def test_nemenyi_cd():
    assert M.nemenyi_cd(4, 14) == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * 14)))
    assert M.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.005)
    assert M.nemenyi_cd(2, 10, alpha=0.10) == pytest.approx(1.645 * np.sqrt(2 * 3 / 60))
    # Beyond the table: scipy's studentized range, which agrees with the table where both exist.
    q12 = M.nemenyi_cd(12, 6) / np.sqrt(12 * 13 / 36)
    assert q12 == pytest.approx(stats.studentized_range.ppf(0.95, 12, np.inf) / np.sqrt(2))
    q10 = stats.studentized_range.ppf(0.95, 10, np.inf) / np.sqrt(2)
    assert q10 == pytest.approx(M.nemenyi_cd(10, 6) / np.sqrt(10 * 11 / 36), abs=2e-3)
    with pytest.raises(ValueError):
        M.nemenyi_cd(1, 5)


def test_cd_diagram_writes_png(tmp_path):
    res = M.friedman_test(_demsar_table6())
    cd = M.nemenyi_cd(4, 14)
    path = tmp_path / "cd.png"
    out = M.cd_diagram(res.avg_ranks, ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"], cd, path, title="AUC")
    assert out == os.fspath(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["cd.png"]  # no temp file left behind
    with pytest.raises(ValueError):
        M.cd_diagram(res.avg_ranks, ["a", "b"], cd, tmp_path / "bad.png")
