"""The values a method hands the engine: a model, a loss, a sampler, an optimiser and a metric suite.

Everything is a plain value: functions and pytrees, no base classes. The engine
(:mod:`hmljax.engine._step`, :func:`hmljax.training.train_and_evaluate`) only
ever calls these fields, so a new method is new files (see README, "The engine").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int

__all__ = ["Batch", "ModelOutput", "Model", "LossOutput", "MetricSuite", "Method", "TrainState"]

PyTree = Any


class Batch(NamedTuple):
    """One step's inputs, gathered on the device.

    Attributes:
        x: features ``[B, D]`` (or ``[B, ...]`` for images).
        y: labels ``[B, C]`` as float32 (0/1).
        where: bool ``[B]``; False marks padding rows, which must not count in the loss.
        index: int32 ``[B]`` row indices into the training arrays (what a loss-driven sampler updates).
        t: int32 scalar, the step's index within its epoch (the batch schedulers use it).
    """

    x: Float[Array, "B ..."]
    y: Float[Array, "B C"]
    where: Bool[Array, " B"]
    index: Int[Array, " B"]
    t: Int[Array, ""]


class ModelOutput(NamedTuple):
    """What a forward returns.

    Attributes:
        logits: ``[E, B, C]``; a single network is E = 1.
        aux: named auxiliary outputs (e.g. ``mc_logits`` ``[P, B, C]`` of gradient-free MC-dropout passes,
            per-level local logits), read by the method's own loss.
        model_state: the updated non-trainable state (BatchNorm statistics; ``{}`` when there is none).
    """

    logits: Float[Array, "E B C"]
    aux: Mapping[str, Any]
    model_state: PyTree


class Model(NamedTuple):
    """A model as two pure functions.

    Attributes:
        init: ``init(key) -> (params, model_state)``.
        apply: ``apply(params, model_state, x [B, ...], *, train, key) -> ModelOutput``. ``key`` is None
            when ``train`` is False.
    """

    init: Callable[..., tuple[PyTree, PyTree]]
    apply: Callable[..., ModelOutput]


class LossOutput(NamedTuple):
    """What a loss returns besides the scalar it is differentiated by.

    Attributes:
        per_sample: ``[B]`` each row's loss (0 on padding rows): loss-driven samplers read it.
        report: the scalar written to ``metrics.jsonl`` as the epoch's loss (e.g. the mean over ensemble
            members of their losses, while the objective is their sum).
    """

    per_sample: Float[Array, " B"]
    report: Float[Array, ""]


LossFn = Callable[[ModelOutput, Batch], tuple[Float[Array, ""], LossOutput]]


class MetricSuite(NamedTuple):
    """Host-side evaluation of predictions.

    Attributes:
        name: e.g. ``hierarchical`` or ``flat``.
        evaluate: ``evaluate(labels [N, C], probs [N, C]) -> dict`` of metrics (numpy in, floats out).
        headline: the key early stopping maximises (e.g. ``auprc``).
        table: ``table(metrics) -> list[(name, value)]``, the rows the CLI prints.
    """

    name: str
    evaluate: Callable[[np.ndarray, np.ndarray], dict]
    headline: str
    table: Callable[[dict], list]


class Method(NamedTuple):
    """Everything the engine needs to train and evaluate one method on one dataset.

    Built by a method's ``build(dataset, config)`` (see :func:`hmljax.engine.register_method`).

    Attributes:
        model: the :class:`Model`.
        loss: ``loss(ModelOutput, Batch) -> (objective scalar, LossOutput)``.
        predict: ``predict(ModelOutput) -> probabilities [B, C]`` at inference (jittable; e.g. the mean over
            members of the constrained sigmoids).
        optimizer: an optax transformation.
        sampler: a host-side sampler (``epoch(e) -> EpochBatches``, :class:`hmljax.data.EpochSampler`) or a
            device-side one (:class:`hmljax.engine.DeviceSampler`, state in the scan carry).
        metrics: the :class:`MetricSuite` for validation and test.
        train_x, train_y: the rows trained on (after any resampling), host arrays ``[N, ...]``, ``[N, C]``.
        info: JSON-able facts for ``results.json`` (rows, rows added by resampling, ...).
    """

    model: Model
    loss: LossFn
    predict: Callable[[ModelOutput], Float[Array, "B C"]]
    optimizer: optax.GradientTransformation
    sampler: Any
    metrics: MetricSuite
    train_x: np.ndarray
    train_y: np.ndarray
    info: Mapping[str, Any] = {}


class TrainState(NamedTuple):
    """Everything a step changes.

    Attributes:
        params: trainable parameters.
        opt_state: the optimiser's state.
        step: int32, optimiser updates so far (dropout keys are ``fold_in(key, step)``).
        model_state: non-trainable model state (BatchNorm statistics), ``{}`` if none.
        sampler_state: a device-side sampler's state (``()`` for host-side samplers).
    """

    params: PyTree
    opt_state: optax.OptState
    step: Int[Array, ""]
    model_state: PyTree = ()
    sampler_state: PyTree = ()
