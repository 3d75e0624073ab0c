"""C-HMCNN's step as plain functions (``make_train_step`` and friends), on top of the engine.

Kept for code written against them; new code builds a method (``hmljax.methods``) and uses
:func:`hmljax.engine.make_epoch`. Each is a thin wrapper: the step, the loss and the prediction
are the engine's and ``method=chmcnn``'s, so both paths train to the same bits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.engine import Batch, Method, Model, TrainState, make_predict_fn, make_step
from hmljax.engine import make_optimizer as engine_make_optimizer
from hmljax.losses import constrained_probs
from hmljax.methods import RareLoss, forward_apply, make_rare_loss
from hmljax.models import init_stacked, single_forward

__all__ = ["LossConfig", "make_optimizer", "init_state", "make_train_step", "make_train_epoch", "make_predict"]


@dataclasses.dataclass(frozen=True)
class LossConfig(RareLoss):
    """:class:`hmljax.methods.RareLoss` plus ``mc_passes`` (> 0: U from that many MC-dropout passes)."""

    mc_passes: int = 0


def make_optimizer(*, lr: float, weight_decay: float, adam_kernel: str = "xla"):
    """Adam with PyTorch-style weight decay (:func:`hmljax.engine.adam_coupled`; ``adam_kernel="fused"``:
    :func:`hmljax.engine.adam_coupled_fused`, one C++ pass on CPU)."""
    return engine_make_optimizer("adam", lr=lr, weight_decay=weight_decay, adam_kernel=adam_kernel)


def init_state(model, optimizer, num_features: int, *, key: jax.Array, members: int = 0) -> TrainState:
    """Fresh parameters and optimiser state; ``members=E >= 1`` stacks E independently initialised networks."""
    if members:
        params = init_stacked(model, num_features, members, key=key)
    else:
        params = model.init({"params": key}, jnp.zeros((1, num_features), jnp.float32), train=False)["params"]
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def _method(model, optimizer, *, ancestry, evaluated, loss_cfg=None, forward=None) -> Method:
    lc = loss_cfg or LossConfig()
    forward = forward or single_forward(model)
    rare = RareLoss(**{f.name: getattr(lc, f.name) for f in dataclasses.fields(RareLoss)})
    loss = make_rare_loss(rare, ancestry=ancestry, evaluated=evaluated)

    def predict(out):
        return jax.vmap(lambda z: constrained_probs(z, ancestry))(out.logits).mean(0)

    return Method(Model(None, forward_apply(forward, mc_passes=lc.mc_passes)), loss, predict, optimizer,
                  None, None, None, None)


def make_train_step(model, optimizer, *, ancestry, evaluated, loss_cfg: LossConfig | None = None, forward=None):
    """``step(state, x [B, D], y [B, C], where [B], key, t=0) -> (state, loss)``, pure and jittable.

    C-HMCNN's step (mean MCLoss over the valid rows and evaluated nodes), with RARE's terms from
    ``loss_cfg``; ``forward`` maps params to logits ``[E, B, C]`` (default: ``model`` as one network).
    """
    engine_step = make_step(_method(model, optimizer, ancestry=ancestry, evaluated=evaluated, loss_cfg=loss_cfg,
                                    forward=forward))

    def step(state, x, y, where, key, t=0):
        batch = Batch(x, y.astype(jnp.float32), where, jnp.zeros(x.shape[:1], jnp.int32), jnp.asarray(t, jnp.int32))
        state, aux = engine_step(state, batch, key)
        return state, aux.report

    return step


def make_train_epoch(step):
    """``epoch(state, X [N, D], Y [N, C], idx [S, B], where [S, B], key) -> (state, losses [S])``: one scan."""

    def epoch(state, X, Y, idx_SxB, where_SxB, key):
        def body(state, inp):
            idx_B, where_B, t = inp
            return step(state, X[idx_B], Y[idx_B], where_B, key, t)

        t_S = jnp.arange(idx_SxB.shape[0], dtype=jnp.int32)
        return jax.lax.scan(body, state, (idx_SxB, where_SxB, t_S))

    return epoch


def make_predict(model, *, ancestry, batch_size: int = 512, forward=None):
    """``predict(params, X [N, D]) -> constrained probabilities [N, C]`` (numpy; an ensemble's mean)."""
    fn = make_predict_fn(_method(model, None, ancestry=ancestry, evaluated=np.ones(1, bool), forward=forward),
                         batch_size=batch_size)
    return lambda params, X: fn(params, {}, X)
