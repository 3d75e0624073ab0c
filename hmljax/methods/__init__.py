"""The built-in methods, each registered by name (``method=NAME``), and the built-in samplers.

A method is a config dataclass (its keys) and a ``build(dataset, config, *, split) -> Method``;
see :mod:`hmljax.engine` and the README's "The engine" for how to add one.
"""

import dataclasses

from hmljax.data import ClassAwareSampler, EpochSampler
from hmljax.engine import device_shuffle, register_method, register_sampler
from hmljax.methods import _batch_selection as batch_selection  # the samplers' statistics, as a namespace
from hmljax.methods._batch_selection import register_batch_samplers
from hmljax.methods._c2ae import (
    C2aeConfig,
    build_c2ae,
    c2ae_latent,
    c2ae_loss,
    c2ae_model,
    embedding_distance,
    orthogonality_penalty,
    ranking_loss,
)
from hmljax.methods._chmcnn import ChmcnnConfig, build_chmcnn, chmcnn_model, forward_apply, hierarchy_constraint
from hmljax.methods._dela import DelaConfig, build_dela, dela_loss, dela_model, with_gate_lr
from hmljax.methods._hlstm import (
    ChmcLstmConfig,
    HlstmConfig,
    build_hlstm,
    hybrid_elementwise,
    level_index,
    node_levels,
)
from hmljax.methods._hmt import HmtConfig, build_hmt, hmt_class_weights, hmt_groups
from hmljax.methods._longtail import LONGTAIL_LOSSES, LongTailConfig, class_counts, longtail_elementwise
from hmljax.methods._mlp import MlpConfig, build_mlp
from hmljax.methods._mpvae import (
    MpvaeConfig,
    build_mpvae,
    mpvae_loss,
    mpvae_model,
    mpvae_probs,
    probit_bce,
    probit_ranking_loss,
)
from hmljax.methods._rare import (
    RareConfig,
    RareLoss,
    make_rare_loss,
    node_weights_for,
    rare_loss_settings,
    training_rows,
)

__all__ = ["ChmcnnConfig", "build_chmcnn", "chmcnn_model", "forward_apply", "hierarchy_constraint", "RareConfig",
           "RareLoss", "make_rare_loss", "node_weights_for", "rare_loss_settings", "training_rows", "NoKeys",
           "MlpConfig", "build_mlp", "HlstmConfig", "ChmcLstmConfig", "build_hlstm", "node_levels", "DelaConfig",
           "build_dela", "C2aeConfig", "build_c2ae", "level_index", "hybrid_elementwise", "batch_selection",
           "c2ae_latent", "c2ae_loss", "c2ae_model", "embedding_distance", "orthogonality_penalty", "ranking_loss",
           "dela_loss", "dela_model", "with_gate_lr", "HmtConfig", "build_hmt", "hmt_class_weights", "hmt_groups",
           "LONGTAIL_LOSSES", "LongTailConfig", "class_counts", "longtail_elementwise", "ClassAwareConfig",
           "MpvaeConfig", "build_mpvae", "mpvae_loss", "mpvae_model", "mpvae_probs", "probit_bce",
           "probit_ranking_loss"]


@dataclasses.dataclass
class NoKeys:
    """The config of a sampler without keys of its own."""


def _epoch_sampler(cfg, *, num_rows, batch_size, seed, drop_remainder):
    """Host-side shuffled epochs, deterministic in (seed, epoch) (:class:`hmljax.data.EpochSampler`)."""
    return EpochSampler(num_rows, batch_size, seed=seed, drop_remainder=drop_remainder)


def _device_shuffle(cfg, *, num_rows, batch_size, seed, drop_remainder):
    """A fresh permutation per epoch drawn on the device (the device-side interface's baseline)."""
    return device_shuffle(num_rows, batch_size, drop_remainder=drop_remainder)


@dataclasses.dataclass
class ClassAwareConfig:
    """``sampler=class_aware``'s keys: rows per class visit and the epoch-length divisor (DB's 3 and 4)."""

    per_visit: int = 3
    reduce: float = 4.0

    def validate(self) -> None:
        if not (isinstance(self.per_visit, int) and self.per_visit >= 1):
            raise ValueError(f"bad value for per_visit: {self.per_visit!r} (an integer >= 1)")
        if not (isinstance(self.reduce, (int, float)) and self.reduce > 0):
            raise ValueError(f"bad value for reduce: {self.reduce!r} (a number > 0)")


def _class_aware(cfg, *, num_rows, batch_size, seed, drop_remainder, x, y):
    """Class-aware re-sampling (RS): classes in a shuffled round robin, 3 rows per visit (DB's sampler)."""
    return ClassAwareSampler(y, batch_size, seed=seed, per_visit=cfg.per_visit, reduce=cfg.reduce,
                             drop_remainder=drop_remainder)


register_method("chmcnn", ChmcnnConfig, build_chmcnn, replace=True,
                doc="C-HMCNN's MLP and max-constraint loss, with RARE's weights, focal terms and resampling")
register_method("mlp", MlpConfig, build_mlp, replace=True,
                doc="a flat multi-label MLP with per-label BCE (and RARE's weights, focal terms, ensembles)")
register_method("hlstm", HlstmConfig, build_hlstm, replace=True,
                doc="HLSTM: an LSTM over the hierarchy's levels with the hybrid local (LMC) + global (MCM) loss")
register_method("chmc_lstm", ChmcLstmConfig, build_hlstm, replace=True,
                doc="CHMC-LSTM: HLSTM's network without the local branch, trained with MCLoss only")
register_method("dela", DelaConfig, build_dela, replace=True,
                doc="DELA: label-specific features by perturbing a VAE latent with per-label Concrete gates")
register_method("c2ae", C2aeConfig, build_c2ae, replace=True,
                doc="C2AE: canonical-correlated autoencoder with a label-ranking loss")
register_method("mpvae", MpvaeConfig, build_mpvae, replace=True,
                doc="MPVAE: aligned label/feature VAE embeddings decoded by a multivariate probit model")
register_method("hmt", HmtConfig, build_hmt, replace=True,
                doc="HMT-Net: head/middle/tail group heads with group feature noise (flat, or with the max-constraint)")
register_sampler("class_aware", ClassAwareConfig, _class_aware, replace=True, needs_data=True)
register_sampler("epoch", NoKeys, _epoch_sampler, replace=True)
register_sampler("device_shuffle", NoKeys, _device_shuffle, replace=True)
register_batch_samplers()  # sampler=random, hard, adaptive, adac (adaptive batch selection)
