"""Optimisers from a config: Adam with coupled weight decay, and SGD with momentum, warm-up and step decay."""

from __future__ import annotations

import jax.numpy as jnp
import optax

__all__ = ["OPTIMIZERS", "ADAM_KERNELS", "make_optimizer", "adam_coupled", "sgd_warmup_step", "apply_optimizer"]

OPTIMIZERS = ("adam", "sgd")
# How Adam's update is computed: 'xla' (optax's update, compiled by XLA) or 'fused' (one C++ pass on CPU,
# :func:`hmljax.engine.adam_coupled_fused`; XLA code on other platforms).
ADAM_KERNELS = ("xla", "fused")


def adam_coupled(*, lr: float, weight_decay: float) -> optax.GradientTransformation:
    """Adam with PyTorch-style weight decay: ``wd * theta`` is added to the gradient (not AdamW).

    C-HMCNN's and RARE's ``torch.optim.Adam(lr, weight_decay=wd)``.
    """
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))


def sgd_warmup_step(*, lr: float, weight_decay: float, momentum: float, warmup_steps: int, decay_every: int,
                    decay_factor: float, nesterov: bool = False, warmup_from: float = 0.0,
                    milestones: tuple[int, ...] = ()) -> optax.GradientTransformation:
    """SGD with momentum, coupled weight decay, a linear warm-up and step decay (HMT-Net's and DB's recipe).

    The learning rate rises linearly from ``warmup_from · lr`` over ``warmup_steps`` optimiser steps
    (DB / mmdet: from lr / 3 over 500 iterations), then is multiplied by ``decay_factor`` every
    ``decay_every`` steps (0: never), or at each of the ``milestones`` steps (DB: epochs 55 and 70 of 80).
    Weight decay is added to the gradient before the momentum, as ``torch.optim.SGD(weight_decay=...)``
    does.
    """
    if decay_every > 0 and milestones:
        raise ValueError("sgd_warmup_step: give decay_every or milestones, not both")
    schedule = optax.constant_schedule(lr)
    if milestones:
        schedule = optax.piecewise_constant_schedule(lr, {int(m): decay_factor for m in milestones})
    if decay_every > 0:
        # Decay boundaries counted from step 0 (warm-up included), as torch's StepLR counts its epochs.
        schedule = optax.piecewise_constant_schedule(lr, {decay_every * k: decay_factor for k in range(1, 1000)})
    if warmup_steps > 0:
        after, warm = schedule, optax.linear_schedule(warmup_from * lr, lr, warmup_steps)
        schedule = lambda count: jnp.where(count < warmup_steps, warm(count), after(count))  # noqa: E731
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov))


def make_optimizer(name: str = "adam", *, lr: float, weight_decay: float, momentum: float = 0.9,
                   warmup_steps: int = 0, decay_every: int = 0, decay_factor: float = 0.1,
                   nesterov: bool = False, warmup_from: float = 0.0, milestones: tuple[int, ...] = (),
                   clip_norm: float = 0.0, adam_kernel: str = "xla") -> optax.GradientTransformation:
    """The optimiser ``name`` (``adam``: :func:`adam_coupled`, or with ``adam_kernel="fused"``
    :func:`~hmljax.engine.adam_coupled_fused`; ``sgd``: :func:`sgd_warmup_step`), after clipping the gradient's
    global norm to ``clip_norm`` when it is > 0 (DB's ``grad_clip``: 35)."""
    if adam_kernel not in ADAM_KERNELS:
        raise ValueError(f"unknown adam_kernel {adam_kernel!r}; choose one of {ADAM_KERNELS}")
    if name == "adam" and adam_kernel == "fused":
        if clip_norm > 0:
            raise ValueError("adam_kernel='fused' applies the update itself and takes no gradient clipping; "
                             "use adam_kernel='xla' with grad_clip")
        from hmljax.engine._fused_adam import adam_coupled_fused

        return adam_coupled_fused(lr=lr, weight_decay=weight_decay)
    if name == "adam":
        opt = adam_coupled(lr=lr, weight_decay=weight_decay)
    elif name == "sgd":
        opt = sgd_warmup_step(lr=lr, weight_decay=weight_decay, momentum=momentum, warmup_steps=warmup_steps,
                              decay_every=decay_every, decay_factor=decay_factor, nesterov=nesterov,
                              warmup_from=warmup_from, milestones=milestones)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm > 0 else opt


def apply_optimizer(optimizer, grads, opt_state, params):
    """``(params, opt_state)`` after one step: the optimiser's own ``apply(grads, opt_state, params)`` where it
    has one (a fused update that writes the parameters itself, e.g. :func:`~hmljax.engine.adam_coupled_fused`),
    else optax's ``update`` then ``apply_updates``."""
    if hasattr(optimizer, "apply"):
        return optimizer.apply(grads, opt_state, params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
