"""Long-tailed subsets (DB's VOC-LT / COCO-LT construction) and head/middle/tail class groups."""

import math
import os

import numpy as np
import pytest
from conftest import DATA_DIR

from hmljax.data import class_groups, cooccurrence_order, group_summary, longtail_subset, pareto_profile

LONGTAIL_DIR = os.path.join(DATA_DIR or "", "longtail")
VOC_POOL = os.path.join(LONGTAIL_DIR, "voc2012_trainval_labels.npz")
VOC_LT = os.path.join(LONGTAIL_DIR, "voc_lt_train_labels.npz")
needs_voc = pytest.mark.skipif(
    not (DATA_DIR and os.path.isfile(VOC_POOL) and os.path.isfile(VOC_LT)),
    reason="VOC label matrices absent: set HMLJAX_DATA to a folder holding longtail/voc2012_trainval_labels.npz "
    "and longtail/voc_lt_train_labels.npz (../shared/data)",
)


def _synthetic(n=4000, c=10, seed=0):
    """A VOC-like pool: class 0 ('person') alone in 35 % of the rows and beside 30 % of the others; each
    other row holds one of the classes 1..C-1, with Zipf-like frequencies."""
    rng = np.random.default_rng(seed)
    w = 1 / np.arange(1, c) ** 0.7
    Y = np.zeros((n, c), np.uint8)
    Y[np.arange(n), 1 + rng.choice(c - 1, size=n, p=w / w.sum())] = 1
    alone = rng.random(n) < 0.35
    Y[alone] = 0
    Y[:, 0] = alone | (rng.random(n) < 0.3)
    return Y


# ---------------------------------------------------------------- pareto_profile


@pytest.mark.parametrize(
    "c,hi,lo,alpha", [(20, 800, 1, 6.0), (80, 1200, 1, 6.0), (7, 50, 5, 2.5), (1, 10, 3, 6.0)], ids=str
)
def test_pareto_profile_shape(c, hi, lo, alpha):
    t = pareto_profile(c, max_count=hi, min_count=lo, alpha=alpha)
    assert t.shape == (c,) and np.issubdtype(t.dtype, np.integer)
    assert t[0] == hi
    assert (np.diff(t) <= 0).all()
    assert t[-1] >= lo


def test_pareto_profile_hand_computed():
    # C = 4, alpha = 3: x runs from ppf(0) = 1 to ppf(0.99) = 100 ** (1/3); pdf(x) = 3 / x**4.
    alpha, hi, lo = 3.0, 1000, 2
    x_end = (1 - 0.99) ** (-1 / alpha)
    want = []
    for i in range(4):
        x = 1 + i * (x_end - 1) / 3
        want.append(math.floor(alpha / x ** (alpha + 1) * (hi - lo) / alpha + lo))
    assert want == [1000, 43, 9, 4]  # 1000.0, 43.55, 9.23, 4.15 in float64
    assert pareto_profile(4, max_count=hi, min_count=lo, alpha=alpha).tolist() == want


def test_pareto_profile_voc_targets():
    # DB's VOC-LT profile (max 800, min 1, alpha 6): 6 targets >= 100, 6 in [20, 100), 8 below 20; the last is 4.
    t = pareto_profile(20, max_count=800, min_count=1)
    assert t[[0, 1, 5, 6, 11, 12, 19]].tolist() == [800, 529, 125, 91, 23, 18, 4]
    assert np.bincount(class_groups(t), minlength=3).tolist() == [6, 6, 8]


def test_pareto_profile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for c, hi, alpha in [(20, 800, 6.0), (80, 1200, 6.0), (13, 300, 2.0)]:
        x = np.linspace(stats.pareto.ppf(0.0, alpha), stats.pareto.ppf(0.99, alpha), c)
        ref = np.floor(stats.pareto(alpha).pdf(x) * (hi - 1) / alpha + 1).astype(int)
        np.testing.assert_array_equal(pareto_profile(c, max_count=hi, min_count=1, alpha=alpha), ref)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_classes=0, max_count=10, min_count=1), "num_classes"),
        (dict(num_classes=3, max_count=1, min_count=5), "max_count"),
        (dict(num_classes=3, max_count=10, min_count=-1), "min_count"),
        (dict(num_classes=3, max_count=10.5, min_count=1), "max_count"),
        (dict(num_classes=3, max_count=10, min_count=1, alpha=0.0), "alpha"),
        (dict(num_classes=3, max_count=10, min_count=1, alpha=float("nan")), "alpha"),
    ],
    ids=["no-classes", "max-below-min", "negative-min", "float-max", "alpha-zero", "alpha-nan"],
)
def test_pareto_profile_errors(kwargs, match):
    c = kwargs.pop("num_classes")
    with pytest.raises(ValueError, match=match):
        pareto_profile(c, **kwargs)


# ---------------------------------------------------------------- cooccurrence_order


def test_cooccurrence_order_hand_made():
    # counts [5, 2, 3, 0]. P(col | row) rows: [1,0,0,0], [0,1,1,0], [0,2/3,1,0], [0,0,0,0] (class 3: no positive)
    # -> column sums [1, 5/3, 2, 0]: class 2 first, class 0 (the most frequent) third, class 3 last.
    Y = np.array([[1, 0, 0, 0]] * 5 + [[0, 1, 1, 0]] * 2 + [[0, 0, 1, 0]])
    assert cooccurrence_order(Y).tolist() == [2, 1, 0, 3]


def test_cooccurrence_order_ties_by_index():
    # column sums [2.5, 4/3, 4/3]: classes 1 and 2 tie, the lower index first.
    Y = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 1, 0]], dtype=bool)
    assert cooccurrence_order(Y).tolist() == [0, 1, 2]
    assert cooccurrence_order(np.zeros((3, 4), np.uint8)).tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------- longtail_subset


def test_longtail_subset_synthetic():
    Y = _synthetic()
    kw = dict(max_count=600, min_count=1)
    idx = longtail_subset(Y, seed=0, **kw)
    assert np.issubdtype(idx.dtype, np.integer)
    assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < len(Y)  # unique and sorted
    np.testing.assert_array_equal(idx, longtail_subset(Y, seed=0, **kw))
    np.testing.assert_array_equal(idx, longtail_subset(Y, seed=np.random.default_rng(0), **kw))
    assert not np.array_equal(idx, longtail_subset(Y, seed=1, **kw))

    order = cooccurrence_order(Y)
    assert order[0] == 0  # the class that comes along with the others heads the order
    target = pareto_profile(Y.shape[1], **kw)
    got = Y[idx].sum(0)[order]
    assert 0.8 * target[0] <= got[0] <= 1.2 * target[0]  # later classes bring some person rows along
    assert (got >= 1).all()
    # Classes 1..C-1 never meet, so only the head moves after its turn: the others end on their targets.
    np.testing.assert_array_equal(got[1:], target[1:])


def test_longtail_subset_caps_additions_by_availability():
    # Classes 0 and 1 never meet, so they tie in the order (0 first): class 0 wants 50 but has 5 rows.
    Y = np.array([[1, 0]] * 5 + [[0, 1]] * 100, dtype=np.uint8)
    idx = longtail_subset(Y, max_count=50, min_count=1)
    assert Y[idx].sum(0).tolist() == [5, 1]
    assert idx[:5].tolist() == [0, 1, 2, 3, 4]


def test_longtail_subset_removes_only_rows_with_the_class():
    # A in 200 rows, B in 100 of them: order A, B; targets 60, 1. A's 60 rows bring ~30 B's along and B's
    # turn removes all but one of them, so A keeps its rows without B.
    Y = np.array([[1, 1]] * 100 + [[1, 0]] * 100, dtype=np.uint8)
    for seed in range(3):
        idx = longtail_subset(Y, max_count=60, min_count=1, seed=seed)
        n_a, n_b = Y[idx].sum(0)
        assert n_b == 1
        assert n_a == len(idx) and 1 <= n_a < 60


def test_longtail_subset_class_without_rows():
    Y = _synthetic(n=500, c=5)
    Y[:, 3] = 0
    idx = longtail_subset(Y, max_count=100)
    assert Y[idx, 3].sum() == 0 and len(idx) > 0


@pytest.mark.parametrize(
    "labels,kwargs,match",
    [
        (np.array([[0, 2], [1, 0]]), dict(max_count=10), "0/1"),
        (np.array([0, 1, 1]), dict(max_count=10), "2-D"),
        (np.zeros((3, 0)), dict(max_count=10), "no classes"),
        (np.array([[0.5, 1.0]]), dict(max_count=10), "0/1"),
        (np.eye(3), dict(max_count=1, min_count=2), "max_count"),
        (np.eye(3), dict(max_count=5, alpha=-1.0), "alpha"),
    ],
    ids=["non-binary", "1-D", "no-classes", "fractional", "max-below-min", "negative-alpha"],
)
def test_longtail_subset_errors(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        longtail_subset(labels, **kwargs)


# ---------------------------------------------------------------- class_groups, group_summary


def test_class_groups_thresholds():
    n = np.array([775, 100, 99, 20, 19, 4, 0])
    assert class_groups(n).tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert class_groups(n, head=50, tail=5).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert class_groups(n.astype(float)).dtype == np.int8


def test_class_groups_quantile():
    n = np.array([5, 50, 1, 30, 30, 2, 9])  # ranks: 1 (50), 3, 4 (30, 30: index order), 6 (9), 0, 5, 2
    assert class_groups(n, mode="quantile").tolist() == [1, 0, 2, 0, 0, 2, 1]
    for c in (3, 20, 80):
        g = class_groups(np.arange(c), mode="quantile")
        sizes = np.bincount(g, minlength=3)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == c
        assert (g[np.argsort(-np.arange(c))] == np.sort(g)).all()  # higher counts never in a later group
    assert class_groups(np.full(6, 7), mode="quantile").tolist() == [0, 0, 1, 1, 2, 2]  # all tied


@pytest.mark.parametrize(
    "counts,kwargs,match",
    [
        (np.array([1, 2]), dict(head=20, tail=20), "head"),
        (np.array([1, 2]), dict(head=10, tail=50), "head"),
        (np.array([1, 2]), dict(tail=-1), "tail"),
        (np.array([1, -2]), dict(), "class_counts_C"),
        (np.array([[1, 2]]), dict(), "class_counts_C"),
        (np.array([1.0, np.nan]), dict(), "class_counts_C"),
        (np.array([1, 2]), dict(mode="median"), "mode"),
        (np.array([1, 2]), dict(head="100"), "head"),
    ],
    ids=["head-equals-tail", "head-below-tail", "negative-tail", "negative-count", "2-D", "nan", "bad-mode", "str"],
)
def test_class_groups_errors(counts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        class_groups(counts, **kwargs)


def test_group_summary():
    n = np.array([775, 154, 34, 4, 6])
    s = group_summary(n, class_groups(n))
    assert s["head"] == dict(num_classes=2, mean_count=464.5, min_count=154.0, max_count=775.0, classes=[0, 1])
    assert s["middle"]["num_classes"] == 1 and s["middle"]["mean_count"] == 34.0
    assert s["tail"]["classes"] == [3, 4] and s["tail"]["min_count"] == 4.0 and s["tail"]["max_count"] == 6.0
    empty = group_summary(np.array([5, 6]), np.array([2, 2]))["head"]
    assert empty == dict(num_classes=0, mean_count=None, min_count=None, max_count=None, classes=[])
    with pytest.raises(ValueError, match="groups_C"):
        group_summary(n, np.array([0, 1]))
    with pytest.raises(ValueError, match="groups_C"):
        group_summary(n, np.array([0, 1, 3, 2, 2]))


# ---------------------------------------------------------------- the VOC check


@pytest.mark.data
@needs_voc
def test_voc_subset_looks_like_voc_lt():
    pool = np.load(VOC_POOL)["labels"]
    published = np.load(VOC_LT)
    assert pool.shape == (11540, 20)
    idx = longtail_subset(pool, max_count=800, min_count=1, seed=0)
    n = pool[idx].sum(0)
    assert 800 <= len(idx) <= 1500  # VOC-LT: 1142
    assert 700 <= n.max() <= 800  # VOC-LT: 775
    assert 1 <= n.min() <= 9  # VOC-LT: 4
    n_lt = published["labels"].sum(0)
    assert n.argmax() == n_lt.argmax()  # the same class (person) heads both
    split = np.bincount(class_groups(n), minlength=3)
    split_lt = np.bincount(class_groups(n_lt), minlength=3)
    assert split_lt.tolist() == [6, 6, 8]
    assert (np.abs(split - split_lt) <= 2).all(), split.tolist()
    # The published split is the thresholds' split, and its group means are HMT-Net's 332.8 / 46.2 / 9.0.
    np.testing.assert_array_equal(class_groups(n_lt), published["group"])
    s = group_summary(n_lt, published["group"])
    assert [round(s[g]["mean_count"], 1) for g in ("head", "middle", "tail")] == [332.8, 46.2, 9.0]
