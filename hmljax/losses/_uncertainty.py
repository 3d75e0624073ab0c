"""RARE's ensemble uncertainty terms (eq. 10-17) and the focal factor ``U0 + U^k``.

Every function maps member probabilities ``[E, ..., C]`` (E ensemble members or
MC-dropout passes, then any batch axes: ``[E, C]``, ``[E, B, C]``, ...) to ``[..., C]``
(the leading ``E`` axis reduced) and
is wrapped in ``stop_gradient``: the paper computes the focal term without
gradients (ensemble collapse risk, Lee et al. 2015), so it only rescales each
member's own loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from hmljax import _validate as V

__all__ = ["bbma_uncertainty", "gmu_uncertainty", "epistemic_kl", "epistemic_js", "uncertainty", "focal_weight",
           "UNCERTAINTIES"]

_EPS = 1e-10  # the released code's additive epsilon inside logs and the SNR denominator


def _margin(mu):
    # mu_hat = 2 (max(mu, 1 - mu) - 0.5) = |2 mu - 1|: binary BMA confidence in [0, 1].
    return jnp.abs(2.0 * mu - 1.0)


def bbma_uncertainty(probs_E: Float[Array, "E *batch C"]) -> Float[Array, "*batch C"]:
    """bBMA (eq. 11-12): ``U = 1 - |2μ - 1|`` with μ the members' mean probability."""
    V.check_probabilities("bbma_uncertainty", "probs_E", probs_E)
    p = jax.lax.stop_gradient(probs_E)
    return 1.0 - _margin(p.mean(0))


def gmu_uncertainty(probs_E: Float[Array, "E *batch C"]) -> Float[Array, "*batch C"]:
    """Gated margin uncertainty (eq. 13-15): ``U = 1 - μ̂ (1 - exp(-SNR))``.

    In the binary case μ_max - μ_min = |2μ - 1| and σ_max = σ_min = σ, so
    ``SNR = |2μ - 1| / (2σ + 1e-10)`` with σ the unbiased (N - 1) standard
    deviation over members, as torch's default. With one member σ is undefined;
    hmljax takes σ = 0 (no observed disagreement), so GMU reduces to bBMA there
    (the released code instead returns the raw probability as the confidence).
    """
    V.check_probabilities("gmu_uncertainty", "probs_E", probs_E)
    p = jax.lax.stop_gradient(probs_E)
    e = p.shape[0]
    mu = p.mean(0)
    sigma = jnp.std(p, axis=0, ddof=1) if e > 1 else jnp.zeros_like(mu)
    margin = _margin(mu)
    snr = margin / (2.0 * sigma + _EPS)
    return 1.0 - margin * (1.0 - jnp.exp(-snr))


def _log2_eps(x):
    # log2(x + 1e-10) as the released code writes it, for x >= 0. The max is not redundant: under jit XLA
    # reassociates (1 - q) + 1e-10 into (1 + 1e-10) - q, which is 1 - q in float32, so at q = 1 the log
    # was -inf and the KL inf or NaN (eager was fine). That killed cellcycle_FUN's KL run at epoch 101.
    # The max restores the floor after any such rewrite and changes nothing where x + 1e-10 is computed as written.
    return jnp.log2(jnp.maximum(x + _EPS, _EPS))


def _bernoulli_kl2(p, q):
    """Bernoulli KL(p || q) in bits, with the code's +1e-10 inside the logs, clamped at 0."""
    kl = p * (_log2_eps(p) - _log2_eps(q)) + (1 - p) * (_log2_eps(1 - p) - _log2_eps(1 - q))
    return jnp.maximum(kl, 0.0)


def _pairwise_mean(div, p):
    # Mean of div(p_a, p_b) over the E (E - 1) ordered pairs a != b; the diagonal is 0 for KL and JS.
    e = p.shape[0]
    if e < 2:
        return jnp.zeros(p.shape[1:], p.dtype)
    mat = div(p[:, None], p[None, :])  # [E, E, ...]
    return mat.sum((0, 1)) / (e * (e - 1))


def epistemic_kl(probs_E: Float[Array, "E *batch C"]) -> Float[Array, "*batch C"]:
    """Epistemic uncertainty (eq. 16-17): mean pairwise Bernoulli KL (base 2) between members; 0 for E = 1."""
    return _pairwise_mean(_bernoulli_kl2, jax.lax.stop_gradient(probs_E))


def _js2(p, q):
    m = 0.5 * (p + q)
    return 0.5 * _bernoulli_kl2(p, m) + 0.5 * _bernoulli_kl2(q, m)


def epistemic_js(probs_E: Float[Array, "E *batch C"]) -> Float[Array, "*batch C"]:
    """The Jensen-Shannon variant (base 2, so each pair is in [0, 1]), averaged like :func:`epistemic_kl`."""
    return _pairwise_mean(_js2, jax.lax.stop_gradient(probs_E))


UNCERTAINTIES = {"bbma": bbma_uncertainty, "gmu": gmu_uncertainty, "kl": epistemic_kl, "js": epistemic_js}


def uncertainty(probs_E: Float[Array, "E *batch C"], *, mode: str) -> Float[Array, "*batch C"]:
    """Dispatches on ``mode`` in ``bbma``, ``gmu``, ``kl``, ``js``."""
    if mode not in UNCERTAINTIES:
        raise ValueError(f"uncertainty: mode must be one of {sorted(UNCERTAINTIES)}, got {mode!r}")
    V.check_probabilities("uncertainty", "probs_E", probs_E)
    return UNCERTAINTIES[mode](probs_E)


def focal_weight(u: Float[Array, "..."], *, u0: float = 0.25, k: float = 1.0) -> Float[Array, "..."]:
    """The focal factor ``U0 + U^k`` of eq. 6 (paper: U0 = 0.25, k = 1)."""
    V.check_nonnegative("focal_weight", "u0", u0)
    V.check_nonnegative("focal_weight", "k", k)
    V.check_nonnegative("focal_weight", "u", u)
    return u0 + jnp.power(jnp.clip(u, 0.0, None), k)
