"""A method defined outside ``hmljax/``, as a user would: proof that the engine takes any method as new files.

``method=toy``: a linear model over features centred by a running mean (model state, like BatchNorm's
statistics: updated by training forwards, used by evaluation), a per-label BCE loss, and
``sampler=loss_proportional``: a device-side sampler that keeps every row's last loss and draws each
batch without replacement with probabilities proportional to it (a loss-driven sampler with no host
round trip). Imported by tests/test_engine.py and by the subprocess it kills.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

import hmljax.engine as E
from hmljax.metrics import hierarchical_suite


@dataclasses.dataclass
class ToyConfig:
    ema: float = 0.9  # momentum of the running mean
    pos_weight: float = 1.0

    def validate(self):
        if not 0 <= self.ema < 1:
            raise ValueError(f"bad value for ema: {self.ema!r} (in [0, 1))")


@dataclasses.dataclass
class LossProportionalConfig:
    floor: float = 0.05  # every row keeps at least this much weight

    def validate(self):
        if self.floor <= 0:
            raise ValueError(f"bad value for floor: {self.floor!r} (> 0)")


def toy_model(num_features: int, num_labels: int, *, momentum: float) -> E.Model:
    def init(key):
        k1, _ = jax.random.split(key)
        params = {"w": 0.01 * jax.random.normal(k1, (num_features, num_labels)), "b": jnp.zeros(num_labels)}
        return params, {"mean": jnp.zeros(num_features)}

    def apply(params, model_state, x, *, train, key=None):
        if train:
            mean = momentum * model_state["mean"] + (1 - momentum) * x.mean(0)
            model_state = {"mean": mean}
        logits = (x - model_state["mean"][None]) @ params["w"] + params["b"][None]
        return E.ModelOutput(logits[None], {}, model_state)

    return E.Model(init, apply)


def bce_loss(pos_weight: float):
    def loss(out, batch):
        z, y = out.logits[0], batch.y
        per = pos_weight * y * jax.nn.softplus(-z) + (1 - y) * jax.nn.softplus(z)  # [B, C]
        per_sample = jnp.where(batch.where, per.mean(-1), 0.0)
        total = per_sample.sum() / jnp.maximum(batch.where.sum(), 1)
        return total, E.LossOutput(per_sample=per_sample, report=total)

    return loss


def loss_proportional(num_rows: int, batch_size: int, *, floor: float) -> E.DeviceSampler:
    steps = -(-num_rows // batch_size)

    def init(key):
        return {"loss": jnp.ones(num_rows), "draws": jnp.zeros(num_rows, jnp.int32)}

    def begin_epoch(state, key, epoch):
        return state

    def select(state, key, t):
        logits = jnp.log(state["loss"] + floor)
        # Gumbel top-k: B rows without replacement, each with probability proportional to its weight.
        g = logits + jax.random.gumbel(key, (num_rows,))
        index = jax.lax.top_k(g, batch_size)[1].astype(jnp.int32)
        return index, jnp.ones(batch_size, bool), {**state, "draws": state["draws"].at[index].add(1)}

    def update(state, index, where, per_sample):
        return {**state, "loss": state["loss"].at[index].set(jnp.where(where, per_sample, state["loss"][index]))}

    return E.DeviceSampler(init, begin_epoch, select, update, steps, batch_size)


def build_toy(ds, cfg, *, split):
    X, Y = ds.split(split)
    sampler = E.sampler_from_config(cfg, num_rows=X.shape[0])
    return E.Method(
        model=toy_model(ds.num_features, ds.hierarchy.num_nodes, momentum=cfg.method_config.ema),
        loss=bce_loss(cfg.method_config.pos_weight),
        predict=lambda out: jax.nn.sigmoid(out.logits[0]),
        optimizer=E.optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch),
        sampler=sampler,
        metrics=hierarchical_suite(ds.hierarchy, threshold=cfg.threshold),
        train_x=X, train_y=Y, info={"rows": int(X.shape[0])})


def _build_sampler(scfg, *, num_rows, batch_size, seed, drop_remainder):
    return loss_proportional(num_rows, batch_size, floor=scfg.floor)


E.register_method("toy", ToyConfig, build_toy, replace=True, doc="a linear toy method (tests)")
E.register_sampler("loss_proportional", LossProportionalConfig, _build_sampler, replace=True,
                   doc="rows drawn in proportion to their last loss (tests)")
