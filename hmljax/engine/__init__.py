"""The training engine: the values a method is made of, and the compiled loop that trains any of them.

A *method* (``method=NAME``) is a config dataclass and a ``build(dataset, config, *, split) -> Method``
registered with :func:`register_method`. A :class:`Method` holds a :class:`Model` (``init``/``apply``
returning logits ``[E, B, C]``, auxiliary outputs and model state), a loss (objective and per-sample
losses ``[B]``), a prediction head, an optax optimiser, a sampler (host-side ``[S, B]`` epochs, or a
:class:`DeviceSampler` whose state rides in the scan carry) and a :class:`MetricSuite`.
:func:`make_epoch` fuses an epoch of any method into one ``lax.scan``;
:func:`hmljax.training.train_and_evaluate` adds checkpoints, resume, early stopping and evaluation.
"""

from hmljax.engine._fused_adam import FusedAdam, adam_coupled_fused, build_adam_cpu_kernel
from hmljax.engine._optim import (
    ADAM_KERNELS,
    OPTIMIZERS,
    adam_coupled,
    apply_optimizer,
    make_optimizer,
    sgd_warmup_step,
)
from hmljax.engine._registry import (
    MethodSpec,
    SamplerSpec,
    get_method,
    get_sampler,
    list_methods,
    list_samplers,
    register_method,
    register_sampler,
)
from hmljax.engine._samplers import DeviceSampler, device_shuffle, is_device_sampler
from hmljax.engine._step import (
    init_train_state,
    jit_train,
    make_epoch,
    make_predict_fn,
    make_step,
    train_compiler_options,
)
from hmljax.engine._types import Batch, LossOutput, Method, MetricSuite, Model, ModelOutput, TrainState

__all__ = [
    "Batch", "LossOutput", "Method", "MetricSuite", "Model", "ModelOutput", "TrainState",
    "DeviceSampler", "device_shuffle", "is_device_sampler",
    "OPTIMIZERS", "ADAM_KERNELS", "adam_coupled", "adam_coupled_fused", "FusedAdam", "build_adam_cpu_kernel",
    "apply_optimizer", "make_optimizer", "sgd_warmup_step", "optimizer_from_config",
    "sampler_from_config",
    "MethodSpec", "SamplerSpec", "get_method", "get_sampler", "list_methods", "list_samplers", "register_method",
    "register_sampler",
    "init_train_state", "jit_train", "make_epoch", "make_predict_fn", "make_step", "train_compiler_options",
]


def optimizer_from_config(cfg, *, steps_per_epoch: int):
    """The optimiser a resolved run config names (``optimizer=adam|sgd`` and its keys; epochs -> steps)."""
    clip = cfg.grad_clip or 0.0
    if cfg.optimizer == "adam":
        return make_optimizer("adam", lr=cfg.lr, weight_decay=cfg.weight_decay, clip_norm=clip,
                              adam_kernel=cfg.adam_kernel or "xla")
    milestones = tuple(int(e) * steps_per_epoch for e in (cfg.lr_milestones or "").split(",") if e.strip())
    return make_optimizer(cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                          warmup_steps=cfg.warmup_epochs * steps_per_epoch,
                          decay_every=cfg.lr_decay_every * steps_per_epoch, decay_factor=cfg.lr_decay_factor,
                          warmup_from=cfg.warmup_from, milestones=milestones, clip_norm=clip)


def sampler_from_config(cfg, *, num_rows: int, x=None, y=None):
    """The sampler a resolved run config names (``sampler=NAME`` and its keys) over ``num_rows`` rows.

    ``x`` ``[N, D]`` and ``y`` ``[N, C]``, the rows the method trains on, reach samplers registered
    with ``needs_data=True``; a method that does not pass them cannot use such a sampler.
    """
    spec = get_sampler(cfg.sampler)
    # A batch larger than the data is the whole data, as a PyTorch DataLoader gives it: padding it to batch_size
    # masked rows computed every one of them (batch_size=100000 on 1,000 rows: 100x the work for the same loss).
    batch = cfg.batch_size if cfg.drop_remainder else min(cfg.batch_size, num_rows)
    kwargs = dict(num_rows=num_rows, batch_size=batch, seed=cfg.seed, drop_remainder=cfg.drop_remainder)
    if spec.needs_data:
        if x is None or y is None:
            raise ValueError(f"sampler={cfg.sampler} needs the training rows; this method does not pass them "
                             "to sampler_from_config(..., x=X, y=Y)")
        if len(x) != num_rows or len(y) != num_rows:
            raise ValueError(f"sampler={cfg.sampler}: x has {len(x)} rows and y {len(y)}, expected {num_rows}")
        kwargs.update(x=x, y=y)
    return spec.build(cfg.sampler_config, **kwargs)
