"""Iterative stratification (Sechidis et al. 2011; second order: Szymanski & Kajdanowicz 2017)."""

import numpy as np
import pytest

from hmljax.data import iterative_stratification, kfold_splits

K = 5


def _skewed(seed=0, n=600, q=12, empty=40):
    """Long-tailed, correlated labels: rates 0.5 * 0.6^j, label 1 follows label 0, some label-less rows."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, q)) < 0.5 * 0.6 ** np.arange(q)).astype(np.uint8)
    Y[:, 1] |= Y[:, 0] & (rng.random(n) < 0.5)
    Y[:empty] = 0
    return Y


def _counts(Y, fold, k=K):
    return np.stack([Y[fold == f].sum(0) for f in range(k)]).astype(np.int64)  # [K, C] positives per fold


def _rate_error(Y, fold, k=K):
    """Mean over labels and folds of |fold positive rate - overall rate|."""
    sizes = np.bincount(fold, minlength=k)[:, None]
    return float(np.abs(_counts(Y, fold, k) / sizes - Y.mean(0)).mean())


def test_tiny_hand_case():
    Y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1], [0, 0]])
    fold = iterative_stratification(Y, 2, seed=0)
    assert fold.dtype == np.int64 and fold.shape == (6,)
    np.testing.assert_array_equal(np.bincount(fold), [3, 3])
    c = _counts(Y, fold, 2)
    assert (c.max(0) - c.min(0) <= 1).all()


@pytest.mark.parametrize("order", [1, 2])
def test_folds_partition_rows_and_balance_labels(order):
    Y = _skewed()
    fold = iterative_stratification(Y, K, seed=7, order=order)
    assert fold.min() == 0 and fold.max() == K - 1
    sizes = np.bincount(fold, minlength=K)
    assert sizes.sum() == len(Y) and np.abs(sizes - len(Y) / K).max() <= 0.15 * len(Y) / K
    c = _counts(Y, fold)
    # Every label's positives are spread almost exactly evenly: per-fold counts differ by at most 1 (2 at order 2).
    assert (c.max(0) - c.min(0)).max() <= order


def test_stratification_beats_a_random_split():
    Y = _skewed()
    strat = np.mean([_rate_error(Y, iterative_stratification(Y, K, seed=s)) for s in range(3)])
    naive = np.mean([_rate_error(Y, np.random.default_rng(s).permutation(len(Y)) % K) for s in range(10)])
    assert strat < 0.35 * naive, (strat, naive)


def test_agrees_with_the_iterstrat_reference():
    iterstrat = pytest.importorskip("iterstrat.ml_stratifiers")
    Y = _skewed(seed=3)
    ref = np.empty(len(Y), np.int64)
    splitter = iterstrat.MultilabelStratifiedKFold(n_splits=K, shuffle=True, random_state=0)
    for f, (_, test) in enumerate(splitter.split(np.zeros((len(Y), 1)), Y)):
        ref[test] = f
    ours = iterative_stratification(Y, K, seed=0)
    c_ours, c_ref = _counts(Y, ours), _counts(Y, ref)
    # Per label, our spread of positives over folds is no worse than the reference's (both Sechidis et al.).
    assert ((c_ours.max(0) - c_ours.min(0)) <= (c_ref.max(0) - c_ref.min(0)) + 1).all()
    assert _rate_error(Y, ours) <= 1.25 * _rate_error(Y, ref) + 1e-3


def test_deterministic_per_seed():
    Y = _skewed()
    a = iterative_stratification(Y, K, seed=11)
    np.testing.assert_array_equal(a, iterative_stratification(Y, K, seed=11))
    assert not np.array_equal(a, iterative_stratification(Y, K, seed=12))
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(iterative_stratification(Y, K, seed=g1), iterative_stratification(Y, K, seed=g2))
    s1 = [d["test"] for d in kfold_splits(Y, K, seed=4, valid_from_heldout=True)]
    s2 = [d["test"] for d in kfold_splits(Y, K, seed=4, valid_from_heldout=True)]
    for x, y in zip(s1, s2, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_rows_without_labels_spread_evenly(order, k):
    Y = _skewed(empty=53)
    fold = iterative_stratification(Y, k, seed=1, order=order)
    per_fold = np.bincount(fold[~Y.any(1)], minlength=k)
    assert per_fold.sum() == (~Y.any(1)).sum() >= 53 and per_fold.max() - per_fold.min() <= 1


def test_degenerate_label_matrices():
    for Y in (np.zeros((7, 3)), np.ones((7, 3)), np.zeros((7, 0))):
        fold = iterative_stratification(Y, 3, seed=0)
        np.testing.assert_array_equal(np.sort(np.bincount(fold, minlength=3)), [2, 2, 3])
    np.testing.assert_array_equal(np.sort(iterative_stratification(np.eye(4), 4, seed=0)), [0, 1, 2, 3])


def test_second_order_balances_label_pairs_better():
    Y = _skewed(seed=2)

    def pair_spread(fold):
        P = np.stack([Y[fold == f].T.astype(int) @ Y[fold == f] for f in range(K)])  # [K, C, C] co-occurrences
        iu = np.triu_indices(Y.shape[1], 1)
        return (P.max(0) - P.min(0))[iu].mean()

    first = np.mean([pair_spread(iterative_stratification(Y, K, seed=s, order=1)) for s in range(3)])
    second = np.mean([pair_spread(iterative_stratification(Y, K, seed=s, order=2)) for s in range(3)])
    assert second < 0.75 * first, (first, second)


@pytest.mark.parametrize("valid", [False, True], ids=["train_test", "train_valid_test"])
def test_kfold_splits(valid):
    Y = _skewed()
    n = len(Y)
    splits = list(kfold_splits(Y, K, seed=0, valid_from_heldout=valid))
    assert len(splits) == K
    held = []
    for s in splits:
        assert set(s) == ({"train", "valid", "test"} if valid else {"train", "test"})
        parts = [s[k] for k in sorted(s)]
        allrows = np.concatenate(parts)
        np.testing.assert_array_equal(np.sort(allrows), np.arange(n))  # disjoint and complete
        for p in parts:
            assert p.dtype == np.int64 and (np.diff(p) > 0).all()
        held.append(np.concatenate([s["test"], s.get("valid", np.zeros(0, np.int64))]))
        if valid:
            # Sizes are only a tie-breaker in Sechidis et al.'s rule: the halves come out near, not exactly, equal.
            assert abs(len(s["valid"]) - len(s["test"])) <= 0.1 * (len(s["valid"]) + len(s["test"]))
            c = np.stack([Y[s["valid"]].sum(0), Y[s["test"]].sum(0)]).astype(np.int64)
            assert (np.abs(c[0] - c[1]) <= 1).all()  # the halves are stratified too
    np.testing.assert_array_equal(np.sort(np.concatenate(held)), np.arange(n))  # held-out folds partition rows


def test_bad_arguments():
    Y = _skewed(n=20, empty=2)
    with pytest.raises(ValueError, match="n_folds"):
        iterative_stratification(Y, 1, seed=0)
    with pytest.raises(ValueError, match="n_folds"):
        iterative_stratification(Y, 21, seed=0)
    with pytest.raises(ValueError, match="order"):
        iterative_stratification(Y, 2, seed=0, order=3)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        iterative_stratification(Y[0], 2, seed=0)
    with pytest.raises(ValueError, match="0/1"):
        iterative_stratification(Y * 3, 2, seed=0)
    with pytest.raises(ValueError, match="too few"):
        list(kfold_splits(np.eye(3), 3, seed=0, valid_from_heldout=True))
