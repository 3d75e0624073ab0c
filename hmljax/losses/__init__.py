"""Pure, unreduced losses over logits ``[B, C]``, and RARE's weights and focal terms."""

from hmljax.losses._mcloss import binary_cross_entropy, constrained_probs, mc_logits, mc_loss
from hmljax.losses._rare import (
    SCHEDULES,
    mix_weights,
    reduce_loss,
    schedule_fraction,
    scheduled_weights,
    weighted_mc_loss,
)
from hmljax.losses._uncertainty import (
    UNCERTAINTIES,
    bbma_uncertainty,
    epistemic_js,
    epistemic_kl,
    focal_weight,
    gmu_uncertainty,
    uncertainty,
)
from hmljax.losses._weighting import WEIGHT_PRESETS, imbalance_weights, label_weights, node_counts

__all__ = [
    "binary_cross_entropy", "constrained_probs", "mc_logits", "mc_loss",
    "weighted_mc_loss", "reduce_loss", "schedule_fraction", "scheduled_weights", "mix_weights", "SCHEDULES",
    "bbma_uncertainty", "gmu_uncertainty", "epistemic_kl", "epistemic_js", "uncertainty", "focal_weight",
    "UNCERTAINTIES", "node_counts", "imbalance_weights", "label_weights", "WEIGHT_PRESETS",
]
