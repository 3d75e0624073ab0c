"""``method=hlstm`` and ``method=chmc_lstm``: an LSTM over the hierarchy's levels with HLSTM's hybrid loss.

Qi & Chelmis, "Hybrid Loss for Hierarchical Multi-label Classification Network" (HLSTM); REFERENCE.md §3.
No public code exists for it, so every choice the paper leaves open is a key here, with its default:

- ``hidden``, ``dropout``: the dataset's C-HMCNN values (the paper gives none); ``transition``
  (the local branch's width) defaults to ``hidden``. The run's lr, epochs and protocol also default
  to C-HMCNN's (train on train+valid for the fixed epoch count, report the last epoch, as the paper
  says it does); ``protocol=early_stopping`` stops on valid instead.
- ``levels``: how many LSTM steps. A node's level is its shortest-path depth below the unevaluated
  roots (FunCat: the number of path components, 1-6). ``levels=6`` (default) clips deeper GO nodes
  into level 6, as the paper's Table I (depth 6 for every GO dataset) implies; ``levels=0`` runs one
  step per level of the DAG (11 on the GO datasets here). LHLoss takes the min over *every* parent
  of a node, read from the one C-vector the level heads fill, whatever level the parent sits on.
- ``b_r``: the weight of the global MCLoss in ``HL = (1 - b_r) LHLoss + b_r MCLoss`` (paper: 0.5).
  ``reduction=mean`` (default) takes per-element means of both terms, so ``b_r`` trades off two
  losses on one scale; ``reduction=sum`` is the paper's literal sums.
- ``local_init``: the local heads' weights: ``constant`` with ``local_init_value=0.1`` (the paper),
  or ``zeros``, ``ones``, ``normal``, ``xavier``, ``he``; their biases start at 0.
- ``head``: ``mcm`` (HLSTM: only the max-constrained global head predicts) or ``none``, the
  HMCN-R-style ablation (plain BCE on both heads, no constraint, predictions the mean of the local
  and global sigmoids, HMCN's beta = 0.5).

``method=chmc_lstm`` is the paper's CHMC-LSTM ablation: the same network without the local branch,
trained with MCLoss alone (``b_r = 1``). Every RARE key (weights, focal terms, ensembles, MC dropout,
resampling) composes with both, through :func:`hmljax.methods.make_rare_loss`.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from hmljax.engine import Method, optimizer_from_config, sampler_from_config
from hmljax.losses import binary_cross_entropy, constrained_probs, hybrid_loss, mc_loss, parent_graph
from hmljax.methods._chmcnn import chmcnn_model, hierarchy_constraint
from hmljax.methods._rare import RareConfig, make_rare_loss, node_weights_for, rare_loss_settings, training_rows
from hmljax.metrics import hierarchical_suite
from hmljax.models import LOCAL_INITS, LevelLSTM

__all__ = ["HlstmConfig", "ChmcLstmConfig", "build_hlstm", "node_levels"]


def node_levels(hierarchy, *, max_levels: int = 0) -> np.ndarray:
    """int ``[C]``: each evaluated node's level (1 = just below the unevaluated roots), -1 for the roots.

    The level is the shortest-path depth (C-HMCNN's ordering key) shifted so that the shallowest
    evaluated node is on level 1. ``max_levels > 0`` clips deeper nodes into the last level.
    """
    depth = np.asarray(hierarchy.depth_min, np.int64)
    evaluated = np.asarray(hierarchy.evaluated, bool)
    level = np.full(depth.shape, -1, np.int64)
    if evaluated.any():
        level[evaluated] = depth[evaluated] - depth[evaluated].min() + 1
    if max_levels > 0:
        level[evaluated] = np.minimum(level[evaluated], max_levels)
    return level


def level_index(hierarchy, *, max_levels: int) -> tuple[tuple[int, ...], ...]:
    """The node indices of each level, in node order, for :class:`hmljax.models.LevelLSTM`."""
    level = node_levels(hierarchy, max_levels=max_levels)
    return tuple(tuple(int(j) for j in np.flatnonzero(level == k)) for k in range(1, int(level.max()) + 1))


@dataclasses.dataclass
class HlstmConfig(RareConfig):
    """HLSTM's keys (``None``: the dataset's C-HMCNN value) plus RARE's (:class:`RareConfig`)."""

    hidden: int | None = None
    transition: int | None = None
    dropout: float | None = None
    levels: int = 6  # LSTM steps: clip deeper levels into level 6 (the paper's Table I); 0 = every level
    b_r: float = 0.5
    local_init: str = "constant"
    local_init_value: float | None = None  # 0.1, with local_init=constant
    head: str = "mcm"  # 'mcm' (HLSTM) or 'none' (HMCN-R-style: no constraint, local and global predict)
    init: str = "torch"  # the LSTM, transition and global layers: 'torch' uniform or 'flax'

    def _conditional(self):
        out = super()._conditional()
        out["local_init_value"] = (self.local_init == "constant", "local_init=constant", 0.1)
        return out

    def resolve(self, spec):
        out = super().resolve(spec)
        out.hidden = spec.hidden if out.hidden is None else out.hidden
        out.transition = out.hidden if out.transition is None else out.transition
        out.dropout = spec.dropout if out.dropout is None else out.dropout
        return out

    def validate(self) -> None:
        super().validate()
        for name, ok, want in (
                ("hidden", isinstance(self.hidden, int) and self.hidden >= 1, "an integer >= 1"),
                ("transition", isinstance(self.transition, int) and self.transition >= 1, "an integer >= 1"),
                ("dropout", self.dropout is not None and 0 <= self.dropout < 1, "a number in [0, 1)"),
                ("levels", isinstance(self.levels, int) and self.levels >= 0, "an integer >= 0; 0 = every level"),
                ("b_r", isinstance(self.b_r, (int, float)) and 0 <= self.b_r <= 1, "a number in [0, 1]"),
                ("local_init", self.local_init in LOCAL_INITS, f"one of {', '.join(LOCAL_INITS)}"),
                ("local_init_value", self.local_init_value is None or np.isfinite(self.local_init_value),
                 "a finite number"),
                ("head", self.head in ("mcm", "none"), "mcm or none"),
                ("head", not (self.head == "none" and self.b_r == 1), "head=none needs b_r < 1 (local heads)"),
                ("init", self.init in ("torch", "flax"), "torch or flax")):
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")

    @property
    def local_heads(self) -> bool:
        return self.b_r < 1


@dataclasses.dataclass
class ChmcLstmConfig(HlstmConfig):
    """CHMC-LSTM: the HLSTM network without its local branch, trained with MCLoss only (``b_r = 1``)."""

    b_r: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.b_r != 1:
            raise ValueError(f"bad value for b_r: {self.b_r!r} (chmc_lstm is MCLoss only, b_r = 1; "
                             "use method=hlstm for b_r < 1)")


def hybrid_elementwise(*, ancestry, parents, b_r: float, head: str):
    """``(out, y, mask_BxC) -> [E, B, C]``: HLSTM's loss per member, for :func:`make_rare_loss`."""

    def member(z, local, y, mask):
        if head == "none":  # HMCN-R: independent BCE on each head
            return ((1 - b_r) * binary_cross_entropy(local, y, where=mask)
                    + b_r * binary_cross_entropy(z, y, where=mask))
        if b_r == 1:  # CHMC-LSTM: MCLoss alone (no local branch to evaluate)
            return mc_loss(z, y, ancestry, where=mask)
        return hybrid_loss(z, y, ancestry, parents, b_r=b_r, local_logits=local, where=mask, reduction="none")

    def elementwise(out, y, mask_BxC):
        return jax.vmap(lambda z, loc: member(z, loc, y, mask_BxC))(out.logits, out.aux["local_logits"])

    return elementwise


def build_hlstm(ds, cfg, *, split: str) -> Method:
    """HLSTM (or CHMC-LSTM, or the HMCN-R-style ablation) on ``ds``, trained on ``split``."""
    m, h = cfg.method_config, ds.hierarchy
    ancestry = hierarchy_constraint(h, "sparse")
    X, Y, info = training_rows(m, ds, split, seed=cfg.seed)
    levels = level_index(h, max_levels=m.levels)
    info = {**info, "levels": len(levels), "nodes_per_level": [len(n) for n in levels]}
    net = LevelLSTM(hidden=m.hidden, transition=m.transition, level_index=levels, num_outputs=h.num_nodes,
                    dropout=m.dropout, local_heads=m.local_heads, local_init=m.local_init,
                    local_init_value=0.0 if m.local_init_value is None else m.local_init_value,
                    init_scheme=m.init)
    # As method=chmcnn: a data-driven sampler sees the evaluated nodes only (not the always-positive roots).
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y[:, np.asarray(h.evaluated, bool)])
    lc = rare_loss_settings(m, node_weights_for(m, ds, Y), steps_per_epoch=sampler.steps_per_epoch)
    elementwise = hybrid_elementwise(ancestry=ancestry, parents=parent_graph(h), b_r=float(m.b_r), head=m.head)

    if m.head == "none":
        def predict(out):  # HMCN-R: the mean of the local and global sigmoids, members averaged
            return (0.5 * (jax.nn.sigmoid(out.logits) + jax.nn.sigmoid(out.aux["local_logits"]))).mean(0)
    else:
        def predict(out):  # only the constrained global head predicts
            return jax.vmap(lambda z: constrained_probs(z, ancestry))(out.logits).mean(0)

    return Method(
        model=chmcnn_model(net, ds.num_features, members=m.ensemble, mc_passes=m.mc_passes,
                           mc_loss=m.mc_loss or "one"),
        loss=make_rare_loss(lc, ancestry=ancestry, evaluated=h.evaluated, elementwise=elementwise),
        predict=predict,
        optimizer=optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch),
        sampler=sampler,
        metrics=hierarchical_suite(h, threshold=cfg.threshold, inclusive=cfg.threshold_inclusive),
        train_x=X, train_y=Y, info=info)
