"""Atomic on-disk caches of preprocessed arrays, opened as read-only memmaps."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

__all__ = ["cache_dir", "hash_files", "cached_arrays", "atomic_write_text"]

CACHE_VERSION = 2  # bump when the preprocessing changes what a key means


def cache_dir() -> str:
    """``$HMLJAX_CACHE``, else ``~/.cache/hmljax``."""
    return os.environ.get("HMLJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hmljax")


def hash_files(paths: list[str]) -> str:
    """sha256 over the files' bytes, so any change to a source rebuilds its cache."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def _key(name: str, source_hash: str, options: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "src": source_hash, "opt": options}, sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to a temp file in the same folder, then renames it over ``path``: a reader sees the
    old file or the new one, never a part (an interrupted write leaves no file behind)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """:func:`atomic_write_bytes` for text (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def cached_arrays(
    name: str,
    source_hash: str,
    options: dict,
    build: Callable[[], tuple[dict[str, np.ndarray], dict]],
    *,
    root: str | None = None,
) -> tuple[dict[str, np.ndarray], dict, str]:
    """Returns memmapped arrays for ``(name, source_hash, options)``, building them once.

    ``build()`` returns (array name -> array, JSON-able metadata). The arrays are
    written as ``.npy`` files into a fresh temporary folder, with ``meta.json``
    last, and the folder is renamed into place in one step: an interrupted build
    leaves only a ``.tmp-*`` folder, which is never read and is cleaned up later.

    Returns:
        (array name -> read-only memmap, metadata, cache folder).
    """
    root = root or cache_dir()
    final = os.path.join(root, _key(name, source_hash, options))
    if not os.path.exists(os.path.join(final, "meta.json")):
        os.makedirs(root, exist_ok=True)
        arrays, meta = build()
        tmp = tempfile.mkdtemp(dir=root, prefix=f".tmp-{os.path.basename(final)}-")
        try:
            for k, a in arrays.items():
                np.save(os.path.join(tmp, f"{k}.npy"), np.ascontiguousarray(a))
            meta = dict(meta, arrays=sorted(arrays), options=options, source_hash=source_hash)
            with open(os.path.join(tmp, "meta.json"), "w") as fh:
                json.dump(meta, fh)
            try:
                os.rename(tmp, final)
            except OSError:
                # Another process finished the same cache first (or a stale folder is in the way).
                if os.path.exists(os.path.join(final, "meta.json")):
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    with open(os.path.join(final, "meta.json")) as fh:
        meta = json.load(fh)
    arrays = {k: np.load(os.path.join(final, f"{k}.npy"), mmap_mode="r") for k in meta["arrays"]}
    return arrays, meta, final
