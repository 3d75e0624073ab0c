"""``method=hmt``: HMT-Net's head / middle / tail group heads with group feature noise (REFERENCE.md §4.1).

Yuan et al., "HMT-Net" (``../shared/papers/hmt-net-head-middle-tail.md``). No public code exists; the
choices the paper leaves open are keys:

- **Groups** by the training rows' positive counts ``n_k``: head ``n_k >= group_head`` (100), tail
  ``n_k < group_tail`` (20), middle between (DB's ``class_split``); ``group_split=quantile`` makes three
  equal-size groups by count rank instead, for small datasets where the thresholds leave a group
  empty. Empty groups have no head.
- **Noise**: head g sees ``f + δ_g``, ``δ_g ~ N(0, σ_g² I)``, ``σ_g = noise_lambda / mean_{k in g} n_k``
  (λ = 2, the paper's best), at training only (inference is noise-free: the paper does not say;
  this is the sensible reading). σ is absolute, so its effect depends on the feature's scale: here
  ``f`` is the encoder's last ReLU layer (``encoder_layers=0``: the input features themselves).
- **Loss**: ``eta · L_global + (1 - eta) · Σ_g L_g`` (eq. 5-7) with ``L_g`` the mean base loss over the
  rows and group g's classes and ``L_global`` the mean over all classes. ``eta`` is not given by the
  paper: 0.5 by default. Since the scores are a permutation of the heads' concatenation,
  ``L_global = Σ_g (|C_g| / C) L_g`` (REFERENCE.md §4.1), so the whole loss is the base loss with the
  fixed class weight ``C · (eta / C + (1 - eta) / |C_g|)``: that is how it is computed, one pass.
- **Base loss**: BCE by default, or any of the long-tail family (``loss=db_focal`` ...,
  :class:`hmljax.methods.LongTailConfig`). On a hierarchy the scores go through the max-constraint
  (MCLoss in training, the constrained sigmoids at inference), and every RARE key composes.
- **Encoder**: ``encoder=mlp`` (default) is the MLP above on a dataset's features. ``encoder=resnet18`` or
  ``resnet50`` trains on images (``dataset=tfds:voc/2012`` ..., :func:`hmljax.data.load_image_dataset`) end to
  end, HMT-Net's and DB's recipe (REFERENCE.md §4.2): each training batch is augmented on the device
  (:func:`hmljax.data.augment`: random crop of 0.8-1 of the side resized to ``round(0.875 S)`` = 224 for the
  cached S = 256, flip, photometric distortion), goes through the ResNet (BatchNorm statistics in the engine's
  ``model_state``), and the group heads (with the noise) sit directly on its pooled feature (512-d for ResNet-18,
  2048-d for ResNet-50; ``hidden``, ``encoder_layers`` and ``dropout`` are the MLP's and do not apply).
  Evaluation resizes the whole image to the same side (:func:`hmljax.data.eval_transform`). Keys that apply
  only there: ``pretrained`` (a ``.npz`` of converted torchvision ImageNet weights,
  ``python -m hmljax.models.convert_torchvision``; empty: torchvision's random initialisation),
  ``frozen_stages`` (1: the stem and stage 1 are frozen, DB's; their parameters never move, momentum and weight
  decay included), ``norm_eval`` (True: every BatchNorm in eval mode, DB's) and ``resnet_width`` (the channel
  multiplier, 1.0; smaller for tests and small machines). No ensembles or MC passes with a ResNet.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hmljax.data import augment, class_groups, eval_transform
from hmljax.engine import Method, Model, ModelOutput, optimizer_from_config, sampler_from_config
from hmljax.losses import constrained_probs
from hmljax.methods._chmcnn import chmcnn_model, hierarchy_constraint
from hmljax.methods._longtail import LongTailConfig, longtail_elementwise
from hmljax.methods._rare import RareConfig, make_rare_loss, node_weights_for, rare_loss_settings, training_rows
from hmljax.metrics import flat_suite, hierarchical_suite
from hmljax.models import GroupHeadsNet, load_resnet_npz, resnet_encoder, resnet_frozen_mask

__all__ = ["HmtConfig", "build_hmt", "hmt_groups", "hmt_class_weights"]

GROUP_NAMES = ("head", "middle", "tail")
ENCODERS = {"mlp": None, "resnet18": 18, "resnet50": 50}  # encoder -> ResNet depth
CROP_FRACTION = 0.875  # images train and evaluate at round(0.875 S) on a side: 224 for the cached S = 256 (DB's)
_MLP_ONLY = ("hidden", "encoder_layers", "dropout")  # the MLP encoder's keys


@dataclasses.dataclass
class HmtConfig(LongTailConfig, RareConfig):
    """HMT-Net's keys, the long-tail loss keys (:class:`LongTailConfig`) and RARE's (:class:`RareConfig`)."""

    hidden: int = 256
    encoder_layers: int = 2
    dropout: float = 0.2
    init: str = "torch"
    noise_lambda: float = 2.0
    eta: float = 0.5
    group_head: int = 100
    group_tail: int = 20
    group_split: str = "thresholds"  # or 'quantile'
    auc_convention: str = "adaptive_code"
    encoder: str = "mlp"  # 'mlp' (features), or 'resnet18' / 'resnet50' (images, trained end to end)
    pretrained: str | None = None  # resnet: a converted ImageNet .npz ("" : random initialisation)
    frozen_stages: int | None = None  # resnet: 1 (stem and stage 1 frozen, DB's); -1 none, 0 the stem, k <= 4
    norm_eval: bool | None = None  # resnet: True (BatchNorm in eval mode throughout, DB's)
    resnet_width: float | None = None  # resnet: 1.0, the channel multiplier (smaller: tests, small machines)

    def _encoder_conditional(self) -> dict[str, tuple[bool, str, object]]:
        r = self.encoder != "mlp"
        need = "encoder=resnet18 or resnet50"
        return {"pretrained": (r, need, ""), "frozen_stages": (r, need, 1), "norm_eval": (r, need, True),
                "resnet_width": (r, need, 1.0)}

    def inapplicable(self) -> dict[str, str]:
        out = dict(super().inapplicable())
        out.update({k: f"it applies only with {need}" for k, (ok, need, _) in self._encoder_conditional().items()
                    if not ok and getattr(self, k) is not None})
        if self.encoder != "mlp":
            defaults = {f.name: f.default for f in dataclasses.fields(HmtConfig)}
            out.update({k: "it applies only with encoder=mlp" for k in _MLP_ONLY if getattr(self, k) != defaults[k]})
        return out

    def resolve(self, spec):
        out = super().resolve(spec)
        for k, (ok, _, default) in out._encoder_conditional().items():
            if ok and getattr(out, k) is None:
                setattr(out, k, default)
        return out

    def validate(self) -> None:
        super().validate()
        if self.encoder not in ENCODERS:
            raise ValueError(f"bad value for encoder: {self.encoder!r} (one of {', '.join(ENCODERS)})")
        if self.encoder != "mlp":
            for name, ok, want in (
                    ("pretrained", isinstance(self.pretrained, str), "a path to a .npz, or empty"),
                    ("frozen_stages", isinstance(self.frozen_stages, int) and not isinstance(self.frozen_stages, bool)
                     and -1 <= self.frozen_stages <= 4, "an integer in -1 .. 4"),
                    ("norm_eval", isinstance(self.norm_eval, bool), "true or false"),
                    ("resnet_width", isinstance(self.resnet_width, (int, float)) and not isinstance(
                        self.resnet_width, bool) and math.isfinite(self.resnet_width) and self.resnet_width > 0,
                     "a number > 0"),
                    ("ensemble", not self.ensemble, "0: no ensembles with a ResNet encoder"),
                    ("mc_passes", not self.mc_passes, "0: no MC passes with a ResNet encoder")):
                if not ok:
                    raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")
        if self.resample == "hros_pd":
            raise ValueError("bad value for resample: 'hros_pd' (not with method=hmt; use lpros)")
        fin = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        for name, ok, want in (
                ("hidden", isinstance(self.hidden, int) and self.hidden >= 1, "an integer >= 1"),
                ("encoder_layers", isinstance(self.encoder_layers, int) and self.encoder_layers >= 0,
                 "an integer >= 0"),
                ("dropout", fin(self.dropout) and 0 <= self.dropout < 1, "in [0, 1)"),
                ("init", self.init in ("torch", "flax"), "torch or flax"),
                ("noise_lambda", fin(self.noise_lambda) and self.noise_lambda >= 0, "a number >= 0"),
                ("eta", fin(self.eta) and 0 <= self.eta <= 1, "in [0, 1]"),
                ("group_tail", isinstance(self.group_tail, int) and self.group_tail >= 0, "an integer >= 0"),
                ("group_head", isinstance(self.group_head, int) and self.group_head > self.group_tail,
                 "an integer > group_tail"),
                ("group_split", self.group_split in ("thresholds", "quantile"), "thresholds or quantile"),
                ("auc_convention", self.auc_convention in ("adaptive_code", "sklearn"), "adaptive_code or sklearn")):
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


def hmt_groups(counts_C: np.ndarray, evaluated_C: np.ndarray, *, head: int, tail: int, split: str) -> np.ndarray:
    """int ``[C]``: 0 head, 1 middle, 2 tail for the evaluated classes (by their counts); -1 elsewhere."""
    counts_C, evaluated_C = np.asarray(counts_C), np.asarray(evaluated_C, bool)
    groups = np.full(counts_C.shape, -1, np.int64)
    groups[evaluated_C] = class_groups(counts_C[evaluated_C], head=head, tail=tail, mode=split)
    return groups


def hmt_class_weights(groups_C: np.ndarray, *, eta: float) -> np.ndarray:
    """float ``[C]``: ``C_e · (eta / C_e + (1 - eta) / |C_g|)`` per evaluated class (0 for ``groups == -1``).

    The mean over rows and the ``C_e`` evaluated classes of ``w_k · loss_k`` is then
    ``eta · L_global + (1 - eta) · Σ_g L_g`` with ``L_g`` the mean over the rows and group g's classes.
    """
    groups_C = np.asarray(groups_C)
    C_e = int((groups_C >= 0).sum())
    w = np.zeros(groups_C.shape, np.float64)
    for g in np.unique(groups_C[groups_C >= 0]):
        members = groups_C == g
        w[members] = C_e * (eta / C_e + (1.0 - eta) / members.sum())
    return w


def build_hmt(ds, cfg, *, split: str) -> Method:
    """HMT-Net's group heads on ``ds`` (flat, or a hierarchy with the max-constraint), trained on ``split``."""
    m, h = cfg.method_config, ds.hierarchy
    hierarchical = bool(h.edges.shape[0])
    images = np.ndim(ds.X["train"]) == 4
    if images != (m.encoder != "mlp"):
        raise ValueError(f"encoder={m.encoder} on {ds.spec.name}: " + (
            "images need encoder=resnet18 or resnet50" if images else
            "a ResNet encoder needs an image dataset (dataset=tfds:voc/2007, tfds:voc/2012 or tfds:coco/2017)"))
    X, Y, info = _image_training_rows(m, ds, split, seed=cfg.seed) if images else training_rows(m, ds, split,
                                                                                                seed=cfg.seed)
    evaluated = np.asarray(h.evaluated, bool)
    counts = np.asarray(ds.split("train")[1], np.int64).sum(0)  # the groups come from the train split
    groups = hmt_groups(counts, evaluated, head=m.group_head, tail=m.group_tail, split=m.group_split)
    # Unevaluated roots ride in the head group's layer (their scores are never scored or trained).
    head_of = np.where(groups >= 0, groups, 0)
    present = [g for g in range(3) if (head_of == g).any()]
    group_index = tuple(tuple(int(k) for k in np.flatnonzero(head_of == g)) for g in present)
    sigmas = []
    for g in present:
        mean_count = counts[groups == g].mean() if (groups == g).any() else float(counts.max())
        sigmas.append(float(m.noise_lambda / max(mean_count, 1.0)))
    info = {**info, "groups": {GROUP_NAMES[g]: int((groups == g).sum()) for g in range(3)},
            "sigma": {GROUP_NAMES[g]: s for g, s in zip(present, sigmas, strict=True)}}
    net = GroupHeadsNet(group_index=group_index, sigmas=tuple(sigmas), hidden=m.hidden,
                        encoder_layers=0 if images else m.encoder_layers, dropout=m.dropout, init_scheme=m.init)
    sampler = sampler_from_config(cfg, num_rows=X.shape[0], x=X, y=Y)
    ancestry = hierarchy_constraint(h, "sparse") if hierarchical else None
    lc = rare_loss_settings(m, node_weights_for(m, ds, Y), steps_per_epoch=sampler.steps_per_epoch)
    base = longtail_elementwise(m, Y, ancestry=ancestry)
    weight_C = jnp.asarray(hmt_class_weights(groups, eta=m.eta), jnp.float32)

    def elementwise(out, y, mask_BxC):
        return base(out, y, mask_BxC) * weight_C[None, None, :]

    if hierarchical:
        def predict(out):
            return jax.vmap(lambda z: constrained_probs(z, ancestry))(out.logits).mean(0)

        metrics = hierarchical_suite(h, threshold=cfg.threshold, inclusive=cfg.threshold_inclusive, groups=groups)
    else:
        def predict(out):
            return jax.nn.sigmoid(out.logits).mean(0)

        metrics = flat_suite(threshold=cfg.threshold, inclusive=cfg.threshold_inclusive,
                             auc_convention=m.auc_convention, groups=groups)
    optimizer = optimizer_from_config(cfg, steps_per_epoch=sampler.steps_per_epoch)
    if images:
        model, optimizer = resnet_group_model(net, m, image_size=X.shape[1], optimizer=optimizer)
    else:
        model = chmcnn_model(net, ds.num_features, members=m.ensemble, mc_passes=m.mc_passes)
    return Method(
        model=model,
        loss=make_rare_loss(lc, ancestry=ancestry if hierarchical else _identity(h), evaluated=evaluated,
                            elementwise=elementwise),
        predict=predict,
        optimizer=optimizer,
        sampler=sampler,
        metrics=metrics,
        train_x=X, train_y=Y, info=info)


def _image_training_rows(m, ds, split: str, *, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`training_rows` for uint8 images: the same rows (resampling included), the images kept as uint8
    (``training_rows`` makes features float32, 4x the memory) and not copied unless rows are selected."""
    X, _ = ds.split(split)
    parts = split.split("+")
    sizes = np.cumsum([0] + [ds.X[p].shape[0] for p in parts])
    index = {p: np.arange(sizes[i], sizes[i + 1], dtype=np.float32)[:, None] for i, p in enumerate(parts)}
    rows, Y, info = training_rows(m, dataclasses.replace(ds, X=index), split, seed=seed)
    rows = rows[:, 0].astype(np.int64)
    if rows.shape[0] == X.shape[0] and np.array_equal(rows, np.arange(X.shape[0])):
        return X, Y, info
    return np.asarray(X[rows]), Y, info


def resnet_group_model(net: GroupHeadsNet, m: HmtConfig, *, image_size: int, optimizer: optax.GradientTransformation
                       ) -> tuple[Model, optax.GradientTransformation]:
    """HMT-Net's group heads on a ResNet trained end to end on uint8 images ``[B, S, S, 3]``, as an engine
    :class:`Model`, and ``optimizer`` restricted to the parameters that are not frozen.

    ``init(key) -> ({"encoder", "heads"}, {"batch_stats"})``, the encoder from ``m.pretrained`` when given.
    ``apply(params, model_state, x, *, train, key)``: in training :func:`hmljax.data.augment` (its own key,
    split from ``key``), the ResNet in training mode (its updated BatchNorm statistics are the returned
    ``model_state``; unchanged with ``norm_eval``), the heads with their group noise; at evaluation
    :func:`hmljax.data.eval_transform` and the ResNet in eval mode. ``x`` may also be float pixel values on the
    [0, 255] scale (the engine's prediction casts rows to float32): the result is the same.

    The frozen parameters (:func:`hmljax.models.resnet_frozen_mask`) get a zero update
    (``optax.set_to_zero``): the stop-gradient alone would still let coupled weight decay and momentum move them.
    """
    depth = ENCODERS[m.encoder]
    enc_args = (depth, float(m.resnet_width), int(m.frozen_stages), bool(m.norm_eval))
    enc = resnet_encoder(depth, width=enc_args[1], frozen_stages=enc_args[2], norm_eval=enc_args[3])
    side = max(1, round(CROP_FRACTION * image_size))

    def init(key):
        params, stats = _random_init(enc_args, net, side, key)
        if m.pretrained:
            variables = load_resnet_npz(m.pretrained, depth=depth, width=m.resnet_width)
            params = {"encoder": jax.tree.map(jnp.asarray, variables["params"]), "heads": params["heads"]}
            stats = jax.tree.map(jnp.asarray, variables["batch_stats"])
        return params, {"batch_stats": stats}

    def apply(params, model_state, x, *, train, key=None):
        if train:
            k_aug, k_noise = jax.random.split(key)
            with jax.named_scope("augment"):
                images = augment(k_aug, x, out_size=side)
        else:
            images = eval_transform(x, out_size=side)
        feats, stats = enc.apply(params["encoder"], model_state["batch_stats"], images, train=train)
        logits = net.apply({"params": params["heads"]}, feats, train=train,
                           rngs={"dropout": k_noise} if train else None)
        return ModelOutput(logits[None], {}, {"batch_stats": stats})

    if m.frozen_stages >= 0:
        def labels(params):
            frozen = resnet_frozen_mask(params["encoder"], frozen_stages=m.frozen_stages)
            return {"encoder": jax.tree.map(lambda f: "frozen" if f else "train", frozen),
                    "heads": jax.tree.map(lambda _: "train", params["heads"])}

        optimizer = optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)
    return Model(init, apply), optimizer


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _random_init(enc_args: tuple, net: GroupHeadsNet, side: int, key: jax.Array):
    """``({"encoder", "heads"}, batch_stats)`` freshly initialised, compiled once per network (eagerly, each
    random draw would compile on its own: seconds on a CPU)."""
    depth, width, frozen_stages, norm_eval = enc_args
    enc = resnet_encoder(depth, width=width, frozen_stages=frozen_stages, norm_eval=norm_eval)
    k_enc, k_heads = jax.random.split(key)
    enc_params, stats = enc.init(k_enc, jnp.zeros((1, side, side, 3), jnp.float32))
    heads = net.init({"params": k_heads}, jnp.zeros((1, enc.num_features), jnp.float32), train=False)["params"]
    return {"encoder": enc_params, "heads": heads}, stats


def _identity(h):
    # make_rare_loss reads the constraint only for focal_probs=constrained; flat data: the identity.
    from hmljax.hierarchy import Hierarchy

    return hierarchy_constraint(Hierarchy.flat(h.names), "sparse")
