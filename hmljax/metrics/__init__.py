"""Host-side evaluation metrics (numpy): micro AUPRC, node-wise P/R/F1, Bin. AP, recall per depth."""

from hmljax.metrics._metrics import (
    average_precision,
    binary_ap,
    evaluate_predictions,
    micro_auprc,
    micro_prf,
    node_prf,
    recall_per_depth,
)

__all__ = [
    "average_precision",
    "binary_ap",
    "evaluate_predictions",
    "micro_auprc",
    "micro_prf",
    "node_prf",
    "recall_per_depth",
]
