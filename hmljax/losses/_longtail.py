"""Long-tailed multi-label losses: focal, class-balanced, distribution-balanced, asymmetric, re-weighting.

HMT-Net's baselines (REFERENCE.md §4, §8). Every loss is elementwise over logits
``[..., C]`` and 0/1 multi-hot labels, unreduced, and in logit space:
``log σ(z)`` is ``log_sigmoid(z)`` and ``log(1 - σ(z))`` is ``log_sigmoid(-z)``;
focal factors ``(1 - p_t)^γ`` are ``exp(γ · log_sigmoid(±z))``, finite with finite
gradients for any ``γ >= 0``. Class weights are pure functions of the training
counts ``n_k`` (compute them once and pass them in as constants).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from hmljax import _validate as V

__all__ = [
    "sigmoid_focal_loss",
    "class_balanced_weights",
    "class_balanced_focal_loss",
    "inverse_frequency_weights",
    "db_rebalancing_weights",
    "db_loss",
    "db_focal_loss",
    "asymmetric_loss",
]


def _labels(name: str, logits, labels, where):
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.shape != labels.shape:
        raise ValueError(f"{name}: logits {logits.shape} and labels {labels.shape} differ")
    V.check_finite(name, "logits", logits)
    V.check_binary(name, "labels", labels, where=where)
    labels = labels.astype(logits.dtype)
    if where is not None:  # neutralise missing labels before any maths: a NaN label would poison the gradient
        labels = jnp.where(jnp.broadcast_to(where, labels.shape), labels, 0.0)
    return logits, labels


def _counts(name: str, class_counts, num_classes: int | None = None, *, num_samples=None) -> Array:
    n_C = jnp.asarray(class_counts)
    if n_C.ndim != 1 or (num_classes is not None and n_C.shape[0] != num_classes):
        want = f"[{num_classes}]" if num_classes is not None else "[C]"
        raise ValueError(f"{name}: class_counts must be {want}, got {n_C.shape}")
    # A class with no positives has an infinite weight (1/n, 1/(1 - β^n)), and the normalisation then
    # turns every class's weight into 0 or NaN; n = N makes DB's prior bias log(n/(N-n)) infinite.
    # Both would come back as a silently NaN loss, so they are refused while the counts are concrete.
    V.check_in_range(name, "class_counts", n_C, low=1, below=num_samples,
                        hint="clip them, e.g. np.clip(n, 1, N - 1) as hmljax.methods' class_counts does, "
                             "or leave such classes out")
    return n_C.astype(jnp.result_type(float))


def _mask(loss, where):
    return loss if where is None else jnp.where(jnp.broadcast_to(where, loss.shape), loss, 0.0)


def _focal_factor(logits, labels, gamma):
    # (1 - p_t)^γ with 1 - p_t = σ(-z) on positives and σ(z) on negatives, in log space.
    s = jnp.where(labels.astype(bool), -logits, logits)
    return jnp.exp(gamma * jax.nn.log_sigmoid(s))


def _safe_pow(x, gamma):
    # x^γ for x >= 0 with a finite gradient at x = 0 (jnp.power gives nan/inf there).
    pos = x > 0
    safe = jnp.where(pos, x, 1.0)
    return jnp.where(pos, jnp.exp(gamma * jnp.log(safe)), jnp.where(gamma == 0, 1.0, 0.0).astype(x.dtype))


def sigmoid_focal_loss(
    logits: Float[Array, "*B C"],
    labels: Float[Array, "*B C"],
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    where: Bool[Array, "*B C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*B C"]:
    """Sigmoid focal loss ``-α_t (1 - p_t)^γ log p_t``, elementwise and unreduced.

    Args:
        logits: ``z``, with ``p = σ(z)``.
        labels: 0/1 targets; ``p_t = p`` where 1, ``1 - p`` where 0.
        gamma: focusing parameter; 0 gives plain BCE.
        alpha: weight of positives (negatives get ``1 - α``); ``None``: no weighting.
        where: entries that count (zero elsewhere).

    Returns:
        ``[..., C]``.

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    >>> round(float(sigmoid_focal_loss(jnp.array([0.0]), jnp.array([1.0]), gamma=2.0)[0]), 6)  # 0.25 log 2
    0.173287
    """
    logits, labels = _labels("sigmoid_focal_loss", logits, labels, where)
    V.check_nonnegative("sigmoid_focal_loss", "gamma", gamma)  # γ < 0 weights the easy entries up, unboundedly
    if alpha is not None:
        V.check_in_range("sigmoid_focal_loss", "alpha", alpha, low=0, high=1)
    bce = jax.nn.softplus(logits) - labels * logits
    loss = _focal_factor(logits, labels, gamma) * bce
    if alpha is not None:
        loss = (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss
    return _mask(loss, where)


def class_balanced_weights(class_counts: Float[ArrayLike, " C"], *, beta: float = 0.9999) -> Float[Array, " C"]:
    """Class-balanced weights ``w_k ∝ (1 - β) / (1 - β^{n_k})`` (inverse effective number), summing to ``C``.

    Args:
        class_counts: ``n_k >= 1``, training positives per class.
        beta: ``β in [0, 1)``; 0 gives uniform weights, ``β -> 1`` inverse frequency.

    Returns:
        ``[C]`` weights normalised so they sum to ``C`` (Cui et al.'s normalisation;
        DB's code leaves them unnormalised, a constant factor).

    References:
        Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.
    """
    n_C = _counts("class_balanced_weights", class_counts)
    V.check_in_range("class_balanced_weights", "beta", beta, low=0.0, below=1.0)
    # 1 - β^n = -expm1(n log β), accurate for β near 1; (1 - β) cancels in the normalisation.
    inv_effective_C = 1.0 / -jnp.expm1(n_C * jnp.log1p(-(1.0 - beta)))
    return inv_effective_C * (n_C.shape[0] / inv_effective_C.sum())


def class_balanced_focal_loss(
    logits: Float[Array, "*B C"],
    labels: Float[Array, "*B C"],
    class_counts: Float[ArrayLike, " C"],
    *,
    beta: float = 0.9999,
    gamma: float = 2.0,
    alpha: float | None = None,
    mode: str = "average_w",
    where: Bool[Array, "*B C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*B C"]:
    """CB focal: :func:`sigmoid_focal_loss` times :func:`class_balanced_weights`.

    Args:
        mode: how the per-class weights reach a multi-label row. ``average_w``
            (DB's default ``CB_mode``): every entry of a row gets the mean of
            ``w_k`` over the row's positive classes (Cui's single-label rule,
            where a sample is weighted by its class); a row with no positive gets
            1, the mean weight. ``by_class``: entry ``k`` gets ``w_k``.
        Others as in :func:`sigmoid_focal_loss` and :func:`class_balanced_weights`.

    Returns:
        ``[..., C]``.
    """
    logits, labels = _labels("class_balanced_focal_loss", logits, labels, where)
    w_C = class_balanced_weights(_counts("class_balanced_focal_loss", class_counts, logits.shape[-1]), beta=beta)
    w = jnp.broadcast_to(w_C.astype(logits.dtype), logits.shape)  # explicit: rank promotion raises in the tests
    if mode == "by_class":
        weights = w
    elif mode == "average_w":
        num_pos = labels.sum(-1, keepdims=True)
        row = (labels * w).sum(-1, keepdims=True) / jnp.maximum(num_pos, 1.0)
        weights = jnp.broadcast_to(jnp.where(num_pos > 0, row, 1.0), logits.shape)
    else:
        raise ValueError(f"class_balanced_focal_loss: mode must be 'average_w' or 'by_class', got {mode!r}")
    return weights * sigmoid_focal_loss(logits, labels, gamma=gamma, alpha=alpha, where=where)


def inverse_frequency_weights(
    class_counts: Float[ArrayLike, " C"], *, num_samples: float | None = None, power: float = 1.0
) -> Float[Array, " C"]:
    """Re-weighting (RW) by inverse class frequency: ``(N / n_k)^power``.

    Args:
        class_counts: ``n_k >= 1``, training positives per class.
        num_samples: ``N``, the number of training rows: the weights are then DB's
            RW weights ``N / n_k`` (``power=0.5``: its ``sqrt_inv``). ``None``:
            normalised to sum ``C`` instead (``N`` cancels).
        power: 1 for inverse frequency, 0.5 for the square-root variant.

    Returns:
        ``[C]``, applied to positives and negatives alike, e.g.
        ``binary_cross_entropy(logits, labels) * inverse_frequency_weights(n)``.
    """
    n_C = _counts("inverse_frequency_weights", class_counts)
    if num_samples is not None:
        return (num_samples / n_C) ** power
    w_C = n_C ** (-power)
    return w_C * (n_C.shape[0] / w_C.sum())


def db_rebalancing_weights(
    labels: Float[Array, "*B C"],
    class_counts: Float[ArrayLike, " C"],
    *,
    alpha: float = 0.1,
    beta: float = 10.0,
    mu: float = 0.3,
) -> Float[Array, "*B C"]:
    """DB's re-balanced weights ``r̂ = α + σ(β (r - μ))`` for every entry of every row.

    ``r_ik = P^C_k / P^I_i = (1/n_k) / Σ_{j: y_ij = 1} (1/n_j)``: the class-level
    sampling frequency of k over the instance-level frequency of row i under
    class-aware re-sampling. Both carry DB's ``1/C``, which cancels, so this is
    also what the released code computes (``freq_inv / repeat_rate``). It is
    evaluated for positives and negatives alike. A row with no positive has no
    instance-level frequency (``r = inf``) and gets ``α + 1``.

    Args:
        labels: 0/1 targets of the rows.
        class_counts: ``n_k >= 1``, training positives per class.
        alpha, beta, mu: the smoothing map; defaults are DB's VOC-LT config
            (``map_param`` alpha 0.1, beta 10, gamma 0.3).

    Returns:
        ``[..., C]`` weights in ``(α, α + 1]``, constants with respect to the logits.

    References:
        Wu et al., "Distribution-Balanced Loss for Multi-Label Classification in
        Long-Tailed Datasets", ECCV 2020, §3.2.
    """
    n_C = _counts("db_rebalancing_weights", class_counts, labels.shape[-1])
    dtype = labels.dtype if jnp.issubdtype(labels.dtype, jnp.floating) else n_C.dtype
    inv = jnp.broadcast_to((1.0 / n_C).astype(dtype), labels.shape)
    repeat = (labels.astype(dtype) * inv).sum(-1, keepdims=True)
    has_pos = repeat > 0
    r = inv / jnp.where(has_pos, repeat, 1.0)
    return jnp.where(has_pos, alpha + jax.nn.sigmoid(beta * (r - mu)), alpha + 1.0)


def db_loss(
    logits: Float[Array, "*B C"],
    labels: Float[Array, "*B C"],
    class_counts: Float[ArrayLike, " C"],
    *,
    num_samples: float,
    alpha: float = 0.1,
    beta: float = 10.0,
    mu: float = 0.3,
    neg_scale: float = 5.0,
    kappa: float = 0.05,
    gamma: float = 0.0,
    balance: float = 1.0,
    where: Bool[Array, "*B C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*B C"]:
    """Distribution-balanced loss: re-balanced weighting plus negative-tolerant regularisation (NTR).

    With ``z' = z + ν_k``, ``ν_k = κ log(p_k / (1 - p_k)) / λ`` (class prior
    ``p_k = n_k / N``) and ``r̂`` from :func:`db_rebalancing_weights`::

        y = 1:  r̂ · log(1 + exp(-z'))
        y = 0:  r̂ · (1/λ) · log(1 + exp(λ z'))

    times ``balance · (1 - p_t)^γ`` with ``p_t`` taken from the same regularised
    logits (``gamma=0, balance=1``: no focal term; :func:`db_focal_loss` is DB Focal).
    The bias follows the released code (``init_bias``), which adds ``κ b̂ / λ``
    to every logit, so the negatives see ``λ z + κ b̂`` (REFERENCE.md §8).

    Args:
        logits: ``z``.
        labels: 0/1 targets.
        class_counts: ``0 < n_k < N``, training positives per class.
        num_samples: ``N``, the number of training rows (for the class prior).
        alpha, beta, mu: :func:`db_rebalancing_weights`'s smoothing map.
        neg_scale: ``λ`` (VOC-LT config 5; COCO-LT 2).
        kappa: ``κ``, the bias scale (``init_bias``, 0.05).
        gamma, balance: focal exponent and constant factor.
        where: entries that count (zero elsewhere).

    Returns:
        ``[..., C]``.

    References:
        Wu et al., ECCV 2020, §3.2-3.3; the DB project's ``ResampleLoss``.
    """
    logits, labels = _labels("db_loss", logits, labels, where)
    V.check_nonnegative("db_loss", "gamma", gamma)
    n_C = _counts("db_loss", class_counts, logits.shape[-1], num_samples=num_samples)
    y = labels.astype(bool)
    weights = db_rebalancing_weights(labels, n_C, alpha=alpha, beta=beta, mu=mu).astype(logits.dtype)
    bias_C = (kappa * (jnp.log(n_C) - jnp.log(num_samples - n_C)) / neg_scale).astype(logits.dtype)
    shifted = logits + jnp.broadcast_to(bias_C, logits.shape)
    z = jnp.where(y, shifted, neg_scale * shifted)
    weights = jnp.where(y, weights, weights / neg_scale)
    bce = jax.nn.softplus(z) - labels * z
    loss = balance * _focal_factor(z, labels, gamma) * weights * bce  # γ = 0: the factor is exactly 1
    return _mask(loss, where)


def db_focal_loss(
    logits: Float[Array, "*B C"],
    labels: Float[Array, "*B C"],
    class_counts: Float[ArrayLike, " C"],
    *,
    num_samples: float,
    gamma: float = 2.0,
    balance: float = 2.0,
    **kwargs,
) -> Float[Array, "*B C"]:
    """DB Focal, DB's VOC-LT loss: :func:`db_loss` with the focal term (``γ = 2``, ``balance = 2``).

    ``kwargs`` are :func:`db_loss`'s other keywords (``alpha``, ``beta``, ``mu``,
    ``neg_scale``, ``kappa``, ``where``).
    """
    return db_loss(logits, labels, class_counts, num_samples=num_samples, gamma=gamma, balance=balance, **kwargs)


def asymmetric_loss(
    logits: Float[Array, "*B C"],
    labels: Float[Array, "*B C"],
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    where: Bool[Array, "*B C"] | Bool[Array, " C"] | None = None,
) -> Float[Array, "*B C"]:
    """Asymmetric loss (ASL), elementwise and unreduced.

    ``y = 1: -(1 - p)^{γ+} log p``; ``y = 0: -p_m^{γ-} log(1 - p_m)`` with the
    shifted probability ``p_m = max(p - m, 0)``, so very easy negatives
    (``p < m``) are discarded. ``log(1 - p_m) = log(min(σ(-z) + m, 1))``; there is
    no ``eps`` clamp as in the released code (it only matters for ``p < 1e-8``).
    The focusing factors keep their gradient (the paper's form).

    Args:
        logits: ``z``, with ``p = σ(z)``.
        labels: 0/1 targets.
        gamma_pos, gamma_neg: focusing exponents ``γ+``, ``γ-``.
        clip: the probability margin ``m``; 0 disables shifting.
        where: entries that count (zero elsewhere).

    Returns:
        ``[..., C]``; ``gamma_pos = gamma_neg = clip = 0`` gives BCE.

    References:
        Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021.
    """
    logits, labels = _labels("asymmetric_loss", logits, labels, where)
    V.check_nonnegative("asymmetric_loss", "gamma_pos", gamma_pos)
    V.check_nonnegative("asymmetric_loss", "gamma_neg", gamma_neg)
    V.check_in_range("asymmetric_loss", "clip", clip, low=0, below=1)  # m >= 1 zeroes every negative's loss
    pos = -jnp.exp(gamma_pos * jax.nn.log_sigmoid(-logits)) * jax.nn.log_sigmoid(logits)
    if clip > 0:
        p_m = jnp.maximum(jax.nn.sigmoid(logits) - clip, 0.0)
        log_1m_pm = jnp.log(jnp.minimum(jax.nn.sigmoid(-logits) + clip, 1.0))
        neg = -_safe_pow(p_m, gamma_neg) * log_1m_pm
    else:
        neg = -jnp.exp(gamma_neg * jax.nn.log_sigmoid(logits)) * jax.nn.log_sigmoid(-logits)
    return _mask(labels * pos + (1.0 - labels) * neg, where)
