import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FUN, GO, load, needs_data
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from hmljax.constraints import (
    apply_constraint,
    constraint_graph,
    max_constraint,
    max_constraint_sparse,
    numpy_max_constraint,
)
from hmljax.hierarchy import Hierarchy


@st.composite
def hierarchies(draw):
    """Random DAGs: node k > 0 gets 1..3 parents among nodes < k (so acyclic, single root)."""
    n = draw(st.integers(2, 14))
    edges = []
    for k in range(1, n):
        ps = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=3, unique=True))
        edges += [(f"n{p}", f"n{k}") for p in ps]
    return Hierarchy.from_edges(edges, skip=())


def _inputs(h, seed, batch=3):
    return jax.random.normal(jax.random.key(seed), (batch, h.num_nodes)) * 3


@settings(max_examples=8, deadline=None)  # each example is a new shape, so a new compile: kept few for CI time
@given(hierarchies(), st.integers(0, 10_000))
def test_dense_equals_sparse_equals_numpy(h, seed):
    x = _inputs(h, seed)
    dense = max_constraint(x, jnp.asarray(h.ancestry))
    sparse = max_constraint_sparse(x, constraint_graph(h))
    np.testing.assert_array_equal(dense, sparse)
    np.testing.assert_allclose(dense, numpy_max_constraint(np.asarray(x, np.float64), h.ancestry), rtol=1e-6)


@settings(max_examples=12, deadline=None)
@given(hierarchies(), st.integers(0, 10_000))
def test_no_child_exceeds_parent_and_idempotent(h, seed):
    x = _inputs(h, seed)
    g = constraint_graph(h)
    for out in (max_constraint(x, jnp.asarray(h.ancestry)), max_constraint_sparse(x, g)):
        c, p = h.edges[:, 0], h.edges[:, 1]
        assert bool(jnp.all(out[:, c] <= out[:, p]))
        assert bool(jnp.all(out >= x))
        np.testing.assert_array_equal(max_constraint_sparse(out, g), out)


@settings(max_examples=4, deadline=None)
@given(hierarchies(), st.integers(0, 10_000))
def test_gradient_is_zero_outside_descendants(h, seed):
    x = _inputs(h, seed, batch=1)[0]
    R = jnp.asarray(h.ancestry)
    g = constraint_graph(h)
    for fn in (lambda v: max_constraint(v[None], R)[0], lambda v: max_constraint_sparse(v[None], g)[0]):
        jac = jax.jit(jax.jacobian(fn))(x)  # jac[i, j] = d out_i / d x_j (jitted: eager dispatch is slow)
        assert bool(jnp.all(jnp.where(h.ancestry, True, jac == 0)))
        np.testing.assert_allclose(jac.sum(1), 1.0, rtol=1e-6)  # exactly one (or a split) argmax per node


def test_negative_inputs_are_handled():
    # Multiplying by R (the PyTorch trick) would return 0 here; the masked max must not.
    h = Hierarchy.from_paths(["a", "a/b"])
    x = jnp.array([[-5.0, -3.0, -1.0]])  # order: a, root, a/b
    np.testing.assert_array_equal(max_constraint(x, jnp.asarray(h.ancestry)), [[-1.0, -1.0, -1.0]])


def test_jit_vmap_grad():
    h = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "c"), ("b", "c"), ("c", "d")], skip=())
    R, g = jnp.asarray(h.ancestry), constraint_graph(h)
    x = jax.random.normal(jax.random.key(0), (4, h.num_nodes))
    for fn, arg in ((max_constraint, R), (max_constraint_sparse, g)):
        np.testing.assert_array_equal(jax.jit(fn)(x, arg), fn(x, arg))
        stacked = jnp.stack([fn(x[i : i + 1], arg)[0] for i in range(4)])
        np.testing.assert_array_equal(jax.vmap(lambda r: fn(r[None], arg)[0])(x), stacked)
        check_grads(lambda v: fn(v, arg), (x,), order=1, modes=("rev",))
    np.testing.assert_array_equal(apply_constraint(x, g), apply_constraint(x, R))


def test_shape_errors():
    h = Hierarchy.from_paths(["a", "a/b"])
    errors = (ValueError, TypeError)  # TypeError: jaxtyping's check, when switched on, fires first
    for shape in ((2, 4), (4,), (2, 3, 4), ()):
        with pytest.raises(errors, match="max_constraint"):
            max_constraint(jnp.zeros(shape), jnp.asarray(h.ancestry))
        with pytest.raises(errors, match="max_constraint_sparse"):
            max_constraint_sparse(jnp.zeros(shape), constraint_graph(h))


def _dag():
    return Hierarchy.from_pairs([(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (2, 5)], unevaluated=())


@pytest.mark.parametrize("shape", [(2, 3), (), (1,), (2, 1, 3), (0, 2)], ids=lambda s: f"batch{list(s)}")
@pytest.mark.parametrize("form", ["dense", "sparse"])
def test_leading_batch_axes_equal_the_2d_result(shape, form):
    h = _dag()
    c = h.num_nodes
    anc = jnp.asarray(h.ancestry) if form == "dense" else constraint_graph(h)
    fn = max_constraint if form == "dense" else max_constraint_sparse
    x = jax.random.normal(jax.random.key(2), (*shape, c)) * 3
    want = fn(x.reshape(-1, c), anc).reshape(x.shape)
    for f in (fn, jax.jit(fn)):
        got = f(x, anc)
        assert got.shape == x.shape and got.dtype == x.dtype
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(apply_constraint(x, anc), want)
    np.testing.assert_allclose(want, numpy_max_constraint(np.asarray(x, np.float64), h.ancestry), rtol=1e-6)


@pytest.mark.parametrize("form", [pytest.param("dense", marks=pytest.mark.slow), "sparse"])
def test_leading_batch_axes_under_vmap_and_grad(form):
    h = _dag()
    c = h.num_nodes
    anc = jnp.asarray(h.ancestry) if form == "dense" else constraint_graph(h)
    fn = max_constraint if form == "dense" else max_constraint_sparse
    x = jax.random.normal(jax.random.key(3), (2, 3, c))
    flat = fn(x.reshape(-1, c), anc).reshape(x.shape)
    np.testing.assert_array_equal(jax.vmap(lambda v: fn(v, anc))(x), flat)  # [3, C] per call
    np.testing.assert_array_equal(jax.vmap(jax.vmap(lambda v: fn(v, anc)))(x), flat)  # [C] per call
    weights = jax.random.normal(jax.random.key(4), x.shape)
    grad = jax.grad(lambda v: jnp.sum(fn(v, anc) * weights))(x)
    grad_2d = jax.grad(lambda v: jnp.sum(fn(v, anc) * weights.reshape(-1, c)))(x.reshape(-1, c))
    np.testing.assert_array_equal(grad, grad_2d.reshape(x.shape))
    check_grads(lambda v: fn(jnp.asarray(v), anc), (x[0, 0],), order=1, modes=("rev",))  # [C]


@needs_data
@pytest.mark.parametrize("name", [n if n == "cellcycle_FUN" else
                                  pytest.param(n, marks=pytest.mark.slow) for n in FUN + GO])
def test_dense_equals_sparse_on_real_hierarchies(name):  # the default run: a tree (DAGs: hypothesis); all: -m slow
    h = load(name).hierarchy
    R, g = jnp.asarray(h.ancestry), constraint_graph(h)
    x = jax.random.normal(jax.random.key(1), (2, h.num_nodes))
    dense = jax.jit(max_constraint)(x, R)
    sparse = jax.jit(max_constraint_sparse)(x, g)
    np.testing.assert_array_equal(dense, sparse)
    grad = jax.jit(jax.grad(lambda v, g: jnp.sum(max_constraint_sparse(v, g) ** 2)))(x, g)
    assert bool(jnp.all(jnp.isfinite(grad)))
    if name.endswith("FUN"):  # the dense [B, C, C] backward on GO is slow on CI's 2 cores; values suffice there
        dense_grad = jax.jit(jax.grad(lambda v, R: jnp.sum(max_constraint(v, R) ** 2)))(x, R)
        np.testing.assert_allclose(grad, dense_grad, rtol=1e-6)


def test_graphs_accept_an_ancestry_matrix():
    """Code holding C-HMCNN's R builds the sparse constraint and LMC without a Hierarchy."""
    from hmljax.losses import local_min_constraint, parent_graph

    h = Hierarchy.from_pairs([(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)], unevaluated=())
    R = np.asarray(h.ancestry).astype(np.int64).tolist()  # a nested list, as a user might hold it
    x = jax.random.normal(jax.random.key(0), (3, 5))
    np.testing.assert_array_equal(max_constraint_sparse(x, constraint_graph(R)), max_constraint(x, R))
    np.testing.assert_array_equal(local_min_constraint(x, parent_graph(R)), local_min_constraint(x, parent_graph(h)))
    with pytest.raises(TypeError, match="constraint_graph: expected a hmljax.hierarchy.Hierarchy or"):
        constraint_graph("cellcycle_FUN")
    with pytest.raises(TypeError, match="parent_graph: expected"):
        parent_graph({"a": "b"})
