"""``method=mlp``: a flat multi-label MLP trained with per-label BCE, scored with the ``flat`` metric suite.

The loss is RARE's (:func:`hmljax.methods.make_rare_loss`) over a hierarchy with no edges, where the
max-constraint is the identity and MCLoss is the plain BCE with logits; so ensembles (``ensemble=E``),
MC dropout, focal terms (``focal=gmu`` ...), node (= label) imbalance weights (``weights=code``) and
LPROS resampling compose with it exactly as they do with C-HMCNN.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from hmljax.data import class_groups
from hmljax.engine import Method, optimizer_from_config, sampler_from_config
from hmljax.methods._chmcnn import chmcnn_model, hierarchy_constraint
from hmljax.methods._longtail import LongTailConfig, longtail_elementwise
from hmljax.methods._rare import RareConfig, make_rare_loss, node_weights_for, rare_loss_settings, training_rows
from hmljax.metrics import flat_suite
from hmljax.models import ChmcnnMLP

__all__ = ["MlpConfig", "build_mlp"]


@dataclasses.dataclass
class MlpConfig(LongTailConfig, RareConfig):
    """The MLP's keys plus the long-tail losses' (:class:`hmljax.methods.LongTailConfig`: ``loss=focal`` ...)
    and RARE's (:class:`hmljax.methods.RareConfig`).

    ``hidden`` and ``dropout`` default to 256 and 0.2 (the adaptive-batch comparison's encoder widths
    and dropout, REFERENCE.md §9); ``layers`` counts the linear layers (2 hidden + output by default).
    """

    hidden: int = 256
    layers: int = 3
    dropout: float = 0.2
    init: str = "torch"  # 'torch' (nn.Linear's uniform) or 'flax'
    auc_convention: str = "adaptive_code"  # macro-AUC as the adaptive-batch code computes it, or 'sklearn'

    def validate(self) -> None:
        super().validate()
        if self.resample == "hros_pd":
            raise ValueError("bad value for resample: 'hros_pd' (HROS-PD needs a hierarchy; flat data: lpros)")
        for name, ok, want in (
                ("hidden", isinstance(self.hidden, int) and self.hidden >= 1, "an integer >= 1"),
                ("layers", isinstance(self.layers, int) and self.layers >= 1, "an integer >= 1"),
                ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                ("init", self.init in ("torch", "flax"), "torch or flax"),
                ("auc_convention", self.auc_convention in ("adaptive_code", "sklearn"), "adaptive_code or sklearn")):
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


def build_mlp(ds, cfg, *, split: str) -> Method:
    """A flat multi-label MLP on ``ds`` (any dataset; a hierarchy's nodes are treated as flat labels)."""
    m, h = cfg.method_config, ds.hierarchy
    if h.edges.shape[0]:
        # Treat a hierarchy's nodes as independent labels: BCE per node, no constraint.
        from hmljax.hierarchy import Hierarchy

        h = Hierarchy.flat(h.names)
    X, Y, info = training_rows(m, ds, split, seed=cfg.seed)
    net = ChmcnnMLP(hidden=m.hidden, num_outputs=h.num_nodes, num_layers=m.layers, dropout=m.dropout,
                    init_scheme=m.init)
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y)
    identity = hierarchy_constraint(h, "sparse")
    lc = rare_loss_settings(m, node_weights_for(m, _FlatView(ds, h), Y), steps_per_epoch=sampler.steps_per_epoch)
    train_counts = np.asarray(ds.split("train")[1], np.int64).sum(0)
    # Head / middle / tail as DB and HMT-Net split them (>= 100, 20-99, < 20 train positives).
    groups = class_groups(train_counts, head=100, tail=20)
    elementwise = None if m.loss == "bce" else longtail_elementwise(m, Y)

    def predict(out):  # an ensemble predicts the mean of its members' sigmoids
        return jax.nn.sigmoid(out.logits).mean(0)

    return Method(
        model=chmcnn_model(net, ds.num_features, members=m.ensemble, mc_passes=m.mc_passes,
                           mc_loss=m.mc_loss or "one"),
        loss=make_rare_loss(lc, ancestry=identity, evaluated=np.ones(h.num_nodes, bool), elementwise=elementwise),
        predict=predict,
        optimizer=optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch),
        sampler=sampler,
        metrics=flat_suite(threshold=cfg.threshold, inclusive=cfg.threshold_inclusive,
                           auc_convention=m.auc_convention, groups=groups),
        train_x=X, train_y=Y, info=info)


class _FlatView:
    """``ds`` seen through a flat hierarchy (for the label counts of RARE's weights)."""

    def __init__(self, ds, h):
        self._ds, self.hierarchy = ds, h

    def split(self, name):
        return self._ds.split(name)
