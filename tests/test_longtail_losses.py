import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hmljax.losses import (
    asymmetric_loss,
    binary_cross_entropy,
    class_balanced_focal_loss,
    class_balanced_weights,
    db_focal_loss,
    db_loss,
    db_rebalancing_weights,
    inverse_frequency_weights,
    sigmoid_focal_loss,
)

# A tiny example: 2 rows x 3 classes, logits away from ASL's kink at p = clip (z ≈ -2.94).
Z = np.array([[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0]])
Y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
COUNTS = np.array([2.0, 5.0, 10.0])
N_TRAIN = 20.0


def _sig(z):
    return 1 / (1 + np.exp(-z))


def _np_focal(z, y, gamma, alpha=None):
    p = _sig(z)
    pt = np.where(y == 1, p, 1 - p)
    at = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    return -at * (1 - pt) ** gamma * np.log(pt)


def _np_db(z, y, n, num, *, alpha=0.1, beta=10.0, mu=0.3, lam=5.0, kappa=0.05, gamma=0.0, bal=1.0):
    """Float64 DB loss as the released ResampleLoss computes it (rebalance + NTR + focal)."""
    inv = 1 / n
    r = inv[None] / (y * inv).sum(1, keepdims=True)
    w = alpha + _sig(beta * (r - mu))
    zz = z + (-np.log(num / n - 1) * kappa / lam)
    zz = np.where(y == 1, zz, lam * zz)
    w = np.where(y == 1, w, w / lam)
    bce = -(y * np.log(_sig(zz)) + (1 - y) * np.log(1 - _sig(zz)))
    pt = np.exp(-bce)
    return bal * (1 - pt) ** gamma * w * bce


def _np_asl(z, y, gp, gn, m):
    p = _sig(z)
    pm = np.maximum(p - m, 0)
    return -(y * (1 - p) ** gp * np.log(p) + (1 - y) * pm**gn * np.log(1 - pm))


def _j(a):
    return jnp.asarray(a, jnp.float32)


# ----------------------------------------------------------------- hand-computed values
def test_focal_hand_values():
    # z = 0, y = 1: p_t = 1/2, so FL = (1/2)^γ log 2; α = 0.25 scales it.
    assert float(sigmoid_focal_loss(_j([0.0]), _j([1.0]), gamma=2.0)[0]) == pytest.approx(0.25 * math.log(2), rel=1e-6)
    assert float(sigmoid_focal_loss(_j([0.0]), _j([1.0]), gamma=2.0, alpha=0.25)[0]) == pytest.approx(
        0.0625 * math.log(2), rel=1e-6
    )
    # z = 2, y = 0: p_t = σ(-2) = 0.11920292, 1 - p_t = 0.88079708; FL = 0.88079708^2 · 2.12692801.
    assert float(sigmoid_focal_loss(_j([2.0]), _j([0.0]), gamma=2.0)[0]) == pytest.approx(
        0.88079708**2 * 2.12692801, rel=1e-6
    )
    for gamma, alpha in [(0.0, None), (2.0, None), (2.0, 0.25), (0.5, 0.75)]:
        got = sigmoid_focal_loss(_j(Z), _j(Y), gamma=gamma, alpha=alpha)
        np.testing.assert_allclose(got, _np_focal(Z, Y, gamma, alpha), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sigmoid_focal_loss(_j(Z), _j(Y), gamma=0.0), binary_cross_entropy(_j(Z), _j(Y)),
                               rtol=1e-6)


def test_class_balanced_weights_hand_values():
    # β = 0.9: E_n = (1 - 0.9^n) / 0.1 = 1, 6.5132156, 9.9997344 for n = 1, 10, 100.
    w = (1 - 0.9) / (1 - 0.9 ** np.array([1.0, 10.0, 100.0]))
    np.testing.assert_allclose(w, [1.0, 1 / 6.513215599, 1 / 9.999734386], rtol=1e-8)
    np.testing.assert_allclose(class_balanced_weights(np.array([1, 10, 100]), beta=0.9), w * 3 / w.sum(), rtol=1e-5)
    # β = 0: uniform; β -> 1: inverse frequency, normalised to sum C.
    np.testing.assert_allclose(class_balanced_weights(COUNTS, beta=0.0), np.ones(3), rtol=1e-6)
    inv = 1 / COUNTS
    np.testing.assert_allclose(class_balanced_weights(COUNTS, beta=1 - 1e-7), inv * 3 / inv.sum(), rtol=1e-4)
    # The default β = 0.9999 stays accurate in float32 (1 - β^n via expm1).
    w = (1 - 0.9999) / (1 - 0.9999**COUNTS)
    got = class_balanced_weights(COUNTS)
    np.testing.assert_allclose(got, w * 3 / w.sum(), rtol=1e-5)
    assert float(got.sum()) == pytest.approx(3.0, rel=1e-6)
    with pytest.raises(ValueError, match=r"\[C\]"):
        class_balanced_weights(np.ones((2, 3)))


@pytest.mark.parametrize("mode", ["average_w", "by_class"])
def test_class_balanced_focal(mode):
    w = class_balanced_weights(COUNTS, beta=0.99)
    y = np.vstack([Y, np.zeros(3)])
    z = np.vstack([Z, [0.1, -0.2, 0.3]])
    focal = _np_focal(z, y, 2.0)
    if mode == "by_class":
        weights = np.broadcast_to(np.asarray(w), z.shape)
    else:  # row 0: mean(w0, w2); row 1: w1; row 2 (no positive): 1
        weights = np.array([[(w[0] + w[2]) / 2] * 3, [w[1]] * 3, [1.0] * 3])
    got = class_balanced_focal_loss(_j(z), _j(y), COUNTS, beta=0.99, gamma=2.0, mode=mode)
    np.testing.assert_allclose(got, weights * focal, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="mode"):
        class_balanced_focal_loss(_j(z), _j(y), COUNTS, mode="min_n")


def test_inverse_frequency_weights_hand_values():
    n = np.array([1.0, 4.0, 5.0])
    np.testing.assert_allclose(inverse_frequency_weights(n, num_samples=10), [10.0, 2.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(inverse_frequency_weights(n, num_samples=10, power=0.5),
                               [math.sqrt(10), math.sqrt(2.5), math.sqrt(2.0)], rtol=1e-6)
    np.testing.assert_allclose(inverse_frequency_weights(n), np.array([1.0, 0.25, 0.2]) * 3 / 1.45, rtol=1e-6)


def test_db_rebalancing_weights_hand_computed():
    # n = (2, 5, 10): 1/n = (1/2, 1/5, 1/10). r_ik = (1/n_k) / Σ_{j: y_ij = 1} 1/n_j, for every k.
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]], np.float32)
    r = np.array(
        [
            [0.5 / 0.5, 0.2 / 0.5, 0.1 / 0.5],  # row 0: only class 0
            [0.5 / 0.7, 0.2 / 0.7, 0.1 / 0.7],  # row 1: classes 0, 1
            [0.5 / 0.3, 0.2 / 0.3, 0.1 / 0.3],  # row 2: classes 1, 2
        ]
    )
    expected = np.vstack([0.1 + 1 / (1 + np.exp(-10 * (r - 0.3))), np.full((1, 3), 1.1)])  # empty row: α + 1
    got = db_rebalancing_weights(jnp.asarray(labels), COUNTS)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Two entries by hand: row 0, class 0: r = 1, 0.1 + σ(7) = 1.09908895; row 2, class 2: r = 1/3, 0.1 + σ(1/3).
    assert float(got[0, 0]) == pytest.approx(0.1 + 1 / (1 + math.exp(-7.0)), rel=1e-6)
    assert float(got[2, 2]) == pytest.approx(0.1 + 1 / (1 + math.exp(-1 / 3)), rel=1e-6)
    # A single-label row of the rarest class gets the largest weight there: r = 1.
    other = db_rebalancing_weights(jnp.asarray(labels), COUNTS, alpha=0.0, beta=1.0, mu=0.0)
    np.testing.assert_allclose(other[:3], 1 / (1 + np.exp(-r)), rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[3\]"):
        db_rebalancing_weights(jnp.asarray(labels), COUNTS[:2])


def test_db_loss_hand_values():
    np.testing.assert_allclose(db_loss(_j(Z), _j(Y), COUNTS, num_samples=N_TRAIN),
                               _np_db(Z, Y, COUNTS, N_TRAIN), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db_focal_loss(_j(Z), _j(Y), COUNTS, num_samples=N_TRAIN),
                               _np_db(Z, Y, COUNTS, N_TRAIN, gamma=2.0, bal=2.0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        db_loss(_j(Z), _j(Y), COUNTS, num_samples=N_TRAIN, neg_scale=2.0, kappa=0.1, mu=0.5),
        _np_db(Z, Y, COUNTS, N_TRAIN, lam=2.0, kappa=0.1, mu=0.5), rtol=1e-5, atol=1e-7,
    )
    # One entry by hand: row 0, class 1 is a negative with n = 5, N = 20. ν = -0.05 log(3) / 5,
    # z' = 5 (-1 + ν); the row's positives are classes 0 and 2, so r = (1/5) / (1/2 + 1/10) = 1/3,
    # w = 0.1 + σ(10 (1/3 - 0.3)); loss = (w / 5) softplus(z').
    nu = -0.05 * math.log(20 / 5 - 1) / 5
    zp = 5 * (-1.0 + nu)
    w = 0.1 + 1 / (1 + math.exp(-10 * (1 / 3 - 0.3)))
    hand = w / 5 * math.log1p(math.exp(zp))
    got = float(db_loss(_j(Z), _j(Y), COUNTS, num_samples=N_TRAIN)[0, 1])
    assert got == pytest.approx(hand, rel=1e-5)
    # Without NTR (λ = 1, κ = 0) it is re-balanced BCE.
    np.testing.assert_allclose(
        db_loss(_j(Z), _j(Y), COUNTS, num_samples=N_TRAIN, neg_scale=1.0, kappa=0.0),
        db_rebalancing_weights(_j(Y), COUNTS) * binary_cross_entropy(_j(Z), _j(Y)), rtol=1e-5,
    )


def test_asymmetric_loss_hand_values():
    for gp, gn, m in [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (0.0, 2.0, 0.0), (0.0, 0.0, 0.2)]:
        got = asymmetric_loss(_j(Z), _j(Y), gamma_pos=gp, gamma_neg=gn, clip=m)
        np.testing.assert_allclose(got, _np_asl(Z, Y, gp, gn, m), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(asymmetric_loss(_j(Z), _j(Y), gamma_pos=0.0, gamma_neg=0.0, clip=0.0),
                               binary_cross_entropy(_j(Z), _j(Y)), rtol=1e-6)
    # z = 0, y = 0, defaults: p_m = 0.45, loss = -0.45^4 log(0.55).
    assert float(asymmetric_loss(_j([0.0]), _j([0.0]))[0]) == pytest.approx(-(0.45**4) * math.log(0.55), rel=1e-5)
    # An easy negative (p < m) is discarded: zero loss and zero gradient.
    val, grad = jax.value_and_grad(lambda v: asymmetric_loss(v, _j([0.0])).sum())(_j([-4.0]))
    assert float(val) == 0.0 and float(grad[0]) == 0.0


# ------------------------------------------------------------ transformations
LOSSES = {
    "focal": lambda z, y, **kw: sigmoid_focal_loss(z, y, gamma=2.0, alpha=0.25, **kw),
    "focal-gamma-half": lambda z, y, **kw: sigmoid_focal_loss(z, y, gamma=0.5, **kw),
    "cb-focal": lambda z, y, **kw: class_balanced_focal_loss(z, y, COUNTS, beta=0.99, **kw),
    "cb-focal-by-class": lambda z, y, **kw: class_balanced_focal_loss(z, y, COUNTS, mode="by_class", **kw),
    "db": lambda z, y, **kw: db_loss(z, y, COUNTS, num_samples=N_TRAIN, **kw),
    "db-focal": lambda z, y, **kw: db_focal_loss(z, y, COUNTS, num_samples=N_TRAIN, **kw),
    "asl": lambda z, y, **kw: asymmetric_loss(z, y, **kw),
    "asl-gamma-half": lambda z, y, **kw: asymmetric_loss(z, y, gamma_pos=0.5, gamma_neg=0.5, **kw),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_jit_vmap_grad(name):
    fn = LOSSES[name]
    z, y = jnp.asarray(Z), jnp.asarray(Y)
    ref = fn(z, y)
    assert ref.shape == z.shape
    np.testing.assert_allclose(jax.jit(fn)(z, y), ref, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(fn)(z, y), ref, rtol=1e-6)  # rows one at a time, [C] each
    np.testing.assert_allclose(fn(z.reshape(1, 2, 3), y.reshape(1, 2, 3))[0], ref, rtol=1e-6)
    check_grads(lambda v: fn(v, y), (z,), order=1, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="differ"):
        fn(z, y[:, :2])


@pytest.mark.parametrize("name", list(LOSSES))
def test_where_and_extremes(name):
    fn = LOSSES[name]
    z, y = jnp.asarray(Z), jnp.asarray(Y)
    where = jnp.array([True, False, True])
    masked = fn(z, y.at[:, 1].set(jnp.nan), where=where)  # missing labels are NaN, neutralised first
    assert bool(jnp.all(masked[:, 1] == 0))
    # Row-wise weights (CB average_w, DB) see the neutralised label as 0, as they should.
    np.testing.assert_allclose(masked[:, ::2], fn(z, y.at[:, 1].set(0.0))[:, ::2], rtol=1e-6)
    grad = jax.grad(lambda v: fn(v, y.at[:, 1].set(jnp.nan), where=where).sum())(z)
    assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.all(grad[:, 1] == 0))
    big = jnp.array([[80.0, -80.0, 80.0], [-80.0, 80.0, -80.0]])
    for labels in (y, 1 - y):
        val, grad = jax.value_and_grad(lambda v, labels=labels: fn(v, labels).sum())(big)
        assert bool(jnp.isfinite(val)) and bool(jnp.all(jnp.isfinite(grad)))
