"""RARE's options as a reusable config block and loss: node weights, focal terms, schedulers, resampling.

Any hierarchical method whose config subclasses :class:`RareConfig` gets every RARE key
(``weights``, ``w0``, ``ensemble``, ``focal``, ``resample``, ...) and builds its loss with
:func:`make_rare_loss` over its own logits, so RARE composes with C-HMCNN, HLSTM and the rest
without a line in the engine. All of it is off by default.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.data import HROS_RULES, LPROS_ROUNDINGS, hros_pd, lpros
from hmljax.engine import LossOutput
from hmljax.losses import (
    SCHEDULES,
    UNCERTAINTIES,
    WEIGHT_PRESETS,
    constrained_probs,
    focal_weight,
    imbalance_weights,
    label_weights,
    mc_loss,
    mix_weights,
    node_counts,
    schedule_fraction,
    scheduled_weights,
    uncertainty,
)

__all__ = ["RareConfig", "RareLoss", "rare_loss_settings", "training_rows", "node_weights_for", "make_rare_loss"]


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


@dataclasses.dataclass
class RareConfig:
    """RARE's keys. ``None`` means "not set": it takes its default where it applies, and is an error
    where it does not (``w0`` without ``weights``, ``u0`` without ``focal``, ...)."""

    # What a key meant in runs saved before it existed, where that is not its default today: read by
    # TrainConfig.from_saved, so an old run is never taken for one of today's default.
    SAVED_BEFORE: ClassVar[dict] = {"hros_rule": "paths"}  # HROS-PD before the key existed: the paths rule

    resample: str = "none"  # 'none', 'lpros' or 'hros_pd' (on a DAG: counted over its root-to-node paths)
    lpros_p: float | None = None  # 0.25
    lpros_rounding: str | None = None  # 'real'; see hmljax.data.lpros
    hros_s: float | None = None  # 0.1
    hros_rule: str | None = None  # 'code' (the released code, copy for copy) or 'paths'; see hmljax.data.hros_pd
    resample_rows: str | None = None  # 'all' (every row trained on, train+valid) or 'train' (released code)
    weights: str = "none"  # 'none', 'paper' (eq. 7-9) or 'code' (the released code's conventions)
    w0: float | None = None  # 0.25
    weight_counts: str | None = None  # the preset's ('closed' / 'supercount_inplace')
    weight_rescale: str | None = None  # 'paper' / 'code'
    weight_apply_to: str | None = None  # 'positive' / 'negative'
    weight_num_classes: str | None = None  # 'nodes' (all hierarchy nodes) or 'two'
    weight_fit: str | None = None  # counts from the labels 'used' (after resampling) or the 'train' split only
    ensemble: int = 0  # 0: one network; E >= 1: a vmapped stack of E networks
    mc_passes: int = 0  # MC dropout: E gradient-free stochastic passes of one network for the focal U
    mc_loss: str | None = None  # MC dropout: 'one' (the loss from one pass, U from the others) or 'all'
    focal: str = "none"  # 'none', 'bbma', 'gmu', 'kl', 'js'
    u0: float | None = None  # 0.25
    focal_k: float | None = None  # 1.0
    focal_probs: str | None = None  # 'raw' (train-mode sigmoids, as the code) or 'constrained'
    reduction: str = "mean"  # or 'sum' (RARE's focal code path)
    schedule: str = "none"  # 'linear', 'exponential', 'alternating' (App. D, batch-based)
    omega: float | None = None  # the scheduler's target: w0, as the released code's target_omega (0.25 by default)
    schedule_k: float | None = None  # 3.0
    mix_lambda: float | None = None  # 1.0 (the weighted loss only)

    # key -> (the setting it needs, default once it applies)
    def _conditional(self) -> dict[str, tuple[bool, str, object]]:
        w = self.weights != "none"
        preset = WEIGHT_PRESETS.get(self.weights, {})
        return {
            "lpros_p": (self.resample == "lpros", "resample=lpros", 0.25),
            "lpros_rounding": (self.resample == "lpros", "resample=lpros", "real"),
            "hros_s": (self.resample == "hros_pd", "resample=hros_pd", 0.1),
            "hros_rule": (self.resample == "hros_pd", "resample=hros_pd", "code"),
            "resample_rows": (self.resample != "none", "resample=lpros or hros_pd", "all"),
            "w0": (w, "weights=paper or weights=code", 0.25),
            "weight_counts": (w, "weights=paper or weights=code", preset.get("counts")),
            "weight_rescale": (w, "weights=paper or weights=code", preset.get("rescale")),
            "weight_apply_to": (w, "weights=paper or weights=code", preset.get("apply_to")),
            "weight_num_classes": (w, "weights=paper or weights=code", "nodes"),
            "weight_fit": (w, "weights=paper or weights=code", "used" if self.weights == "paper" else "train"),
            "u0": (self.focal != "none", "a focal term (focal=bbma|gmu|kl|js)", 0.25),
            "focal_k": (self.focal != "none", "a focal term (focal=bbma|gmu|kl|js)", 1.0),
            "focal_probs": (self.focal != "none", "a focal term (focal=bbma|gmu|kl|js)", "raw"),
            # The released code's target_omega is its min_weight_const, i.e. w0 (REFERENCE.md §2.5).
            "omega": (self.schedule != "none", "a weight scheduler (schedule=linear|exponential|alternating)",
                      self.w0 if self.w0 is not None else 0.25),
            "schedule_k": (self.schedule != "none", "a weight scheduler (schedule=...)", 3.0),
            "mc_loss": (self.mc_passes > 0, "mc_passes=P (P >= 1)", "one"),
            "mix_lambda": (w, "weights=paper or weights=code (the mixed loss mixes weighted and unweighted)", 1.0),
        }

    def inapplicable(self) -> dict[str, str]:
        return {k: f"it applies only with {need}" for k, (ok, need, _) in self._conditional().items()
                if not ok and getattr(self, k) is not None}

    def resolve(self, spec):
        out = dataclasses.replace(self)
        for k, (ok, _, default) in self._conditional().items():
            if ok and getattr(out, k) is None:
                setattr(out, k, default)
        return out

    def validate(self) -> None:
        w = self.weights != "none"
        checks = [
            ("resample", self.resample in ("none", "lpros", "hros_pd"), "one of none, lpros, hros_pd"),
            ("lpros_p", self.lpros_p is None or (_finite(self.lpros_p) and self.lpros_p >= 0), "a number >= 0"),
            ("lpros_rounding", self.lpros_rounding in (None, *LPROS_ROUNDINGS), f"one of {LPROS_ROUNDINGS}"),
            ("hros_s", self.hros_s is None or (_finite(self.hros_s) and self.hros_s >= 0), "a number >= 0"),
            ("hros_rule", self.hros_rule in (None, *HROS_RULES), f"one of {', '.join(HROS_RULES)}"),
            ("resample_rows", self.resample_rows in (None, "all", "train"), "all or train"),
            ("weights", self.weights in ("none", *WEIGHT_PRESETS), f"one of none, {', '.join(WEIGHT_PRESETS)}"),
            ("w0", self.w0 is None or (_finite(self.w0) and self.w0 >= 0), "a number >= 0"),
            ("weight_counts", self.weight_counts in (None, "closed", "supercount", "supercount_inplace"),
             "closed, supercount or supercount_inplace"),
            ("weight_rescale", self.weight_rescale in (None, "paper", "code"), "paper or code"),
            ("weight_apply_to", self.weight_apply_to in (None, "positive", "negative"), "positive or negative"),
            ("weight_num_classes", self.weight_num_classes in (None, "nodes", "two"), "nodes or two"),
            ("weight_fit", self.weight_fit in (None, "used", "train"), "used or train"),
            ("ensemble", isinstance(self.ensemble, int) and self.ensemble >= 0, "an integer >= 0"),
            ("mc_passes", isinstance(self.mc_passes, int) and self.mc_passes >= 0, "an integer >= 0"),
            ("mc_loss", self.mc_loss in (None, "one", "all"), "one or all"),
            ("mc_passes", not (self.mc_passes and self.ensemble),
             "MC dropout replaces the ensemble: set mc_passes or ensemble, not both"),
            ("focal", self.focal in ("none", *UNCERTAINTIES), f"one of none, {', '.join(UNCERTAINTIES)}"),
            ("focal", self.focal == "none" or self.ensemble >= 1 or self.mc_passes >= 1,
             "a focal term needs ensemble >= 1 or mc_passes >= 1"),
            ("u0", self.u0 is None or (_finite(self.u0) and self.u0 >= 0), "a number >= 0"),
            ("focal_k", self.focal_k is None or (_finite(self.focal_k) and self.focal_k >= 0),
             "a number >= 0 (0: the constant factor u0 + 1)"),
            ("focal_probs", self.focal_probs in (None, "raw", "constrained"), "raw or constrained"),
            ("reduction", self.reduction in ("mean", "sum"), "mean or sum"),
            ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            ("schedule", self.schedule == "none" or w, "a weight scheduler needs weights=paper or weights=code"),
            ("omega", self.omega is None or (_finite(self.omega) and self.omega >= 0), "a number >= 0"),
            ("schedule_k", self.schedule_k is None or _finite(self.schedule_k), "a finite number"),
            ("mix_lambda", self.mix_lambda is None or (_finite(self.mix_lambda) and 0 <= self.mix_lambda <= 1),
             "a number in [0, 1]"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")

    @property
    def members(self) -> int:
        """How many networks the forward stacks (0: one, unstacked)."""
        return self.ensemble


def training_rows(cfg: RareConfig, ds, split: str, *, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The rows actually trained on: the split, resampled as configured. Returns X, Y and a summary.

    ``resample_rows=all`` resamples every row trained on (train+valid under C-HMCNN's protocol);
    ``train`` resamples the train split alone and appends the other splits unchanged, as the released
    RARE code does (it oversamples before valid is appended: cellcycle_FUN's LPROS adds fewer copies,
    and they make a smaller share of the rows).
    """
    X, Y = ds.split(split)
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.uint8)
    info = {"rows": int(X.shape[0]), "added": 0}
    if cfg.resample == "none":
        return X, Y, info
    parts = split.split("+")
    n_first = int(np.asarray(ds.split(parts[0])[1]).shape[0])
    resampled = slice(0, n_first) if (cfg.resample_rows == "train" and len(parts) > 1) else slice(0, X.shape[0])
    Xr, Yr = X[resampled], Y[resampled]
    if cfg.resample == "lpros":
        r = lpros(Yr, p=cfg.lpros_p, seed=seed, rounding=cfg.lpros_rounding)
    else:
        r = hros_pd(Yr, ds.hierarchy, s=cfg.hros_s, seed=seed, rule=cfg.hros_rule)
    info["added"] = r.num_added
    info["resampled_rows"] = int(Yr.shape[0])
    rest = slice(resampled.stop, X.shape[0])
    return np.concatenate([Xr[r.indices], X[rest]]), np.concatenate([r.labels, Y[rest]]), info


def node_weights_for(cfg: RareConfig, ds, Y_used: np.ndarray) -> np.ndarray | None:
    """RARE's w̃ ``[C]`` as configured, from the labels used (after resampling) or the train split."""
    if cfg.weights == "none":
        return None
    Y = Y_used if cfg.weight_fit == "used" else np.asarray(ds.split("train")[1])
    h = ds.hierarchy
    n = node_counts(Y, h.ancestry, counts=cfg.weight_counts)
    num_classes = h.num_nodes if cfg.weight_num_classes == "nodes" else 2
    return imbalance_weights(n, num_obs=Y.shape[0], num_classes=num_classes, w0=cfg.w0, rescale=cfg.weight_rescale)


@dataclasses.dataclass(frozen=True)
class RareLoss:
    """What the loss is made of (static: changing it recompiles).

    Attributes:
        node_weights: RARE's w̃ per node ``[C]`` (numpy), or None for C-HMCNN's unweighted loss.
        apply_to: ``positive`` (eq. 9) or ``negative`` (released code).
        focal: ``none``, ``bbma``, ``gmu``, ``kl`` or ``js``: the focal factor ``u0 + U^k``.
        u0, focal_k: the focal gate and exponent (paper: 0.25, 1).
        focal_probs: ``raw`` (members' unconstrained train-mode sigmoids, as the code) or ``constrained``.
        reduction: ``mean`` over counted entries per member (default) or ``sum`` (the focal code path).
        schedule, omega, schedule_k, steps_per_epoch: App. D's batch schedulers.
        mix_lambda: λ of the mixed loss (1 = weighted only).
    """

    node_weights: np.ndarray | None = None
    apply_to: str = "positive"
    focal: str = "none"
    u0: float = 0.25
    focal_k: float = 1.0
    focal_probs: str = "raw"
    reduction: str = "mean"
    schedule: str = "none"
    omega: float = 0.25
    schedule_k: float = 3.0
    steps_per_epoch: int = 1
    mix_lambda: float = 1.0


def rare_loss_settings(cfg: RareConfig, node_weights, *, steps_per_epoch: int) -> RareLoss:
    """The :class:`RareLoss` a resolved :class:`RareConfig` asks for."""
    pick = lambda v, d: d if v is None else v  # noqa: E731 - keys that do not apply are None
    return RareLoss(
        node_weights=node_weights, apply_to=pick(cfg.weight_apply_to, "positive"), focal=cfg.focal,
        u0=pick(cfg.u0, 0.25), focal_k=pick(cfg.focal_k, 1.0), focal_probs=pick(cfg.focal_probs, "raw"),
        reduction=cfg.reduction, schedule=cfg.schedule, omega=pick(cfg.omega, 0.25),
        schedule_k=pick(cfg.schedule_k, 3.0), steps_per_epoch=steps_per_epoch, mix_lambda=pick(cfg.mix_lambda, 1.0))


def make_rare_loss(lc: RareLoss, *, ancestry, evaluated, elementwise=None):
    """``loss(ModelOutput, Batch) -> (objective, LossOutput)``: MCLoss over the evaluated nodes with RARE's terms.

    With the default :class:`RareLoss` this is C-HMCNN's loss, the mean MCLoss over the valid rows
    and evaluated nodes. ``elementwise(out, y, mask_BxC) -> [E, B, C]`` replaces MCLoss by another
    unreduced per-member loss (HLSTM's hybrid loss); weights, focal terms, schedules and the
    reduction then apply to it unchanged. The focal term's probabilities come from the ensemble's logits, or from
    the forward's ``aux["mc_logits"]`` (gradient-free MC-dropout passes) when it has them. Each
    member's loss is reduced on its own and the members' losses are summed, so member e's gradient
    is that of its own loss; the reported loss is their mean.
    """
    evaluated = jnp.asarray(evaluated, bool)
    node_w = None if lc.node_weights is None else jnp.asarray(lc.node_weights, jnp.float32)

    def focal_term(out):
        logits_PxBxC = out.aux.get("mc_logits", out.logits)
        if lc.focal_probs == "constrained":
            probs = jax.vmap(lambda z: constrained_probs(z, ancestry))(logits_PxBxC)
        else:  # the released code: raw sigmoid outputs of the members in train mode
            probs = jax.nn.sigmoid(logits_PxBxC)
        return focal_weight(uncertainty(probs, mode=lc.focal), u0=lc.u0, k=lc.focal_k)

    def loss(out, batch):
        logits, y, where = out.logits, batch.y, batch.where
        mask_BxC = where[:, None] & evaluated[None, :]
        if elementwise is None:
            per = jax.vmap(lambda z: mc_loss(z, y, ancestry, where=mask_BxC))(logits)  # [E, B, C]
        else:
            per = elementwise(out, y, mask_BxC)
        weight = jnp.ones(y.shape, jnp.float32)
        if node_w is not None:
            weight = label_weights(node_w, y, apply_to=lc.apply_to)
        if lc.schedule != "none":
            weight = scheduled_weights(weight, schedule_fraction(batch.t, lc.steps_per_epoch, kind=lc.schedule,
                                                                 k=lc.schedule_k), omega=lc.omega)
        if lc.mix_lambda != 1.0:
            weight = mix_weights(weight, lam=lc.mix_lambda)
        focal = focal_term(out) if lc.focal != "none" else 1.0  # [B, C], shared by every member
        per = per * weight[None] * (focal[None] if lc.focal != "none" else 1.0)
        if lc.reduction == "sum":
            total = per.sum()
        else:
            total = per.sum() / jnp.maximum(mask_BxC.sum(), 1)
        E = logits.shape[0]
        return total, LossOutput(per_sample=per.sum((0, 2)) / E, report=total / E)

    return loss
