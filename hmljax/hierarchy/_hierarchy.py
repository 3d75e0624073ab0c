"""Class hierarchies (trees and DAGs) as immutable host-side numpy objects."""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["Hierarchy", "HierarchyError", "GO_NAMESPACE_ROOTS"]

# C-HMCNN never evaluates the artificial root nor the three GO namespace roots.
GO_NAMESPACE_ROOTS = ("GO0003674", "GO0005575", "GO0008150")


class HierarchyError(ValueError):
    """An invalid hierarchy: a cycle, an unreachable node, an unknown label."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class Hierarchy:
    """A validated class hierarchy over ``C`` nodes.

    Build it with :meth:`from_paths` (FunCat-style trees) or :meth:`from_edges`
    (GO-style DAGs). Node ``i`` is ``names[i]``; all arrays are read-only.

    Attributes:
        names: ``C`` node names, in the hierarchy's node order.
        edges: int32 ``[M, 2]`` rows of ``(child, parent)``.
        evaluated: bool ``[C]``; False for roots (and GO namespace roots), which
            C-HMCNN keeps as outputs but masks out of the loss and the metrics.
    """

    names: tuple[str, ...]
    edges: np.ndarray
    evaluated: np.ndarray

    # ----------------------------------------------------------------- builders
    @classmethod
    def from_paths(cls, paths: Iterable[str], *, sep: str = "/", root: str = "root", order: str = "chmcnn") -> Hierarchy:
        """A tree from paths such as ``01/01/03``; every prefix is a node.

        Node names keep ``sep``; top-level terms hang from ``root``. ``order``
        'chmcnn' sorts by (number of path parts, dot-joined name), C-HMCNN's key,
        which puts ``root`` after the top-level codes (index 18 on FunCat).
        """
        names, edges = {root}, set()
        for p in paths:
            parts = [t for t in p.strip().split(sep)]
            if not p.strip() or any(t == "" for t in parts):
                raise HierarchyError(f"malformed path {p!r}")
            for k in range(1, len(parts) + 1):
                node = sep.join(parts[:k])
                names.add(node)
                edges.add((node, sep.join(parts[: k - 1]) if k > 1 else root))
        if order == "chmcnn":
            key = lambda n: (len(n.split(sep)), n.replace(sep, "."))  # noqa: E731
        elif order == "name":
            key = lambda n: n  # noqa: E731
        else:
            raise ValueError(f"order must be 'chmcnn' or 'name', got {order!r}")
        return cls._build(sorted(names, key=key), edges, skip={root})

    @classmethod
    def from_edges(
        cls,
        edges: Iterable[tuple[str, str]],
        *,
        roots: Sequence[str] | None = None,
        skip: Iterable[str] = GO_NAMESPACE_ROOTS,
        order: str = "chmcnn",
    ) -> Hierarchy:
        """A DAG from ``(parent, child)`` name pairs.

        Args:
            edges: ``(parent, child)`` pairs, as in GO's ``parent/child`` entries.
            roots: the designated roots; default: every node without a parent.
                Every node must be reachable from one of them.
            skip: extra nodes to leave unevaluated besides the roots (default:
                the GO namespace roots, as C-HMCNN does); names not present are ignored.
            order: 'chmcnn' sorts by (shortest distance to a root, name), C-HMCNN's
                GO key; 'name' sorts by name.
        """
        pairs = set()
        for e in edges:
            if len(e) != 2 or not all(isinstance(x, str) and x for x in e):
                raise HierarchyError(f"malformed edge {e!r}: expected (parent, child) names")
            if e[0] == e[1]:
                raise HierarchyError(f"cycle: {e[0]!r} is its own parent")
            pairs.add((e[1], e[0]))  # stored as (child, parent)
        if not pairs:
            raise HierarchyError("no edges")
        names = sorted({n for p in pairs for n in p})
        has_parent = {c for c, _ in pairs}
        root_set = set(roots) if roots is not None else {n for n in names if n not in has_parent}
        missing = root_set.difference(names)
        if missing:
            raise HierarchyError(f"roots not in the hierarchy: {sorted(missing)}")
        if order == "chmcnn":
            dist = _bfs_depth(names, pairs, root_set)
            names = sorted(names, key=lambda n: (dist.get(n, 1 << 30), n))
        elif order != "name":
            raise ValueError(f"order must be 'chmcnn' or 'name', got {order!r}")
        return cls._build(names, pairs, skip=root_set | (set(skip) & set(names)), roots=root_set)

    @classmethod
    def flat(cls, names: Sequence[str]) -> Hierarchy:
        """A flat label set (MULAN): no edges, every label a root and evaluated."""
        if len(set(names)) != len(names):
            raise HierarchyError("duplicate label names")
        return cls(tuple(names), _readonly(np.zeros((0, 2), np.int32)), _readonly(np.ones(len(names), bool)))

    @classmethod
    def _build(cls, names, pairs, *, skip, roots=None) -> Hierarchy:
        index = {n: i for i, n in enumerate(names)}
        edges = np.array(sorted((index[c], index[p]) for c, p in pairs), dtype=np.int32).reshape(-1, 2)
        evaluated = np.array([n not in skip for n in names])
        h = cls(tuple(names), _readonly(edges), _readonly(evaluated))
        h._validate(roots)
        return h

    def _validate(self, roots) -> None:
        _ = self.topological_order  # raises on cycles
        if roots is not None:
            reachable = self.ancestry[[self.index[r] for r in roots]].any(axis=0)
            bad = [self.names[i] for i in np.flatnonzero(~reachable)]
            if bad:
                raise HierarchyError(f"{len(bad)} node(s) not reachable from a root, e.g. {bad[:5]}")

    # ------------------------------------------------------------ structure
    @property
    def num_nodes(self) -> int:
        return len(self.names)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @functools.cached_property
    def parents(self) -> tuple[np.ndarray, ...]:
        out = [[] for _ in self.names]
        for c, p in self.edges:
            out[c].append(p)
        return tuple(_readonly(np.array(sorted(x), dtype=np.int32)) for x in out)

    @functools.cached_property
    def children(self) -> tuple[np.ndarray, ...]:
        out = [[] for _ in self.names]
        for c, p in self.edges:
            out[p].append(c)
        return tuple(_readonly(np.array(sorted(x), dtype=np.int32)) for x in out)

    @functools.cached_property
    def roots(self) -> np.ndarray:
        """Indices of the nodes without a parent."""
        return _readonly(np.array([i for i, p in enumerate(self.parents) if len(p) == 0], dtype=np.int32))

    @property
    def is_tree(self) -> bool:
        return all(len(p) <= 1 for p in self.parents)

    @functools.cached_property
    def topological_order(self) -> np.ndarray:
        """Parents before children (Kahn's algorithm); raises on a cycle."""
        indeg = np.array([len(p) for p in self.parents])
        queue = collections.deque(np.flatnonzero(indeg == 0).tolist())
        out = []
        while queue:
            i = queue.popleft()
            out.append(i)
            for c in self.children[i]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    queue.append(int(c))
        if len(out) != self.num_nodes:
            stuck = [self.names[i] for i in np.flatnonzero(indeg > 0)][:5]
            raise HierarchyError(f"the hierarchy has a cycle through {stuck}")
        return _readonly(np.array(out, dtype=np.int32))

    @functools.cached_property
    def ancestry(self) -> np.ndarray:
        """bool ``[C, C]``: ``ancestry[i, j]`` iff j is i or a descendant of i (C-HMCNN's R)."""
        r_CxC = np.eye(self.num_nodes, dtype=bool)
        for i in self.topological_order[::-1]:  # children are complete before their parents
            ch = self.children[i]
            if len(ch):
                r_CxC[i] |= r_CxC[ch].any(axis=0)
        return _readonly(r_CxC)

    @functools.cached_property
    def depth_min(self) -> np.ndarray:
        """int32 ``[C]``: shortest number of edges from a root (roots are 0)."""
        d = np.full(self.num_nodes, -1, dtype=np.int32)
        d[self.roots] = 0
        for i in self.topological_order:
            for c in self.children[i]:
                if d[c] < 0 or d[i] + 1 < d[c]:
                    d[c] = d[i] + 1
        return _readonly(d)

    @functools.cached_property
    def depth_max(self) -> np.ndarray:
        """int32 ``[C]``: longest number of edges from a root."""
        d = np.zeros(self.num_nodes, dtype=np.int32)
        for i in self.topological_order:
            for c in self.children[i]:
                d[c] = max(d[c], d[i] + 1)
        return _readonly(d)

    @functools.cached_property
    def height(self) -> np.ndarray:
        """int32 ``[C]``: longest number of edges down to a leaf (leaves are 0)."""
        h = np.zeros(self.num_nodes, dtype=np.int32)
        for i in self.topological_order[::-1]:
            ch = self.children[i]
            if len(ch):
                h[i] = h[ch].max() + 1
        return _readonly(h)

    def levels(self, *, by: str = "min") -> tuple[np.ndarray, ...]:
        """Node indices grouped by depth ('min': shortest path, 'max': longest path)."""
        d = self.depth_min if by == "min" else self.depth_max
        return tuple(_readonly(np.flatnonzero(d == k).astype(np.int32)) for k in range(int(d.max()) + 1))

    @functools.cached_property
    def propagation_levels(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
        """Edge lists for the sparse max-constraint, one entry per height 1..max.

        Entry ``k`` holds ``(child, segment, parent)`` for the edges into parents
        of height ``k + 1``: ``child`` and ``segment`` run over those edges
        (``segment`` indexes into ``parent``, sorted), ``parent`` lists the
        distinct parents. Children always have a smaller height, so processing
        the entries in order leaves every node with the max over its descendants.
        """
        out = []
        child_E, parent_E = self.edges[:, 0], self.edges[:, 1]
        for k in range(1, int(self.height.max()) + 1):
            sel = self.height[parent_E] == k
            c, p = child_E[sel], parent_E[sel]
            order = np.lexsort((c, p))
            c, p = c[order], p[order]
            uniq, seg = np.unique(p, return_inverse=True)
            out.append(tuple(_readonly(a.astype(np.int32)) for a in (c, seg, uniq)))
        return tuple(out)

    # ------------------------------------------------------------- labels
    def encode(self, annotations: Sequence[Sequence[str]], *, where: Sequence[str] | None = None) -> np.ndarray:
        """uint8 ``[n, C]`` labels: each annotated term and all its ancestors set to 1.

        Args:
            annotations: per row, the names of the annotated nodes.
            where: per row, a location (``file:line``) used in error messages.

        Raises:
            HierarchyError: naming the row when a term is not in the hierarchy.
        """
        n = len(annotations)
        rows, cols = [], []
        for r, ann in enumerate(annotations):
            for t in ann:
                j = self.index.get(t)
                if j is None:
                    loc = where[r] if where is not None else f"row {r}"
                    raise HierarchyError(f"{loc}: label {t!r} is not in the hierarchy")
                rows.append(r)
                cols.append(j)
        direct = np.zeros((n, self.num_nodes), dtype=np.float32)
        direct[rows, cols] = 1.0
        # Y[:, i] = any annotated j below-or-at i: one matmul with the ancestry matrix.
        return (direct @ self.ancestry.T.astype(np.float32) > 0).astype(np.uint8)

    def is_closed(self, labels: np.ndarray) -> bool:
        """True iff every positive node's ancestors are positive too."""
        y = labels.astype(bool)
        c, p = self.edges[:, 0], self.edges[:, 1]
        return bool(np.all(~y[:, c] | y[:, p]))

    # ------------------------------------------------------------- summary
    def summary(self) -> dict:
        return {
            "nodes": self.num_nodes,
            "evaluated": int(self.evaluated.sum()),
            "edges": int(len(self.edges)),
            "roots": [self.names[i] for i in self.roots[:4]] + (["..."] if len(self.roots) > 4 else []),
            "kind": "flat" if len(self.edges) == 0 else ("tree" if self.is_tree else "DAG"),
            "max_depth_min": int(self.depth_min.max()),
            "max_depth_max": int(self.depth_max.max()),
            "multi_parent_nodes": int(sum(len(p) > 1 for p in self.parents)),
        }

    def to_json(self) -> dict:
        return {
            "names": list(self.names),
            "edges": self.edges.tolist(),
            "evaluated": self.evaluated.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict) -> Hierarchy:
        h = cls(
            tuple(d["names"]),
            _readonly(np.array(d["edges"], dtype=np.int32).reshape(-1, 2)),
            _readonly(np.array(d["evaluated"], dtype=bool)),
        )
        h._validate(None)
        return h


def _bfs_depth(names, pairs, roots) -> dict[str, int]:
    children = collections.defaultdict(list)
    for c, p in pairs:
        children[p].append(c)
    dist = {r: 0 for r in roots}
    queue = collections.deque(roots)
    while queue:
        n = queue.popleft()
        for c in children[n]:
            if c not in dist:
                dist[c] = dist[n] + 1
                queue.append(c)
    return dist
