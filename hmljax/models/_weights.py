"""Encoder weights as checked ``.npz`` files: nested variables flattened to ``a/b/c`` keys plus a SHA-256.

One writer and one reader for every converted backbone (:mod:`hmljax.models._resnet`,
:mod:`hmljax.models._vit`): written atomically, and on reading the checksum and every shape are checked
against the network the caller builds, so a damaged, truncated or mismatched file is refused by name.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from hmljax.data import atomic_write_bytes


def flat(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """``{'a': {'b': x}}`` -> ``{('a', 'b'): x}``."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flat(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def nest(flat_tree: Mapping[tuple[str, ...], Any]) -> dict:
    """The inverse of :func:`flat`."""
    out: dict = {}
    for path, v in flat_tree.items():
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = v
    return out


def check_keys(given, expected, *, what: str) -> None:
    """Raises ``ValueError`` naming the keys of a ``state_dict`` that ``what`` lacks or does not have."""
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unexpected:
        show = lambda ks: ", ".join(ks[:8]) + (f", ... ({len(ks)} in all)" if len(ks) > 8 else "")  # noqa: E731
        msg = [f"this state_dict does not fit {what}"]
        msg += [f"missing keys: {show(missing)}"] if missing else []
        msg += [f"unexpected keys: {show(unexpected)}"] if unexpected else []
        raise ValueError("; ".join(msg))


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_npz(path: str | os.PathLike, variables: Mapping, *, fmt: str) -> None:
    """Writes nested ``variables`` to ``path`` atomically as float32, with the header ``fmt`` and a SHA-256."""
    arrays = {"/".join(p): np.asarray(v, np.float32) for p, v in flat(variables).items()}
    buf = io.BytesIO()
    np.savez(buf, __format__=np.array(fmt), __sha256__=np.array(_digest(arrays)), **arrays)
    atomic_write_bytes(os.fspath(path), buf.getvalue())


def load_npz(path: str | os.PathLike, *, fmt: str, writer: str, expected: Mapping, what: str) -> dict:
    """Reads :func:`save_npz`'s file, checking its header, checksum and every shape against ``expected``.

    Args:
        path: the file.
        fmt: the header it must carry; writer: the function that writes it (for the message).
        expected: the nested variables (arrays or shape structs) the caller's network has.
        what: the network in words, e.g. ``"ResNet-50 (width 1.0)"``.

    Raises:
        ValueError: naming the file, when it is unreadable, damaged, or for another network.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # OSError, zipfile.BadZipFile, a CRC error in a damaged member, ...
        raise ValueError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from None
    if str(arrays.pop("__format__", "")) != fmt or "__sha256__" not in arrays:
        raise ValueError(f"{path}: not written by {writer} (no {fmt} header)")
    want = str(arrays.pop("__sha256__"))
    if _digest(arrays) != want:
        raise ValueError(f"{path}: damaged (its arrays' SHA-256 differs from the one written with them); "
                         "convert the weights again")
    shapes = {"/".join(p): tuple(s.shape) for p, s in flat(expected).items()}
    missing, unexpected = sorted(set(shapes) - set(arrays)), sorted(set(arrays) - set(shapes))
    if missing or unexpected:
        raise ValueError(f"{path}: does not hold {what} weights: {len(missing)} missing (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    for k, shape in shapes.items():
        if arrays[k].shape != shape:
            raise ValueError(f"{path}: {k} has shape {arrays[k].shape}, {what} needs {shape}")
    return nest({tuple(k.split("/")): v for k, v in arrays.items()})
