"""The fused CPU Adam (``adam_kernel='fused'``): optax's Adam to within an ulp (XLA contracts some multiply-adds
into FMAs, the kernel rounds every operation), in place, under jit, scan and vmap, inside the engine's train
step, with a verified on-disk cache and clear errors."""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hmljax.engine as E
from hmljax.training import TrainConfig, train_and_evaluate

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="no C++ compiler to build the fused Adam kernel")

LR, WD = 1e-3, 1e-2


def _tree(key, scale=1.0):
    k = jax.random.split(key, 4)
    return {"w": scale * jax.random.normal(k[0], (37, 11)), "b": scale * jax.random.normal(k[1], (11,)),
            "s": scale * jax.random.normal(k[2], ()), "h": scale * jax.random.normal(k[3], (3, 5, 2)),
            "half": (scale * jax.random.normal(k[3], (6,))).astype(jnp.bfloat16)}  # not f32: the XLA path


def _steps(opt, params, grads_seq, apply):
    state = opt.init(params)
    for g in grads_seq:
        params, state = apply(g, state, params)
    return params, state


def _optax_apply(opt):
    def apply(g, state, params):
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state
    return apply


def _equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                                            strict=True))


def _close(a, b):
    """Every leaf equal to float32 rounding at its own scale (a moment is a sum that can cancel, so an ulp of
    its terms can be many ulps of the result)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=4e-7, atol=4e-7 * float(np.max(np.abs(y), initial=0.0)))
    return True


def test_fused_update_is_optaxs_adam_to_rounding_and_matches_a_float64_reference():
    fused, ref = E.adam_coupled_fused(lr=LR, weight_decay=WD), E.adam_coupled(lr=LR, weight_decay=WD)
    params = _tree(jax.random.key(0))
    grads = [_tree(jax.random.key(i + 1), 0.1 * (i + 1)) for i in range(5)]
    p_f, s_f = _steps(fused, params, grads, jax.jit(fused.apply))
    p_r, s_r = _steps(ref, params, grads, jax.jit(_optax_apply(ref)))
    assert _close(p_f, p_r) and _close(s_f, s_r)
    assert _equal(s_f[1][0].count, s_r[1][0].count) and not _equal(p_f, params)  # it counted and moved
    # float64 numpy: torch.optim.Adam(lr, weight_decay=wd)'s update written out
    p, m, v = (np.asarray(params["w"], np.float64), np.zeros((37, 11)), np.zeros((37, 11)))
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g["w"], np.float64) + WD * p
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        p = p - LR * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(np.asarray(p_f["w"]), p, rtol=1e-6, atol=1e-7)


def test_fused_update_runs_in_place_in_a_donated_scan_and_under_vmap():
    fused, ref = E.adam_coupled_fused(lr=LR, weight_decay=WD), E.adam_coupled(lr=LR, weight_decay=WD)
    # w spans several of the kernel's 64K-element chunks (threads share them); stacked 3 deep below, chunk
    # boundaries fall inside members.
    params = {"w": jax.random.normal(jax.random.key(0), (100_003,)), "b": jnp.ones((7,))}
    g_seq = {"w": jax.random.normal(jax.random.key(1), (6, 100_003)), "b": jnp.linspace(-1, 1, 42).reshape(6, 7)}

    def epoch(apply):
        def run(params, state):
            return jax.lax.scan(lambda c, g: (apply(g, c[1], c[0]), None), (params, state), g_seq)[0]
        return jax.jit(run, donate_argnums=(0, 1))

    copy = lambda t: jax.tree.map(jnp.array, t)  # noqa: E731  (donation consumes its inputs)
    out_f = epoch(fused.apply)(copy(params), fused.init(params))
    out_r = epoch(_optax_apply(ref))(copy(params), ref.init(params))
    assert _close(out_f, out_r)
    # In place: with the state donated (outputs in the inputs' order, as the engine's TrainState is), the
    # compiled update copies no buffer; the kernel writes p, m and v where they lie.
    one = jax.tree.map(lambda a: a[0], g_seq)
    update = jax.jit(lambda p, s, g: fused.apply(g, s, p), donate_argnums=(0, 1))
    hlo = update.lower(params, fused.init(params), one).compile().as_text()
    assert hlo.count("custom_call_target=\"hmljax_adam_cpu\"") == 2 and " copy(" not in hlo

    # vmap over a stack of 3 members, each at its own step count: each member is optax's Adam at its count.
    stack = jax.tree.map(lambda a: jnp.stack([a, 2 * a, -a]), params)
    grads = jax.tree.map(lambda a: jnp.stack([a[0], a[1], a[2]]), g_seq)
    states = jax.vmap(fused.init)(stack)
    states = (states[0], (states[1][0]._replace(count=jnp.array([0, 3, 10], jnp.int32)), states[1][1]))
    new_p, new_s = jax.jit(jax.vmap(fused.apply))(grads, states, stack)
    for e in range(3):
        member = lambda t, e=e: jax.tree.map(lambda a: a[e], t)  # noqa: E731
        want_p, want_s = _optax_apply(ref)(member(grads), member(states), member(stack))
        assert _close(member(new_p), want_p) and _close(member(new_s), want_s)


def test_a_run_with_the_fused_kernel_trains_as_xlas_does(tmp_path):
    cfg = dict(dataset="synthetic", epochs=2, batch_size=16, progress=False)
    runs = {}
    for kernel in ("xla", "fused"):
        out = train_and_evaluate(TrainConfig(adam_kernel=kernel, **{k: v for k, v in cfg.items() if k != "progress"}),
                                 str(tmp_path / kernel), progress=False)
        runs[kernel] = out["state"]
    # Two epochs of ulp-level differences fed back through the network: close, not equal.
    for x, y in zip(jax.tree.leaves(runs["xla"].params), jax.tree.leaves(runs["fused"].params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    assert not _equal(runs["xla"].params, jax.tree.map(jnp.zeros_like, runs["xla"].params))


def test_kernel_keys_and_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="adam_kernel.*does not apply here.*optimizer=adam"):
        TrainConfig(optimizer="sgd", adam_kernel="fused").resolved()
    with pytest.raises(ValueError, match="adam_kernel"):
        TrainConfig(adam_kernel="cuda").resolved()
    with pytest.raises(ValueError, match="adam_kernel.*grad_clip"):
        TrainConfig(adam_kernel="fused", grad_clip=1.0).resolved()
    assert TrainConfig().resolved().to_dict()["adam_kernel"] == "xla"
    with pytest.raises(ValueError, match="gradient clipping"):
        E.make_optimizer("adam", lr=1e-3, weight_decay=0.0, clip_norm=1.0, adam_kernel="fused")
    # An unwritable cache: the error names the folder and the variable that moves it.
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HMLJAX_CACHE", str(blocker))
    with pytest.raises(RuntimeError, match="cannot write the kernel to .*HMLJAX_CACHE"):
        E.build_adam_cpu_kernel()
    # No compiler: the error names it and the way out.
    monkeypatch.setenv("HMLJAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(RuntimeError, match="no-such-compiler-xyz.*adam_kernel='xla'"):
        E.build_adam_cpu_kernel()


def test_the_cached_kernel_is_verified_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("HMLJAX_CACHE", str(tmp_path))
    lib = E.build_adam_cpu_kernel()
    assert lib.startswith(str(tmp_path)) and os.path.exists(lib + ".sha256")
    assert not [f for f in os.listdir(os.path.dirname(lib)) if f.endswith(".tmp")]  # nothing half-written left
    built = os.path.getmtime(lib)
    assert E.build_adam_cpu_kernel() == lib and os.path.getmtime(lib) == built  # a verified copy is reused
    with open(lib, "r+b") as fh:  # a torn or tampered library
        fh.seek(100)
        fh.write(b"\0garbage\0")
    assert E.build_adam_cpu_kernel() == lib
    with open(lib, "rb") as fh, open(lib + ".sha256") as digest:
        import hashlib

        assert hashlib.sha256(fh.read()).hexdigest() == digest.read().strip()
