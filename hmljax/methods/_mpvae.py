"""``method=mpvae``: MPVAE (Bai, Kong & Gomes, IJCAI 2020, "Disentangled Variational Autoencoder based Multi-Label
Classification with Covariance-Aware Multivariate Probit Model").

The networks and the probit pieces are :mod:`hmljax.models._mpvae`'s (encoders, decoder, ``R``). The paper's
text could not be read here beyond its abstract; every detail below is the authors' released TensorFlow code's
(JunwenBai/MPVAE: ``model.py``, ``config.py``, ``train.py``, ``test.py``, ``scripts/``), read there and written
here from the equations. Its objective (``model.py``'s ``total_loss``, whose comment cites the paper's eq. (5)) is

    L = lambda_1 (NLL_e + NLL_x) + lambda_2 (RL_e + RL_x) + beta * KL,

    NLL_b = mean_B -log mean_S prod_C p_{s,c}^{y_c} (1 - p_{s,c})^{1 - y_c},  p_{s,c} = Phi(mean^b_c + (R eps'_s)_c)
            (clamped to [delta / 2, 1 - delta / 2], delta = 1e-6; eps'_s ~ N(0, I_R), S = 100 draws per row),
    RL_b  = mean_{S, B} (1 / a) mean_{p in Y+, q in Y-} exp(a (p_{s,q} - p_{s,p})),   a = 5
            (C2AE's ranking loss on the sampled probabilities; rows without a positive or a negative give 0),
    KL    = mean_B KL(q(z | x, y) || p(z | x))   (the label encoder's Gaussian against the feature encoder's),

``b = e`` the label branch (the decoder on ``z_e ~ q(z | x, y)``, its own head) and ``b = x`` the feature branch
(on ``z_x ~ p(z | x)``). Both branches use the same latent draw ``eps`` and the same probit draws ``eps'``, as the
released code does. The released code adds an L2 penalty (1e-5 * ||W||^2 / 2 on every dense kernel) and
decays its learning rate; here the engine's optimiser (``lr``, ``weight_decay``) does that part, as for every
method. Padding rows (``where == False``) are left out of every mean.

Prediction is the feature branch's marginal probability per label, ``Phi(mean^x_c / sqrt(1 + ||R_c||^2))``
clamped like the loss's, with ``z = mu_x`` and no dropout. The released ``test.py`` averages the clamped ``Phi``
over 10,000 probit draws (whose limit this closed form is, exactly) at a single random draw of ``z`` from
``p(z | x)``; an eval forward here takes no key, so ``z`` is the mean, as DELA's eval is here.

Thresholds: the released ``train.py`` / ``test.py`` report each metric at the best of 27 thresholds (0.01 to
0.95) on the split itself; here the engine's ``threshold`` (0.5) applies, as for every method. The ranking
loss (weight 20 against the NLLs' 0.1) shapes the order within a row, not the level of the probabilities, so
thresholded metrics can lag ranking ones early in training (yeast, fold 0 of 5, 10 epochs at lr 1e-3:
Hamming loss 0.70 with the defaults, 0.21 with ``rank_weight=0``).

``LossOutput.per_sample`` (what a loss-driven sampler ranks rows by) is the BCE of those predicted
probabilities (the training forward's: dropout and the latent draw included) against y, mean over labels,
without gradient: the adaptive-batch paper ranks rows by the classifier's BCE for every backbone
(REFERENCE.md §5.1), and MPVAE's classifier is the feature branch. ``ModelOutput.logits`` holds the marginal
*probit* scores ``mean^x_c / sqrt(1 + ||R_c||^2)`` (apply ``Phi``, not a sigmoid; :func:`mpvae_probs`).

Defaults (``MpvaeConfig``) and where they come from:

- ``latent = 50``: ``config.py``'s ``latent_dim`` (no released script changes it);
- ``probit_rank = None`` (C): every released script sets ``z_dim = label_dim`` (``config.py``'s 100 is a
  placeholder for its default ``label_dim = 100``);
- ``mc_samples = 100``: ``n_train_sample`` (``config.py``; the delicious script lowers it to 5);
- ``beta = 1.1``: hard-coded on the KL term in ``model.py``;
- ``nll_weight = 0.1`` (``nll_coeff``): ``config.py``'s default and six of the nine ``scripts/run_train_*.sh``
  (yeast, scene, sider, nuswide, ebird, mirflickr; bibtex, delicious and fish use 10);
- ``rank_weight = 20`` (``c_coeff``): the value most scripts pair with ``nll_coeff = 0.1`` (yeast, sider,
  nuswide; scene 40; ebird and mirflickr 200, ``config.py``'s default; the ``nll_coeff = 10`` scripts use 0.1);
- ``rank_scale = 5``: the fixed 5 of the released ranking loss (as C2AE's released code);
- ``dropout = 0.5``: ``keep_prob = 0.5`` (``config.py`` and six scripts; sider 0.9, fish 0.7, ebird 1.0 keep);
- ``probit_clamp = 1e-6``: ``eps1``; the KL's variance guard (1e-6) is fixed, as in the released code.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from jaxtyping import Array, Float

from hmljax.engine import Batch, LossOutput, Method, Model, ModelOutput, optimizer_from_config, sampler_from_config
from hmljax.methods._c2ae import ranking_loss
from hmljax.metrics import flat_suite
from hmljax.models._mpvae import (
    Mpvae,
    gaussian_kl,
    log_probit,
    probit_log_likelihood,
    probit_marginal,
    probit_scores,
)

__all__ = ["MpvaeConfig", "build_mpvae", "mpvae_model", "mpvae_loss", "mpvae_probs", "probit_bce",
           "probit_ranking_loss"]

# An eval forward carries no key; a loss evaluated on one draws its probit noise from this fixed key.
_EVAL_NOISE_SEED = 0


@dataclasses.dataclass
class MpvaeConfig:
    """MPVAE's keys; defaults from the authors' released code (JunwenBai/MPVAE; see the module docstring).

    ``beta``: the KL weight (1.1); ``nll_weight``: lambda_1 on the two probit NLLs (0.1); ``rank_weight``:
    lambda_2 on the two ranking losses (20); ``rank_scale``: a in the ranking loss (5); ``latent``: K (50);
    ``probit_rank``: R, the covariance factor's columns (None: C); ``mc_samples``: S probit draws per row in
    training (100); ``dropout``: after each encoder hidden layer (0.5); ``probit_clamp``: delta (1e-6).
    """

    beta: float = 1.1
    nll_weight: float = 0.1
    rank_weight: float = 20.0
    rank_scale: float = 5.0
    latent: int = 50
    probit_rank: int | None = None
    mc_samples: int = 100
    dropout: float = 0.5
    probit_clamp: float = 1e-6
    auc_convention: str = "adaptive_code"  # macro-AUC as the adaptive-batch code computes it, or 'sklearn'

    def validate(self) -> None:
        finite = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
        pos_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
        for name, ok, want in (
                ("beta", finite(self.beta) and self.beta >= 0, "a finite number >= 0"),
                ("nll_weight", finite(self.nll_weight) and self.nll_weight >= 0, "a finite number >= 0"),
                ("rank_weight", finite(self.rank_weight) and self.rank_weight >= 0, "a finite number >= 0"),
                # exp(rank_scale * (p_q - p_p)) <= e^rank_scale, probabilities being in [0, 1].
                ("rank_scale", finite(self.rank_scale) and 0 < self.rank_scale <= 20, "in (0, 20]"),
                ("latent", pos_int(self.latent), "an integer >= 1"),
                ("probit_rank", self.probit_rank is None or pos_int(self.probit_rank), "None or an integer >= 1"),
                ("mc_samples", pos_int(self.mc_samples), "an integer >= 1"),
                ("dropout", finite(self.dropout) and 0 <= self.dropout < 1, "in [0, 1)"),
                ("probit_clamp", finite(self.probit_clamp) and 0 < self.probit_clamp < 1, "in (0, 1)"),
                ("auc_convention", self.auc_convention in ("adaptive_code", "sklearn"), "adaptive_code or sklearn")):
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


def mpvae_model(net: Mpvae, num_features: int, num_labels: int) -> Model:
    """:class:`Mpvae` as a :class:`Model`: the feature branch's marginal probit scores ``[1, B, C]``.

    ``aux`` carries the feature branch (``mean``, ``mu``, ``logvar``; in training the latent draw ``eps``) and
    the parameters themselves (``params``), because the loss also runs the label branch, which needs y (a
    :class:`Model` sees only x), inside the same differentiated function. A training forward splits its key
    into the feature encoder's dropout, the latent draw, the label encoder's dropout (``label_key``) and the
    probit draws (``probit_key``). An eval forward (``key=None``) is deterministic.
    """

    def init(key):
        x = jnp.zeros((1, num_features), jnp.float32)
        y = jnp.zeros((1, num_labels), jnp.float32)
        return net.init({"params": key}, x, y, method=Mpvae.init_all)["params"], {}

    def apply(params, model_state, x, *, train, key=None):
        rngs, aux = {}, {"params": params}
        if train:
            k_drop, k_latent, aux["label_key"], aux["probit_key"] = jax.random.split(key, 4)
            rngs = {"dropout": k_drop, "latent": k_latent}
        out = net.apply({"params": params}, x, train=train, rngs=rngs)
        scores = probit_marginal(out["mean"], params["r_sqrt_sigma"])
        return ModelOutput(scores[None], {**aux, **out}, model_state)

    return Model(init, apply)


def mpvae_probs(scores: Float[Array, "... C"], *, clamp: float = 1e-6) -> Float[Array, "... C"]:
    """The clamped probabilities ``Phi(s) (1 - clamp) + clamp / 2`` of probit scores ``s``."""
    return ndtr(scores) * (1.0 - clamp) + 0.5 * clamp


def probit_bce(scores: Float[Array, "B C"], labels: Float[Array, "B C"], where, *,
               clamp: float = 1e-6) -> Float[Array, " B"]:
    """Per row, the mean over labels of the BCE of the clamped ``Phi(scores)`` against y; 0 where ``where`` is False."""
    y = labels.astype(scores.dtype)
    log_p, log_not_p = log_probit(jnp.stack([scores, -scores]), clamp=clamp)
    bce_BxC = -(y * log_p + (1.0 - y) * log_not_p)
    return jnp.where(where, bce_BxC.mean(-1), 0.0)


def probit_ranking_loss(scores: Float[Array, "S B C"], labels: Float[Array, "B C"], *, scale: float,
                        clamp: float = 1e-6) -> Float[Array, " B"]:
    """MPVAE's ranking loss per row: ``mean_S (1 / a) mean_{p in Y+, q in Y-} exp(a (P_q - P_p))``, ``a = scale``,
    ``P`` the clamped ``Phi(scores)`` of each draw (C2AE's :func:`ranking_loss` on ``a P``, divided by a)."""
    S, B, C = scores.shape
    probs = mpvae_probs(scores, clamp=clamp).reshape(S * B, C)
    tiled = jnp.broadcast_to(labels[None], (S, B, C)).reshape(S * B, C)
    return ranking_loss(scale * probs, tiled).reshape(S, B).mean(0) / scale


def mpvae_loss(out: ModelOutput, batch: Batch, *, net: Mpvae, beta: float, nll_weight: float, rank_weight: float,
               rank_scale: float, samples: int, clamp: float) -> tuple[Float[Array, ""], LossOutput]:
    """MPVAE's objective ``nll_weight (NLL_e + NLL_x) + rank_weight (RL_e + RL_x) + beta KL`` over the real rows.

    Args:
        out: a forward of :func:`mpvae_model`. A training forward's keys drive the label encoder's dropout and
            the probit draws; on an eval forward (no keys) the label branch takes ``z = mu_e`` without dropout
            and the probit draws come from a fixed key, so its loss is deterministic.
        batch: the batch (``where`` marks the real rows; ``x`` and ``y`` feed the label encoder).
        net: the :class:`Mpvae` module (to run the label branch).
        beta: the KL weight.
        nll_weight: lambda_1, on the two probit negative log-likelihoods.
        rank_weight: lambda_2, on the two ranking losses.
        rank_scale: a, inside the ranking loss.
        samples: S, probit draws per row.
        clamp: delta, the probabilities' clamp.

    Returns:
        ``(objective, LossOutput(per_sample = BCE of the predicted probabilities, mean over labels [B],
        report = objective))``.
    """
    params, where, y = out.aux["params"], batch.where, batch.y
    train = "label_key" in out.aux
    rngs = {"dropout": out.aux["label_key"]} if train else {}
    lab = net.apply({"params": params}, batch.x, y, out.aux.get("eps"), train=train, rngs=rngs,
                    method=Mpvae.label_branch)
    feat = out.aux
    r_CxR = params["r_sqrt_sigma"]
    B = y.shape[0]
    key = out.aux["probit_key"] if train else jax.random.key(_EVAL_NOISE_SEED)
    noise_SxBxR = jax.random.normal(key, (samples, B, r_CxR.shape[1]), r_CxR.dtype)
    n = jnp.maximum(where.sum(), 1).astype(r_CxR.dtype)

    def mean_over_rows(v_B):
        return jnp.where(where, v_B, 0.0).sum() / n

    def branch_terms(mean_BxC):  # (NLL [B], RL [B]) of one branch; vmapped over the two (half the compiled ops)
        scores_SxBxC = probit_scores(mean_BxC, r_CxR, noise_SxBxR)
        rl_B = (probit_ranking_loss(scores_SxBxC, y, scale=rank_scale, clamp=clamp) if rank_weight
                else jnp.zeros_like(mean_BxC[:, 0]))
        return -probit_log_likelihood(scores_SxBxC, y, clamp=clamp), rl_B

    nll_2xB, rl_2xB = jax.vmap(branch_terms)(jnp.stack([lab["mean"], feat["mean"]]))
    nll, rank = mean_over_rows(nll_2xB.sum(0)), mean_over_rows(rl_2xB.sum(0))
    kl = mean_over_rows(gaussian_kl(lab["mu"], lab["logvar"], feat["mu"], feat["logvar"]))
    total = nll_weight * nll + rank_weight * rank + beta * kl
    per_sample_B = jax.lax.stop_gradient(probit_bce(out.logits[0], y, where, clamp=clamp))
    return total, LossOutput(per_sample_B, total)


def build_mpvae(ds, cfg, *, split: str) -> Method:
    """MPVAE on ``ds``'s ``split`` (any dataset; a hierarchy's nodes are treated as flat labels)."""
    m = cfg.method_config
    X, Y = ds.split(split)
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.uint8)
    num_features, num_labels = X.shape[1], Y.shape[1]
    rank = m.probit_rank or num_labels
    net = Mpvae(num_labels=num_labels, rank=rank, latent=m.latent, dropout=m.dropout)
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y)
    train_counts = np.asarray(ds.split("train")[1], np.int64).sum(0)

    def loss(out, batch):
        return mpvae_loss(out, batch, net=net, beta=m.beta, nll_weight=m.nll_weight, rank_weight=m.rank_weight,
                          rank_scale=m.rank_scale, samples=m.mc_samples, clamp=m.probit_clamp)

    def predict(out):  # the feature branch's marginal probabilities (see the module docstring)
        return mpvae_probs(out.logits, clamp=m.probit_clamp).mean(0)

    return Method(
        model=mpvae_model(net, num_features, num_labels), loss=loss, predict=predict,
        optimizer=optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch), sampler=sampler,
        metrics=flat_suite(threshold=cfg.threshold, inclusive=cfg.threshold_inclusive,
                           auc_convention=m.auc_convention, train_counts=train_counts),
        train_x=X, train_y=Y, info={"rows": int(X.shape[0]), "added": 0, "latent": int(m.latent),
                                    "probit_rank": int(rank)})
