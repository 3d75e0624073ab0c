"""Every public loss under the ways users call it from their own JAX code, on a small DAG.

Each loss is called eagerly, jitted over the logits alone (labels and mask closed over, concrete), jitted
over every argument, differentiated (eagerly and jitted), vmapped over an ensemble axis and given leading
batch axes, with no mask and with the mask as a ``[C]`` numpy array, a ``[C]`` jax array and a full
``[B, C]`` array. Each way must give the eager value (the gradient: a finite one). The closure case once
failed: ``hybrid_loss`` broadcast ``where`` into a tracer and the closure check called ``np.asarray`` on it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hmljax.losses as L
from hmljax.constraints import constraint_graph
from hmljax.hierarchy import Hierarchy

H = Hierarchy.from_pairs([(0, 1), (0, 2), (2, 3), (1, 4), (2, 4)])  # node 4 has two parents: a DAG
C = H.num_nodes
GRAPH, DENSE, PARENTS = constraint_graph(H), jnp.asarray(H.ancestry), L.parent_graph(H)
Y = np.zeros((3, C), np.float32)
Y[0, [0, 2, 3]] = 1
Y[1, [0, 1, 2, 4]] = 1
Y[2, [0, 1]] = 1
Y = jnp.asarray(Y)
Z = jnp.asarray(np.random.default_rng(0).normal(size=(3, C)), jnp.float32)
COUNTS = np.array([10.0, 5.0, 4.0, 2.0, 1.0], np.float32)
W = jnp.linspace(0.5, 2.0, C)

LOSSES = {
    "mc_loss dense": lambda z, y, m: L.mc_loss(z, y, DENSE, where=m),
    "mc_loss sparse": lambda z, y, m: L.mc_loss(z, y, GRAPH, where=m),
    "weighted_mc_loss": lambda z, y, m: L.weighted_mc_loss(z, y, GRAPH, node_weights=W, focal=0.5 + 0 * z, where=m),
    "lmc_loss": lambda z, y, m: L.lmc_loss(z, y, PARENTS, where=m),
    "hybrid_loss mean": lambda z, y, m: L.hybrid_loss(z, y, GRAPH, PARENTS, where=m),
    "hybrid_loss none": lambda z, y, m: L.hybrid_loss(z, y, GRAPH, PARENTS, where=m, reduction="none"),
    "hybrid_loss sum, dense, local head": lambda z, y, m: L.hybrid_loss(z, y, DENSE, PARENTS, where=m, reduction="sum",
                                                                       local_logits=0.5 * z),
    "binary_cross_entropy": lambda z, y, m: L.binary_cross_entropy(z, y, where=m),
    "sigmoid_focal_loss": lambda z, y, m: L.sigmoid_focal_loss(z, y, alpha=0.25, where=m),
    "class_balanced_focal_loss": lambda z, y, m: L.class_balanced_focal_loss(z, y, COUNTS, where=m),
    "asymmetric_loss": lambda z, y, m: L.asymmetric_loss(z, y, where=m),
    "reduce_loss": lambda z, y, m: L.reduce_loss(L.mc_loss(z, y, GRAPH), m),
}
MASKS = {"none": None, "numpy [C]": H.evaluated, "jax [C]": jnp.asarray(H.evaluated),
         "full [B, C]": np.broadcast_to(H.evaluated, (3, C)).copy()}


@pytest.mark.parametrize("name", list(LOSSES))
def test_public_losses_jitted_over_logits_alone(name):
    """The fast subset (the default run): concrete labels and a numpy mask closed over by a jitted caller."""
    f, m = LOSSES[name], MASKS["numpy [C]"]
    want = np.asarray(f(Z, Y, m))
    np.testing.assert_allclose(np.asarray(jax.jit(lambda z: f(z, Y, m))(Z)), want, rtol=1e-5, atol=1e-6)
    g = jax.jit(jax.grad(lambda z: jnp.sum(f(z, Y, m))))(Z)
    assert g.shape == Z.shape and np.isfinite(np.asarray(g)).all()


@pytest.mark.slow
@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("name", list(LOSSES))
def test_public_losses_under_jit_grad_vmap_and_closures(name, mask):
    f, m = LOSSES[name], MASKS[mask]
    want = np.asarray(f(Z, Y, m))
    assert np.isfinite(want).all()
    close = lambda got: np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)  # noqa: E731
    close(jax.jit(lambda z: f(z, Y, m))(Z))  # labels and mask closed over, concrete
    close(jax.jit(f)(Z, Y, m))  # everything traced
    total = lambda z: jnp.sum(f(z, Y, m))  # noqa: E731
    for g in (jax.grad(total)(Z), jax.jit(jax.grad(total))(Z)):
        assert g.shape == Z.shape and np.isfinite(np.asarray(g)).all()
    np.testing.assert_allclose(jax.jit(jax.grad(total))(Z), jax.grad(total)(Z), rtol=1e-5, atol=1e-6)
    ens = jax.vmap(lambda z: f(z, Y, m))(jnp.stack([Z, Z]))  # an ensemble axis
    np.testing.assert_allclose(np.asarray(ens), np.stack([want, want]), rtol=1e-5, atol=1e-6)
    if want.ndim == 2:  # elementwise losses also take leading axes directly
        m2 = m if m is None or np.ndim(m) == 1 else np.stack([m, m])
        np.testing.assert_allclose(np.asarray(f(jnp.stack([Z, Z]), jnp.stack([Y, Y]), m2)), np.stack([want, want]),
                                   rtol=1e-5, atol=1e-6)
