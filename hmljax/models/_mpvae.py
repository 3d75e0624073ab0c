"""MPVAE's networks and probit pieces (Bai, Kong & Gomes, IJCAI 2020, "Disentangled Variational Autoencoder based
Multi-Label Classification with Covariance-Aware Multivariate Probit Model"), in Flax Linen and JAX.

Shape legend: ``B`` batch, ``D`` input features, ``C`` labels, ``K`` latent width, ``R`` the rank of the probit
model's residual covariance, ``S`` Monte Carlo samples of the probit noise, ``H`` hidden width.

The networks, with the shapes of the authors' released TensorFlow code (JunwenBai/MPVAE, ``model.py`` and
``config.py``; read there, written here from the equations):

- label encoder ``q(z | x, y)``: ``[x, y] -> 512 -> 256`` (ReLU, then dropout, after both layers), then two
  linear heads ``256 -> K``: ``mu_e`` and ``logvar_e``. The paper's label encoder reads the labels; the released
  code also concatenates the features ("made the training more stable", as in a conditional VAE), and so does
  this module;
- feature encoder ``p(z | x)`` (the "informative prior"): ``x -> 256 -> 512 -> 256`` (ReLU, then dropout), heads
  ``mu_x`` and ``logvar_x``;
- one latent draw per row, ``z_e = mu_e + sigma_e * eps`` and ``z_x = mu_x + sigma_x * eps`` with the same
  ``eps [B, K]`` for both branches (the released code shares it);
- decoder on ``[x, z]``: ``(D + K) -> 256 -> 512`` (ReLU, no dropout), shared by the two branches, then one
  linear head ``512 -> C`` per branch giving the probit model's mean: ``label_mp_mu`` for ``z_e``,
  ``feat_mp_mu`` for ``z_x`` (the released code shares the hidden layers but not these heads; the paper
  speaks of one decoder);
- the multivariate probit model: ``y_c = 1[mean_c + (R eps')_c + u_c > 0]``, ``eps' ~ N(0, I_R)``,
  ``u ~ N(0, I_C)``, so the latent Gaussian has covariance ``Sigma = R R^T + I`` with the learned factor
  ``R [C, R]`` (``r_sqrt_sigma``; the released scripts all set its rank to C). Given ``eps'`` the labels are
  independent with ``P(y_c = 1 | eps') = Phi(mean_c + (R eps')_c)``, so

      P(y | mean) = E_{eps'} prod_c Phi(mean_c + (R eps')_c)^{y_c} (1 - Phi(mean_c + (R eps')_c))^{1 - y_c},

  estimated with S draws of ``eps'`` (:func:`probit_log_likelihood`), in log space: ``log_ndtr`` per label and
  ``logsumexp`` over the draws. Each probability is clamped as the released code does,
  ``Phi(.) (1 - delta) + delta / 2`` with ``delta = 1e-6``, which bounds a label's cost at ``-log(delta / 2)``;
  here the clamp is applied exactly in log space (:func:`log_probit`).

Each label's marginal is exact: ``E_{eps'} Phi(mean_c + (R eps')_c) = Phi(mean_c / sqrt(1 + ||R_c||^2))``
(:func:`probit_marginal`), the limit of the released code's prediction (the mean of the clamped ``Phi`` over
10,000 draws).

Initialisation follows the released code (``slim.fully_connected``'s defaults): Glorot-uniform weights and
zero biases for every linear layer, and U(±sqrt(6 / (C + R))) for ``R`` (also Glorot uniform).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr
from jaxtyping import Array, Float

__all__ = ["Mpvae", "log_probit", "probit_scores", "probit_log_likelihood", "probit_marginal", "gaussian_kl"]

_glorot = nn.initializers.xavier_uniform()


def log_probit(scores: Float[Array, "*shape"], *, clamp: float = 1e-6) -> Float[Array, "*shape"]:
    """``log(Phi(s) (1 - clamp) + clamp / 2)``, stable for any ``s`` (``log(1 - ...)`` is ``log_probit(-s)``).

    Args:
        scores: probit scores ``s``.
        clamp: the released code's ``eps1`` (1e-6), keeping every probability in ``[clamp / 2, 1 - clamp / 2]``;
            0 gives ``log Phi(s)`` itself.

    Returns:
        The log-probabilities, of ``scores``' shape.
    """
    log_phi = log_ndtr(scores)
    if clamp == 0:
        return log_phi
    return jnp.logaddexp(log_phi + jnp.log1p(-clamp), jnp.log(clamp / 2.0)).astype(scores.dtype)


def probit_scores(mean: Float[Array, "B C"], r: Float[Array, "C R"], noise: Float[Array, "S B R"]
                  ) -> Float[Array, "S B C"]:
    """``mean + R eps'`` for each draw ``eps'`` of ``noise``: the arguments of ``Phi`` per (draw, row, label)."""
    return noise @ r.T + mean[None]


def probit_log_likelihood(scores: Float[Array, "S B C"], labels: Float[Array, "B C"], *,
                          clamp: float = 1e-6) -> Float[Array, " B"]:
    """The Monte Carlo estimate of ``log P(y | mean)`` per row: ``log mean_S prod_C p_c^{y_c} (1 - p_c)^{1 - y_c}``.

    ``p = Phi(scores)`` clamped (:func:`log_probit`); the product is a sum of logs and the mean over draws a
    ``logsumexp`` minus ``log S`` (the released code's max-shifted mean). Labels may be soft (the exponents
    are ``y`` and ``1 - y``).

    Args:
        scores: ``[S, B, C]`` from :func:`probit_scores`.
        labels: ``[B, C]`` in [0, 1].
        clamp: the probabilities' clamp (1e-6).

    Returns:
        ``[B]`` the log-likelihood estimate of each row.
    """
    y = labels[None].astype(scores.dtype)
    log_p, log_not_p = log_probit(jnp.stack([scores, -scores]), clamp=clamp)  # one log_ndtr: half the compiled ops
    logp_SxB = (y * log_p + (1.0 - y) * log_not_p).sum(-1)
    return jax.nn.logsumexp(logp_SxB, axis=0) - jnp.log(jnp.asarray(scores.shape[0], scores.dtype))


def probit_marginal(mean: Float[Array, "B C"], r: Float[Array, "C R"]) -> Float[Array, "B C"]:
    """The probit score of each label's marginal: ``mean_c / sqrt(1 + ||R_c||^2)``, so ``P(y_c = 1) = Phi(.)``."""
    return mean * jax.lax.rsqrt(1.0 + jnp.sum(r * r, axis=-1))[None, :]


def gaussian_kl(mu_q: Float[Array, "B K"], logvar_q: Float[Array, "B K"], mu_p: Float[Array, "B K"],
                logvar_p: Float[Array, "B K"], *, guard: float = 1e-6) -> Float[Array, " B"]:
    """``KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p))`` per row, summed over the latent dimensions.

    ``0.5 * sum_K (logvar_p - logvar_q - 1 + exp(logvar_q - logvar_p) + (mu_q - mu_p)^2 / (exp(logvar_p) + guard))``:
    the closed form, with the released code's ``guard`` (1e-6) added to the prior's variance in the mean term
    (so a collapsing prior variance costs at most ``1 / guard`` per unit of squared distance). MPVAE's KL is
    ``q = `` the label encoder's ``q(z | x, y)``, ``p = `` the feature encoder's ``p(z | x)``.
    """
    terms = (logvar_p - logvar_q - 1.0 + jnp.exp(logvar_q - logvar_p)
             + (mu_q - mu_p) ** 2 / (jnp.exp(logvar_p) + guard))
    return 0.5 * terms.sum(-1)


class _Mlp(nn.Module):
    """Linear layers of ``widths``, each followed by ReLU and dropout (rate 0: none)."""

    widths: Sequence[int]
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, *, train: bool):
        for k, width in enumerate(self.widths):
            h = nn.relu(nn.Dense(width, kernel_init=_glorot, name=f"dense_{k}")(h))
            if self.dropout:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return h


class _Encoder(nn.Module):
    """An MLP, then two linear heads: ``(mu, logvar)`` of a diagonal Gaussian over the latent space."""

    widths: Sequence[int]
    latent: int
    dropout: float

    @nn.compact
    def __call__(self, h, *, train: bool):
        h = _Mlp(self.widths, self.dropout, name="mlp")(h, train=train)
        mu = nn.Dense(self.latent, kernel_init=_glorot, name="mu")(h)
        logvar = nn.Dense(self.latent, kernel_init=_glorot, name="logvar")(h)
        return mu, logvar


class Mpvae(nn.Module):
    """MPVAE's encoders, decoder, probit heads and covariance factor; ``__call__(x)`` is the feature branch.

    In training (``train=True``) the module draws from the ``dropout`` and ``latent`` RNG streams: the latent
    draw ``eps [B, K]`` is returned so that the label branch (:meth:`label_branch`, run by the loss) reuses it.
    In eval there is no dropout and ``z = mu`` (the feature encoder's mean; no draw).

    Attributes:
        num_labels: C.
        rank: R, the columns of the covariance factor (the released scripts: C).
        latent: K (the released ``latent_dim``: 50).
        label_widths: the label encoder's hidden widths (512, 256).
        feature_widths: the feature encoder's hidden widths (256, 512, 256).
        decoder_widths: the shared decoder's hidden widths (256, 512).
        dropout: drop probability after every encoder hidden layer (0.5: ``keep_prob = 0.5``).
    """

    num_labels: int
    rank: int
    latent: int = 50
    label_widths: Sequence[int] = (512, 256)
    feature_widths: Sequence[int] = (256, 512, 256)
    decoder_widths: Sequence[int] = (256, 512)
    dropout: float = 0.5

    def setup(self):
        self.label_encoder = _Encoder(self.label_widths, self.latent, self.dropout)
        self.feature_encoder = _Encoder(self.feature_widths, self.latent, self.dropout)
        self.decoder = _Mlp(self.decoder_widths)
        self.label_head = nn.Dense(self.num_labels, kernel_init=_glorot)
        self.feature_head = nn.Dense(self.num_labels, kernel_init=_glorot)
        self.r_sqrt_sigma = self.param("r_sqrt_sigma", _glorot, (self.num_labels, self.rank))

    def _sample(self, mu, logvar, eps):
        return mu if eps is None else mu + jnp.exp(0.5 * logvar) * eps

    def __call__(self, x: Float[Array, "B D"], *, train: bool) -> dict:
        """The feature branch: ``{"mean" [B, C], "mu" [B, K], "logvar" [B, K]}`` and in training ``"eps" [B, K]``."""
        mu, logvar = self.feature_encoder(x, train=train)
        out = {"mu": mu, "logvar": logvar}
        eps = None
        if train:
            eps = out["eps"] = jax.random.normal(self.make_rng("latent"), mu.shape, mu.dtype)
        z = self._sample(mu, logvar, eps)
        out["mean"] = self.feature_head(self.decoder(jnp.concatenate([x, z], -1), train=train))
        return out

    def label_branch(self, x: Float[Array, "B D"], y: Float[Array, "B C"], eps: Float[Array, "B K"] | None, *,
                     train: bool) -> dict:
        """The label branch on ``[x, y]``: ``{"mean" [B, C], "mu" [B, K], "logvar" [B, K]}``; ``z = mu + sigma * eps``
        (``eps=None``: ``z = mu``)."""
        mu, logvar = self.label_encoder(jnp.concatenate([x, y.astype(x.dtype)], -1), train=train)
        z = self._sample(mu, logvar, eps)
        return {"mean": self.label_head(self.decoder(jnp.concatenate([x, z], -1), train=train)), "mu": mu,
                "logvar": logvar}

    def covariance_factor(self) -> Float[Array, "C R"]:
        """``R``: the probit model's covariance is ``R R^T + I``."""
        return self.r_sqrt_sigma

    def init_all(self, x: Float[Array, "B D"], y: Float[Array, "B C"]) -> dict:
        """Touches every submodule and parameter (for ``init``)."""
        return {"feature": self(x, train=False), "label": self.label_branch(x, y, None, train=False),
                "r": self.covariance_factor()}
