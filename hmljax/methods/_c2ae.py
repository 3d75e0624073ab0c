"""``method=c2ae``: C2AE (Yeh et al., AAAI 2017, "Learning Deep Latent Spaces for Multi-Label Classification").

The networks are :class:`hmljax.models._c2ae.C2ae` (``F_x``, ``F_e``, ``F_d``). The paper's objective is

    min  Phi(F_x, F_e) + alpha * Gamma(F_e, F_d),
    Phi   = ||F_x(X) - F_e(Y)||_F^2   s.t.  F_x(X) F_x(X)^T = F_e(Y) F_e(Y)^T = I   (codes as columns, K x N),
    Gamma = sum_i E_i,
    E_i   = 1 / (|Y_i^1| |Y_i^0|) * sum_{p in Y_i^1, q in Y_i^0} exp(F_d(F_e(y_i))^q - F_d(F_e(y_i))^p).

The constraints are handled as a penalty, as the authors' released code does (chihkuanyeh/C2AE
``CORR_error.m``) and as reimplementations commonly do: ``ortho * (||Z_x^T Z_x - I||_F^2 + ||Z_y^T Z_y - I||_F^2)``,
Z the batch's latent codes ``[B, K]`` (the Gram matrix is over the batch's rows: the constraint is the
minibatch's). All terms are sums over the batch's real rows, as in the released code; padding rows
(``where == False``) are zeroed before any of them.

``Gamma`` is evaluated on ``F_d``'s outputs ``rank_scale * sigmoid(logits)``: the released ``BR_error.m``
uses ``exp(-5 (p_p - p_q))`` on the decoder's sigmoid outputs (its "fixed parameter" 5); ``rank_scale=1``
is the paper's formula on those outputs. A bounded output keeps the loss finite and not shift-invariant,
so thresholding at 0.5 means something; rows with no positive or no negative label contribute 0.

Prediction is ``sigmoid(F_d(F_x(x)))``. These are *scores* trained by a ranking loss, not calibrated
probabilities; thresholding them at 0.5 is the comparison's convention (the released code also
rounds them). ``F_x`` is trained only through ``Phi``; ``F_d`` only on ``F_e``'s codes.

``LossOutput.per_sample`` (what a loss-driven sampler ranks rows by) is the BCE with logits of
``F_d(F_x(x))`` against y, mean over labels. C2AE has no BCE term; the adaptive-batch paper ranks rows
by the classifier's BCE for every backbone (REFERENCE.md §5.1, its §4.5 on C2AE), and this is that
classifier's. It carries no gradient.

Hyper-parameters (``C2aeConfig``) come from the released code, since the paper's text could not be
read here: ``demo.m`` has ``alpha = 2.0`` but ``DCCA_grad.m`` *divides* the ranking loss's gradient by
it, so the ranking loss's weight relative to ``Phi`` is 1/2 = this module's ``alpha`` default;
``CORR_error.m``'s lambda = 0.5 is ``ortho``; ``reduction_rate = 0.8`` gives K = round(0.8 C); the widths
are ``NN1 = [512 512 K]``, ``NN2 = [512 K]`` (see :mod:`hmljax.models._c2ae`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from hmljax.engine import Batch, LossOutput, Method, Model, ModelOutput, optimizer_from_config, sampler_from_config
from hmljax.methods._dela import masked_bce
from hmljax.metrics import flat_suite
from hmljax.models._c2ae import C2ae

__all__ = ["C2aeConfig", "build_c2ae", "c2ae_model", "c2ae_loss", "embedding_distance", "orthogonality_penalty",
           "ranking_loss", "c2ae_latent"]


@dataclasses.dataclass
class C2aeConfig:
    """C2AE's keys; defaults from the authors' released code (chihkuanyeh/C2AE; see the module docstring).

    ``alpha``: the ranking loss's weight (0.5, the code's effective 1 / 2); ``ortho``: the orthogonality
    penalty's weight (0.5); ``rank_scale``: the factor on ``F_d``'s sigmoid outputs inside the ranking
    loss's exp (5); ``latent``: K (None: ``round(0.8 C)``); ``hidden``: H (512); ``dropout``: after each
    hidden layer (0: the code has none).
    """

    alpha: float = 0.5
    ortho: float = 0.5
    rank_scale: float = 5.0
    latent: int | None = None
    hidden: int = 512
    dropout: float = 0.0
    auc_convention: str = "adaptive_code"  # macro-AUC as the adaptive-batch code computes it, or 'sklearn'

    def validate(self) -> None:
        finite = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
        pos_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
        for name, ok, want in (
                ("alpha", finite(self.alpha) and self.alpha >= 0, "a finite number >= 0"),
                ("ortho", finite(self.ortho) and self.ortho >= 0, "a finite number >= 0"),
                # Bounded so that exp(rank_scale * (p_q - p_p)), at most C^2 e^rank_scale per row, stays finite.
                ("rank_scale", finite(self.rank_scale) and 0 < self.rank_scale <= 20, "in (0, 20]"),
                ("latent", self.latent is None or pos_int(self.latent), "None or an integer >= 1"),
                ("hidden", pos_int(self.hidden), "an integer >= 1"),
                ("dropout", finite(self.dropout) and 0 <= self.dropout < 1, "in [0, 1)"),
                ("auc_convention", self.auc_convention in ("adaptive_code", "sklearn"), "adaptive_code or sklearn")):
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


def c2ae_latent(num_labels: int) -> int:
    """K = round(0.8 C), at least 1 (the released ``demo.m``'s ``reduction_rate``; MATLAB rounds halves up)."""
    return max(1, math.floor(0.8 * num_labels + 0.5))


def embedding_distance(z_x: Float[Array, "B K"], z_y: Float[Array, "B K"], where) -> Float[Array, ""]:
    """``||F_x(X) - F_e(Y)||_F^2`` over the rows where ``where`` is True."""
    return jnp.where(where[:, None], (z_x - z_y) ** 2, 0.0).sum()


def orthogonality_penalty(z: Float[Array, "B K"], where) -> Float[Array, ""]:
    """``||Z^T Z - I||_F^2``, Z the latent codes of the rows where ``where`` is True (others zeroed)."""
    z_BxK = jnp.where(where[:, None], z, 0.0)
    gram_KxK = z_BxK.T @ z_BxK
    return ((gram_KxK - jnp.eye(gram_KxK.shape[0], dtype=z.dtype)) ** 2).sum()


def _masked_logsumexp(a: Float[Array, "B C"], where) -> Float[Array, " B"]:
    """``log sum_{where} exp(a)`` per row; 0 for a row with nothing selected (never -inf, so no NaN gradients)."""
    m_Bx1 = jax.lax.stop_gradient(jnp.max(jnp.where(where, a, jnp.finfo(a.dtype).min), axis=-1, keepdims=True))
    m_Bx1 = jnp.where(where.any(-1, keepdims=True), m_Bx1, 0.0)
    # Double where: the unselected entries' exp must not overflow, or their zero gradient becomes 0 * inf.
    total_B = jnp.where(where, jnp.exp(jnp.where(where, a - m_Bx1, 0.0)), 0.0).sum(-1)
    return jnp.log(jnp.where(total_B > 0, total_B, 1.0)) + m_Bx1[:, 0]


def ranking_loss(scores: Float[Array, "B C"], labels: Float[Array, "B C"]) -> Float[Array, " B"]:
    """C2AE's label-correlation sensitive loss per row: ``E_i = mean_{p in Y_i^1, q in Y_i^0} exp(s_q - s_p)``.

    Computed in O(C) per row from ``sum_{p, q} exp(s_q - s_p) = (sum_q exp(s_q)) (sum_p exp(-s_p))``, in
    log space. Rows with no positive or no negative label give 0.

    Args:
        scores: the decoder's outputs ``s`` (C2AE: ``rank_scale * sigmoid(F_d(F_e(y)))``).
        labels: 0/1 labels.

    Returns:
        ``E_i`` per row.
    """
    pos_BxC = labels > 0.5
    neg_BxC = ~pos_BxC
    n_pos_B, n_neg_B = pos_BxC.sum(-1), neg_BxC.sum(-1)
    has_pairs_B = (n_pos_B > 0) & (n_neg_B > 0)
    log_pairs_B = jnp.log(jnp.maximum(n_pos_B * n_neg_B, 1).astype(scores.dtype))
    log_e_B = _masked_logsumexp(scores, neg_BxC) + _masked_logsumexp(-scores, pos_BxC) - log_pairs_B
    return jnp.where(has_pairs_B, jnp.exp(jnp.where(has_pairs_B, log_e_B, 0.0)), 0.0)


def c2ae_model(net: C2ae, num_features: int, num_labels: int) -> Model:
    """:class:`C2ae` as a :class:`Model`: logits ``F_d(F_x(x))`` ``[1, B, C]``.

    ``aux`` carries ``z_x`` ``[B, K]`` and the parameters themselves (``params``; and in training the
    label branch's dropout key ``label_key``), because the loss also needs ``F_e(y)`` and
    ``F_d(F_e(y))`` and a :class:`Model` sees only x: the loss runs the label branch with them, inside
    the same differentiated function, so its gradient reaches ``F_e`` and ``F_d``.
    """

    def init(key):
        x = jnp.zeros((1, num_features), jnp.float32)
        y = jnp.zeros((1, num_labels), jnp.float32)
        return net.init({"params": key}, x, y, method=C2ae.init_all)["params"], {}

    def apply(params, model_state, x, *, train, key=None):
        rngs, aux = {}, {"params": params}
        if train:
            k_x, aux["label_key"] = jax.random.split(key)
            rngs = {"dropout": k_x}
        out = net.apply({"params": params}, x, train=train, rngs=rngs)
        return ModelOutput(out["logits"][None], {**aux, "z_x": out["z_x"]}, model_state)

    return Model(init, apply)


def c2ae_loss(out: ModelOutput, batch: Batch, *, net: C2ae, alpha: float, ortho: float,
              rank_scale: float) -> tuple[Float[Array, ""], LossOutput]:
    """C2AE's objective ``Phi + ortho * (O_x + O_y) + alpha * Gamma`` over the batch's real rows.

    Args:
        out: a forward of :func:`c2ae_model`.
        batch: the batch (``where`` marks the real rows; ``y`` feeds ``F_e``).
        net: the :class:`C2ae` module (to run the label branch ``F_e``, ``F_d``).
        alpha: the ranking loss's weight.
        ortho: the orthogonality penalty's weight.
        rank_scale: the factor on ``F_d``'s sigmoid outputs inside the ranking loss.

    Returns:
        ``(objective, LossOutput(per_sample = BCE of F_d(F_x(x)) mean over labels [B], report = objective))``.
    """
    train = "label_key" in out.aux
    rngs = {"dropout": out.aux["label_key"]} if train else {}
    lab = net.apply({"params": out.aux["params"]}, batch.y, train=train, rngs=rngs, method=C2ae.label_branch)
    z_x, z_y, where = out.aux["z_x"], lab["z_y"], batch.where
    phi = embedding_distance(z_x, z_y, where)
    penalty = orthogonality_penalty(z_x, where) + orthogonality_penalty(z_y, where)
    gamma = jnp.where(where, ranking_loss(rank_scale * jax.nn.sigmoid(lab["label_logits"]), batch.y), 0.0).sum()
    total = phi + ortho * penalty + alpha * gamma
    per_sample_B = jax.lax.stop_gradient(masked_bce(out.logits[0], batch.y, where))
    return total, LossOutput(per_sample_B, total)


def build_c2ae(ds, cfg, *, split: str) -> Method:
    """C2AE on ``ds``'s ``split`` (any dataset; a hierarchy's nodes are treated as flat labels)."""
    m = cfg.method_config
    X, Y = ds.split(split)
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.uint8)
    num_features, num_labels = X.shape[1], Y.shape[1]
    latent = m.latent or c2ae_latent(num_labels)
    net = C2ae(num_labels=num_labels, latent=latent, hidden=m.hidden, dropout=m.dropout)
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y)
    train_counts = np.asarray(ds.split("train")[1], np.int64).sum(0)

    def loss(out, batch):
        return c2ae_loss(out, batch, net=net, alpha=m.alpha, ortho=m.ortho, rank_scale=m.rank_scale)

    def predict(out):  # scores, not calibrated probabilities (see the module docstring)
        return jax.nn.sigmoid(out.logits).mean(0)

    return Method(
        model=c2ae_model(net, num_features, num_labels), loss=loss, predict=predict,
        optimizer=optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch), sampler=sampler,
        metrics=flat_suite(threshold=cfg.threshold, inclusive=cfg.threshold_inclusive,
                           auc_convention=m.auc_convention, train_counts=train_counts),
        train_x=X, train_y=Y, info={"rows": int(X.shape[0]), "added": 0, "latent": int(latent)})
