import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hmljax.constraints import constraint_graph
from hmljax.hierarchy import Hierarchy
from hmljax.losses import (
    UNCERTAINTIES,
    binary_cross_entropy,
    constrained_probs,
    label_weights,
    mc_logits,
    mc_loss,
    weighted_mc_loss,
)


def _hier():
    edges = [("root", "a"), ("root", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("d", "e"), ("c", "f"), ("b", "g")]
    return Hierarchy.from_edges(edges, skip=())


def _torch_style_reference(z, y, R):
    """Float64 numpy re-derivation of C-HMCNN's PyTorch MCLoss, with a hand-written backward.

    Forward (train path): h = sigmoid(z); a = max_j R_ij h_j; b = max_j R_ij y_j h_j;
    yhat = (1-y) a + y b; loss = BCE(yhat, y) elementwise. Backward: the gradient of each
    max goes to its argmax (torch.max), then through the sigmoid.
    """
    h = 1 / (1 + np.exp(-z))
    full = h[:, None, :] * R[None]  # B x C x C, valid because h >= 0
    pos = (y * h)[:, None, :] * R[None]
    a, b = full.max(-1), pos.max(-1)
    ia, ib = full.argmax(-1), pos.argmax(-1)
    yhat = (1 - y) * a + y * b
    loss = -(y * np.log(yhat) + (1 - y) * np.log(1 - yhat))
    g_yhat = (yhat - y) / (yhat * (1 - yhat))  # d loss / d yhat for a summed loss
    g_h = np.zeros_like(h)
    for n in range(z.shape[0]):
        for i in range(z.shape[1]):
            j = ib[n, i] if y[n, i] else ia[n, i]
            g_h[n, j] += g_yhat[n, i] * (y[n, j] if y[n, i] else 1.0)
    return loss, g_h * h * (1 - h)


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sparse"])
def test_mc_loss_matches_float64_reference(dense, rng):
    h = _hier()
    R = h.ancestry
    anc = jnp.asarray(R) if dense else constraint_graph(h)
    for _ in range(5):
        z = rng.normal(size=(6, h.num_nodes)) * 2
        leaves = rng.integers(0, h.num_nodes, size=(6, 2))
        y = h.encode([tuple(h.names[k] for k in row) for row in leaves]).astype(np.float64)
        ref_loss, ref_grad = _torch_style_reference(z, y, R.astype(np.float64))
        loss = mc_loss(jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32), anc)
        np.testing.assert_allclose(loss, ref_loss, rtol=2e-5, atol=2e-6)
        grad = jax.grad(lambda v: mc_loss(v, jnp.asarray(y, jnp.float32), anc).sum())(jnp.asarray(z, jnp.float32))
        np.testing.assert_allclose(grad, ref_grad, rtol=2e-4, atol=2e-6)


def test_where_mask_and_roots():
    h = _hier()
    z = jax.random.normal(jax.random.key(0), (3, h.num_nodes))
    y = jnp.asarray(h.encode([("e",), ("f",), ("g",)]), jnp.float32)
    full = mc_loss(z, y, jnp.asarray(h.ancestry))
    masked = mc_loss(z, y, jnp.asarray(h.ancestry), where=jnp.asarray(h.evaluated | True).at[0].set(False))
    assert bool(jnp.all(masked[:, 0] == 0)) and bool(jnp.all(masked[:, 1:] == full[:, 1:]))
    g = jax.grad(lambda v: mc_loss(v, y, jnp.asarray(h.ancestry), where=jnp.zeros(h.num_nodes, bool)).sum())(z)
    assert bool(jnp.all(g == 0))


def test_extreme_logits_stay_finite():
    h = _hier()
    z = jnp.full((2, h.num_nodes), 80.0).at[0].set(-80.0)
    y = jnp.asarray(h.encode([("e",), ("g",)]), jnp.float32)
    loss = mc_loss(z, y, constraint_graph(h))
    grad = jax.grad(lambda v: mc_loss(v, y, constraint_graph(h)).sum())(z)
    assert bool(jnp.all(jnp.isfinite(loss))) and bool(jnp.all(jnp.isfinite(grad)))
    assert float(loss[0].max()) == pytest.approx(80.0, rel=1e-3)  # -log sigmoid(-80) = 80, not clipped at 100


def test_inference_path_and_bce():
    h = _hier()
    z = jax.random.normal(jax.random.key(3), (4, h.num_nodes))
    p = constrained_probs(z, jnp.asarray(h.ancestry))
    c, par = h.edges[:, 0], h.edges[:, 1]
    assert bool(jnp.all(p[:, c] <= p[:, par]))
    y = (jax.random.uniform(jax.random.key(4), z.shape) > 0.5).astype(jnp.float32)
    s = jax.nn.sigmoid(z)
    np.testing.assert_allclose(binary_cross_entropy(z, y), -(y * jnp.log(s) + (1 - y) * jnp.log1p(-s)), rtol=1e-5)
    # With all-positive labels the positive path is the plain constraint.
    ones = jnp.ones_like(z)
    np.testing.assert_allclose(mc_logits(z, ones, jnp.asarray(h.ancestry)),
                               jnp.log(p) - jnp.log1p(-p), rtol=1e-4, atol=1e-4)


def test_jit_vmap_grad_checks():
    h = _hier()
    R, g = jnp.asarray(h.ancestry), constraint_graph(h)
    z = jax.random.normal(jax.random.key(5), (3, h.num_nodes))
    y = jnp.asarray(h.encode([("e",), ("c",), ("g",)]), jnp.float32)
    for anc in (R, g):
        np.testing.assert_allclose(jax.jit(mc_loss)(z, y, anc), mc_loss(z, y, anc), rtol=1e-6)
        stacked = jnp.stack([mc_loss(z[i : i + 1], y[i : i + 1], anc)[0] for i in range(3)])
        np.testing.assert_allclose(jax.vmap(lambda a, b: mc_loss(a[None], b[None], anc)[0])(z, y), stacked, rtol=1e-6)
        check_grads(lambda v: mc_loss(v, y, anc), (z,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="differ"):
        mc_loss(z, y[:, :3], R)


# ----------------------------------------------------------------------------- leading batch axes


def _batched_inputs(h, shape, seed=7):
    c = h.num_nodes
    z = jax.random.normal(jax.random.key(seed), (*shape, c)) * 2
    leaves = np.random.default_rng(seed).integers(0, c, size=(int(np.prod(shape)), 2))
    y = h.encode([tuple(h.names[k] for k in row) for row in leaves]).reshape(*shape, c)
    return z, jnp.asarray(y, jnp.float32)


def _elementwise_losses(h, anc):
    """Every [..., C] -> [..., C] loss, as fn(z, y)."""
    w = jnp.asarray(np.linspace(0.5, 2.0, h.num_nodes), jnp.float32)
    return {
        "mc_loss": lambda z, y: mc_loss(z, y, anc, where=jnp.asarray(h.evaluated)),
        "mc_logits": lambda z, y: mc_logits(z, y, anc),
        "constrained_probs": lambda z, y: constrained_probs(z, anc),
        "bce": lambda z, y: binary_cross_entropy(z, y),
        "weighted_mc_loss": lambda z, y: weighted_mc_loss(z, y, anc, node_weights=w, focal=jnp.full(z.shape, 0.5)),
        "weighted_negative": lambda z, y: weighted_mc_loss(z, y, anc, node_weights=w, apply_to="negative"),
        "label_weights": lambda z, y: label_weights(w, y),
    }


@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4)], ids=lambda s: f"batch{list(s)}")
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sparse"])
def test_leading_batch_axes_equal_the_2d_result(shape, dense):
    h = _hier()
    c = h.num_nodes
    anc = jnp.asarray(h.ancestry) if dense else constraint_graph(h)
    z, y = _batched_inputs(h, shape)
    for name, fn in _elementwise_losses(h, anc).items():
        want = fn(z.reshape(-1, c), y.reshape(-1, c)).reshape(z.shape)
        for f in (fn, jax.jit(fn)):
            got = f(z, y)
            assert got.shape == z.shape, name
            np.testing.assert_array_equal(got, want, err_msg=name)


# Both with -m slow: test_constraints' leading-axes test and the HLSTM/RARE tests cover the sparse path by default.
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "sparse"])
@pytest.mark.slow
def test_leading_batch_axes_under_vmap_and_grad(dense):
    h = _hier()
    c = h.num_nodes
    anc = jnp.asarray(h.ancestry) if dense else constraint_graph(h)
    z, y = _batched_inputs(h, (2, 3))
    for name, fn in _elementwise_losses(h, anc).items():
        flat = fn(z.reshape(-1, c), y.reshape(-1, c)).reshape(z.shape)
        np.testing.assert_array_equal(jax.vmap(fn)(z, y), flat, err_msg=name)  # [3, C] per call
        np.testing.assert_array_equal(jax.vmap(jax.vmap(fn))(z, y), flat, err_msg=name)  # [C] per call
        if name == "label_weights":
            continue
        grad = jax.grad(lambda v, fn=fn: fn(v, y).sum())(z)
        grad_2d = jax.grad(lambda v, fn=fn: fn(v, y.reshape(-1, c)).sum())(z.reshape(-1, c))
        np.testing.assert_array_equal(grad, grad_2d.reshape(z.shape), err_msg=name)
    check_grads(lambda v: mc_loss(jnp.asarray(v), y[0, 0], anc), (z[0, 0],), order=1, modes=("rev",),
                atol=1e-2, rtol=1e-2)  # [C]


def test_leading_batch_axes_shape_errors():
    h = _hier()
    z, y = _batched_inputs(h, (2, 3))
    with pytest.raises((ValueError, TypeError), match="differ|mc_loss"):  # TypeError: jaxtyping's check, when on
        mc_loss(z, y[0], jnp.asarray(h.ancestry))
    with pytest.raises(ValueError, match="label_weights"):
        label_weights(jnp.ones(h.num_nodes + 1), y)


@pytest.mark.parametrize("mode", sorted(UNCERTAINTIES))
def test_uncertainties_take_members_then_any_batch_axes(mode):
    fn = UNCERTAINTIES[mode]
    c = 5
    p = jax.random.uniform(jax.random.key(8), (4, 2, 3, c))  # [E, 2, 3, C]
    want = fn(p.reshape(4, -1, c)).reshape(2, 3, c)
    for f in (fn, jax.jit(fn)):
        np.testing.assert_allclose(f(p), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fn(p[:, 0, 0]), want[0, 0], rtol=1e-6, atol=1e-7)  # [E, C]
    np.testing.assert_allclose(jax.vmap(fn, in_axes=1)(p), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(jax.grad(lambda q: fn(q).sum())(p), 0.0)
