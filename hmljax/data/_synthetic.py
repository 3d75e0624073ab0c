"""A synthetic hierarchical multi-label dataset: the embedded default, no files needed."""

from __future__ import annotations

import numpy as np

__all__ = ["make_synthetic"]


def make_synthetic(
    *,
    seed: int = 0,
    kind: str = "tree",
    depth: int = 4,
    branching: int = 4,
    num_features: int = 48,
    num_train: int = 1200,
    num_valid: int = 400,
    num_test: int = 800,
    extra_parent_prob: float = 0.15,
    zipf: float = 1.3,
    second_label_prob: float = 0.35,
    noise: float = 1.0,
    missing_prob: float = 0.01,
) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[str, ...]]], list[tuple[str, str]]]:
    """Generates a seeded HML dataset shaped like the real ones.

    The hierarchy is a tree (or, with ``kind='dag'``, a tree plus extra parents
    drawn from the level above with probability ``extra_parent_prob``) of the
    given depth; each node has 1..``2*branching - 1`` children. Every node has a
    prototype equal to its parent's plus a fresh random offset, so features carry
    signal at every depth. A sample walks down from the root choosing children
    with Zipf(``zipf``) weights, which makes node frequencies long-tailed, and
    stops at each level with probability 0.25; its features are the prototype of
    the node reached plus Gaussian noise. Some samples get a second path.

    Returns:
        (split -> float64 ``[n, num_features]`` raw features with a few NaN,
         split -> per-row tuples of annotated node names,
         ``(parent, child)`` edges, with ``"root"`` at the top).
    """
    if kind not in ("tree", "dag"):
        raise ValueError(f"kind must be 'tree' or 'dag', got {kind!r}")
    if depth < 1 or branching < 1:
        raise ValueError(f"depth and branching must be >= 1, got depth={depth}, branching={branching}")
    rng = np.random.default_rng(seed)
    names, parents, levels = ["root"], {"root": []}, [["root"]]
    children = {"root": []}
    for d in range(1, depth + 1):
        level = []
        for p in levels[-1]:
            k = int(rng.integers(1, 2 * branching)) if d > 1 else branching + 2
            for j in range(k):
                c = f"{p}.{j}" if p != "root" else f"n{j}"
                names.append(c)
                parents[c] = [p]
                children[c] = []
                children[p].append(c)
                level.append(c)
        levels.append(level)
    edges = [(p, c) for c in names[1:] for p in parents[c]]
    if kind == "dag":
        for d in range(2, depth + 1):
            for c in levels[d]:
                if rng.random() < extra_parent_prob:
                    p = levels[d - 1][int(rng.integers(len(levels[d - 1])))]
                    if p not in parents[c]:
                        parents[c].append(p)
                        edges.append((p, c))
    proto = {"root": np.zeros(num_features)}
    for level in levels[1:]:
        for c in level:
            base = np.mean([proto[p] for p in parents[c]], axis=0)
            proto[c] = base + rng.normal(0.0, 1.6, num_features)
    # Zipf weights over each node's children make deep/late children rare.
    child_w = {p: (np.arange(1, len(ch) + 1) ** -zipf) / np.sum(np.arange(1, len(ch) + 1) ** -zipf)
               for p, ch in children.items() if ch}
    for p in child_w:
        rng.shuffle(child_w[p])

    def walk():
        node = "root"
        while children[node]:
            node = children[node][int(rng.choice(len(children[node]), p=child_w[node]))]
            if rng.random() < 0.25:
                break
        return node

    features, annotations = {}, {}
    for split, n in (("train", num_train), ("valid", num_valid), ("test", num_test)):
        X = np.empty((n, num_features))
        ann = []
        for i in range(n):
            terms = [walk()]
            if rng.random() < second_label_prob:
                t = walk()
                if t != terms[0]:
                    terms.append(t)
            X[i] = np.mean([proto[t] for t in terms], axis=0) + rng.normal(0.0, noise, num_features)
            ann.append(tuple(terms))
        X[rng.random(X.shape) < missing_prob] = np.nan
        features[split], annotations[split] = X, ann
    return features, annotations, edges
