"""The max-constraint module (C-HMCNN's MCM): dense and sparse forms.

``MCM(x)_i = max_{j in desc(i) ∪ {i}} x_j``. Because sigmoid is monotonic,
``MCM(sigmoid(z)) = sigmoid(MCM(z))``: the constraint works unchanged on logits,
which is how the losses use it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from hmljax.hierarchy import as_hierarchy

__all__ = ["ConstraintGraph", "constraint_graph", "max_constraint", "max_constraint_sparse", "apply_constraint"]


@jax.tree_util.register_pytree_node_class
class ConstraintGraph:
    """Per-level edge lists for :func:`max_constraint_sparse` (a pytree of int32 arrays).

    ``levels[k] = (child, segment, parent)``: the edges into the parents of
    height ``k + 1``; ``segment[e]`` indexes ``parent``. Build it with
    :func:`constraint_graph`. ``num_nodes`` and the level sizes are static, so
    a graph can be passed through ``jit`` as an ordinary argument.
    """

    def __init__(self, levels: tuple[tuple[Int[Array, " Ek"], Int[Array, " Ek"], Int[Array, " Pk"]], ...],
                 num_nodes: int):
        self.levels = tuple(tuple(lvl) for lvl in levels)
        self.num_nodes = int(num_nodes)

    def tree_flatten(self):
        return (self.levels,), self.num_nodes

    @classmethod
    def tree_unflatten(cls, num_nodes, children):
        return cls(children[0], num_nodes)

    def __repr__(self) -> str:
        edges = sum(int(lvl[0].shape[0]) for lvl in self.levels)
        return f"ConstraintGraph(num_nodes={self.num_nodes}, levels={len(self.levels)}, edges={edges})"


def constraint_graph(hierarchy) -> ConstraintGraph:
    """Builds the sparse constraint's edge lists.

    Args:
        hierarchy: a :class:`hmljax.hierarchy.Hierarchy`, or its ancestry matrix
            ``[C, C]`` (C-HMCNN's ``R``; see :meth:`Hierarchy.from_ancestry`).

    >>> R = np.array([[1, 1], [0, 1]], bool)  # node 1 is the child of node 0
    >>> max_constraint_sparse(jnp.array([[0.2, 0.7]]), constraint_graph(R)).tolist()
    [[0.699999988079071, 0.699999988079071]]
    """
    hierarchy = as_hierarchy(hierarchy, caller="constraint_graph")
    levels = tuple(tuple(jnp.asarray(a) for a in lvl) for lvl in hierarchy.propagation_levels)
    return ConstraintGraph(levels, hierarchy.num_nodes)


def _max_constraint_one(x_C: Float[Array, " C"], ancestry_CxC: Bool[Array, "C C"]) -> Float[Array, " C"]:
    # Fill with finfo.min, not 0: multiplying by R (the reference's trick) is only right for x >= 0.
    fill = jnp.finfo(x_C.dtype).min
    return jnp.max(jnp.where(ancestry_CxC, x_C[None, :], fill), axis=-1)


def max_constraint(x: Float[Array, "*batch C"], ancestry: Bool[Array, "C C"]) -> Float[Array, "*batch C"]:
    """Dense max-constraint: each node takes the max over itself and its descendants.

    Args:
        x: scores per node, nodes on the last axis and any leading batch axes
            (``[C]``, ``[B, C]``, ``[E, B, C]``, ...); logits or probabilities,
            any real values.
        ancestry: ``ancestry[i, j]`` is True iff node j is node i or a descendant
            of i (C-HMCNN's R; :attr:`Hierarchy.ancestry`).

    Returns:
        The shape of ``x``; no node exceeds its parent. Work and memory O(N C^2)
        for N rows.

    References:
        Giunchiglia & Lukasiewicz, "Coherent Hierarchical Multi-Label
        Classification Networks", NeurIPS 2020.

    >>> import numpy as np
    >>> R = np.array([[1, 1], [0, 1]], bool)  # node 1 is the child of node 0
    >>> max_constraint(jnp.array([[0.2, 0.7]]), R).tolist()
    [[0.699999988079071, 0.699999988079071]]
    >>> max_constraint(jnp.array([0.2, 0.7]), R).shape
    (2,)
    """
    x = jnp.asarray(x)
    if not hasattr(ancestry, "shape"):  # a nested list: the shape check below needs an array
        ancestry = np.asarray(ancestry)
    if x.ndim == 0 or ancestry.shape != (x.shape[-1], x.shape[-1]):
        raise ValueError(f"max_constraint: x must be [..., C] and ancestry [C, C], got {x.shape} and {ancestry.shape}")
    if x.ndim != 2:  # [B, C] (the training path) skips this, so its traced ops are unchanged
        return _flat_batch(max_constraint, x, ancestry)
    return jax.vmap(_max_constraint_one, in_axes=(0, None))(x, ancestry.astype(bool))


def _flat_batch(fn, x_NC, *args):
    # Any leading axes -> one batch axis -> back: [*batch, C] -> [N, C] -> fn -> [*batch, C].
    return fn(x_NC.reshape(-1, x_NC.shape[-1]), *args).reshape(x_NC.shape)


def max_constraint_sparse(x: Float[Array, "*batch C"], graph: ConstraintGraph) -> Float[Array, "*batch C"]:
    """Exact sparse max-constraint: propagates maxima child -> parent, level by level.

    Nodes are processed by height (longest path down to a leaf), so when a
    parent is updated all its children are final; one segment-max per level.
    Work O(depth x edges x B) instead of O(B C^2); same values as
    :func:`max_constraint`. At ties the gradient is split among the tied
    descendants (the dense form sends it to one).

    Args:
        x: scores per node, nodes on the last axis and any leading batch axes.
        graph: from :func:`constraint_graph`.

    Returns:
        The shape of ``x``, equal to ``max_constraint(x, hierarchy.ancestry)``.
    """
    x = jnp.asarray(x)
    if x.ndim == 0 or x.shape[-1] != graph.num_nodes:
        raise ValueError(f"max_constraint_sparse: x must be [..., {graph.num_nodes}], got {x.shape}")
    if x.ndim != 2:  # [B, C] (the training path) skips this, so its traced ops are unchanged
        return _flat_batch(max_constraint_sparse, x, graph)
    # Nodes on the leading axis: segment_max reduces over it.
    x_CxB = x.T
    for child, segment, parent in graph.levels:
        child_max_PxB = jax.ops.segment_max(
            x_CxB[child], segment, num_segments=parent.shape[0], indices_are_sorted=True
        )
        x_CxB = x_CxB.at[parent].set(jnp.maximum(x_CxB[parent], child_max_PxB), unique_indices=True)
    return x_CxB.T


def apply_constraint(x: Float[Array, "*batch C"], ancestry) -> Float[Array, "*batch C"]:
    """Dispatches on the constraint's form: a dense ``[C, C]`` matrix or a :class:`ConstraintGraph`.

    ``x`` may have any leading batch axes, as in :func:`max_constraint`.
    """
    if isinstance(ancestry, ConstraintGraph):
        return max_constraint_sparse(x, ancestry)
    return max_constraint(x, jnp.asarray(ancestry))


def numpy_max_constraint(x: np.ndarray, ancestry: np.ndarray) -> np.ndarray:
    """Float64 numpy reference (the PyTorch formulation without the ``h >= 0`` assumption); ``x`` is ``[..., C]``."""
    return np.where(ancestry, x[..., None, :], -np.inf).max(-1)
