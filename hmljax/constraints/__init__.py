"""The max-constraint module (MCM): dense (vmapped masked max) and sparse (level-wise segment max)."""

from hmljax.constraints._mcm import (
    ConstraintGraph,
    apply_constraint,
    constraint_graph,
    max_constraint,
    max_constraint_sparse,
    numpy_max_constraint,
)

__all__ = [
    "ConstraintGraph",
    "apply_constraint",
    "constraint_graph",
    "max_constraint",
    "max_constraint_sparse",
    "numpy_max_constraint",
]
