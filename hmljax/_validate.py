"""Host-side checks of what the public functions are given: on by default, free under ``jit``.

The losses, constraints and uncertainty functions are pure JAX, so they cannot raise on a *value*
inside a compiled program. Called eagerly (a notebook, a test, a user's own loop) they get concrete
arrays, and there a wrong input -- a label of 2, soft or unclosed labels, a NaN logit, a probability
above 1, a negative weight -- would otherwise come back as a plausible number. So every public
entry point runs these checks when its argument is concrete, and skips them when it is a tracer:
inside ``jax.jit``, ``vmap`` or ``grad`` (the engine's train step, a user's jitted loop) nothing is
checked and nothing is synced to the host, so the hot path costs exactly what it did.

The switch, for eager hot paths or deliberately unusual inputs:

    hmljax.set_validation(False)            # process-wide; returns the previous setting
    with hmljax.validation(False): ...      # for a block
    HMLJAX_VALIDATE=0                       # environment, read at import

Each failed check raises ``ValueError`` naming the function, the argument and the first bad entry.
"""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np

__all__ = ["set_validation", "validation", "validation_enabled", "check_finite", "check_binary", "check_closed",
           "check_probabilities", "check_nonnegative", "check_parent_closed"]

_ENABLED = os.environ.get("HMLJAX_VALIDATE", "1").strip().lower() not in ("0", "false", "no", "off")


def set_validation(on: bool) -> bool:
    """Turns the host-side input checks on or off for the process; returns the previous setting."""
    global _ENABLED
    prev, _ENABLED = _ENABLED, bool(on)
    return prev


@contextlib.contextmanager
def validation(on: bool):
    """``with validation(False):`` runs a block without the host-side input checks (or with them)."""
    prev = set_validation(on)
    try:
        yield
    finally:
        set_validation(prev)


def validation_enabled() -> bool:
    return _ENABLED


def _concrete(x) -> np.ndarray | None:
    """``x`` as numpy when it should be checked (checks on, a concrete value), else None."""
    if not _ENABLED or x is None or isinstance(x, jax.core.Tracer):
        return None
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x)):
        return None
    return np.asarray(x)


def _masked(a: np.ndarray, where):
    """``a`` with entries outside ``where`` set to 0 (as the losses treat them), or None when ``where``
    is a tracer (then nothing is checked)."""
    if where is None:
        return a
    w = _concrete(where)
    return None if w is None else np.where(np.broadcast_to(w, a.shape), a, 0)


def _val(a: np.ndarray, bad: np.ndarray):
    """The first bad entry as a plain Python number (for the message)."""
    return a[tuple(np.argwhere(bad)[0])].item()


def _first(bad: np.ndarray) -> str:
    idx = np.argwhere(bad)[0]
    return f"[{', '.join(map(str, idx))}]" if idx.size else "[]"


def check_finite(fn: str, name: str, x) -> None:
    """NaN or ±inf anywhere in ``x`` is an error (logits, weights, features)."""
    a = _concrete(x)
    if a is None or not np.issubdtype(a.dtype, np.inexact):
        return
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{fn}: {name} has {int(bad.sum())} non-finite value(s), the first {_val(a, bad)!r} "
                         f"at {_first(bad)}")


def check_where(fn: str, where, shape, *, of: str = "labels") -> None:
    """``where`` must broadcast to ``shape``, the shape of ``of`` (the labels, or a loss): ``[*B, C]`` or ``[C]``.
    A shape, so checked always, traced or not (it was jax's "Incompatible types for broadcasting: input
    type=bool[3] ...")."""
    if where is None:
        return
    got = tuple(np.shape(where))
    try:
        ok = np.broadcast_shapes(got, tuple(shape)) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{fn}: where {got} does not broadcast to the shape of the {of}, {tuple(shape)}")


def check_binary(fn: str, name: str, y, *, where=None) -> None:
    """Labels must be exactly 0 or 1 (no -1, no 2, no soft labels); entries outside ``where`` (missing
    labels, which the losses neutralise) are not looked at. ``where``'s shape is checked first."""
    check_where(fn, where, np.shape(y))
    a = _concrete(y)
    if a is None or a.dtype == bool or (a := _masked(a, where)) is None:
        return
    bad = (a != 0) & (a != 1)
    if bad.any():
        raise ValueError(f"{fn}: {name} must be 0/1; found {_val(a, bad)!r} at {_first(bad)} "
                         f"({int(bad.sum())} such entries)")


def check_closed(fn: str, name: str, y, ancestry, *, where=None) -> None:
    """Labels must be closed under ancestors (a positive node's ancestors positive): C-HMCNN's and HLSTM's
    losses assume it, and on unclosed labels they train toward a different target without a word.

    Checked as ``MCM(y) == y`` (a node is positive iff one of its descendants is), which holds for a
    dense ancestry matrix and a sparse :class:`~hmljax.constraints.ConstraintGraph` alike. Entries
    outside ``where`` (e.g. the unevaluated roots) are ignored.
    """
    a = _concrete(y)
    if a is None or any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(ancestry)):
        return
    # A traced mask (concrete labels closed over by a jitted caller that broadcast its ``where``, as
    # hybrid_loss does) skips the check like traced labels: np.asarray on it raised a tracer error.
    w = None if where is None else _concrete(where)
    if where is not None and w is None:
        return
    from hmljax.constraints import apply_constraint

    with jax.ensure_compile_time_eval():
        closed = np.asarray(apply_constraint(jax.numpy.asarray(a, jax.numpy.float32), ancestry)) > 0.5
    bad = closed != (a > 0.5)
    if w is not None:
        bad &= np.broadcast_to(w.astype(bool), bad.shape)
    if bad.any():
        raise ValueError(f"{fn}: {name} are not closed under ancestors: entry {_first(bad)} is "
                         f"{int(_val(a, bad) > 0.5)} but a descendant is positive "
                         f"({int(bad.sum())} such entries). Close them (Hierarchy.encode does) or, for a deliberate "
                         "experiment, run with hmljax.validation(False)")


def check_parent_closed(fn: str, name: str, y, child, parent, *, where=None) -> None:
    """Labels closed over the one-hop edges ``child -> parent`` (no positive child of a negative parent);
    labels outside ``where`` count as 0, as the losses treat them."""
    a, c, p = _concrete(y), _concrete(child), _concrete(parent)
    if a is None or c is None or p is None or (a := _masked(a, where)) is None:
        return
    bad = (a[..., c] > 0.5) & (a[..., p] <= 0.5)
    if bad.any():
        e = tuple(np.argwhere(bad)[0])
        row = tuple(int(i) for i in e[:-1])
        raise ValueError(f"{fn}: {name} are not closed under ancestors: node {int(c[e[-1]])} is positive and its "
                         f"parent {int(p[e[-1]])} negative (at row {row}; {int(bad.sum())} such edges). Close them "
                         "(Hierarchy.encode does) or, for a deliberate experiment, run with hmljax.validation(False)")


def check_probabilities(fn: str, name: str, p) -> None:
    """Probabilities must be finite and in [0, 1]."""
    a = _concrete(p)
    if a is None:
        return
    check_finite(fn, name, a)
    bad = (a < 0) | (a > 1)
    if bad.any():
        raise ValueError(f"{fn}: {name} must be probabilities in [0, 1]; found {_val(a, bad)!r} at "
                         f"{_first(bad)}")


def check_nonnegative(fn: str, name: str, v) -> None:
    """A finite number (or array) >= 0: weights, gates, exponents."""
    check_in_range(fn, name, v, low=0)


def check_in_range(fn: str, name: str, v, *, low=None, high=None, below=None, hint: str = "") -> None:
    """``v`` (a number or array) finite with ``low <= v <= high`` and ``v < below`` for the bounds given;
    ``below`` may itself be an argument (the number of rows a count must stay under)."""
    a = _concrete(v)
    if a is None:
        return
    check_finite(fn, name, a)
    tail = f"; {hint}" if hint else ""
    for bound, bad_of, word in ((low, np.less, ">="), (high, np.greater, "<="), (below, np.greater_equal, "<")):
        b = _concrete(bound)
        if b is None or not (bad := bad_of(a, b)).any():
            continue
        where = f" at {_first(bad)} ({int(bad.sum())} such entries)" if a.ndim else ""
        raise ValueError(f"{fn}: {name} must be {word} {b.item()!r}; found {_val(a, bad)!r}{where}{tail}")
