"""``method=dela``: DELA (Hang & Zhang, ICML 2022), the adaptive-batch code's backbone, on flat multi-label data.

The network is :class:`hmljax.models._dela.Dela` (REFERENCE.md §9; the released code is CquptZA/MLAdaBatch
``model.py``; the paper's text was not available here, so every detail below is the released code's, read
there and written here from the equations). The objective is DELA's (the released ``_compute_loss``):

    L = sum_C mean_B BCE(logits, y) + beta * mean_{B, C} KL(b, c),

the classification loss being ``multilabel_soft_margin_loss * C`` (the per-label BCE summed over labels,
averaged over rows) and KL the per-(row, label) term of :func:`hmljax.models._dela.dela_kl`. Padding rows
(``where == False``) are left out of both means. ``LossOutput.per_sample`` is the classifier's BCE alone,
mean over labels (``multilabel_soft_margin_loss(reduction='none')``), which is what the adaptive batch
selection ranks rows by (REFERENCE.md §5.1).

The gates (their free logits and the scale layer) train at ``gate_lr_ratio`` x the learning rate, DELA's
``get_config_optim`` (``lr_ratio = 0.8``). Note: the adaptive-batch script builds its Adam over
``net.parameters()``, so there every parameter trains at the same rate; ``gate_lr_ratio=1`` reproduces it.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from hmljax.engine import Batch, LossOutput, Method, Model, ModelOutput, optimizer_from_config, sampler_from_config
from hmljax.metrics import flat_suite
from hmljax.models._dela import Dela, dela_kl

__all__ = ["DelaConfig", "build_dela", "dela_model", "dela_loss", "masked_bce", "with_gate_lr", "GATE_PARAMS"]

# DELA's parameters that train at the reduced rate (its get_config_optim's last two groups).
GATE_PARAMS = ("gate_logits", "gate_scale")


@dataclasses.dataclass
class DelaConfig:
    """DELA's keys; defaults from the adaptive-batch code's ``CFG.getconfig`` for DELA (CquptZA/MLAdaBatch).

    ``beta`` weighs the KL term (1e-4); ``tau`` is the gates' Concrete temperature (2/3); ``dropout`` is
    the encoder's ``drop_ratio`` (0.2; the decoder's MLP uses the same 0.2 default); ``latent`` is the
    latent width Z (None: ``ceil(D / 2)``); ``gate_lr_ratio`` scales the gates' learning rate (0.8).
    """

    beta: float = 1e-4
    tau: float = 2.0 / 3.0
    dropout: float = 0.2
    latent: int | None = None
    gate_lr_ratio: float = 0.8
    auc_convention: str = "adaptive_code"  # macro-AUC as the adaptive-batch code computes it, or 'sklearn'

    def validate(self) -> None:
        finite = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
        for name, ok, want in (
                ("beta", finite(self.beta) and self.beta >= 0, "a finite number >= 0"),
                ("tau", finite(self.tau) and self.tau > 0, "a finite number > 0"),
                ("dropout", finite(self.dropout) and 0 <= self.dropout < 1, "in [0, 1)"),
                ("latent", self.latent is None or (isinstance(self.latent, int) and not isinstance(self.latent, bool)
                                                   and self.latent >= 1), "None or an integer >= 1"),
                ("gate_lr_ratio", finite(self.gate_lr_ratio) and self.gate_lr_ratio > 0, "a finite number > 0"),
                ("auc_convention", self.auc_convention in ("adaptive_code", "sklearn"), "adaptive_code or sklearn")):
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


def dela_model(net: Dela, num_features: int) -> Model:
    """:class:`Dela` as a :class:`Model`: logits ``[1, B, C]``; ``aux`` holds ``mu``, ``logvar`` and, in
    training, the gate samples ``gates``.

    A training forward splits its key into the ``dropout``, ``gates`` and ``noise`` streams; eval
    (``key=None``) is deterministic.
    """

    def init(key):
        x = jnp.zeros((1, num_features), jnp.float32)
        return net.init({"params": key}, x, train=False)["params"], {}

    def apply(params, model_state, x, *, train, key=None):
        rngs = {}
        if train:
            k_drop, k_gates, k_noise = jax.random.split(key, 3)
            rngs = {"dropout": k_drop, "gates": k_gates, "noise": k_noise}
        out = net.apply({"params": params}, x, train=train, rngs=rngs)
        aux = {k: v for k, v in out.items() if k != "logits"}
        return ModelOutput(out["logits"][None], aux, model_state)

    return Model(init, apply)


def masked_bce(logits: Float[Array, "B C"], labels: Float[Array, "B C"], where) -> Float[Array, " B"]:
    """Per row, the mean over labels of BCE with logits; 0 on rows where ``where`` is False."""
    bce_BxC = optax.sigmoid_binary_cross_entropy(logits, labels)
    return jnp.where(where, bce_BxC.mean(-1), 0.0)


def dela_loss(out: ModelOutput, batch: Batch, *, beta: float) -> tuple[Float[Array, ""], LossOutput]:
    """DELA's objective ``sum_C mean_B BCE + beta * mean_{B, C} KL`` over the batch's real rows.

    Args:
        out: a forward of :func:`dela_model` (logits ``[1, B, C]``; ``aux`` with ``mu``, ``logvar``,
            ``gates``). An eval forward has no gate samples: its KL term is left out.
        batch: the batch (``where`` marks the real rows).
        beta: the KL weight (1e-4).

    Returns:
        ``(objective, LossOutput(per_sample = the classifier's BCE mean over labels [B], report = objective))``.
    """
    logits_BxC, labels_BxC = out.logits[0], batch.y
    C = logits_BxC.shape[-1]
    n = jnp.maximum(batch.where.sum(), 1).astype(logits_BxC.dtype)
    per_sample_B = masked_bce(logits_BxC, labels_BxC, batch.where)
    cls = C * per_sample_B.sum() / n  # multilabel_soft_margin_loss * C = sum over labels of the batch means
    total = cls
    if "gates" in out.aux:
        kl_BxC = dela_kl(out.aux["mu"], out.aux["logvar"], out.aux["gates"])
        kl = jnp.where(batch.where[:, None], kl_BxC, 0.0).sum() / (n * C)
        total = cls + beta * kl
    return total, LossOutput(per_sample_B, total)


def with_gate_lr(optimizer: optax.GradientTransformation, *, ratio: float) -> optax.GradientTransformation:
    """``optimizer`` for every parameter, its updates scaled by ``ratio`` for DELA's gates (:data:`GATE_PARAMS`).

    Scaling the final update by ``ratio`` is a learning rate of ``ratio * lr`` for Adam and SGD alike
    (both are linear in the rate), like a PyTorch parameter group with ``lr = ratio * lr``; each group
    keeps its own optimiser state, as PyTorch's per-parameter state does.
    """
    if ratio == 1.0:
        return optimizer

    def labels(params):  # the top-level name decides: params["gate_logits"], params["gate_scale"]["kernel"], ...
        return jax.tree_util.tree_map_with_path(lambda path, _: "gates" if path[0].key in GATE_PARAMS else "rest",
                                                params)

    return optax.multi_transform({"rest": optimizer, "gates": optax.chain(optimizer, optax.scale(ratio))}, labels)


def build_dela(ds, cfg, *, split: str) -> Method:
    """DELA on ``ds``'s ``split`` (any dataset; a hierarchy's nodes are treated as flat labels)."""
    m = cfg.method_config
    X, Y = ds.split(split)
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.uint8)
    num_features, num_labels = X.shape[1], Y.shape[1]
    latent = m.latent or math.ceil(num_features / 2)
    net = Dela(num_labels=num_labels, latent=latent, dropout=m.dropout, tau=m.tau)
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y)
    optimizer = with_gate_lr(optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch), ratio=m.gate_lr_ratio)
    train_counts = np.asarray(ds.split("train")[1], np.int64).sum(0)

    def loss(out, batch):
        return dela_loss(out, batch, beta=m.beta)

    def predict(out):
        return jax.nn.sigmoid(out.logits).mean(0)

    return Method(
        model=dela_model(net, num_features), loss=loss, predict=predict, optimizer=optimizer, sampler=sampler,
        metrics=flat_suite(threshold=cfg.threshold, inclusive=cfg.threshold_inclusive,
                           auc_convention=m.auc_convention, train_counts=train_counts),
        train_x=X, train_y=Y, info={"rows": int(X.shape[0]), "added": 0, "latent": int(latent)})
