"""The long-tail loss family as method keys (``loss=focal``, ``loss=db_focal`` ...) for any method.

A method whose config also subclasses :class:`LongTailConfig` gets the keys, and passes
:func:`longtail_elementwise` to :func:`hmljax.methods.make_rare_loss` as its ``elementwise`` loss.
On a hierarchy the long-tail loss replaces the BCE *inside* MCLoss: it is applied to the logits of
C-HMCNN's training-path output (:func:`hmljax.losses.mc_logits`), so ``loss=bce`` is MCLoss itself
and ``loss=focal`` is a focal MCLoss; on flat data that output is the logits themselves. RARE's node
weights, focal terms and reductions then apply on top, unchanged.

Class counts ``n_k`` are the training rows' positives, clipped to ``[1, N - 1]`` (a class with no
positive would make the class-balanced and DB weights infinite; one present in every row, DB's bias).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from hmljax.losses import (
    asymmetric_loss,
    binary_cross_entropy,
    class_balanced_focal_loss,
    db_loss,
    inverse_frequency_weights,
    mc_logits,
    sigmoid_focal_loss,
)

__all__ = ["LONGTAIL_LOSSES", "LongTailConfig", "longtail_elementwise", "class_counts"]

LONGTAIL_LOSSES = ("bce", "rw", "focal", "cb_focal", "db", "db_focal", "asl")


@dataclasses.dataclass
class LongTailConfig:
    """The long-tail loss keys (REFERENCE.md §8; defaults are DB's VOC-LT settings).

    ``loss``: ``bce`` (ERM: BCE, or MCLoss on a hierarchy), ``rw`` (BCE times ``(N / n_k)^rw_power`` on
    positives and negatives), ``focal`` (``gamma``), ``cb_focal`` (class-balanced focal, ``cb_beta``; DB's
    ``average_w`` mode), ``db`` (re-balanced weights + negative-tolerant regularisation, ``db_neg_scale``),
    ``db_focal`` (DB with the focal term: DB's VOC-LT loss), ``asl`` (``asl_gamma_neg``, ``asl_gamma_pos``,
    ``asl_clip``). ``None``: not set (the default where it applies, an error where it does not).
    """

    loss: str = "bce"
    gamma: float | None = None  # 2.0 (focal, cb_focal, db_focal)
    cb_beta: float | None = None  # 0.9, DB's CB setting (Cui et al. use up to 0.9999)
    rw_power: float | None = None  # 1.0 (0.5: DB's sqrt_inv)
    db_neg_scale: float | None = None  # 5.0 (VOC-LT; DB's COCO-LT config: 2)
    asl_gamma_neg: float | None = None  # 4.0
    asl_gamma_pos: float | None = None  # 0.0
    asl_clip: float | None = None  # 0.05

    def _longtail_conditional(self) -> dict[str, tuple[bool, str, object]]:
        lo = self.loss
        return {
            "gamma": (lo in ("focal", "cb_focal", "db_focal"), "loss=focal, cb_focal or db_focal", 2.0),
            "cb_beta": (lo == "cb_focal", "loss=cb_focal", 0.9),
            "rw_power": (lo == "rw", "loss=rw", 1.0),
            "db_neg_scale": (lo in ("db", "db_focal"), "loss=db or db_focal", 5.0),
            "asl_gamma_neg": (lo == "asl", "loss=asl", 4.0),
            "asl_gamma_pos": (lo == "asl", "loss=asl", 0.0),
            "asl_clip": (lo == "asl", "loss=asl", 0.05),
        }

    def inapplicable(self) -> dict[str, str]:
        base = getattr(super(), "inapplicable", None)
        out = dict(base()) if base else {}
        out.update({k: f"it applies only with {need}" for k, (ok, need, _) in self._longtail_conditional().items()
                    if not ok and getattr(self, k) is not None})
        return out

    def resolve(self, spec):
        base = getattr(super(), "resolve", None)
        out = base(spec) if base else dataclasses.replace(self)
        for k, (ok, _, default) in out._longtail_conditional().items():
            if ok and getattr(out, k) is None:
                setattr(out, k, default)
        return out

    def validate(self) -> None:
        base = getattr(super(), "validate", None)
        if base:
            base()
        fin = lambda v: v is None or (isinstance(v, (int, float)) and math.isfinite(v))  # noqa: E731
        checks = [
            ("loss", self.loss in LONGTAIL_LOSSES, f"one of {', '.join(LONGTAIL_LOSSES)}"),
            ("gamma", fin(self.gamma) and (self.gamma is None or self.gamma >= 0), "a number >= 0"),
            ("cb_beta", self.cb_beta is None or (fin(self.cb_beta) and 0 <= self.cb_beta < 1), "in [0, 1)"),
            ("rw_power", fin(self.rw_power) and (self.rw_power is None or self.rw_power >= 0), "a number >= 0"),
            ("db_neg_scale", self.db_neg_scale is None or (fin(self.db_neg_scale) and self.db_neg_scale > 0),
             "a number > 0"),
            ("asl_gamma_neg", fin(self.asl_gamma_neg) and (self.asl_gamma_neg is None or self.asl_gamma_neg >= 0),
             "a number >= 0"),
            ("asl_gamma_pos", fin(self.asl_gamma_pos) and (self.asl_gamma_pos is None or self.asl_gamma_pos >= 0),
             "a number >= 0"),
            ("asl_clip", self.asl_clip is None or (fin(self.asl_clip) and 0 <= self.asl_clip < 1), "in [0, 1)"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


def class_counts(labels_NxC: np.ndarray) -> tuple[np.ndarray, int]:
    """``(n_k [C] float64, N)``: positives per class in the training rows, clipped to ``[1, N - 1]``."""
    Y = np.asarray(labels_NxC)
    N = int(Y.shape[0])
    return np.clip(Y.sum(0).astype(np.float64), 1, max(N - 1, 1)), N


def longtail_elementwise(cfg: LongTailConfig, train_labels_NxC: np.ndarray, *, ancestry=None):
    """``elementwise(out, y [B, C], mask [B, C]) -> [E, B, C]`` for :func:`hmljax.methods.make_rare_loss`.

    Args:
        cfg: a resolved :class:`LongTailConfig`.
        train_labels_NxC: the rows trained on (the class counts ``n_k`` and ``N`` come from them).
        ancestry: the max-constraint's argument (dense or sparse) for a hierarchy: the loss is then taken on
            :func:`hmljax.losses.mc_logits`; ``None`` on flat data.

    Returns:
        The elementwise loss over the members' logits ``out.logits [E, B, C]``, zero outside ``mask``.
    """
    n_C, N = class_counts(train_labels_NxC)
    n_C = n_C.astype(np.float32)

    def base(z, y, m):
        lo = cfg.loss
        if lo == "bce":
            return binary_cross_entropy(z, y, where=m)
        if lo == "rw":
            w_C = inverse_frequency_weights(n_C, num_samples=N, power=cfg.rw_power)
            return binary_cross_entropy(z, y, where=m) * w_C[None, :]
        if lo == "focal":
            return sigmoid_focal_loss(z, y, gamma=cfg.gamma, where=m)
        if lo == "cb_focal":
            return class_balanced_focal_loss(z, y, n_C, beta=cfg.cb_beta, gamma=cfg.gamma, where=m)
        if lo in ("db", "db_focal"):
            gamma, balance = (cfg.gamma, 2.0) if lo == "db_focal" else (0.0, 1.0)
            return db_loss(z, y, n_C, num_samples=N, neg_scale=cfg.db_neg_scale, gamma=gamma, balance=balance,
                           where=m)
        if lo == "asl":
            return asymmetric_loss(z, y, gamma_pos=cfg.asl_gamma_pos, gamma_neg=cfg.asl_gamma_neg,
                                   clip=cfg.asl_clip, where=m)
        raise ValueError(f"unknown loss {lo!r}; one of {', '.join(LONGTAIL_LOSSES)}")

    def elementwise(out, y, mask_BxC):
        def member(z):
            if ancestry is not None:
                z = mc_logits(z, y, ancestry)
            return base(z, y, mask_BxC)

        return jax.vmap(member)(out.logits)

    return elementwise
