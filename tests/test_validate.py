"""Host-side input checks at the library's public boundaries: on by default, skipped under jit, switchable."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hmljax
from hmljax.constraints import constraint_graph
from hmljax.hierarchy import Hierarchy
from hmljax.losses import (
    binary_cross_entropy,
    constrained_probs,
    focal_weight,
    hybrid_loss,
    imbalance_weights,
    label_weights,
    lmc_loss,
    mc_loss,
    node_counts,
    parent_graph,
    sigmoid_focal_loss,
    uncertainty,
    weighted_mc_loss,
)

H = Hierarchy.from_edges([("root", "a"), ("a", "b"), ("root", "c")])  # nodes: root, a, b, c (in some order)
IDX = H.index


def _y(*pos):
    y = np.zeros((1, H.num_nodes), np.float32)
    for n in pos:
        y[0, IDX[n]] = 1
    return jnp.asarray(y)


CLOSED = _y("root", "a", "b")
UNCLOSED = _y("root", "b")  # b positive, its parent a negative
Z = jnp.zeros((1, H.num_nodes))
DENSE, SPARSE, PARENTS = jnp.asarray(H.ancestry), constraint_graph(H), parent_graph(H)

CASES = [
    ("mc_loss dense", lambda y, z: mc_loss(z, y, DENSE)),
    ("mc_loss sparse", lambda y, z: mc_loss(z, y, SPARSE)),
    ("lmc_loss", lambda y, z: lmc_loss(z, y, PARENTS)),
    ("hybrid_loss", lambda y, z: hybrid_loss(z, y, SPARSE, PARENTS)),
    ("weighted_mc_loss", lambda y, z: weighted_mc_loss(z, y, SPARSE)),
]


@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_hierarchical_losses_refuse_bad_labels_and_logits(name, fn):
    assert np.isfinite(np.asarray(fn(CLOSED, Z))).all()
    with pytest.raises(ValueError, match="not closed under ancestors"):
        fn(UNCLOSED, Z)
    with pytest.raises(ValueError, match=r"must be 0/1; found 2\.0"):
        fn(CLOSED.at[0, IDX["b"]].set(2.0), Z)
    with pytest.raises(ValueError, match=r"must be 0/1; found -1\.0"):
        fn(CLOSED.at[0, IDX["c"]].set(-1.0), Z)
    with pytest.raises(ValueError, match=r"must be 0/1; found 0\.5"):
        fn(CLOSED.at[0, IDX["b"]].set(0.5), Z)
    with pytest.raises(ValueError, match="non-finite value.*nan"):
        fn(CLOSED, Z.at[0, IDX["a"]].set(jnp.nan))
    with pytest.raises(ValueError, match="non-finite value.*inf"):
        fn(CLOSED, Z.at[0, IDX["a"]].set(jnp.inf))


def test_roots_outside_where_are_not_checked_for_closure():
    # The unevaluated root is masked out of the loss, so its label may be anything 0/1.
    y = _y("a", "b")  # root negative
    with pytest.raises(ValueError, match="not closed"):
        mc_loss(Z, y, DENSE)
    assert np.isfinite(np.asarray(mc_loss(Z, y, DENSE, where=H.evaluated))).all()


def test_under_jit_vmap_grad_nothing_is_checked_or_synced():
    bad = UNCLOSED.at[0, IDX["c"]].set(2.0)
    for f in (jax.jit(lambda z, y: mc_loss(z, y, SPARSE).sum()),
              jax.jit(lambda z, y: hybrid_loss(z, y, SPARSE, PARENTS))):
        assert np.isfinite(float(f(Z, bad)))
    g = jax.grad(lambda z, y: mc_loss(z, y, DENSE).sum())(Z, CLOSED)
    assert g.shape == Z.shape
    v = jax.vmap(lambda z, y: mc_loss(z, y, DENSE))(Z, bad)  # both traced: unchecked
    assert v.shape == Z.shape


def test_a_jitted_caller_closing_over_concrete_labels_and_mask_compiles():
    # hybrid_loss broadcasts `where` before mc_loss checks closure: under jit the mask becomes a tracer while the
    # closed-over labels stay concrete; np.asarray on the traced mask raised TracerArrayConversionError.
    loss = jax.jit(lambda z: hybrid_loss(z, CLOSED, SPARSE, PARENTS, where=H.evaluated))
    assert np.isfinite(float(loss(Z))) and np.isfinite(np.asarray(jax.grad(loss)(Z))).all()
    with pytest.raises(ValueError, match="not closed"):  # eagerly the same call still checks
        hybrid_loss(Z, _y("a", "b", "c").at[0, IDX["a"]].set(0.0), SPARSE, PARENTS, where=H.evaluated)


def test_the_switch_and_the_context_manager():
    assert hmljax.set_validation(False) is True
    try:
        assert np.isfinite(np.asarray(mc_loss(Z, UNCLOSED, DENSE))).all()
    finally:
        hmljax.set_validation(True)
    with hmljax.validation(False):
        lmc_loss(Z, UNCLOSED, PARENTS)
    with pytest.raises(ValueError):  # back on after the block
        lmc_loss(Z, UNCLOSED, PARENTS)


def test_other_public_functions():
    with pytest.raises(ValueError, match="binary_cross_entropy: labels must be 0/1"):
        binary_cross_entropy(Z, CLOSED * 3)
    with pytest.raises(ValueError, match="constrained_probs: logits has 1 non-finite"):
        constrained_probs(Z.at[0, 0].set(jnp.nan), SPARSE)
    with pytest.raises(ValueError, match=r"uncertainty: probs_E must be probabilities in \[0, 1\]; found 1\.5"):
        uncertainty(jnp.full((3, 1, 4), 1.5), mode="gmu")
    with pytest.raises(ValueError, match="focal_weight: u0 must be >= 0"):
        focal_weight(jnp.ones(3), u0=-0.1)
    with pytest.raises(ValueError, match="imbalance_weights: w0 must be >= 0"):
        imbalance_weights(np.ones(4), num_obs=10, num_classes=4, w0=-1.0)
    with pytest.raises(ValueError, match="non-finite"):
        label_weights(np.array([1.0, np.nan, 1.0, 1.0]), CLOSED)
    with pytest.raises(ValueError, match=r"label_weights: labels must be 0/1; found 0\.5"):
        label_weights(np.ones(4), CLOSED * 0.5)
    with pytest.raises(ValueError, match=r"node_counts: labels_NxC must be 0/1; found 2"):
        node_counts(np.asarray(CLOSED, np.int64) * 2, H.ancestry)
    with pytest.raises(ValueError, match="weighted_mc_loss: node_weights must be >= 0"):
        weighted_mc_loss(Z, CLOSED, SPARSE, node_weights=jnp.array([1.0, -2.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="sigmoid_focal_loss: labels must be 0/1"):
        sigmoid_focal_loss(Z, CLOSED * 2)
    # Missing labels (outside where) are neutralised by the long-tail losses, so they are not checked.
    nan_labels = CLOSED.at[0, IDX["c"]].set(jnp.nan)
    where = jnp.ones_like(CLOSED, bool).at[0, IDX["c"]].set(False)
    assert np.isfinite(np.asarray(sigmoid_focal_loss(Z, nan_labels, where=where))).all()


def test_class_counts_outside_the_weights_domain_are_refused():
    # A class without positives made every class-balanced / inverse-frequency weight 0 or NaN (the
    # normalisation divides by an infinite sum); n = N made DB's prior bias infinite. All were silent NaNs.
    from hmljax.losses import class_balanced_weights, db_loss, inverse_frequency_weights

    for fn in (lambda n: class_balanced_weights(n, beta=0.99), inverse_frequency_weights):
        assert np.isfinite(np.asarray(fn(np.array([1.0, 2.0, 5.0])))).all()
        with pytest.raises(ValueError, match=r"class_counts must be >= 1; found 0\.0 at \[1\].*np\.clip"):
            fn(np.array([1.0, 0.0, 5.0]))
    with pytest.raises(ValueError, match="beta must be < 1"):
        class_balanced_weights(np.array([1.0, 2.0]), beta=1.0)
    z, y = jnp.zeros((2, 3)), jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert np.isfinite(np.asarray(db_loss(z, y, np.array([1.0, 1.0, 1.0]), num_samples=2))).all()
    with pytest.raises(ValueError, match=r"class_counts must be < 2; found 2\.0 at \[2\]"):
        db_loss(z, y, np.array([1.0, 1.0, 2.0]), num_samples=2)
    # Traced counts are not checked (nor synced), as everywhere else.
    assert np.asarray(jax.jit(lambda n: class_balanced_weights(n, beta=0.9))(jnp.array([0.0, 2.0]))).shape == (2,)


def test_hybrid_and_local_losses_name_their_graph_and_b_r():
    with pytest.raises(TypeError, match=r"lmc_loss: the graph must be a ParentGraph, got ndarray.*parent_graph"):
        lmc_loss(Z, CLOSED, np.asarray(H.ancestry))
    with pytest.raises(TypeError, match="hybrid_loss: the graph must be a ParentGraph, got Hierarchy"):
        hybrid_loss(Z, CLOSED, SPARSE, H)
    for b_r, word in ((1.5, "<= 1"), (-0.1, ">= 0")):
        with pytest.raises(ValueError, match=f"hybrid_loss: b_r must be {word}"):
            hybrid_loss(Z, CLOSED, SPARSE, PARENTS, b_r=b_r)
    assert np.isfinite(float(jax.jit(lambda b: hybrid_loss(Z, CLOSED, SPARSE, PARENTS, b_r=b))(0.3)))


def test_losses_take_nested_lists_and_name_shapes_that_do_not_broadcast():
    z, y = np.zeros((2, 4)).tolist(), np.asarray(CLOSED.repeat(2, 0)).tolist()
    want = mc_loss(jnp.asarray(z), jnp.asarray(y), DENSE)
    np.testing.assert_allclose(np.asarray(mc_loss(z, y, DENSE)), np.asarray(want))
    assert np.asarray(binary_cross_entropy(z, y)).shape == (2, 4)
    assert np.asarray(sigmoid_focal_loss(z, y)).shape == (2, 4)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: logits \(2, 4\) and labels \(2, 3\) do not broadcast"):
        binary_cross_entropy(jnp.zeros((2, 4)), jnp.zeros((2, 3)))


def test_a_mask_that_does_not_broadcast_is_named_and_focusing_exponents_are_in_range():
    # `where` of a wrong shape was jax's "Incompatible types for broadcasting: input type=bool[3] and requested
    # type=bool[1,4]" (or "Cannot broadcast to shape with fewer dimensions"), naming no loss. A shape is checked
    # under jit too. A negative focusing exponent weighted the easy entries up without bound; ASL's margin
    # m >= 1 zeroed every negative's loss; focal alpha outside [0, 1] gave negative weights.
    from hmljax.losses import asymmetric_loss, reduce_loss

    z, y = jnp.zeros((2, H.num_nodes)), CLOSED.repeat(2, 0)
    bad = np.ones(3, bool)
    calls = {"mc_loss": lambda w: mc_loss(z, y, SPARSE, where=w),
             "lmc_loss": lambda w: lmc_loss(z, y, PARENTS, where=w),
             "hybrid_loss": lambda w: hybrid_loss(z, y, SPARSE, PARENTS, where=w),
             "binary_cross_entropy": lambda w: binary_cross_entropy(z, y, where=w),
             "sigmoid_focal_loss": lambda w: sigmoid_focal_loss(z, y, where=w),
             "reduce_loss": lambda w: reduce_loss(jnp.ones((2, H.num_nodes)), w)}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"{name}: where \(3,\) does not broadcast to the shape of the \w+, "
                                             rf"\(2, {H.num_nodes}\)"):
            call(bad)
        with pytest.raises(ValueError, match=f"{name}: where"):
            jax.jit(call)(bad)
        with pytest.raises(ValueError, match=f"{name}: where"):  # more dims than the labels: not a silent sum
            call(np.ones((3, 2, H.num_nodes), bool))
        assert np.asarray(call(np.ones(H.num_nodes, bool))).size >= 1  # a [C] mask still broadcasts
    for kw, says in (({"gamma": -1.0}, "gamma must be >= 0"), ({"alpha": 1.5}, "alpha must be <= 1")):
        with pytest.raises(ValueError, match=f"sigmoid_focal_loss: {says}"):
            sigmoid_focal_loss(z, y, **kw)
    for kw, says in (({"clip": 1.0}, "clip must be < 1"), ({"gamma_neg": -2.0}, "gamma_neg must be >= 0")):
        with pytest.raises(ValueError, match=f"asymmetric_loss: {says}"):
            asymmetric_loss(z, y, **kw)
    # Traced hyperparameters are not checked (nothing synced under jit).
    assert np.isfinite(np.asarray(jax.jit(lambda g: sigmoid_focal_loss(z, y, gamma=g))(2.0))).all()
