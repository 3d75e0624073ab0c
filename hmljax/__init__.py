"""hmljax: hierarchical multi-label learning under class imbalance, in JAX.

Shape legend, used in every docstring and in local names (``scores_BxC``):
``B`` batch, ``C`` classes (hierarchy nodes), ``D`` input features,
``H`` hidden width, ``E`` ensemble members, ``S`` steps in an epoch;
``*batch`` any leading batch axes (the constraints and losses take ``[*batch, C]``).

Subpackages: ``data`` (ARFF, preprocessing, memmaps, samplers; numpy only),
``hierarchy`` (ancestry matrix, depths, validation; numpy only),
``constraints`` (the max-constraint module), ``losses`` (unreduced losses),
``metrics`` (host-side evaluation).
"""

from hmljax import constraints, data, hierarchy, losses, metrics
from hmljax._validate import set_validation, validation
from hmljax.constraints import ConstraintGraph, constraint_graph, max_constraint, max_constraint_sparse
from hmljax.data import ArffError, DataError, load_dataset, read_arff
from hmljax.hierarchy import Hierarchy, HierarchyError
from hmljax.losses import binary_cross_entropy, constrained_probs, mc_loss
from hmljax.metrics import evaluate_predictions, micro_auprc

__version__ = "0.1.0"

# The run-level API, imported on first use so that ``import hmljax`` (losses, constraints, data) stays light.
_LAZY = {"TrainConfig": "hmljax.training", "train_and_evaluate": "hmljax.training", "load_run": "hmljax.training",
         "evaluate_run": "hmljax.training", "predict_file": "hmljax.training", "engine": "hmljax.engine",
         "methods": "hmljax.methods", "training": "hmljax.training"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(_LAZY[name])
        return mod if mod.__name__ == f"hmljax.{name}" else getattr(mod, name)
    raise AttributeError(f"module 'hmljax' has no attribute {name!r}")


__all__ = [
    "set_validation",
    "validation",
    "ArffError",
    "TrainConfig",
    "engine",
    "evaluate_run",
    "load_run",
    "methods",
    "predict_file",
    "train_and_evaluate",
    "training",
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
