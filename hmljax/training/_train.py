"""Jit-compiled C-HMCNN training: one step, a ``lax.scan``-fused epoch, batched evaluation."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int

from hmljax.losses import constrained_probs, mc_loss

__all__ = ["TrainState", "make_optimizer", "init_state", "make_train_step", "make_train_epoch", "make_predict"]


class TrainState(NamedTuple):
    """Everything a step changes. ``step`` counts optimiser updates."""

    params: dict
    opt_state: optax.OptState
    step: Int[Array, ""]


def make_optimizer(*, lr: float, weight_decay: float) -> optax.GradientTransformation:
    """Adam with PyTorch-style weight decay: ``wd * theta`` is added to the gradient (not AdamW)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))


def init_state(model, optimizer, num_features: int, *, key: jax.Array) -> TrainState:
    params = model.init({"params": key}, jnp.zeros((1, num_features), jnp.float32), train=False)["params"]
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_train_step(model, optimizer, *, ancestry, evaluated: Bool[Array, " C"]):
    """``step(state, x [B, D], y [B, C], where [B], key) -> (state, loss)``, pure and jittable.

    The loss is C-HMCNN's: mean MCLoss over the valid rows and evaluated nodes.
    Dropout uses ``fold_in(key, state.step)``, so a resumed run repeats its randomness.
    """
    evaluated = jnp.asarray(evaluated, bool)

    def loss_fn(params, x, y, where, key):
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        mask_BxC = where[:, None] & evaluated[None, :]
        per_elem = mc_loss(logits, y, ancestry, where=mask_BxC)
        return per_elem.sum() / jnp.maximum(mask_BxC.sum(), 1)

    def step(state: TrainState, x: Float[Array, "B D"], y, where: Bool[Array, " B"], key: jax.Array):
        step_key = jax.random.fold_in(key, state.step)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y.astype(jnp.float32), where, step_key)
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
            idx_B, where_B = inp
            return step(state, X[idx_B], Y[idx_B], where_B, key)

        return jax.lax.scan(body, state, (idx_SxB, where_SxB))

    return epoch


def make_predict(model, *, ancestry, batch_size: int = 512):
    """``predict(params, X [N, D]) -> constrained probabilities [N, C]`` (numpy), jit-compiled per chunk shape.

    Rows are processed in fixed-size chunks (the last one padded), so evaluation
    compiles once per dataset whatever N is.
    """

    @jax.jit
    def chunk(params, x):
        return constrained_probs(model.apply({"params": params}, x, train=False), ancestry)

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
