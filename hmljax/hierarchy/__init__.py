"""Class hierarchies: node order, ancestry matrix, depths, label encoding (host-side numpy)."""

from hmljax.hierarchy._hierarchy import GO_NAMESPACE_ROOTS, Hierarchy, HierarchyError, as_hierarchy

__all__ = ["GO_NAMESPACE_ROOTS", "Hierarchy", "HierarchyError", "as_hierarchy"]
