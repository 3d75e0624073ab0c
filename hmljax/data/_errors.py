"""The data package's error for datasets that cannot be found, read or trusted."""

__all__ = ["DataError"]


class DataError(ValueError):
    """A dataset that cannot be found or loaded (unknown name, missing files or directory, a damaged cache)."""
