"""Host-side evaluation metrics (numpy): micro AUPRC, node-wise P/R/F1, Bin. AP, recall per depth,
the flat multi-label suite (F1, macro-AUC, ranking metrics, mAP) and method-comparison statistics."""

from hmljax.metrics._flat import (
    coverage,
    evaluate_flat,
    hamming_loss,
    macro_auc,
    macro_f1,
    map_per_group,
    mean_average_precision,
    micro_f1,
    one_error,
    ranking_loss,
)
from hmljax.metrics._metrics import (
    average_precision,
    binary_ap,
    evaluate_predictions,
    micro_auprc,
    micro_prf,
    node_prf,
    recall_per_depth,
)
from hmljax.metrics._stats import (
    FriedmanResult,
    WilcoxonResult,
    cd_diagram,
    friedman_test,
    nemenyi_cd,
    wilcoxon_signed_rank,
)
from hmljax.metrics._suites import check_probabilities, flat_suite, hierarchical_suite

__all__ = [
    "average_precision",
    "binary_ap",
    "evaluate_predictions",
    "micro_auprc",
    "micro_prf",
    "node_prf",
    "recall_per_depth",
    # suites the engine scores runs with
    "check_probabilities",
    "hierarchical_suite",
    "flat_suite",
    # flat multi-label suite
    "coverage",
    "evaluate_flat",
    "hamming_loss",
    "macro_auc",
    "macro_f1",
    "map_per_group",
    "mean_average_precision",
    "micro_f1",
    "one_error",
    "ranking_loss",
    # statistical comparison (Demsar 2006)
    "FriedmanResult",
    "WilcoxonResult",
    "cd_diagram",
    "friedman_test",
    "nemenyi_cd",
    "wilcoxon_signed_rank",
]
