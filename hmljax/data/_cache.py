"""Atomic on-disk caches of preprocessed arrays, opened as read-only memmaps."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable

import numpy as np

from hmljax.data._errors import DataError

__all__ = ["cache_dir", "hash_files", "cached_arrays", "atomic_write_text"]

CACHE_VERSION = 3  # bump when the preprocessing changes what a key means


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


def temp_file(folder: str, *, prefix: str, suffix: str = "") -> tuple[int, str]:
    """``(fd, path)`` of a new, exclusively created file in ``folder``, opened for writing.

    As ``tempfile.mkstemp``, but with the mode a plain ``open(path, "w")`` gives (0o666 less the umask):
    mkstemp's 0o600 survives the rename, which made every ``results.json``, table and cache written
    atomically unreadable to the rest of a shared group.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder!r}")


def temp_dir(root: str, *, prefix: str) -> str:
    """A new folder in ``root`` with the mode ``os.makedirs`` gives (0o777 less the umask; not mkdtemp's
    0o700, see :func:`temp_file`)."""
    for _ in range(100):
        path = os.path.join(root, f"{prefix}{secrets.token_hex(8)}")
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {root!r}")


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to a temp file in the same folder, then renames it over ``path``: a reader sees the
    old file or the new one, never a part (an interrupted write leaves no file behind). A ``path`` that is a
    folder is refused up front (renaming onto it said "Device or resource busy" about the temporary)."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file name", path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = temp_file(folder, prefix=".tmp-", suffix=os.path.basename(path))
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


def publish_cache_folder(tmp: str, final: str, meta: dict) -> None:
    """Writes ``meta.json`` last into the filled temporary folder ``tmp``, then renames it to ``final`` in one
    step: a reader sees a whole cache or none. If another process published ``final`` first, ``tmp`` is
    dropped; a stale ``final`` without its ``meta.json`` is replaced."""
    with open(os.path.join(tmp, "meta.json"), "w") as fh:
        json.dump(meta, fh)
    try:
        os.rename(tmp, final)
    except OSError:
        if os.path.exists(os.path.join(final, "meta.json")):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)


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
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as err:
            raise DataError(f"cannot create the cache folder {root!r}: {err.strerror} (set HMLJAX_CACHE to a "
                            "writable folder)") from None
        _remove_stale_temporaries(root)
        arrays, meta = build()
        _check_rows(name, arrays)
        try:
            tmp = temp_dir(root, prefix=f".tmp-{os.path.basename(final)}-")
        except OSError as err:
            raise DataError(f"cannot write to the cache folder {root!r}: {err.strerror} (set HMLJAX_CACHE to a "
                            "writable folder)") from None
        try:
            sums = {}
            for k, a in arrays.items():
                np.save(os.path.join(tmp, f"{k}.npy"), np.ascontiguousarray(a))
                sums[k] = _file_sha256(os.path.join(tmp, f"{k}.npy"))
            meta = dict(meta, arrays=sorted(arrays), options=options, source_hash=source_hash, sha256=sums,
                        shapes={k: list(np.shape(a)) for k, a in arrays.items()})
            publish_cache_folder(tmp, final, meta)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"cannot write the cache {final!r}: {err.strerror or err}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return _read_verified(final)


def _read_verified(folder: str) -> tuple[dict[str, np.ndarray], dict, str]:
    """The cached arrays, each checked against the SHA-256, shape and row counts written with it."""
    rebuild = f"delete {folder!r} and it is rebuilt from the source files on the next load"
    try:
        with open(os.path.join(folder, "meta.json")) as fh:
            meta = json.load(fh)
        names = meta["arrays"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"the cache's meta.json in {folder!r} is unreadable ({err}): {rebuild}") from None
    arrays = {}
    for k in names:
        path = os.path.join(folder, f"{k}.npy")
        want = meta.get("sha256", {}).get(k)
        try:
            if want is not None and _file_sha256(path) != want:
                raise DataError(f"cache file {path} is damaged (its checksum differs from the one written with "
                                f"it): {rebuild}")
            a = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataError(f"cache file {path} is unreadable ({err}): {rebuild}") from None
        if "shapes" in meta and list(a.shape) != meta["shapes"].get(k):
            raise DataError(f"cache file {path} has shape {list(a.shape)}, not {meta['shapes'].get(k)}: {rebuild}")
        arrays[k] = a
    try:
        _check_rows(folder, arrays)
    except DataError as err:
        raise DataError(f"{err}: {rebuild}") from None
    return arrays, meta, folder


def _check_rows(where: str, arrays: dict) -> None:
    """Every array of one split (``X_train``, ``Y_train``, ``R_train``) has the same number of rows."""
    rows: dict[str, tuple[str, int]] = {}
    for k, a in arrays.items():
        if "_" not in k or not np.ndim(a):
            continue
        split = k.split("_", 1)[1]
        if split in rows and rows[split][1] != np.shape(a)[0]:
            raise DataError(f"{where}: {k} has {np.shape(a)[0]} rows but {rows[split][0]} has {rows[split][1]}")
        rows.setdefault(split, (k, np.shape(a)[0]))


def _file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _remove_stale_temporaries(root: str, *, older_than_s: float = 3600.0) -> None:
    """Removes ``.tmp-*`` folders left by builds interrupted more than an hour ago (a build in progress
    elsewhere writes into its folder all the time, so it is never that old)."""
    import time

    now = time.time()
    try:
        entries = os.listdir(root)
    except OSError:
        return
    for e in entries:
        p = os.path.join(root, e)
        # A folder another process removes while we look is not an error: suppress and go on.
        with contextlib.suppress(OSError):
            if e.startswith(".tmp-") and os.path.isdir(p) and now - os.path.getmtime(p) > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
