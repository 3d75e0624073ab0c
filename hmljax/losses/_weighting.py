"""RARE's node-wise imbalance weights (eq. 7-9), as the paper writes them and as its code computes them.

Weights are computed once, on the host, from the training labels actually
used; they are numpy arrays so the same numbers can be checked against a
float64 reference and fed to any jitted loss as a constant.

Two conventions matter and hmljax offers both (REFERENCE.md §2.1):

============  =====================================  =========================================
knob          paper (default)                         released code
============  =====================================  =========================================
``counts``    ``closed``: rows positive at i          ``supercount``: Σ count_j over i and its
              (labels are closed under ancestors,     descendants, accumulated in place in index
              so this counts i *and* descendants)     order (``supercount_inplace``)
``rescale``   w0 + w·(w - w_min)/(w_max - w_min)      w0 + w_max·(w - w_min)/(w_max - w_min)
``apply_to``  ``positive``: w̃ on y = 1, 1 on y = 0   ``negative``: w̃ on y = 0, 1 on y = 1
============  =====================================  =========================================
"""

from __future__ import annotations

import numpy as np

from hmljax import _validate as V

__all__ = [
    "node_counts",
    "imbalance_weights",
    "label_weights",
    "WEIGHT_PRESETS",
]

# The two conventions a user picks by name; every knob can still be overridden.
WEIGHT_PRESETS = {
    "paper": dict(counts="closed", rescale="paper", apply_to="positive", num_classes="nodes"),
    "code": dict(counts="supercount_inplace", rescale="code", apply_to="negative", num_classes="nodes"),
}


def node_counts(labels_NxC: np.ndarray, ancestry_CxC: np.ndarray, *, counts: str = "closed") -> np.ndarray:
    """``n_i`` per node, ``[C]`` float64.

    Args:
        labels_NxC: 0/1 training labels, closed under ancestors.
        ancestry_CxC: ``ancestry[i, j]`` iff j is i or one of its descendants.
        counts: ``closed`` (paper: rows annotated with i or any descendant, i.e.
            the column sum of closed labels), ``supercount`` (code: Σ of the column
            sums over i and its descendants, so a parent counted 10 with children
            6 and 4 gets 20) or ``supercount_inplace`` (the code exactly: the sum is
            accumulated in place in index order, so a descendant that sorts before
            its ancestor contributes its already-aggregated value). On FUN every
            evaluated node sorts before its descendants and the two agree there, but the
            unevaluated root sorts after its children: measured on cellcycle_FUN's train
            split, ``supercount`` gives it 15826 and ``supercount_inplace`` 26109. The root
            is never scored or trained, but as the most frequent node it sets ``w_min``, so
            every rescaled weight moves a little (cellcycle_FUN, ``weights=code``: evaluated
            nodes' median 0.65682 against 0.65689, minimum 0.25121 against 0.25129).
    """
    Y = np.asarray(labels_NxC)
    R = np.asarray(ancestry_CxC, bool)
    if Y.ndim != 2 or R.shape != (Y.shape[1], Y.shape[1]):
        raise ValueError(f"node_counts: labels {Y.shape} and ancestry {R.shape} do not match")
    V.check_binary("node_counts", "labels_NxC", Y)  # a 2 would count twice; soft labels would count fractions
    col = Y.sum(0, dtype=np.float64)
    if counts == "closed":
        return col
    if counts == "supercount":
        return R.astype(np.float64) @ col
    if counts == "supercount_inplace":
        n = col.copy()
        for i in range(n.shape[0]):
            n[i] = n[R[i]].sum()  # R[i, i] holds: i itself plus its (partly aggregated) descendants
        return n
    raise ValueError(f"node_counts: counts must be 'closed', 'supercount' or 'supercount_inplace', got {counts!r}")


def imbalance_weights(
    n_C: np.ndarray,
    *,
    num_obs: int,
    num_classes: int,
    w0: float = 0.25,
    rescale: str = "paper",
) -> np.ndarray:
    """Rescaled inverse-frequency weights w̃ (eq. 7-8), ``[C]`` float64.

    ``w_i = N_obs / (N_classes · n_i)``, with the code's gates: ``w = 1`` where
    ``n_i = 0`` (never observed) or ``n_i = N_obs`` (always observed). Then
    ``w̃ = w0 + w·(w - w_min)/(w_max - w_min)`` (``rescale='paper'``) or
    ``w0 + w_max·(w - w_min)/(w_max - w_min)`` (``'code'``, linear in w), with the
    extremes taken over every node. ``w0`` is the minimum weight (the gate w̃0).
    If all w are equal the weights are ``w0 + w`` (paper) or ``w0 + w_max`` (code)
    times zero, i.e. ``w0``.
    """
    if num_obs < 1 or num_classes < 1:
        raise ValueError(f"imbalance_weights: num_obs={num_obs} and num_classes={num_classes} must be >= 1")
    V.check_nonnegative("imbalance_weights", "w0", w0)
    V.check_nonnegative("imbalance_weights", "n_C", n_C)
    n = np.asarray(n_C, np.float64)
    gate = (n <= 0) | (n == num_obs)
    w = np.where(gate, 1.0, num_obs / (num_classes * np.where(gate, 1.0, n)))
    w_min, w_max = w.min(), w.max()
    span = w_max - w_min
    frac = (w - w_min) / span if span > 0 else np.zeros_like(w)
    if rescale == "paper":
        return w0 + w * frac
    if rescale == "code":
        return w0 + w_max * frac
    raise ValueError(f"imbalance_weights: rescale must be 'paper' or 'code', got {rescale!r}")


def label_weights(weights_C, labels, *, apply_to: str = "positive"):
    """The elementwise weight matrix ``W̃0 + W̃`` of eq. 9, float32 of ``labels``' shape.

    ``apply_to='positive'`` (eq. 9): w̃_i where ``y_i = 1`` and 1 elsewhere.
    ``apply_to='negative'`` (the released code's index swap): w̃_i where
    ``y_i = 0`` and 1 elsewhere. ``weights_C`` is ``[C]``; ``labels`` is
    ``[..., C]`` with any leading batch axes (``[C]``, ``[B, C]``, ...). Works on
    numpy or jax arrays, inside jit.
    """
    import jax.numpy as jnp

    V.check_nonnegative("label_weights", "weights_C", weights_C)
    V.check_binary("label_weights", "labels", labels)  # astype(bool) would weight a soft label as a positive
    y = jnp.asarray(labels).astype(bool)
    w = jnp.asarray(weights_C, jnp.float32)
    if w.ndim != 1 or y.shape[-1:] != w.shape:
        raise ValueError(f"label_weights: weights must be [C] and labels [..., C], got {w.shape} and {y.shape}")
    if apply_to == "positive":
        return jnp.where(y, w, 1.0)
    if apply_to == "negative":
        return jnp.where(y, 1.0, w)
    raise ValueError(f"label_weights: apply_to must be 'positive' or 'negative', got {apply_to!r}")
