"""Class hierarchies (trees and DAGs) as immutable host-side numpy objects."""

from __future__ import annotations

import collections
import dataclasses
import functools
import heapq
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

__all__ = ["Hierarchy", "HierarchyError", "GO_NAMESPACE_ROOTS", "as_hierarchy"]

# C-HMCNN never evaluates the artificial root nor the three GO namespace roots.
GO_NAMESPACE_ROOTS = ("GO0003674", "GO0005575", "GO0008150")


class HierarchyError(ValueError):
    """An invalid hierarchy: a cycle, an unreachable node, an unknown label."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Hierarchy:
    """A validated class hierarchy over ``C`` nodes.

    Build it with :meth:`from_paths` (FunCat-style trees), :meth:`from_edges`
    (GO-style DAGs of string names) or :meth:`from_pairs` (integer ids or any
    hashable names, keeping the caller's node order). Node ``i`` is
    ``names[i]``; all arrays are read-only.

    Attributes:
        names: ``C`` node names, in the hierarchy's node order (strings, except
            for :meth:`from_pairs` given non-string names).
        edges: int32 ``[M, 2]`` rows of ``(child, parent)``.
        evaluated: bool ``[C]``; False for roots (and GO namespace roots), which
            C-HMCNN keeps as outputs but masks out of the loss and the metrics.
    """

    names: tuple[str, ...]
    edges: np.ndarray
    evaluated: np.ndarray

    # ----------------------------------------------------------------- builders
    @classmethod
    def from_paths(
        cls, paths: Iterable[str], *, sep: str = "/", root: str = "root", order: str = "chmcnn"
    ) -> Hierarchy:
        """A tree from paths such as ``01/01/03``; every prefix is a node.

        Node names keep ``sep``; top-level terms hang from ``root``. ``order``
        'chmcnn' sorts by (number of path parts, dot-joined name), C-HMCNN's key,
        which puts ``root`` after the top-level codes (index 18 on FunCat).
        """
        if isinstance(paths, str):  # iterated, 'abc' was the three top-level terms 'a', 'b', 'c'
            raise HierarchyError(f"paths is the string {paths!r}: give a list of paths ([{paths!r}] for one)")
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
                GO key; 'name' sorts by name; 'given' keeps the order in which
                names first appear in ``edges`` (parent before child within a pair).

        Repeated edges are merged silently; :meth:`from_pairs` refuses them.
        """
        for what, xs in (("roots", roots), ("skip", skip)):
            if isinstance(xs, str):  # as from_pairs: set('GO1') was {'G', 'O', '1'}, and GO1 stayed evaluated
                raise HierarchyError(f"{what} must be a collection of nodes, got the string {xs!r}")
        pairs = set()
        seen = {}  # insertion-ordered set: first appearance, for order='given'
        for e in edges:
            if isinstance(e, str) or len(e) != 2 or not all(isinstance(x, str) and x for x in e):
                raise HierarchyError(f"malformed edge {e!r}: expected (parent, child) names")
            if e[0] == e[1]:
                raise HierarchyError(f"cycle: {e[0]!r} is its own parent")
            pairs.add((e[1], e[0]))  # stored as (child, parent)
            seen.setdefault(e[0])
            seen.setdefault(e[1])
        if not pairs:
            raise HierarchyError("no edges")
        names = list(seen) if order == "given" else sorted(seen)
        has_parent = {c for c, _ in pairs}
        root_set = set(roots) if roots is not None else {n for n in names if n not in has_parent}
        missing = root_set.difference(names)
        if missing:
            raise HierarchyError(f"roots not in the hierarchy: {sorted(missing)}")
        if order == "chmcnn":
            dist = _bfs_depth(names, pairs, root_set)
            names = sorted(names, key=lambda n: (dist.get(n, 1 << 30), n))
        elif order not in ("name", "given"):
            raise ValueError(f"order must be 'chmcnn', 'name' or 'given', got {order!r}")
        return cls._build(names, pairs, skip=root_set | (set(skip) & set(names)), roots=root_set)

    @classmethod
    def from_pairs(
        cls,
        pairs,
        *,
        num_nodes: int | None = None,
        names: Sequence[Hashable] | None = None,
        order: str = "given",
        roots: Iterable[Hashable] | None = None,
        unevaluated: Iterable[Hashable] | None = None,
    ) -> Hierarchy:
        """A tree or DAG from ``(parent, child)`` pairs of integer ids or names.

        Two kinds of endpoint, told apart by type (mixing them is an error):

        * **Integer ids** ``0..C-1`` (Python or numpy ints; a list of pairs or an
          int array ``[M, 2]``). ``C`` is ``num_nodes``, else ``len(names)``,
          else the largest id + 1. ``names[i]`` names id ``i`` (default:
          ``"0"``, ``"1"``, ...); ids on no edge are isolated nodes.
        * **Names**: any hashable values other than ints (strings, tuples, ...;
          floats and None are refused as likely mistakes).
          The nodes are ``names`` if given (every endpoint must be listed),
          else the endpoints in order of first appearance (parent before child).

        With ``order='given'`` (the default) node ``i`` is id ``i``, or
        ``names[i]``, or the ``i``-th name to appear, so ``labels[:, i]`` and
        ``logits[:, i]`` keep the caller's meaning. Refused with
        :class:`HierarchyError`: self-loops, cycles, ids out of range, repeated
        edges (a repeat usually means a mis-built edge list, so it is not merged),
        duplicate or unknown names, and nodes not reachable from ``roots``.

        Args:
            pairs: ``(parent, child)`` pairs, the same orientation as
                :meth:`from_edges` (``edges`` stores them as ``(child, parent)``).
            num_nodes: ``C`` for integer ids (checked against ``names`` and the
                node count when both are known).
            names: the node names (ids: one per id; names: the node order).
            order: 'given' (above); 'topological' (parents before children,
                Kahn's algorithm seeded with the parentless nodes in given order);
                'depth' (by shortest distance from a parentless node, ties in
                given order).
            roots: ids or names of the designated roots; every node must be
                reachable from one of them. Default: every node without a parent.
            unevaluated: ids or names of the nodes left out of the loss and the
                metrics (``evaluated`` False). Default: the roots, as
                :meth:`from_edges` does (C-HMCNN's artificial root); pass ``()``
                to evaluate every node, e.g. for a forest without an artificial root.

        Returns:
            The validated hierarchy. Only string names round-trip through
            :meth:`to_json`.

        >>> h = Hierarchy.from_pairs([(0, 1), (0, 2), (2, 3)])
        >>> h.names, h.evaluated.tolist()
        (('0', '1', '2', '3'), [False, True, True, True])
        >>> Hierarchy.from_pairs([("b", "a")], order="given").names
        ('b', 'a')
        """
        if order not in ("given", "topological", "depth"):
            raise ValueError(f"order must be 'given', 'topological' or 'depth', got {order!r}")
        rows = _pair_rows(pairs)
        is_id = [_is_int(x) for r in rows for x in r]
        if rows and any(is_id) and not all(is_id):
            raise HierarchyError("pairs mix integer ids and names; use one or the other")
        if names is not None:
            names = tuple(names)
            try:
                distinct = len(set(names))
            except TypeError:
                raise HierarchyError("names must be hashable") from None
            if distinct != len(names):
                dup = [n for n, k in collections.Counter(names).items() if k > 1]
                raise HierarchyError(f"duplicate names: {dup[:5]}")
        use_ids = all(is_id) if rows else (num_nodes is not None or names is None)

        if use_ids:
            ids = np.array(rows, dtype=np.int64).reshape(-1, 2)
            if num_nodes is None:
                num_nodes = len(names) if names is not None else (int(ids.max()) + 1 if len(ids) else 0)
            elif names is not None and len(names) != num_nodes:
                raise HierarchyError(f"{len(names)} names for num_nodes={num_nodes}")
            bad = ids[(ids < 0) | (ids >= num_nodes)]
            if len(bad):
                raise HierarchyError(f"id {int(bad[0])} is out of range for {num_nodes} nodes (ids run 0..C-1)")
            node_names = names if names is not None else tuple(str(i) for i in range(num_nodes))
            given = [(int(p), int(c)) for p, c in ids]
        else:
            if names is None:
                node_names = tuple(dict.fromkeys(x for r in rows for x in r))
            else:
                node_names = names
                known = set(names)
                unknown = [x for r in rows for x in r if x not in known]
                if unknown:
                    raise HierarchyError(f"{len(unknown)} endpoint(s) not in names, e.g. {unknown[:5]}")
            if num_nodes is not None and num_nodes != len(node_names):
                raise HierarchyError(f"num_nodes={num_nodes} but the pairs and names give {len(node_names)} nodes")
            pos = {n: i for i, n in enumerate(node_names)}
            given = [(pos[p], pos[c]) for p, c in rows]
        if not node_names:
            raise HierarchyError("no nodes: give pairs, num_nodes or names")
        pos_all = {n: i for i, n in enumerate(node_names)}

        for p, c in given:
            if p == c:
                raise HierarchyError(f"self-loop: {node_names[p]!r} is its own parent")
        dups = [e for e, k in collections.Counter(given).items() if k > 1]
        if dups:
            shown = [(node_names[p], node_names[c]) for p, c in dups[:5]]
            raise HierarchyError(f"{len(dups)} repeated (parent, child) pair(s), e.g. {shown}")

        def resolve(xs, what):
            if isinstance(xs, str):
                raise HierarchyError(f"{what} must be a collection of nodes, got the string {xs!r}")
            out = set()
            for x in xs:
                if use_ids and _is_int(x):
                    if not 0 <= int(x) < len(node_names):
                        raise HierarchyError(f"{what}: id {int(x)} is out of range for {len(node_names)} nodes")
                    out.add(int(x))
                elif not isinstance(x, Hashable) or x not in pos_all:
                    raise HierarchyError(f"{what}: {x!r} is not a node")
                else:
                    out.add(pos_all[x])
            return out

        has_parent = {c for _, c in given}
        root_set = resolve(roots, "roots") if roots is not None else set(range(len(node_names))) - has_parent
        skip = root_set if unevaluated is None else resolve(unevaluated, "unevaluated")

        def build(perm):
            ns = [node_names[i] for i in perm]
            return cls._build(
                ns,
                {(node_names[c], node_names[p]) for p, c in given},
                skip={node_names[i] for i in skip},
                roots=[node_names[i] for i in sorted(root_set)],
            )

        h = build(range(len(node_names)))  # validates in the given order: cycles, reachability
        if order == "given":
            return h
        if order == "topological":
            indeg = [len(ps) for ps in h.parents]
            heap = [i for i, d in enumerate(indeg) if d == 0]
            heapq.heapify(heap)
            perm = []
            while heap:
                i = heapq.heappop(heap)
                perm.append(i)
                for c in h.children[i]:
                    indeg[c] -= 1
                    if indeg[c] == 0:
                        heapq.heappush(heap, int(c))
        else:  # depth
            perm = sorted(range(h.num_nodes), key=lambda i: (int(h.depth_min[i]), i))
        return build(perm)

    @classmethod
    def from_ancestry(
        cls,
        ancestry,
        *,
        names: Sequence[Hashable] | None = None,
        unevaluated: Iterable[Hashable] = (),
    ) -> Hierarchy:
        """A tree or DAG from its ancestry matrix, e.g. C-HMCNN's ``R``.

        For code that already holds ``R`` (``R[i, j]`` true iff node j is node i or
        a descendant of i, :attr:`ancestry`'s orientation) and wants the sparse
        constraint or LMC, whose graphs are built from a :class:`Hierarchy`. The
        edges are ``R``'s transitive reduction (j is a child of i when no third
        node lies between them), so ``from_ancestry(h.ancestry)`` has ``h``'s
        edges whenever ``h`` has no redundant shortcut edge.

        Args:
            ancestry: ``[C, C]`` of 0/1 or bool, reflexive (a true diagonal) and
                transitively closed; node ``i`` keeps index ``i``.
            names: the node names (default ``"0"``, ``"1"``, ...).
            unevaluated: ids or names left out of the loss and the metrics.
                Default: none, since an ``R`` given as such usually has no
                artificial root (C-HMCNN's FUN ``R`` drops it).

        Raises:
            HierarchyError: not square, values other than 0/1, a false diagonal
                entry, not closed (an adjacency matrix rather than an ancestry
                one: the error says which entry), or a cycle.

        >>> R = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 1]], bool)  # 1 and 2 under 0
        >>> Hierarchy.from_ancestry(R).edges.tolist()
        [[1, 0], [2, 0]]
        """
        a = np.asarray(ancestry)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise HierarchyError(f"ancestry must be a square [C, C] matrix, got shape {a.shape}")
        if a.dtype != bool:
            if a.dtype.kind not in "iuf" or not np.isin(a, (0, 1)).all():
                raise HierarchyError(f"ancestry must hold 0/1 or bool values, got dtype {a.dtype}")
            a = a.astype(bool)
        c = a.shape[0]
        if c == 0:
            raise HierarchyError("ancestry is empty: no nodes")
        off = np.flatnonzero(~np.diagonal(a))
        if len(off):
            raise HierarchyError(f"ancestry[{off[0]}, {off[0]}] is false ({len(off)} such): every node is its own "
                                 "ancestor in an ancestry matrix (C-HMCNN's R has a true diagonal)")
        strict = a & ~np.eye(c, dtype=bool)
        cyc = np.argwhere(strict & strict.T)
        if len(cyc):
            i, j = cyc[0]
            raise HierarchyError(f"cycle: nodes {i} and {j} are each other's descendants in ancestry")
        s = strict.astype(np.float32)  # BLAS; path counts stay exact below 2**24 nodes
        two_hops = (s @ s) > 0  # i reaches j through some k: not a direct edge, and must already be in R
        unclosed = np.argwhere(two_hops & ~strict)
        if len(unclosed):
            i, j = unclosed[0]
            raise HierarchyError(f"ancestry is not transitively closed: node {j} descends from {i} through another "
                                 f"node but ancestry[{i}, {j}] is false ({len(unclosed)} such). An adjacency "
                                 "matrix? Build from its edges: Hierarchy.from_pairs(np.argwhere(adj), ...)")
        pairs = np.argwhere(strict & ~two_hops)  # (parent, child)
        return cls.from_pairs(pairs, num_nodes=c, names=names, unevaluated=unevaluated)

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
        if isinstance(annotations, str):
            raise HierarchyError(f"annotations is the string {annotations!r}: give one list of names per row "
                                 f"(encode([[{annotations!r}]]) for one row)")
        n = len(annotations)
        rows, cols = [], []
        for r, ann in enumerate(annotations):
            if isinstance(ann, str):  # iterated, 'beta' was the labels 'b', 'e', 't', 'a' ("label 'b' not in ...")
                loc = where[r] if where is not None else f"row {r}"
                raise HierarchyError(f"{loc}: the string {ann!r}, not a list of names; a row is a list "
                                     f"([{ann!r}] for that one label)")
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

    def __repr__(self) -> str:
        """One line, whatever ``C``: ``Hierarchy(C=6 nodes, 5 edges, tree, depth 1-3, 1 root: root, 5 evaluated)``.

        ``depth a-b`` runs from the shallowest leaf (shortest path) to the
        deepest node (longest path); at most three root names are shown.
        """
        n, m = self.num_nodes, len(self.edges)
        parts = [f"C={n} nodes", f"{m} edges"]
        try:  # repr must not raise, even on a hand-built Hierarchy with a cycle
            parts.append("flat" if m == 0 else ("tree" if self.is_tree else "DAG"))
            if n:
                leaves = self.height == 0
                parts.append(f"depth {int(self.depth_min[leaves].min())}-{int(self.depth_max.max())}")
            shown = [_short(self.names[i]) for i in self.roots[:3]] + (["..."] if len(self.roots) > 3 else [])
            parts.append(f"{len(self.roots)} root{'' if len(self.roots) == 1 else 's'}: {', '.join(shown)}")
        except (HierarchyError, IndexError, ValueError):
            parts.append("invalid")
        parts.append(f"{int(np.sum(self.evaluated))} evaluated")
        return f"Hierarchy({', '.join(parts)})"

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


def as_hierarchy(hierarchy, *, caller: str) -> Hierarchy:
    """``hierarchy`` itself, or the :class:`Hierarchy` of an ancestry matrix (``R``).

    The graph builders take either, so code holding C-HMCNN's ``R`` needs no
    detour; anything else is refused with a message naming ``caller``.
    """
    if isinstance(hierarchy, Hierarchy):
        return hierarchy
    if hasattr(hierarchy, "__array__") or isinstance(hierarchy, list | tuple):
        return Hierarchy.from_ancestry(hierarchy)
    raise TypeError(f"{caller}: expected a hmljax.hierarchy.Hierarchy or a [C, C] ancestry matrix, "
                    f"got {type(hierarchy).__name__}")


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


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _pair_rows(pairs) -> list[tuple]:
    """``pairs`` as a list of 2-tuples of Python scalars or hashable names."""
    if hasattr(pairs, "__array__") and not isinstance(pairs, (list, tuple)):
        a = np.asarray(pairs)
        if a.size == 0:
            return []
        if a.ndim != 2 or a.shape[1] != 2:
            raise HierarchyError(f"pairs must be an [M, 2] array of (parent, child), got shape {a.shape}")
        if a.dtype.kind not in "iuUSO":
            raise HierarchyError(f"pairs array must hold integer ids or names, got dtype {a.dtype}")
        return [tuple(r) for r in a.tolist()]
    rows = []
    for e in pairs:
        if isinstance(e, (str, bytes)) or not hasattr(e, "__len__") or len(e) != 2:
            raise HierarchyError(f"malformed pair {e!r}: expected (parent, child)")
        r = tuple(int(x) if _is_int(x) else x for x in e)
        for x in r:
            try:
                hash(x)
            except TypeError:
                x = None
            # A float id is almost always a cast gone wrong, and None a missing value: refuse both.
            if x is None or isinstance(x, float | complex | np.floating):
                raise HierarchyError(f"malformed pair {e!r}: endpoints must be integer ids or hashable names")
        rows.append(r)
    return rows


def _short(name, width: int = 24) -> str:
    s = str(name)
    return s if len(s) <= width else s[: width - 3] + "..."
