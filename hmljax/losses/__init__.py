"""Pure, unreduced losses over logits ``[B, C]``, and RARE's weights and focal terms."""

from hmljax.losses._local import (
    ParentGraph,
    hybrid_loss,
    lmc_logits,
    lmc_loss,
    local_min_constraint,
    parent_graph,
)
from hmljax.losses._longtail import (
    asymmetric_loss,
    class_balanced_focal_loss,
    class_balanced_weights,
    db_focal_loss,
    db_loss,
    db_rebalancing_weights,
    inverse_frequency_weights,
    sigmoid_focal_loss,
)
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
    "ParentGraph", "parent_graph", "local_min_constraint", "lmc_logits", "lmc_loss", "hybrid_loss",
    "sigmoid_focal_loss", "class_balanced_weights", "class_balanced_focal_loss", "inverse_frequency_weights",
    "db_rebalancing_weights", "db_loss", "db_focal_loss", "asymmetric_loss",
]
