"""``method=chmcnn``: C-HMCNN's MLP and max-constraint loss, with every RARE option.

C-HMCNN: Giunchiglia & Lukasiewicz, NeurIPS 2020. RARE: see :mod:`hmljax.methods._rare`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.constraints import constraint_graph
from hmljax.data import class_groups
from hmljax.engine import Method, Model, ModelOutput, optimizer_from_config, sampler_from_config
from hmljax.losses import constrained_probs
from hmljax.methods._longtail import LongTailConfig, longtail_elementwise
from hmljax.methods._rare import RareConfig, make_rare_loss, node_weights_for, rare_loss_settings, training_rows
from hmljax.metrics import hierarchical_suite
from hmljax.models import ChmcnnMLP, init_stacked, single_forward, stacked_forward

__all__ = ["ChmcnnConfig", "build_chmcnn", "chmcnn_model", "forward_apply", "hierarchy_constraint"]


@dataclasses.dataclass
class ChmcnnConfig(LongTailConfig, RareConfig):
    """C-HMCNN's keys (``None``: the dataset's published value), the long-tail losses' inside MCLoss
    (:class:`hmljax.methods.LongTailConfig`) and RARE's (:class:`RareConfig`)."""

    hidden: int | None = None
    dropout: float | None = None
    init: str = "torch"  # 'torch' (nn.Linear's uniform) or 'flax'
    constraint: str = "sparse"  # 'sparse' (level-wise segment max) or 'dense' ([B, C, C] masked max)

    def resolve(self, spec):
        out = super().resolve(spec)
        out.hidden = spec.hidden if out.hidden is None else out.hidden
        out.dropout = spec.dropout if out.dropout is None else out.dropout
        return out

    def validate(self) -> None:
        super().validate()
        if not (isinstance(self.hidden, int) and self.hidden >= 1):
            raise ValueError(f"bad value for hidden: {self.hidden!r} (an integer >= 1)")
        if not (self.dropout is not None and 0 <= self.dropout < 1):
            raise ValueError(f"bad value for dropout: {self.dropout!r} (a number in [0, 1))")
        if self.init not in ("torch", "flax"):
            raise ValueError(f"bad value for init: {self.init!r} (torch or flax)")
        if self.constraint not in ("sparse", "dense"):
            raise ValueError(f"bad value for constraint: {self.constraint!r} (sparse or dense)")


def hierarchy_constraint(hierarchy, kind: str = "sparse"):
    """The max-constraint's argument: a :class:`ConstraintGraph` (sparse) or the dense ancestry ``[C, C]``."""
    return constraint_graph(hierarchy) if kind == "sparse" else jnp.asarray(hierarchy.ancestry)


def forward_apply(forward, *, mc_passes: int = 0, mc_loss: str = "one"):
    """A :class:`Model` ``apply`` from a forward ``(params, x, *, train, key) -> logits [E, B, C]``.

    The forward may also return ``(logits, aux)``, a dict of further outputs (HLSTM's local
    logits), passed on as ``ModelOutput.aux``. With ``mc_passes = P > 0``:

    - ``mc_loss="one"`` (Table 8's reading): a training forward is one dropout pass, the loss's, and
      also returns ``aux["mc_logits"]`` ``[P, B, C]``: P further gradient-free passes, for RARE's
      focal term only;
    - ``mc_loss="all"`` (the analogue of the ensemble's summed per-member loss): a training forward
      is P dropout passes with gradients, returned as the logits ``[P, B, C]`` (each pass is a
      "member" of the loss, so the focal term's U comes from these same passes and the objective sums
      P losses of one network: P times the gradient scale of ``one``).
    """
    if mc_loss not in ("one", "all"):
        raise ValueError(f"mc_loss must be 'one' or 'all', got {mc_loss!r}")

    def split(out):
        return out if isinstance(out, tuple) else (out, {})

    def apply(params, model_state, x, *, train, key=None):
        if train and mc_passes and mc_loss == "all":
            keys = jax.random.split(jax.random.fold_in(key, 1), mc_passes)
            logits, aux = jax.vmap(lambda k: split(forward(params, x, train=True, key=k)))(keys)
            squeeze = lambda a: a[:, 0]  # noqa: E731 - [P, 1, ...] (one network per pass) -> [P, ...]
            return ModelOutput(squeeze(logits), jax.tree_util.tree_map(squeeze, dict(aux)), model_state)
        logits, aux = split(forward(params, x, train=train, key=key))
        aux = dict(aux)
        if train and mc_passes:
            keys = jax.random.split(jax.random.fold_in(key, 1), mc_passes)
            frozen = jax.lax.stop_gradient(params)
            aux["mc_logits"] = jax.vmap(lambda k: split(forward(frozen, x, train=True, key=k))[0][0])(keys)
        return ModelOutput(logits, aux, model_state)

    return apply


def chmcnn_model(net, num_features: int, *, members: int = 0, mc_passes: int = 0, mc_loss: str = "one") -> Model:
    """A Linen network as a :class:`Model`: one network, a vmapped stack of ``members`` (independently
    initialised), or one network with ``mc_passes`` MC-dropout passes (``mc_loss``: see
    :func:`forward_apply`)."""
    forward = stacked_forward(net, members) if members else single_forward(net)

    def init(key):
        if members:
            return init_stacked(net, num_features, members, key=key), {}
        x = jnp.zeros((1, num_features), jnp.float32)
        return net.init({"params": key}, x, train=False)["params"], {}

    return Model(init, forward_apply(forward, mc_passes=mc_passes, mc_loss=mc_loss))


def build_chmcnn(ds, cfg, *, split: str) -> Method:
    """C-HMCNN (with RARE's options) on ``ds``, trained on ``split``."""
    m, h = cfg.method_config, ds.hierarchy
    ancestry = hierarchy_constraint(h, m.constraint)
    X, Y, info = training_rows(m, ds, split, seed=cfg.seed)
    net = ChmcnnMLP(hidden=m.hidden, num_outputs=h.num_nodes, dropout=m.dropout, init_scheme=m.init)
    # A data-driven sampler sees the evaluated nodes only: the roots, positive in every row, would set
    # every node's imbalance ratio (IRLbl = max count / count) and carry no information.
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y[:, np.asarray(h.evaluated, bool)])
    lc = rare_loss_settings(m, node_weights_for(m, ds, Y), steps_per_epoch=sampler.steps_per_epoch)

    def predict(out):  # an ensemble predicts the mean of its members' constrained outputs, as RARE does
        return jax.vmap(lambda z: constrained_probs(z, ancestry))(out.logits).mean(0)

    return Method(
        model=chmcnn_model(net, ds.num_features, members=m.ensemble, mc_passes=m.mc_passes, mc_loss=m.mc_loss or "one"),
        loss=make_rare_loss(lc, ancestry=ancestry, evaluated=h.evaluated,
                            elementwise=None if m.loss == "bce" else longtail_elementwise(m, Y, ancestry=ancestry)),
        predict=predict,
        optimizer=optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch),
        sampler=sampler,
        metrics=hierarchical_suite(h, threshold=cfg.threshold, inclusive=cfg.threshold_inclusive,
                                   groups=_node_groups(ds)),
        train_x=X, train_y=Y, info=info)


def _node_groups(ds):
    """int ``[C]``: head / middle / tail (0 / 1 / 2) by train-split positives (>= 100, 20-99, < 20; DB's and
    HMT-Net's thresholds), -1 for the unevaluated roots: the node-wise scores per group."""
    counts = np.asarray(ds.split("train")[1], np.int64).sum(0)
    return np.where(np.asarray(ds.hierarchy.evaluated, bool), class_groups(counts), -1)
