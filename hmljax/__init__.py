"""hmljax: hierarchical multi-label learning under class imbalance, in JAX.

Shape legend, used in every docstring and in local names (``scores_BxC``):
``B`` batch, ``C`` classes (hierarchy nodes), ``D`` input features,
``H`` hidden width, ``E`` ensemble members, ``S`` steps in an epoch.

Subpackages: ``data`` (ARFF, preprocessing, memmaps, samplers; numpy only),
``hierarchy`` (ancestry matrix, depths, validation; numpy only),
``constraints`` (the max-constraint module), ``losses`` (unreduced losses),
``metrics`` (host-side evaluation).
"""

from hmljax import constraints, data, hierarchy, losses, metrics
from hmljax.constraints import ConstraintGraph, constraint_graph, max_constraint, max_constraint_sparse
from hmljax.data import ArffError, DataError, load_dataset, read_arff
from hmljax.hierarchy import Hierarchy, HierarchyError
from hmljax.losses import binary_cross_entropy, constrained_probs, mc_loss
from hmljax.metrics import evaluate_predictions, micro_auprc

__version__ = "0.1.0"

__all__ = [
    "ArffError",
    "ConstraintGraph",
    "DataError",
    "Hierarchy",
    "HierarchyError",
    "binary_cross_entropy",
    "constrained_probs",
    "constraint_graph",
    "constraints",
    "data",
    "evaluate_predictions",
    "hierarchy",
    "load_dataset",
    "losses",
    "max_constraint",
    "max_constraint_sparse",
    "mc_loss",
    "metrics",
    "micro_auprc",
    "read_arff",
]
