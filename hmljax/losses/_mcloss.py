"""C-HMCNN's max-constraint loss and masked binary cross-entropy, in logit space."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from hmljax.constraints._mcm import apply_constraint

__all__ = ["binary_cross_entropy", "mc_loss", "mc_logits", "constrained_probs"]


def binary_cross_entropy(
    logits: Float[Array, "B C"], labels: Float[Array, "B C"], *, where: Bool[Array, "B C"] | None = None
) -> Float[Array, "B C"]:
    """Elementwise BCE from logits, unreduced; zero where ``where`` is False.

    Uses ``softplus(z) - y z`` (= ``-y log σ(z) - (1-y) log(1-σ(z))``), which
    never takes the log of a rounded probability.
    """
    labels = labels.astype(logits.dtype)
    loss = jax.nn.softplus(logits) - labels * logits
    if where is not None:
        loss = jnp.where(where, loss, 0.0)
    return loss


def mc_logits(logits: Float[Array, "B C"], labels: Float[Array, "B C"], ancestry) -> Float[Array, "B C"]:
    """The logits of C-HMCNN's training-path output ``ŷ = (1-y)·MCM(h) + y·MCM(y⊙h)``.

    With ``h = σ(z)``: negatives take the max over all descendants, positives the
    max over *positive* descendants only (``y⊙h`` zeroes the others, which in
    logit space is ``finfo.min``). Labels must be closed under ancestors.
    """
    y = labels.astype(bool)
    neg = apply_constraint(logits, ancestry)
    pos = apply_constraint(jnp.where(y, logits, jnp.finfo(logits.dtype).min), ancestry)
    return jnp.where(y, pos, neg)


def mc_loss(
    logits: Float[Array, "B C"],
    labels: Float[Array, "B C"],
    ancestry,
    *,
    where: Bool[Array, "B C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "B C"]:
    """C-HMCNN's max-constraint loss (MCLoss), elementwise and unreduced.

    Args:
        logits: the network's unconstrained logits ``z`` (``h = σ(z)``).
        labels: 0/1 targets, closed under ancestors.
        ancestry: dense bool ``[C, C]`` (``ancestry[i, j]`` iff j is i or below i)
            or a :class:`hmljax.constraints.ConstraintGraph`.
        where: mask of entries that count, e.g. ``hierarchy.evaluated`` (``[C]``,
            broadcast over the batch) to drop the roots as C-HMCNN does.

    Returns:
        ``[B, C]`` BCE of the constrained output; C-HMCNN's loss is its mean
        over the ``where`` entries.

    References:
        Giunchiglia & Lukasiewicz, NeurIPS 2020, eq. for MCLoss.
    """
    if logits.shape != labels.shape:
        raise ValueError(f"mc_loss: logits {logits.shape} and labels {labels.shape} differ")
    if where is not None:
        where = jnp.broadcast_to(where, logits.shape)
    return binary_cross_entropy(mc_logits(logits, labels, ancestry), labels, where=where)


def constrained_probs(logits: Float[Array, "B C"], ancestry) -> Float[Array, "B C"]:
    """Inference path: ``MCM(σ(z)) = σ(MCM(z))``; thresholding it gives coherent predictions."""
    return jax.nn.sigmoid(apply_constraint(logits, ancestry))
