"""Adam with coupled weight decay as one pass over memory on CPU: a small C++ kernel called through XLA's FFI.

Why: XLA's CPU backend compiles optax's Adam (``add_decayed_weights`` + ``adam`` + ``apply_updates``) into
three loops that together move 48 bytes a parameter; a batch-4 step of a 7.5M-parameter HLSTM spends
about half its time there (benchmarks/README.md, sections 18 and 19). ``adam_cpu.cc`` reads p, g, m, v and
writes p, m, v once (28 bytes), in place when the train step donates its state, as PyTorch's fused Adam does.

The kernel is built the first time it is asked for, with the C++ compiler (``$CXX``, else ``g++``) and the
XLA FFI headers jaxlib ships, for this CPU (``-march=native``), into ``$HMLJAX_CACHE`` (default
``~/.cache/hmljax``) under a name hashed from the source, the flags, the compiler, jaxlib and the CPU, so a
changed one is rebuilt. It is written atomically with its SHA-256 beside it and checked against that hash
before it is loaded. Off CPU (GPU, TPU) the same function runs the update as XLA code: the choice is made
per platform when the step is lowered (``lax.platform_dependent``), so one jitted step runs everywhere.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["FusedAdam", "adam_coupled_fused", "build_adam_cpu_kernel"]

_TARGET = "hmljax_adam_cpu"
_SOURCE = os.path.join(os.path.dirname(__file__), "adam_cpu.cc")
# -ffp-contract=off: every operation rounded once, as written (IEEE, the same on every compiler). XLA's CPU
# code contracts some multiply-adds into FMAs where LLVM finds them, so optax's update and this one differ by
# an ulp in ~1% of elements (tests/test_fused_adam.py); neither is the more exact. -fno-math-errno: sqrt
# without errno, which GCC needs to vectorise the loop.
_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-shared", "-fPIC", "-std=c++17")
_LOCK = threading.Lock()
_REGISTERED: dict[str, Any] = {}


def _cache_dir() -> str:
    from hmljax.data._cache import cache_dir  # the one cache root ($HMLJAX_CACHE, else ~/.cache/hmljax)

    return os.path.join(cache_dir(), "kernels")


def _cpu_identity() -> str:
    """The CPU's model and instruction-set flags (``-march=native`` builds for exactly these)."""
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_adam_cpu_kernel() -> str:
    """The path of the built kernel library, building it first if the cache has no verified copy.

    Raises:
        RuntimeError: no C++ compiler, or the build failed (with the compiler's own message).
    """
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise RuntimeError(f"adam_kernel='fused' builds a C++ kernel on first use, but the compiler {cxx!r} was not "
                           "found (set CXX, or use adam_kernel='xla')")
    with open(_SOURCE, "rb") as fh:
        source = fh.read()
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise RuntimeError(f"adam_kernel='fused': {cxx!r} --version failed: {err}") from err
    import jaxlib

    key = hashlib.sha256(b"\0".join([source, " ".join(_FLAGS).encode(), version.encode(),
                                     jaxlib.__version__.encode(), _cpu_identity().encode()])).hexdigest()[:20]
    out_dir = _cache_dir()
    lib = os.path.join(out_dir, f"adam_cpu-{key}.so")
    digest = lib + ".sha256"
    if os.path.exists(lib) and os.path.exists(digest):
        with open(digest) as fh:
            if fh.read().strip() == _sha256(lib):
                return lib
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".adam_cpu-", suffix=".so.tmp", dir=out_dir)
    except OSError as err:
        raise RuntimeError(f"adam_kernel='fused': cannot write the kernel to {out_dir!r}: {err.strerror} (set "
                           "HMLJAX_CACHE to a writable folder)") from err
    os.close(fd)
    try:
        res = subprocess.run([cxx, *_FLAGS, f"-I{jax.ffi.include_dir()}", _SOURCE, "-o", tmp],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"adam_kernel='fused': building {_SOURCE} with {cxx} failed:\n{res.stderr[-4000:]}")
        sha = _sha256(tmp)
        os.replace(tmp, lib)  # the library first, then its hash: a hash on disk always names a whole library
        fd, tmp_digest = tempfile.mkstemp(prefix=".adam_cpu-", suffix=".sha256.tmp", dir=out_dir)
        with os.fdopen(fd, "w") as fh:
            fh.write(sha + "\n")
        os.replace(tmp_digest, digest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return lib


def _register() -> None:
    """Builds (or finds) the kernel and registers it with XLA's CPU backend, once per process."""
    with _LOCK:
        if _TARGET in _REGISTERED:
            return
        library = ctypes.cdll.LoadLibrary(build_adam_cpu_kernel())
        jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(library.HmljaxAdamCpu), platform="cpu")
        _REGISTERED[_TARGET] = library  # keeps the library loaded


class FusedAdam(NamedTuple):
    """An optax ``GradientTransformation`` (``init``, ``update``: optax's Adam and its state) with
    ``apply(grads, state, params) -> (params, state)``, which the engine's step calls instead of
    ``update`` + ``optax.apply_updates`` (:func:`hmljax.engine.apply_optimizer`)."""

    init: Any
    update: Any
    apply: Any


def _update_xla(p, g, m, v, s):
    """The kernel's arithmetic as XLA code (other platforms, other dtypes): returns (p, m, v)."""
    lr, wd, b1, c1, b2, c2, eps, bc1, bc2 = (s[..., i].astype(p.dtype) for i in range(9))
    expand = lambda a: a.reshape(a.shape + (1,) * (p.ndim - a.ndim))  # noqa: E731  (a batch of scalars, vmapped)
    lr, wd, b1, c1, b2, c2, eps, bc1, bc2 = map(expand, (lr, wd, b1, c1, b2, c2, eps, bc1, bc2))
    g = g + wd * p
    m = c1 * g + b1 * m
    v = c2 * (g * g) + b2 * v
    return p + (-lr) * ((m / bc1) / (jnp.sqrt(v / bc2) + eps)), m, v


def _update_cpu(p, g, m, v, s):
    shape = jax.ShapeDtypeStruct(p.shape, p.dtype)
    call = jax.ffi.ffi_call(_TARGET, (shape, shape, shape), input_output_aliases={0: 0, 2: 1, 3: 2},
                            vmap_method="broadcast_all")
    return call(p, g, m, v, s)


def adam_coupled_fused(*, lr: float, weight_decay: float, b1: float = 0.9, b2: float = 0.999,
                       eps: float = 1e-8) -> FusedAdam:
    """:func:`hmljax.engine.adam_coupled` (``torch.optim.Adam(lr, weight_decay=wd)``) whose ``apply`` runs as
    one fused pass on CPU and as XLA code elsewhere; ``init``/``update`` are the optax chain's, so states and
    checkpoints are interchangeable with :func:`~hmljax.engine.adam_coupled`'s.

    Builds the CPU kernel now (see the module docstring), so on a CPU backend a missing compiler is an error
    here, not in a step.
    """
    try:
        _register()  # also beside a GPU: a computation placed on the CPU there lowers the CPU branch
    except RuntimeError:
        if jax.default_backend() == "cpu":
            raise
        # On GPU or TPU by default, steps lower the XLA branch; without a compiler only CPU-placed steps fail.
    chain = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr, b1=b1, b2=b2, eps=eps))
    # The scalars as optax rounds them: Python floats (1 - b1 in double) cast once to float32.
    consts = np.asarray([lr, weight_decay, b1, 1 - b1, b2, 1 - b2, eps], np.float32)

    def apply(grads, state, params):
        decay_state, (adam_state, lr_state) = state
        count = optax.safe_increment(adam_state.count)
        bc = jnp.stack([1 - b1**count, 1 - b2**count]).astype(jnp.float32)  # optax's bias corrections
        s = jnp.concatenate([jnp.asarray(consts), bc])

        def leaf(p, g, m, v):
            if p.dtype != jnp.float32 or g.dtype != jnp.float32:
                return _update_xla(p, g.astype(p.dtype), m, v, s)
            return jax.lax.platform_dependent(p, g, m, v, s, cpu=_update_cpu, default=_update_xla)

        flat_p, tree = jax.tree.flatten(params)
        out = [leaf(p, g, m, v) for p, g, m, v in zip(flat_p, tree.flatten_up_to(grads),
                                                      tree.flatten_up_to(adam_state.mu),
                                                      tree.flatten_up_to(adam_state.nu), strict=True)]
        new_p, mu, nu = (tree.unflatten([o[i] for o in out]) for i in range(3))
        return new_p, (decay_state, (optax.ScaleByAdamState(count=count, mu=mu, nu=nu), lr_state))

    return FusedAdam(chain.init, chain.update, apply)
