"""``method=hmt``: HMT-Net's head / middle / tail group heads with group feature noise (REFERENCE.md §4.1).

Yuan et al., "HMT-Net" (``../shared/papers/hmt-net-head-middle-tail.md``). No public code exists; the
choices the paper leaves open are keys:

- **Groups** by the training rows' positive counts ``n_k``: head ``n_k >= group_head`` (100), tail
  ``n_k < group_tail`` (20), middle between (DB's ``class_split``); ``group_split=quantile`` makes three
  equal-size groups by count rank instead, for small datasets where the thresholds leave a group
  empty. Empty groups have no head.
- **Noise**: head g sees ``f + δ_g``, ``δ_g ~ N(0, σ_g² I)``, ``σ_g = noise_lambda / mean_{k in g} n_k``
  (λ = 2, the paper's best), at training only (inference is noise-free: the paper does not say;
  this is the sensible reading). σ is absolute, so its effect depends on the feature's scale: here
  ``f`` is the encoder's last ReLU layer (``encoder_layers=0``: the input features themselves).
- **Loss**: ``eta · L_global + (1 - eta) · Σ_g L_g`` (eq. 5-7) with ``L_g`` the mean base loss over the
  rows and group g's classes and ``L_global`` the mean over all classes. ``eta`` is not given by the
  paper: 0.5 by default. Since the scores are a permutation of the heads' concatenation,
  ``L_global = Σ_g (|C_g| / C) L_g`` (REFERENCE.md §4.1), so the whole loss is the base loss with the
  fixed class weight ``C · (eta / C + (1 - eta) / |C_g|)``: that is how it is computed, one pass.
- **Base loss**: BCE by default, or any of the long-tail family (``loss=db_focal`` ...,
  :class:`hmljax.methods.LongTailConfig`). On a hierarchy the scores go through the max-constraint
  (MCLoss in training, the constrained sigmoids at inference), and every RARE key composes.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.data import class_groups
from hmljax.engine import Method, optimizer_from_config, sampler_from_config
from hmljax.losses import constrained_probs
from hmljax.methods._chmcnn import chmcnn_model, hierarchy_constraint
from hmljax.methods._longtail import LongTailConfig, longtail_elementwise
from hmljax.methods._rare import RareConfig, make_rare_loss, node_weights_for, rare_loss_settings, training_rows
from hmljax.metrics import flat_suite, hierarchical_suite
from hmljax.models import GroupHeadsNet

__all__ = ["HmtConfig", "build_hmt", "hmt_groups", "hmt_class_weights"]

GROUP_NAMES = ("head", "middle", "tail")


@dataclasses.dataclass
class HmtConfig(LongTailConfig, RareConfig):
    """HMT-Net's keys, the long-tail loss keys (:class:`LongTailConfig`) and RARE's (:class:`RareConfig`)."""

    hidden: int = 256
    encoder_layers: int = 2
    dropout: float = 0.2
    init: str = "torch"
    noise_lambda: float = 2.0
    eta: float = 0.5
    group_head: int = 100
    group_tail: int = 20
    group_split: str = "thresholds"  # or 'quantile'
    auc_convention: str = "adaptive_code"

    def validate(self) -> None:
        super().validate()
        if self.resample == "hros_pd":
            raise ValueError("bad value for resample: 'hros_pd' (not with method=hmt; use lpros)")
        fin = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        for name, ok, want in (
                ("hidden", isinstance(self.hidden, int) and self.hidden >= 1, "an integer >= 1"),
                ("encoder_layers", isinstance(self.encoder_layers, int) and self.encoder_layers >= 0,
                 "an integer >= 0"),
                ("dropout", fin(self.dropout) and 0 <= self.dropout < 1, "in [0, 1)"),
                ("init", self.init in ("torch", "flax"), "torch or flax"),
                ("noise_lambda", fin(self.noise_lambda) and self.noise_lambda >= 0, "a number >= 0"),
                ("eta", fin(self.eta) and 0 <= self.eta <= 1, "in [0, 1]"),
                ("group_tail", isinstance(self.group_tail, int) and self.group_tail >= 0, "an integer >= 0"),
                ("group_head", isinstance(self.group_head, int) and self.group_head > self.group_tail,
                 "an integer > group_tail"),
                ("group_split", self.group_split in ("thresholds", "quantile"), "thresholds or quantile"),
                ("auc_convention", self.auc_convention in ("adaptive_code", "sklearn"), "adaptive_code or sklearn")):
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


def hmt_groups(counts_C: np.ndarray, evaluated_C: np.ndarray, *, head: int, tail: int, split: str) -> np.ndarray:
    """int ``[C]``: 0 head, 1 middle, 2 tail for the evaluated classes (by their counts); -1 elsewhere."""
    counts_C, evaluated_C = np.asarray(counts_C), np.asarray(evaluated_C, bool)
    groups = np.full(counts_C.shape, -1, np.int64)
    groups[evaluated_C] = class_groups(counts_C[evaluated_C], head=head, tail=tail, mode=split)
    return groups


def hmt_class_weights(groups_C: np.ndarray, *, eta: float) -> np.ndarray:
    """float ``[C]``: ``C_e · (eta / C_e + (1 - eta) / |C_g|)`` per evaluated class (0 for ``groups == -1``).

    The mean over rows and the ``C_e`` evaluated classes of ``w_k · loss_k`` is then
    ``eta · L_global + (1 - eta) · Σ_g L_g`` with ``L_g`` the mean over the rows and group g's classes.
    """
    groups_C = np.asarray(groups_C)
    C_e = int((groups_C >= 0).sum())
    w = np.zeros(groups_C.shape, np.float64)
    for g in np.unique(groups_C[groups_C >= 0]):
        members = groups_C == g
        w[members] = C_e * (eta / C_e + (1.0 - eta) / members.sum())
    return w


def build_hmt(ds, cfg, *, split: str) -> Method:
    """HMT-Net's group heads on ``ds`` (flat, or a hierarchy with the max-constraint), trained on ``split``."""
    m, h = cfg.method_config, ds.hierarchy
    hierarchical = bool(h.edges.shape[0])
    X, Y, info = training_rows(m, ds, split, seed=cfg.seed)
    evaluated = np.asarray(h.evaluated, bool)
    counts = np.asarray(ds.split("train")[1], np.int64).sum(0)  # the groups come from the train split
    groups = hmt_groups(counts, evaluated, head=m.group_head, tail=m.group_tail, split=m.group_split)
    # Unevaluated roots ride in the head group's layer (their scores are never scored or trained).
    head_of = np.where(groups >= 0, groups, 0)
    present = [g for g in range(3) if (head_of == g).any()]
    group_index = tuple(tuple(int(k) for k in np.flatnonzero(head_of == g)) for g in present)
    sigmas = []
    for g in present:
        mean_count = counts[groups == g].mean() if (groups == g).any() else float(counts.max())
        sigmas.append(float(m.noise_lambda / max(mean_count, 1.0)))
    info = {**info, "groups": {GROUP_NAMES[g]: int((groups == g).sum()) for g in range(3)},
            "sigma": {GROUP_NAMES[g]: s for g, s in zip(present, sigmas, strict=True)}}
    net = GroupHeadsNet(group_index=group_index, sigmas=tuple(sigmas), hidden=m.hidden,
                        encoder_layers=m.encoder_layers, dropout=m.dropout, init_scheme=m.init)
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y)
    ancestry = hierarchy_constraint(h, "sparse") if hierarchical else None
    lc = rare_loss_settings(m, node_weights_for(m, ds, Y), steps_per_epoch=sampler.steps_per_epoch)
    base = longtail_elementwise(m, Y, ancestry=ancestry)
    weight_C = jnp.asarray(hmt_class_weights(groups, eta=m.eta), jnp.float32)

    def elementwise(out, y, mask_BxC):
        return base(out, y, mask_BxC) * weight_C[None, None, :]

    if hierarchical:
        def predict(out):
            return jax.vmap(lambda z: constrained_probs(z, ancestry))(out.logits).mean(0)

        metrics = hierarchical_suite(h, threshold=cfg.threshold, inclusive=cfg.threshold_inclusive, groups=groups)
    else:
        def predict(out):
            return jax.nn.sigmoid(out.logits).mean(0)

        metrics = flat_suite(threshold=cfg.threshold, inclusive=cfg.threshold_inclusive,
                             auc_convention=m.auc_convention, groups=groups)
    return Method(
        model=chmcnn_model(net, ds.num_features, members=m.ensemble, mc_passes=m.mc_passes),
        loss=make_rare_loss(lc, ancestry=ancestry if hierarchical else _identity(h), evaluated=evaluated,
                            elementwise=elementwise),
        predict=predict,
        optimizer=optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch),
        sampler=sampler,
        metrics=metrics,
        train_x=X, train_y=Y, info=info)


def _identity(h):
    # make_rare_loss reads the constraint only for focal_probs=constrained; flat data: the identity.
    from hmljax.hierarchy import Hierarchy

    return hierarchy_constraint(Hierarchy.flat(h.names), "sparse")
