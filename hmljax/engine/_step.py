"""The engine's compiled pieces: one train step for any method, the scan-fused epoch, chunked prediction."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.engine._optim import apply_optimizer
from hmljax.engine._samplers import is_device_sampler
from hmljax.engine._types import Batch, Method, TrainState

__all__ = ["init_train_state", "make_step", "make_epoch", "make_predict_fn", "train_compiler_options", "jit_train"]


def init_train_state(method: Method, key: jax.Array, *, sampler_key: jax.Array | None = None) -> TrainState:
    """Fresh parameters, model state, optimiser state and (for a device sampler) sampler state."""
    params, model_state = method.model.init(key)
    sampler_state = ()
    if is_device_sampler(method.sampler):
        sampler_state = method.sampler.init(sampler_key if sampler_key is not None else key)
    return TrainState(params, method.optimizer.init(params), jnp.zeros((), jnp.int32), model_state, sampler_state)


def make_step(method: Method):
    """``step(state, batch: Batch, key) -> (state, LossOutput)``, pure and jittable.

    The forward runs with ``fold_in(key, state.step)``, so a resumed run repeats its randomness;
    the gradient is that of the method's objective; the model state (BatchNorm statistics) comes
    from the forward; the optimiser is the method's.
    """
    apply, loss_fn, optimizer = method.model.apply, method.loss, method.optimizer

    def objective(params, model_state, batch, key):
        out = apply(params, model_state, batch.x, train=True, key=key)
        with jax.named_scope("loss"):  # named scopes label the ops in profiles (benchmarks/profile_step.py)
            total, aux = loss_fn(out, batch)
        return total, (aux, out.model_state)

    def step(state: TrainState, batch: Batch, key: jax.Array):
        step_key = jax.random.fold_in(key, state.step)
        (_, (aux, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, state.model_state, batch, step_key)
        with jax.named_scope("optimizer"):
            params, opt_state = apply_optimizer(optimizer, grads, state.opt_state, state.params)
        return TrainState(params, opt_state, state.step + 1, model_state, state.sampler_state), aux

    return step


def make_epoch(method: Method, step=None):
    """One epoch as one ``lax.scan``; which kind depends on the method's sampler.

    Host sampler: ``epoch(state, X [N, ...], Y [N, C], idx [S, B], where [S, B], key) -> (state, losses [S])``:
    the scan runs over the sampler's index array, batches gathered on the device.

    Device sampler: ``epoch(state, X, Y, epoch_index, key) -> (state, losses [S])``: the sampler's
    state rides in the carry; each step selects its rows and updates the sampler with its per-sample
    losses, with no host round trip.
    """
    step = step or make_step(method)
    sampler = method.sampler

    def batch_at(X, Y, idx_B, where_B, t):
        return Batch(X[idx_B], Y[idx_B].astype(jnp.float32), where_B, idx_B, t)

    if not is_device_sampler(sampler):
        def host_epoch(state, X, Y, idx_SxB, where_SxB, key):
            def body(state, inp):
                idx_B, where_B, t = inp
                state, aux = step(state, batch_at(X, Y, idx_B, where_B, t), key)
                return state, aux.report

            t_S = jnp.arange(idx_SxB.shape[0], dtype=jnp.int32)
            return jax.lax.scan(body, state, (idx_SxB, where_SxB, t_S))

        return host_epoch

    def device_epoch(state, X, Y, epoch, key):
        # The training key drives dropout (as with host samplers); the sampler draws from its own stream.
        sampler_key = jax.random.fold_in(jax.random.fold_in(key, 0x5A3D), epoch)
        state = state._replace(sampler_state=sampler.begin_epoch(state.sampler_state, sampler_key, epoch))

        def body(state, t):
            idx_B, where_B, s_state = sampler.select(state.sampler_state, jax.random.fold_in(sampler_key, t), t)
            state, aux = step(state._replace(sampler_state=s_state), batch_at(X, Y, idx_B, where_B, t), key)
            s_state = sampler.update(state.sampler_state, idx_B, where_B, jax.lax.stop_gradient(aux.per_sample))
            return state._replace(sampler_state=s_state), aux.report

        return jax.lax.scan(body, state, jnp.arange(sampler.steps_per_epoch, dtype=jnp.int32))

    return device_epoch


def make_predict_fn(method: Method, *, batch_size: int = 512):
    """``predict(params, model_state, X [N, ...]) -> probabilities [N, C]`` (numpy), compiled once per dataset.

    Rows go through in fixed-size chunks (the last one padded), in eval mode.
    """

    @jax.jit
    def chunk(params, model_state, x):
        return method.predict(method.model.apply(params, model_state, x, train=False, key=None))

    def predict(params, model_state, X):
        # Chunk by chunk, so a large split (images kept as uint8 memmaps) is never copied whole into float32.
        dtype = np.uint8 if np.asarray(X[:0]).dtype == np.uint8 else np.float32
        n = X.shape[0]
        if n == 0:
            raise ValueError("predict got no rows")
        b = min(batch_size, n)
        out = []
        for s in range(0, n, b):
            part = np.asarray(X[s : s + b], dtype)
            pad = b - part.shape[0]
            if pad:
                part = np.concatenate([part, np.zeros((pad, *X.shape[1:]), dtype)])
            out.append(np.asarray(chunk(params, model_state, jax.device_put(part)))[: b - pad])
        return np.concatenate(out)

    return predict


# Copy insertion with region analysis. The fused epoch carries the parameters and Adam's moments through the scan
# and updates them in place; XLA's default analysis cannot prove that the backward pass's reads of a weight matrix
# (dx = delta W^T) come before the optimiser overwrites it, so it copies every such matrix on every step. Region
# analysis proves it and drops the copies: bitwise the same parameters, 1.08-1.22x faster epochs on 2 CPU cores
# (benchmarks/bench_compile_options.py: cellcycle_FUN 1.08x, its E = 10 GMU ensemble 1.22x, MC dropout 1.13x,
# cellcycle_GO 1.16x).
_CPU_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


@functools.cache
def _accepted(backend: str, options: tuple) -> bool:
    # A jaxlib that no longer knows an option refuses every compile that names it: try one tiny compile first.
    try:
        x = jax.device_put(jnp.float32(1.0), jax.local_devices(backend=backend)[0])
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(x).compile()
        return True
    except Exception:  # noqa: BLE001 - TypeError on a jax without compiler_options, XLA's error on an unknown option
        return False


def train_compiler_options(backend: str | None = None, *, wanted: dict | None = None) -> dict:
    """The XLA options hmljax compiles its train step and epoch with on ``backend`` (default: JAX's default).

    On CPU, copy insertion with region analysis (see ``_CPU_OPTIONS``; ``wanted`` replaces them);
    nothing elsewhere. Empty if this jax/jaxlib does not accept them, so a newer XLA that drops the
    option only loses the speed.
    """
    backend = backend or jax.default_backend()
    wanted = _CPU_OPTIONS if wanted is None else wanted
    if backend != "cpu" or not _accepted(backend, tuple(sorted(wanted.items()))):
        return {}
    return dict(wanted)


def jit_train(fn, **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)`` compiled with :func:`train_compiler_options`: how hmljax jits a train step or
    epoch (``jit_train(make_epoch(method), donate_argnums=(0,))``)."""
    if options := train_compiler_options():
        jit_kwargs = {**jit_kwargs, "compiler_options": options}
    return jax.jit(fn, **jit_kwargs)
