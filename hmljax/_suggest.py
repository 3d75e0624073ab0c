"""The nearest valid name to a mistyped one, for error messages. Imports nothing heavy: ``hmljax.data`` uses it
and must load without jax."""

from __future__ import annotations

import difflib

__all__ = ["did_you_mean"]


def did_you_mean(name: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the nearest of ``choices`` to a mistyped ``name`` (case ignored), else ``""``.

    For the messages that reject a name (a config key, a dataset, a method) and then list every valid one:
    the list can run to a hundred entries, the likely fix is one of them.
    """
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.75)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
