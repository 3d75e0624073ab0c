"""HLSTM's local minimum constraint (LMC), its local loss (LHLoss) and the hybrid loss.

``LMC(x)_j = min(x_j, min_{p in pa(j)} x_p)``: one hop up, not recursive (the
dual of C-HMCNN's MCM, which looks all the way down). Sigmoid is monotonic, so
``LMC(sigmoid(z)) = sigmoid(LMC(z))`` and the losses work on logits.

References:
    Qi & Chelmis, "Hybrid Loss for Hierarchical Multi-label Classification
    Network" (HLSTM), eq. 1-5; REFERENCE.md §3.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from hmljax import _validate as V
from hmljax.hierarchy import as_hierarchy
from hmljax.losses._mcloss import binary_cross_entropy, mc_loss
from hmljax.losses._rare import reduce_loss

__all__ = ["ParentGraph", "parent_graph", "local_min_constraint", "lmc_logits", "lmc_loss", "hybrid_loss"]


@jax.tree_util.register_pytree_node_class
class ParentGraph:
    """The one-hop ``(child, parent)`` edge list for :func:`local_min_constraint` (a pytree of int32 arrays).

    ``child[e]`` takes the min with ``parent[e]``; a node with several parents
    (a DAG) has one edge per parent, whatever the parents' levels. Build it with
    :func:`parent_graph`. ``num_nodes`` is static, so a graph can be passed
    through ``jit`` as an ordinary argument.
    """

    def __init__(self, child: Int[Array, " M"], parent: Int[Array, " M"], num_nodes: int):
        self.child = child
        self.parent = parent
        self.num_nodes = int(num_nodes)

    def tree_flatten(self):
        return (self.child, self.parent), self.num_nodes

    @classmethod
    def tree_unflatten(cls, num_nodes, children):
        return cls(children[0], children[1], num_nodes)

    def __repr__(self) -> str:
        return f"ParentGraph(num_nodes={self.num_nodes}, edges={int(self.child.shape[0])})"


def parent_graph(hierarchy) -> ParentGraph:
    """Builds LMC's edge list from a :class:`hmljax.hierarchy.Hierarchy`.

    Every ``(child, parent)`` edge is kept except those into an *unevaluated*
    parent (``hierarchy.evaluated[parent]`` False: the artificial ``root``, GO's
    namespace roots). Such a node is an ancestor of every annotated example, so
    its target is always 1 and ``min(l(j), 1) = l(j)``; the paper leaves the
    root out of LHLoss for the same reason. Hence level-1 nodes, whose only
    parent is the root, keep their own value (REFERENCE.md §3.1), and a DAG node
    with an evaluated and an unevaluated parent takes the min over the evaluated
    one only.

    Args:
        hierarchy: the class hierarchy (``hierarchy.edges`` rows are
            ``(child, parent)``), or its ancestry matrix ``[C, C]`` (C-HMCNN's
            ``R``: every node evaluated; see :meth:`Hierarchy.from_ancestry`).

    Returns:
        A :class:`ParentGraph` with the kept edges sorted by child.
    """
    hierarchy = as_hierarchy(hierarchy, caller="parent_graph")
    edges = np.asarray(hierarchy.edges, np.int32).reshape(-1, 2)
    evaluated = np.asarray(hierarchy.evaluated, bool)
    keep = edges[evaluated[edges[:, 1]]]
    keep = keep[np.lexsort((keep[:, 1], keep[:, 0]))]
    return ParentGraph(jnp.asarray(keep[:, 0]), jnp.asarray(keep[:, 1]), hierarchy.num_nodes)


def _check_graph(fn: str, graph) -> None:
    # Built once, outside the step: parent_graph on a Hierarchy or an ancestry matrix is host-side work
    # (a transitive reduction for R) that must not run per call.
    if not isinstance(graph, ParentGraph):
        raise TypeError(f"{fn}: the graph must be a ParentGraph, got {type(graph).__name__}; build it once "
                        "with hmljax.losses.parent_graph(hierarchy) (a Hierarchy or C-HMCNN's [C, C] ancestry "
                        "matrix) and pass that")


def local_min_constraint(x: Float[Array, "*B C"], graph: ParentGraph) -> Float[Array, "*B C"]:
    """HLSTM's LMC (eq. 1): each node takes the min over itself and its parents.

    One scatter-min over the edge list, started from ``x`` itself, so no segment
    is ever empty (no ``inf`` fill, no NaN gradients). At a tie the gradient is
    split between the tied entries.

    Args:
        x: scores per node (logits or probabilities), any leading batch dims.
        graph: from :func:`parent_graph`.

    Returns:
        Same shape as ``x``: ``min(x_j, min_{p in pa(j)} x_p)``. One hop only,
        so the result need not be coherent over longer paths.

    >>> from hmljax.hierarchy import Hierarchy
    >>> h = Hierarchy.from_edges([("root", "a"), ("a", "b"), ("b", "c")])
    >>> [h.names[i] for i in range(4)]
    ['root', 'a', 'b', 'c']
    >>> # root is unevaluated, so a keeps its own value; c takes b's, not a's (one hop).
    >>> local_min_constraint(jnp.array([0.0, 0.75, 0.25, 0.5]), parent_graph(h)).tolist()
    [0.0, 0.75, 0.25, 0.25]
    """
    _check_graph("local_min_constraint", graph)
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != graph.num_nodes:
        raise ValueError(f"local_min_constraint: x must be [..., {graph.num_nodes}], got {x.shape}")
    return x.at[..., graph.child].min(x[..., graph.parent])


def lmc_logits(logits: Float[Array, "*B C"], labels: Float[Array, "*B C"], graph: ParentGraph) -> Float[Array, "*B C"]:
    """The logits of LHLoss's output: ``LMC(z)`` on negatives, the min over positive nodes on positives.

    Eq. 2 takes, for a positive j, ``min_{z in {j} ∪ pa(j)} y_z l(z)``; eq. 3, for
    a negative j, ``LMC(j)`` of the raw outputs. With labels closed under
    ancestors every parent of a positive is positive, so both are ``LMC(l)_j``
    (the dual of MCLoss, whose positives take MCM of ``y ⊙ h``). For labels that
    are *not* closed, eq. 2 literally gives ``min(..., 0) = 0`` and an infinite
    loss; here a negative parent is instead left out of a positive's min (filled
    with ``finfo.max``, the neutral element of min), so the loss stays finite.
    """
    y = labels.astype(bool)
    neg = local_min_constraint(logits, graph)
    pos = local_min_constraint(jnp.where(y, logits, jnp.finfo(logits.dtype).max), graph)
    return jnp.where(y, pos, neg)


def lmc_loss(
    logits: Float[Array, "*B C"],
    labels: Float[Array, "*B C"],
    graph: ParentGraph,
    *,
    where: Bool[Array, "*B C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*B C"]:
    """HLSTM's local hierarchical loss LHLoss(j) (eq. 2-3), elementwise and unreduced.

    ``-y_j log LMC(σ(z))_j - (1-y_j) log(1 - LMC(σ(z))_j)`` for labels closed
    under ancestors, computed as ``softplus(m) - y m`` on the constrained
    logits ``m`` from :func:`lmc_logits` (no log of a rounded probability). The
    gradient reaches only the arg-min of each node's ``{j} ∪ pa(j)``.

    Args:
        logits: unconstrained logits ``z`` (``l = σ(z)``), any leading batch dims.
        labels: 0/1 targets, closed under ancestors.
        graph: from :func:`parent_graph`.
        where: entries that count, e.g. ``hierarchy.evaluated`` (``[C]``) to drop
            the roots as the paper's sum over ``C`` (eq. 4) does. Labels outside
            it are treated as 0 before any maths.

    Returns:
        ``[..., C]``; eq. 4's LHLoss is its sum over the ``where`` entries.

    References:
        Qi & Chelmis, HLSTM, Definition 1 (eq. 2-4).
    """
    _check_graph("lmc_loss", graph)
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.shape != labels.shape:
        raise ValueError(f"lmc_loss: logits {logits.shape} and labels {labels.shape} differ")
    V.check_finite("lmc_loss", "logits", logits)
    V.check_binary("lmc_loss", "labels", labels, where=where)
    V.check_parent_closed("lmc_loss", "labels", labels, graph.child, graph.parent, where=where)
    labels = labels.astype(logits.dtype)
    if where is not None:
        where = jnp.broadcast_to(where, logits.shape)
        labels = jnp.where(where, labels, 0.0)
    return binary_cross_entropy(lmc_logits(logits, labels, graph), labels, where=where)


def hybrid_loss(
    logits: Float[Array, "*B C"],
    labels: Float[Array, "*B C"],
    ancestry,
    parents: ParentGraph,
    *,
    b_r: float = 0.5,
    local_logits: Float[Array, "*B C"] | None = None,
    where: Bool[Array, "*B C"] | Bool[Array, " C"] | None = None,
    reduction: str = "mean",
) -> Float[Array, ""] | Float[Array, "*B C"]:
    """HLSTM's hybrid loss ``HL = (1 - b_r)·LHLoss + b_r·MCLoss`` (eq. 5).

    The paper writes both terms as sums; C-HMCNN's MCLoss is a mean. The default
    ``reduction="mean"`` takes per-element means over the ``where`` entries for
    both terms (same mask, so the mean of the mix is the mix of the means), which
    keeps ``b_r`` a trade-off between two losses on the same scale
    (REFERENCE.md §3.1). ``"sum"`` is the paper's literal eq. 4-5; ``"none"``
    returns the elementwise mix, e.g. for per-sample losses.

    Args:
        logits: global-branch logits; MCLoss (and LHLoss unless ``local_logits``
            is given) is computed on them. Any leading batch dims.
        labels: 0/1 targets, closed under ancestors.
        ancestry: MCLoss's constraint, a :class:`hmljax.constraints.ConstraintGraph`
            or the dense ``[C, C]`` ancestry matrix.
        parents: LMC's edge list from :func:`parent_graph`.
        b_r: weight of the global MCLoss; ``1 - b_r`` weights LHLoss. The paper
            uses 0.5.
        local_logits: HLSTM's local-branch outputs gathered into one ``[..., C]``
            vector indexed by node (each level's head fills its classes); LHLoss
            uses them. ``None``: one head, LHLoss on ``logits``.
        where: entries that count (``hierarchy.evaluated`` drops the roots).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or ``[..., C]`` for ``reduction="none"``.

    References:
        Qi & Chelmis, HLSTM, eq. 5; Giunchiglia & Lukasiewicz, NeurIPS 2020 (MCLoss).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"hybrid_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    _check_graph("hybrid_loss", parents)
    V.check_in_range("hybrid_loss", "b_r", b_r, low=0.0, high=1.0, hint="it weighs MCLoss against LHLoss")
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    local_logits = logits if local_logits is None else jnp.asarray(local_logits)
    if logits.shape != labels.shape or local_logits.shape != labels.shape:
        raise ValueError(
            f"hybrid_loss: logits {logits.shape}, local_logits {local_logits.shape} and labels {labels.shape} differ"
        )
    V.check_where("hybrid_loss", where, logits.shape)
    if where is not None:
        where = jnp.broadcast_to(where, logits.shape)
    num_classes = logits.shape[-1]
    # Fold any leading dims into one batch axis: MCLoss then runs its [B, C] training path.
    global_loss = mc_loss(
        logits.reshape(-1, num_classes),
        labels.reshape(-1, num_classes),
        ancestry,
        where=None if where is None else where.reshape(-1, num_classes),
    ).reshape(logits.shape)
    local_loss = lmc_loss(local_logits, labels, parents, where=where)
    loss = (1.0 - b_r) * local_loss + b_r * global_loss
    if reduction == "none":
        return loss
    return reduce_loss(loss, where, reduction=reduction)
