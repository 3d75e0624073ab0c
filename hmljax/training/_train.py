"""Jit-compiled C-HMCNN training: one step, a ``lax.scan``-fused epoch, batched evaluation."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int

from hmljax.losses import (
    constrained_probs,
    focal_weight,
    label_weights,
    mc_loss,
    mix_weights,
    schedule_fraction,
    scheduled_weights,
    uncertainty,
)

__all__ = ["TrainState", "LossConfig", "make_optimizer", "init_state", "make_train_step", "make_train_epoch",
           "make_predict", "train_compiler_options", "jit_train"]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """What the train step's loss is made of (static: changing it recompiles).

    Attributes:
        node_weights: RARE's w̃ per node ``[C]`` (numpy), or None for C-HMCNN's unweighted loss.
        apply_to: ``positive`` (eq. 9) or ``negative`` (released code).
        focal: ``none``, ``bbma``, ``gmu``, ``kl`` or ``js``: the focal factor ``u0 + U^k``.
        u0, focal_k: the focal gate and exponent (paper: 0.25, 1).
        focal_probs: ``raw`` (members' unconstrained train-mode sigmoids, as the code) or ``constrained``.
        mc_passes: > 0 computes U from this many gradient-free MC-dropout passes of one network.
        reduction: ``mean`` over counted entries per member (default) or ``sum`` (the focal code path).
        schedule, omega, schedule_k, steps_per_epoch: App. D's batch schedulers.
        mix_lambda: λ of the mixed loss (1 = weighted only).
    """

    node_weights: np.ndarray | None = None
    apply_to: str = "positive"
    focal: str = "none"
    u0: float = 0.25
    focal_k: float = 1.0
    focal_probs: str = "raw"
    mc_passes: int = 0
    reduction: str = "mean"
    schedule: str = "none"
    omega: float = 0.25
    schedule_k: float = 3.0
    steps_per_epoch: int = 1
    mix_lambda: float = 1.0


class TrainState(NamedTuple):
    """Everything a step changes. ``step`` counts optimiser updates."""

    params: dict
    opt_state: optax.OptState
    step: Int[Array, ""]


def make_optimizer(*, lr: float, weight_decay: float) -> optax.GradientTransformation:
    """Adam with PyTorch-style weight decay: ``wd * theta`` is added to the gradient (not AdamW)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))


def init_state(model, optimizer, num_features: int, *, key: jax.Array, members: int = 0) -> TrainState:
    """Fresh parameters and optimiser state; ``members=E >= 1`` stacks E independently initialised networks."""
    if members:
        from hmljax.models import init_stacked

        params = init_stacked(model, num_features, members, key=key)
    else:
        params = model.init({"params": key}, jnp.zeros((1, num_features), jnp.float32), train=False)["params"]
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_train_step(model, optimizer, *, ancestry, evaluated: Bool[Array, " C"], loss_cfg: LossConfig | None = None,
                    forward=None):
    """``step(state, x [B, D], y [B, C], where [B], key, t=0) -> (state, loss)``, pure and jittable.

    With the default ``loss_cfg`` this is C-HMCNN's step: mean MCLoss over the
    valid rows and evaluated nodes. :class:`LossConfig` adds RARE's node weights,
    focal term (from the ensemble or from MC-dropout passes), schedulers, the
    mixed loss and the reduction. ``forward`` (see :mod:`hmljax.models`) maps
    ``params`` to logits ``[E, B, C]``; the default is ``model`` as one network.
    ``t`` is the batch's index within its epoch (for the batch schedulers).
    Dropout uses ``fold_in(key, state.step)``, so a resumed run repeats its randomness.
    """
    from hmljax.models import single_forward

    lc = loss_cfg or LossConfig()
    evaluated = jnp.asarray(evaluated, bool)
    forward = forward or single_forward(model)
    node_w = None if lc.node_weights is None else jnp.asarray(lc.node_weights, jnp.float32)

    def focal_term(params, logits_ExBxC, x, key):
        if lc.focal == "none":
            return 1.0
        if lc.mc_passes:
            # MC dropout: P extra stochastic passes of the one network, gradient-free.
            keys = jax.random.split(jax.random.fold_in(key, 1), lc.mc_passes)
            frozen = jax.lax.stop_gradient(params)
            logits_PxBxC = jax.vmap(lambda k: forward(frozen, x, train=True, key=k)[0])(keys)
        else:
            logits_PxBxC = logits_ExBxC
        if lc.focal_probs == "constrained":
            probs = jax.vmap(lambda z: constrained_probs(z, ancestry))(logits_PxBxC)
        else:  # the released code: raw sigmoid outputs of the members in train mode
            probs = jax.nn.sigmoid(logits_PxBxC)
        return focal_weight(uncertainty(probs, mode=lc.focal), u0=lc.u0, k=lc.focal_k)

    def loss_fn(params, x, y, where, key, t):
        logits = forward(params, x, train=True, key=key)  # [E, B, C]
        with jax.named_scope("loss"):  # named scopes label the ops in profiles (benchmarks/profile_step.py)
            return _weighted_total(params, logits, x, y, where, key, t)

    def _weighted_total(params, logits, x, y, where, key, t):
        mask_BxC = where[:, None] & evaluated[None, :]
        per = jax.vmap(lambda z: mc_loss(z, y, ancestry, where=mask_BxC))(logits)  # [E, B, C]
        weight = jnp.ones(y.shape, jnp.float32)
        if node_w is not None:
            weight = label_weights(node_w, y, apply_to=lc.apply_to)
        if lc.schedule != "none":
            weight = scheduled_weights(weight, schedule_fraction(t, lc.steps_per_epoch, kind=lc.schedule,
                                                                 k=lc.schedule_k), omega=lc.omega)
        if lc.mix_lambda != 1.0:
            weight = mix_weights(weight, lam=lc.mix_lambda)
        focal = focal_term(params, logits, x, key)  # [B, C], shared by every member
        per = per * weight[None] * (focal[None] if lc.focal != "none" else 1.0)
        # Each member's loss is reduced on its own and the members' losses are summed,
        # so member e's gradient is that of its own (mean or sum) loss.
        if lc.reduction == "sum":
            total = per.sum()
        else:
            total = per.sum() / jnp.maximum(mask_BxC.sum(), 1)
        return total, total / logits.shape[0]

    def step(state: TrainState, x: Float[Array, "B D"], y, where: Bool[Array, " B"], key: jax.Array, t=0):
        step_key = jax.random.fold_in(key, state.step)
        (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, x, y.astype(jnp.float32), where, step_key, t)
        with jax.named_scope("optimizer"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), loss

    return step


def make_train_epoch(step):
    """``epoch(state, X [N, D], Y [N, C], idx [S, B], where [S, B], key) -> (state, losses [S])``.

    The whole epoch is one ``lax.scan`` over the sampler's index array: batches
    are gathered on the device, with no Python work per step.
    """

    def epoch(state, X, Y, idx_SxB, where_SxB, key):
        def body(state, inp):
            idx_B, where_B, t = inp
            return step(state, X[idx_B], Y[idx_B], where_B, key, t)

        t_S = jnp.arange(idx_SxB.shape[0], dtype=jnp.int32)
        return jax.lax.scan(body, state, (idx_SxB, where_SxB, t_S))

    return epoch


# Copy insertion with region analysis. The fused epoch carries the parameters and Adam's moments through the scan
# and updates them in place; XLA's default analysis cannot prove that the backward pass's reads of a weight matrix
# (dx = delta W^T) come before the optimiser overwrites it, so it copies every such matrix on every step. Region
# analysis proves it and drops the copies: bitwise the same parameters, 1.08-1.22x faster epochs on 2 CPU cores
# (benchmarks/bench_compile_options.py: cellcycle_FUN 1.08x, its E = 10 GMU ensemble 1.22x, MC dropout 1.13x,
# cellcycle_GO 1.16x).
_CPU_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


@functools.lru_cache(maxsize=None)
def _accepted(backend: str, options: tuple) -> bool:
    # A jaxlib that no longer knows an option refuses every compile that names it: try one tiny compile first.
    try:
        x = jax.device_put(jnp.float32(1.0), jax.local_devices(backend=backend)[0])
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(x).compile()
        return True
    except Exception:  # noqa: BLE001 - TypeError on a jax without compiler_options, XLA's error on an unknown option
        return False


def train_compiler_options(backend: str | None = None) -> dict:
    """The XLA options hmljax compiles its train step and epoch with on ``backend`` (default: JAX's default).

    On CPU, copy insertion with region analysis (see ``_CPU_OPTIONS``); nothing
    elsewhere. Empty if this jax/jaxlib does not accept them, so a newer XLA that
    drops the option only loses the speed.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu" or not _accepted(backend, tuple(sorted(_CPU_OPTIONS.items()))):
        return {}
    return dict(_CPU_OPTIONS)


def jit_train(fn, **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)`` compiled with :func:`train_compiler_options`: how hmljax jits a train step or
    epoch (``jit_train(make_train_epoch(step), donate_argnums=(0,))``)."""
    if options := train_compiler_options():
        jit_kwargs = {**jit_kwargs, "compiler_options": options}
    return jax.jit(fn, **jit_kwargs)


def make_predict(model, *, ancestry, batch_size: int = 512, forward=None):
    """``predict(params, X [N, D]) -> constrained probabilities [N, C]`` (numpy), jit-compiled per chunk shape.

    For an ensemble (``forward`` returning ``[E, B, C]``) the prediction is the
    mean of the members' constrained outputs, as RARE does. Rows are processed
    in fixed-size chunks (the last one padded), so evaluation compiles once per
    dataset whatever N is.
    """
    from hmljax.models import single_forward

    forward = forward or single_forward(model)

    @jax.jit
    def chunk(params, x):
        logits = forward(params, x, train=False)
        return jax.vmap(lambda z: constrained_probs(z, ancestry))(logits).mean(0)

    def predict(params, X):
        X = np.asarray(X, np.float32)
        n = X.shape[0]
        b = min(batch_size, n)
        out = []
        for s in range(0, n, b):
            part = X[s : s + b]
            pad = b - part.shape[0]
            if pad:
                part = np.concatenate([part, np.zeros((pad, X.shape[1]), np.float32)])
            out.append(np.asarray(chunk(params, jax.device_put(part)))[: b - pad])
        return np.concatenate(out)

    return predict
