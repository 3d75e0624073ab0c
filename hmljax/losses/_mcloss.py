"""C-HMCNN's max-constraint loss and masked binary cross-entropy, in logit space.

Every function is elementwise over ``[..., C]``: nodes on the last axis, any
leading batch axes (``[C]``, ``[B, C]``, ``[E, B, C]``, ...), as optax's losses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from hmljax import _validate as V
from hmljax.constraints._mcm import apply_constraint

__all__ = ["binary_cross_entropy", "mc_loss", "mc_logits", "constrained_probs"]


def binary_cross_entropy(
    logits: Float[Array, "*batch C"],
    labels: Float[Array, "*batch C"],
    *,
    where: Bool[Array, "*batch C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*batch C"]:
    """Elementwise BCE from logits, unreduced; zero where ``where`` is False (broadcast against ``logits``).

    Uses ``softplus(z) - y z`` (= ``-y log σ(z) - (1-y) log(1-σ(z))``), which
    never takes the log of a rounded probability.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    try:
        jnp.broadcast_shapes(logits.shape, labels.shape)
    except ValueError:
        raise ValueError(
            f"binary_cross_entropy: logits {logits.shape} and labels {labels.shape} do not broadcast") from None
    V.check_finite("binary_cross_entropy", "logits", logits)
    V.check_binary("binary_cross_entropy", "labels", labels, where=where)
    labels = labels.astype(logits.dtype)
    loss = jax.nn.softplus(logits) - labels * logits
    if where is not None:
        loss = jnp.where(where, loss, 0.0)
    return loss


def mc_logits(
    logits: Float[Array, "*batch C"], labels: Float[Array, "*batch C"], ancestry
) -> Float[Array, "*batch C"]:
    """The logits of C-HMCNN's training-path output ``ŷ = (1-y)·MCM(h) + y·MCM(y⊙h)``.

    With ``h = σ(z)``: negatives take the max over all descendants, positives the
    max over *positive* descendants only (``y⊙h`` zeroes the others, which in
    logit space is ``finfo.min``). Labels must be closed under ancestors.
    ``logits`` and ``labels`` share one shape ``[..., C]``, which is returned.
    """
    y = labels.astype(bool)
    neg = apply_constraint(logits, ancestry)
    pos = apply_constraint(jnp.where(y, logits, jnp.finfo(logits.dtype).min), ancestry)
    return jnp.where(y, pos, neg)


def mc_loss(
    logits: Float[Array, "*batch C"],
    labels: Float[Array, "*batch C"],
    ancestry,
    *,
    where: Bool[Array, "*batch C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*batch C"]:
    """C-HMCNN's max-constraint loss (MCLoss), elementwise and unreduced.

    Args:
        logits: the network's unconstrained logits ``z`` (``h = σ(z)``), nodes on
            the last axis and any leading batch axes (``[C]``, ``[B, C]``, ...).
        labels: 0/1 targets, closed under ancestors; the shape of ``logits``.
        ancestry: dense bool ``[C, C]`` (``ancestry[i, j]`` iff j is i or below i)
            or a :class:`hmljax.constraints.ConstraintGraph`.
        where: mask of entries that count, broadcast to ``logits``' shape, e.g.
            ``hierarchy.evaluated`` (``[C]``) to drop the roots as C-HMCNN does.

    Returns:
        The shape of ``logits``: BCE of the constrained output; C-HMCNN's loss
        is its mean over the ``where`` entries.

    References:
        Giunchiglia & Lukasiewicz, NeurIPS 2020, eq. for MCLoss.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.shape != labels.shape:
        raise ValueError(f"mc_loss: logits {logits.shape} and labels {labels.shape} differ")
    V.check_where("mc_loss", where, logits.shape)
    if where is not None:
        where = jnp.broadcast_to(where, logits.shape)
    V.check_finite("mc_loss", "logits", logits)
    V.check_binary("mc_loss", "labels", labels, where=where)
    V.check_closed("mc_loss", "labels", labels, ancestry, where=where)
    return binary_cross_entropy(mc_logits(logits, labels, ancestry), labels, where=where)


def constrained_probs(logits: Float[Array, "*batch C"], ancestry) -> Float[Array, "*batch C"]:
    """Inference path: ``MCM(σ(z)) = σ(MCM(z))``, the shape of ``logits``.

    Thresholding it gives coherent predictions.
    """
    V.check_finite("constrained_probs", "logits", logits)
    return jax.nn.sigmoid(apply_constraint(logits, ancestry))
