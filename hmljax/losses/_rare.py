"""RARE's weighted loss ``L = (W̃0 + W̃)(U0 + U^k) L_MC``, its reduction, schedulers and the mixed loss.

Everything here is elementwise on ``[..., C]`` (any leading batch axes; the
training step uses ``[B, C]``) and composes with any unreduced
hmljax loss: build a weight matrix (imbalance, focal, scheduled or mixed),
multiply, then reduce explicitly with :func:`reduce_loss`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from hmljax import _validate as V
from hmljax.losses._mcloss import mc_loss
from hmljax.losses._weighting import label_weights

__all__ = ["weighted_mc_loss", "reduce_loss", "schedule_fraction", "scheduled_weights", "mix_weights", "SCHEDULES"]

SCHEDULES = ("none", "linear", "exponential", "alternating")


def weighted_mc_loss(
    logits: Float[Array, "*batch C"],
    labels: Float[Array, "*batch C"],
    ancestry,
    *,
    node_weights: Float[Array, " C"] | None = None,
    apply_to: str = "positive",
    focal: Float[Array, "*batch C"] | None = None,
    where: Bool[Array, "*batch C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*batch C"]:
    """RARE's loss (eq. 6), elementwise and unreduced: ``(W̃0 + W̃) · (U0 + U^k) · MCLoss``.

    Args:
        logits: unconstrained logits, nodes on the last axis and any leading
            batch axes (``[C]``, ``[B, C]``, ...).
        labels: 0/1 targets closed under ancestors, the shape of ``logits``.
        ancestry: dense ``[C, C]`` or a :class:`hmljax.constraints.ConstraintGraph`.
        node_weights: w̃ per node from :func:`imbalance_weights`; ``None`` = unweighted.
        apply_to: ``positive`` (eq. 9) or ``negative`` (the released code).
        focal: ``U0 + U^k`` from :func:`focal_weight`, gradient-free, the shape of
            ``logits`` (or broadcastable to it); ``None`` = 1.
        where: entries that count (zero elsewhere), broadcast to ``logits``' shape.

    Returns:
        The shape of ``logits``; reduce it with :func:`reduce_loss`.
    """
    V.check_nonnegative("weighted_mc_loss", "node_weights", node_weights)
    V.check_nonnegative("weighted_mc_loss", "focal", focal)
    loss = mc_loss(logits, labels, ancestry, where=where)
    if node_weights is not None:
        loss = loss * label_weights(node_weights, labels, apply_to=apply_to)
    if focal is not None:
        loss = loss * focal
    return loss


def reduce_loss(loss: Float[Array, "..."], where=None, *, reduction: str = "mean") -> Float[Array, ""]:
    """``mean`` over the counted entries (RARE's non-focal path, C-HMCNN) or ``sum`` (RARE's focal code path).

    The choice matters with Adam and weight decay: a sum scales the gradient by
    the entry count, which shrinks the relative pull of ``weight_decay``.
    """
    if reduction == "sum":
        return loss.sum()
    if reduction != "mean":
        raise ValueError(f"reduce_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
    if where is None:
        return loss.mean()
    V.check_where("reduce_loss", where, loss.shape, of="loss")
    where = jnp.broadcast_to(where, loss.shape)
    return loss.sum() / jnp.maximum(where.sum(), 1)


def schedule_fraction(t, num_steps: int, *, kind: str, k: float = 3.0):
    """How far batch ``t`` of an epoch of ``num_steps`` moves the weights towards ω, in [0, 1] (App. D).

    ``linear``: t/(S - 1); ``exponential``: (t/(S - 1))^k (the code's absolute
    form; the paper's incremental formula would overshoot); ``alternating``: 0 on
    even batches, 1 on odd ones; ``none``: 0. The weights reset every epoch.
    """
    t = jnp.asarray(t, jnp.float32)
    denom = max(num_steps - 1, 1)
    if kind == "none":
        return jnp.zeros_like(t)
    if kind == "linear":
        return jnp.clip(t / denom, 0.0, 1.0)
    if kind == "exponential":
        return jnp.clip(t / denom, 0.0, 1.0) ** k
    if kind == "alternating":
        return jnp.mod(t, 2.0)
    raise ValueError(f"schedule_fraction: kind must be one of {SCHEDULES}, got {kind!r}")


def scheduled_weights(weights: Float[Array, "B C"], frac, *, omega: float = 0.25) -> Float[Array, "B C"]:
    """``W + (ω - W)·frac``: the whole weight matrix (negatives' ones included, as the code does) moves to ω."""
    return weights + (omega - weights) * frac


def mix_weights(weights: Float[Array, "B C"], *, lam: float) -> Float[Array, "B C"]:
    """The λ-mixed loss as a weight: ``λ·mean(W·L) + (1-λ)·mean(L) = mean((λW + 1 - λ)·L)``."""
    return lam * weights + (1.0 - lam)
