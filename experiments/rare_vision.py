"""RARE's vision model (paper §5.4, Appendices A.2, I and J) on any tensorflow-datasets image dataset.

A frozen image encoder (a ResNet or a ViT, torchvision's networks) shared by E MLP heads (3 layers, hidden =
the embedding size, dropout 0.7), trained with RARE's loss (MCLoss with node imbalance weights and a focal
term from the heads' disagreement), with the two ways the paper makes the task harder:

- the **training factor** (§5.4, Appendix I): the encoder's weights are
  ``factor * pretrained + (1 - factor) * random`` (the released code's ``noise = 1 - factor``), leaf by
  leaf; BatchNorm's running statistics are mixed the same way by default (``--bn-stats mix``: the released
  ``mix_enc_weights`` interpolates the whole ``state_dict``, buffers included), or kept from the pretrained
  encoder (``--bn-stats pretrained``);
- the **data ablation** (Appendix J): training on a fraction ``--data-fraction`` of the train split, with
  batch size ``min(d, 128)`` where d is the number of rows kept.

The encoder is frozen, so its features are computed once (eval mode: BatchNorm with running statistics;
Resize(R) + CenterCrop(S) as BenthicNet's transform) and cached (:func:`hmljax.data.cache_features`; a
second run with the same encoder reads them back), and the E heads train on the cached features with the
engine's scan-fused epoch (:func:`hmljax.engine.make_epoch`), Adam with coupled weight decay.

Data: ``--tfds NAME`` is read from a prepared tensorflow-datasets folder (array_record, no TensorFlow, never
downloaded). ``voc/2007``, ``voc/2012`` and ``coco/2017`` go through :func:`hmljax.data.load_tfds_images`
(labels: the classes of the image's objects, ``objects/label``); any other dataset is decoded here, with its
class labels read from ``--label-key`` (a ``ClassLabel`` or a sequence of them: ``labels``, ``label``,
``objects/label``; ``auto`` takes the first one present).

Hierarchy: ``--hierarchy FILE``, one ``parent,child`` pair per line (``#`` comments, blank lines and a
``parent,child`` header are skipped). Names are the dataset's class names plus any internal nodes; the roots
(nodes without a parent) are kept as outputs but not trained on or scored, as C-HMCNN's artificial root, so
give top-level classes a common parent (``root,animal``). Every leaf must be a class of the dataset, and every
class must be in the file (or pass ``--unlisted drop``). An image's labels are its classes and all their
ancestors. A bad line, an unknown leaf or a cycle stops the run with the file and line.

Usage (BenthicNet-E, once it is packaged as a tfds dataset with an ``image`` and a multi-label ``labels``
feature and prepared with ``--file_format=array_record``; ImageNet ResNet-50 weights converted once with
``python -m hmljax.models.convert_torchvision resnet50-11ad3fa6.pth resnet50.npz --arch resnet50``, torchvision's
``DEFAULT`` ResNet-50 weights, which the released code loads)::

    python experiments/rare_vision.py --tfds benthicnet_e --tfds-data-dir ~/tensorflow_datasets \\
        --hierarchy echinoderms_edges.csv --pretrained resnet50.npz --norm benthicnet \\
        --training-factor 0.5 --ensemble 20 --focal gmu --weights code --w0 0.25 \\
        --out runs/rare_vision/benthicnet_e-f0.5-gmu
    # baseline: --focal none --weights none; Appendix J: --training-factor 1 --data-fraction 0.01 ... 0.3
    # the released script's default backbone, ViT-B/16 (torchvision's vit_b_16-c867db91.pth converted with
    # --arch vit_b_16): --backbone vit_b_16 --pretrained vit_b_16.npz

Writes ``OUT/config.json`` (the command line and every setting) and ``OUT/results.json`` (test metrics of
:func:`hmljax.metrics.hierarchical_suite`: micro AUPRC, node-wise F1 / precision / recall, ...; the subset;
the loss per epoch; timings).

Defaults are the paper's echinoderm settings (Appendix A.2, the released ``echinoderms_run_focal_model.py``):
ResNet-50 (the paper's; the released script's default is ViT-B/16: ``--backbone vit_b_16``), Adam lr 1e-3,
weight decay 1e-4, 20 epochs, batch 128, 20 heads (the paper's text says 10 for its gene-data ensembles), GMU
with u0 = 0.25 and k = 1, ``weights=code`` (the released code's weights: super-counts,
``w0 + w_max (w - w_min)/(w_max - w_min)``, put on the negatives) with w0 = 0.25, and the loss summed over
heads x batch x nodes, as that code does.

Differences from the paper and its code (deliberate, or not done):

- ``--backbone`` takes torchvision's ResNets and ViTs (:func:`hmljax.models.image_encoder`); the ViT's
  embedding is its class token after the final LayerNorm (torchvision's ``heads`` dropped), its image size
  fixed by the position embeddings (224 for ImageNet weights). A ViT has no BatchNorm: ``--bn-stats`` does
  not apply to it.
- Features are computed in eval mode. The released code puts the frozen encoder in ``train()`` mode, so its
  BatchNorm normalises each training batch with that batch's statistics (and updates the running ones);
  caching features needs a deterministic encoder.
- Appendix J trains the encoder too ("all weights trainable"): ``--train-encoder`` does (encoder and heads
  end to end on the images, one Adam over all weights, the encoder's BatchNorm in training mode in training
  and in eval mode at test; no feature cache); without it the encoder stays frozen at every fraction.
- ``--data-fraction`` keeps a seeded subset (see :func:`subset_rows`), not a plain random one, unless
  ``--subset random``; the node weights are counted on the rows kept.
- ``--norm`` defaults to ImageNet's statistics (those of the weights); the released script normalises with
  BenthicNet's (``--norm benthicnet``).

As the released code, test predictions are the mean over heads of the constrained sigmoids, thresholded at
``> 0.5``, and the roots are left out of the loss and the metrics.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import os
import platform
import re
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.data import (
    IMAGE_DATASETS,
    DataError,
    EpochSampler,
    atomic_write_text,
    cache_dir,
    cache_features,
    eval_transform,
    load_tfds_images,
    tfds_data_dir,
    tfds_prepared_folder,
)
from hmljax.engine import Method, Model, init_train_state, jit_train, make_epoch, make_optimizer, make_predict_fn
from hmljax.hierarchy import Hierarchy, HierarchyError
from hmljax.losses import WEIGHT_PRESETS, constrained_probs, imbalance_weights, node_counts
from hmljax.methods import RareLoss, chmcnn_model, hierarchy_constraint, make_rare_loss
from hmljax.metrics import hierarchical_suite
from hmljax.models import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, ChmcnnMLP, image_encoder, load_encoder_npz

BENTHICNET_MEAN = (0.359, 0.413, 0.386)  # the released echinoderm script's normalisation
BENTHICNET_STD = (0.219, 0.215, 0.209)
NORMS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "benthicnet": (BENTHICNET_MEAN, BENTHICNET_STD)}
LABEL_KEYS = ("labels", "label", "objects/label")  # what --label-key auto tries, in order
FOCAL_MODES = ("none", "bbma", "gmu", "kl", "js")


class EdgeListError(ValueError):
    """A hierarchy file that cannot be used; the message names the file and, where there is one, the line."""


# --- the hierarchy -------------------------------------------------------------------------------------------


def read_edge_list(path: str) -> list[tuple[str, str, int]]:
    """``(parent, child, line)`` for each pair in the file, in file order; repeats are dropped.

    Raises:
        EdgeListError: ``FILE:LINE: ...`` for a line that is not ``parent,child`` or an edge that closes a cycle.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as err:
        raise EdgeListError(f"{path}: cannot read the hierarchy file ({err.strerror})") from None
    children: dict[str, list[str]] = collections.defaultdict(list)
    edges, seen, first = [], set(), True
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([line]))]
        if first and [f.lower() for f in fields] == ["parent", "child"]:
            first = False
            continue
        first = False
        if len(fields) != 2 or not all(fields):
            raise EdgeListError(f"{path}:{lineno}: expected 'parent,child' (two non-empty names), got {raw!r}")
        parent, child = fields
        if parent == child:
            raise EdgeListError(f"{path}:{lineno}: cycle: {parent!r} is its own parent")
        if (parent, child) in seen:
            continue
        loop = _path_down(children, child, parent)
        if loop is not None:
            raise EdgeListError(f"{path}:{lineno}: the edge {parent!r} -> {child!r} closes a cycle: "
                                + " -> ".join(map(repr, [parent, *loop])))
        seen.add((parent, child))
        children[parent].append(child)
        edges.append((parent, child, lineno))
    if not edges:
        raise EdgeListError(f"{path}: no 'parent,child' lines")
    return edges


def _path_down(children, start: str, goal: str) -> list[str] | None:
    """The names on a path from ``start`` down to ``goal`` (both included), or None if there is none."""
    came_from, queue = {start: None}, collections.deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            out = []
            while node is not None:
                out.append(node)
                node = came_from[node]
            return out[::-1]
        for c in children.get(node, ()):
            if c not in came_from:
                came_from[c] = node
                queue.append(c)
    return None


def hierarchy_from_edge_list(path: str, class_names, *, unlisted: str = "error") -> tuple[Hierarchy, list[str]]:
    """The hierarchy of ``path`` over a dataset's classes, and the classes left out of it (``unlisted='drop'``).

    Raises:
        EdgeListError: a bad line or a cycle (:func:`read_edge_list`), a leaf that is not one of
            ``class_names`` (with the line it appears on), or classes missing from the file with
            ``unlisted='error'``.
    """
    if unlisted not in ("error", "drop"):
        raise ValueError(f"unlisted must be 'error' or 'drop', got {unlisted!r}")
    edges = read_edge_list(path)
    classes = set(class_names)
    parents = {p for p, _, _ in edges}
    for _, child, lineno in edges:
        if child not in parents and child not in classes:
            close = [c for c in class_names if c.lower() == child.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EdgeListError(f"{path}:{lineno}: {child!r} is a leaf of the hierarchy but not a class of the "
                                f"dataset{hint}; its classes are {sorted(classes)}")
    names = parents | {c for _, c, _ in edges}
    missing = [c for c in class_names if c not in names]
    if missing and unlisted == "error":
        raise EdgeListError(f"{path}: {len(missing)} class(es) of the dataset are not in the hierarchy: {missing}; "
                            "add each under a parent (a line '<parent>,<class>') or pass --unlisted drop")
    try:
        h = Hierarchy.from_edges([(p, c) for p, c, _ in edges], skip=())
    except HierarchyError as err:  # the checks above leave little to find here
        raise EdgeListError(f"{path}: {err}") from None
    return h, missing


def node_labels(labels_NxK: np.ndarray, class_names, hierarchy: Hierarchy) -> np.ndarray:
    """uint8 ``[N, C]``: the dataset's class labels ``[N, K]`` on the hierarchy's nodes, closed under ancestors
    (classes not in the hierarchy are dropped)."""
    direct_NxC = np.zeros((labels_NxK.shape[0], hierarchy.num_nodes), np.float32)
    for k, name in enumerate(class_names):
        j = hierarchy.index.get(name)
        if j is not None:
            direct_NxC[:, j] = np.maximum(direct_NxC[:, j], np.asarray(labels_NxK[:, k], np.float32))
    # Y[:, i] = any class at or below node i: ancestry[i, j] iff j is i or below it.
    return (direct_NxC @ hierarchy.ancestry.T.astype(np.float32) > 0).astype(np.uint8)


# --- the encoder ---------------------------------------------------------------------------------------------


def interpolate_weights(pretrained, random, *, factor: float):
    """``factor * pretrained + (1 - factor) * random`` on every leaf (numpy float32): Appendix I's training factor.

    ``factor = 1`` returns the pretrained values exactly and ``factor = 0`` the random ones (noise = 1 - factor).
    """
    if not 0.0 <= factor <= 1.0:
        raise ValueError(f"the training factor must be in [0, 1], got {factor}")
    a, b = np.float32(factor), np.float32(1.0 - factor)
    if jax.tree.structure(pretrained) != jax.tree.structure(random):
        raise ValueError("pretrained and random weights have different structures")

    def mix(p, r):
        p, r = np.asarray(p, np.float32), np.asarray(r, np.float32)
        if p.shape != r.shape:
            raise ValueError(f"cannot mix weights of shapes {p.shape} and {r.shape}")
        return a * p + b * r

    return jax.tree.map(mix, pretrained, random)


def encoder_variables(enc, *, key, image_size: int, pretrained: dict | None, factor: float, bn_stats: str) -> dict:
    """The encoder's ``{"params", "batch_stats"}`` at this training factor (random init from ``key``)."""
    params, stats = enc.init(key, jnp.zeros((1, image_size, image_size, 3), jnp.uint8))
    random = {"params": jax.tree.map(np.asarray, params), "batch_stats": jax.tree.map(np.asarray, stats)}
    if pretrained is None:
        if factor != 0.0:
            raise ValueError(f"--training-factor {factor} mixes in pretrained weights: pass --pretrained "
                             "FILE.npz (or --training-factor 0 for a random encoder)")
        return random
    out = {"params": interpolate_weights(pretrained["params"], random["params"], factor=factor)}
    if bn_stats == "mix":
        out["batch_stats"] = interpolate_weights(pretrained["batch_stats"], random["batch_stats"], factor=factor)
    else:
        out["batch_stats"] = jax.tree.map(lambda a: np.asarray(a, np.float32), pretrained["batch_stats"])
    return out


# --- data ----------------------------------------------------------------------------------------------------


def subset_rows(labels_NxC: np.ndarray, *, fraction: float, seed: int, evaluated=None, mode: str = "cover"):
    """Sorted row indices of a seeded ``fraction`` of the rows: ``d = max(1, round(fraction * N))`` of them.

    ``random``: the first d rows of ``np.random.default_rng(seed).permutation(N)``. ``cover`` (default):
    first, for each evaluated node with a positive, rarest node first, the first row of that permutation
    positive at the node, unless a row already taken covers it (labels are closed, so a deep node's row
    covers its ancestors too); then the permutation's other rows in order up to d. Every evaluated node
    with a positive keeps one when d allows; when it does not, the rarest nodes are the ones covered. For a
    fixed seed a larger fraction keeps every row of a smaller one, in both modes.
    """
    n = labels_NxC.shape[0]
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the data fraction must be in (0, 1], got {fraction}")
    if mode not in ("cover", "random"):
        raise ValueError(f"subset mode must be 'cover' or 'random', got {mode!r}")
    d = max(1, int(round(fraction * n)))
    if d >= n:
        return np.arange(n)
    perm = np.random.default_rng(seed).permutation(n)
    taken: list[int] = []  # positions in perm
    if mode == "cover":
        cols = np.ones(labels_NxC.shape[1], bool) if evaluated is None else np.asarray(evaluated, bool)
        pos_NxC = np.asarray(labels_NxC)[perm][:, cols].astype(bool)
        counts, covered = pos_NxC.sum(0), np.zeros(pos_NxC.shape[1], bool)
        for node in np.argsort(counts, kind="stable"):
            if len(taken) == d:
                break
            if counts[node] and not covered[node]:
                r = int(np.flatnonzero(pos_NxC[:, node])[0])
                taken.append(r)
                covered |= pos_NxC[r]
    chosen = set(taken)
    rest = [i for i in range(n) if i not in chosen][: d - len(taken)]
    return np.sort(perm[np.asarray(taken + rest, np.int64)])


def _center_square(image, size: int) -> np.ndarray:
    """Short side resized to ``size`` (PIL bilinear), then the central ``size x size`` square: uint8 RGB."""
    from PIL import Image

    a = np.asarray(image)
    a = a[:, :, None] if a.ndim == 2 else a
    a = np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3]
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8))
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.resize((nw, nh), Image.BILINEAR).crop((left, top, left + size, top + size)))


def _class_label_names(features, key: str):
    f = features
    for part in key.split("/"):
        f = f[part]
    names = getattr(f, "names", None)
    if names is None:
        names = getattr(getattr(f, "feature", None), "names", None)
    if names is None:
        raise KeyError(key)
    return tuple(names)


def load_split(name: str, split: str, *, size: int, data_dir: str | None, label_key: str = "auto",
               image_key: str = "image", progress: bool = True) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``images`` uint8 ``[N, size, size, 3]`` (short side resized to ``size``, centre square), multi-hot
    ``labels`` uint8 ``[N, K]`` and the K class names of one tfds split.

    VOC and COCO (with ``label_key`` ``auto`` or ``objects/label``) are read through
    :func:`hmljax.data.load_tfds_images` and cached as memmaps; any other dataset is decoded here into memory.
    """
    data_dir = tfds_data_dir(data_dir)
    if name in IMAGE_DATASETS and label_key in ("auto", "objects/label"):
        s = load_tfds_images(name, split, size=size, resize="center_crop", data_dir=data_dir, progress=progress)
        return s.images, s.labels, s.class_names
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"{name}: reading tfds datasets needs tensorflow-datasets (pip install 'hmljax[data]'; "
                        "TensorFlow itself is not needed)") from None
    folder = tfds_prepared_folder(data_dir, name)
    try:
        if folder is not None:
            builder = tfds.builder_from_directory(folder)
            source, info = builder.as_data_source(split=split), builder.info
        else:
            source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
            info = source.dataset_info
    except Exception as err:  # tfds raises assorted types for "not prepared" or "no such split"
        raise DataError(f"{name} split {split!r}: cannot open it under {data_dir!r} (prepare it once with "
                        f"`tfds build {name} --data_dir {data_dir} --file_format=array_record`; nothing is "
                        f"downloaded here) [tensorflow-datasets said: {type(err).__name__}: {str(err)[:300]}]"
                        ) from None
    keys = LABEL_KEYS if label_key == "auto" else (label_key,)
    for key in keys:
        try:
            class_names = _class_label_names(info.features, key)
            break
        except (KeyError, TypeError):
            continue
    else:
        raise DataError(f"{name}: no class-label feature {' or '.join(map(repr, keys))}; its features are "
                        f"{list(info.features.keys())} (pass --label-key, a ClassLabel or a sequence of them)")
    from tqdm.auto import tqdm

    n, k = len(source), len(class_names)
    images, labels = np.empty((n, size, size, 3), np.uint8), np.zeros((n, k), np.uint8)
    for i in tqdm(range(n), desc=f"{name} {split}: decoding", unit="img", disable=not progress):
        example = source[i]
        images[i] = _center_square(example[image_key], size)
        value = example
        for part in key.split("/"):
            value = value[part]
        cls = np.asarray(value, np.int64).reshape(-1)
        if cls.size and (cls.min() < 0 or cls.max() >= k):
            raise DataError(f"{name} split {split!r}: example {i} has a label outside 0..{k - 1}: {cls.tolist()}")
        labels[i, cls] = 1
    return images, labels, class_names


# --- training ------------------------------------------------------------------------------------------------


def build_method(h: Hierarchy, X: np.ndarray, Y: np.ndarray, args, *, hidden: int, num_features: int,
                 encoder: tuple | None = None) -> Method:
    """E heads with RARE's loss, as an engine :class:`Method`: on cached features ``X [d, F]``, or with
    ``encoder = (enc, variables, crop)`` on images ``X [d, R, R, 3]`` through that encoder, trained with the
    heads (:func:`encoder_heads_model`)."""
    ancestry = hierarchy_constraint(h)
    node_weights, apply_to = None, "positive"
    if args.weights != "none":
        preset = WEIGHT_PRESETS[args.weights]
        n_C = node_counts(Y, h.ancestry, counts=preset["counts"])  # from the rows trained on
        node_weights = imbalance_weights(n_C, num_obs=Y.shape[0], num_classes=h.num_nodes, w0=args.w0,
                                         rescale=preset["rescale"])
        apply_to = preset["apply_to"]
    lc = RareLoss(node_weights=node_weights, apply_to=apply_to, focal=args.focal, u0=args.u0, focal_k=args.focal_k,
                  focal_probs="raw", reduction=args.reduction)
    net = ChmcnnMLP(hidden=hidden, num_outputs=h.num_nodes, num_layers=3, dropout=args.dropout)
    batch = min(X.shape[0], args.batch_size)  # Appendix J: min(d, 128)

    def predict(out):  # the mean over heads of the constrained sigmoids, as the released code
        return jax.vmap(lambda z: constrained_probs(z, ancestry))(out.logits).mean(0)

    model = chmcnn_model(net, num_features, members=args.ensemble)
    if encoder is not None:
        model = encoder_heads_model(*encoder, model)
    return Method(model=model,
                  loss=make_rare_loss(lc, ancestry=ancestry, evaluated=h.evaluated),
                  predict=predict,
                  optimizer=make_optimizer("adam", lr=args.lr, weight_decay=args.weight_decay),
                  sampler=EpochSampler(X.shape[0], batch, seed=args.seed, drop_remainder=False),
                  metrics=hierarchical_suite(h), train_x=X, train_y=Y,
                  info={"node_weights": None if node_weights is None else np.asarray(node_weights).tolist()})


def center_crop(images, size: int):
    """The centre ``size x size`` of uint8 (or [0, 255] float) images ``[B, R, R, 3]`` on the [0, 1] scale:
    CenterCrop(S) after the Resize(R) done when decoding."""
    off = (images.shape[1] - size) // 2
    return eval_transform(images[:, off:off + size, off:off + size], out_size=size)


def encoder_heads_model(enc, variables: dict, crop: int, heads: Model) -> Model:
    """Appendix J's network, all weights trainable: the encoder (``variables``: its weights at the training
    factor) under the E heads, on uint8 images ``[B, R, R, 3]``.

    Both modes take the centre ``crop`` and the eval transform (the released code's Resize + CenterCrop: no
    augmentation); the encoder's BatchNorm normalises with the batch's statistics in training (the updated
    running statistics are the model state) and with the running ones at test.
    """
    def init(key):
        head_params, _ = heads.init(key)
        return ({"encoder": jax.tree.map(jnp.asarray, variables["params"]), "heads": head_params},
                {"batch_stats": jax.tree.map(jnp.asarray, variables["batch_stats"])})

    def apply(params, model_state, x, *, train, key=None):
        feats, stats = enc.apply(params["encoder"], model_state["batch_stats"], center_crop(x, crop), train=train)
        out = heads.apply(params["heads"], {}, feats, train=train, key=key)
        return out._replace(model_state={"batch_stats": stats})

    return Model(init, apply)


def train(method: Method, *, epochs: int, seed: int, progress: bool = True) -> tuple:
    """Trains the heads for ``epochs`` scan-fused epochs; returns ``(state, mean loss per epoch, seconds)``."""
    from tqdm.auto import tqdm

    X, Y = jax.device_put(method.train_x), jax.device_put(method.train_y)
    init_key, loop_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1))
    state = init_train_state(method, init_key)
    epoch_fn = jit_train(make_epoch(method), donate_argnums=(0,))
    history, t0 = [], time.perf_counter()
    bar = tqdm(range(epochs), desc="heads", unit="epoch", disable=not progress)
    for epoch in bar:
        eb = method.sampler.epoch(epoch)
        state, losses = epoch_fn(state, X, Y, jax.device_put(eb.indices), jax.device_put(eb.where), loop_key)
        loss = float(jnp.mean(losses))
        if not np.isfinite(loss):
            raise FloatingPointError(f"the training loss is {loss} at epoch {epoch + 1}: lower --lr?")
        history.append(loss)
        bar.set_postfix(loss=f"{loss:.4f}")
    return state, history, time.perf_counter() - t0


def _features_path(args, split: str, resize: int) -> str:
    key = {"tfds": args.tfds, "data_dir": os.path.abspath(args.tfds_data_dir) if args.tfds_data_dir else None,
           "split": split, "label_key": args.label_key, "image_size": args.image_size, "resize": resize,
           "backbone": args.backbone, "width": args.width, "norm": args.norm, "factor": args.training_factor,
           "bn_stats": args.bn_stats, "pretrained": os.path.abspath(args.pretrained) if args.pretrained else None,
           "seed": args.seed if args.training_factor < 1.0 or not args.pretrained else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9]+", "-", f"{args.tfds}-{split}-{args.backbone}-f{args.training_factor:g}")
    return os.path.join(args.feature_cache or os.path.join(cache_dir(), "rare_vision"), f"{stem}-{digest}.npy")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python experiments/rare_vision.py", description=__doc__.split("\n")[0])
    a = ap.add_argument
    a("--tfds", required=True, help="the tensorflow-datasets name, e.g. voc/2007")
    a("--hierarchy", required=True, help="the edge list: one 'parent,child' per line")
    a("--tfds-data-dir", default=None, help="the tfds folder (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    a("--train-split", default="train")
    a("--test-split", default="test")
    a("--label-key", default="auto", help="the class-label feature (auto: labels, label, then objects/label)")
    a("--image-key", default="image")
    a("--unlisted", choices=("error", "drop"), default="error", help="classes missing from the hierarchy")
    a("--pretrained", default=None, help="encoder weights: an .npz of python -m hmljax.models.convert_torchvision "
      "(hmljax.models.save_encoder_npz) for --backbone")
    a("--backbone", choices=BACKBONES, default="resnet50", help="torchvision's encoder (the paper: resnet50; the "
      "released script's default: vit_b_16)")
    a("--width", type=float, default=1.0, help="a ResNet's channel or a ViT's head-count multiplier (small values "
      "for tests)")
    a("--norm", choices=sorted(NORMS), default="imagenet", help="input normalisation (benthicnet: the echinoderm "
      "script's)")
    a("--image-size", type=int, default=224, help="S, the centre crop the encoder sees")
    a("--resize", type=int, default=None, help="R, the short side before the crop (default round(S * 256 / 224))")
    a("--training-factor", type=float, default=1.0, help="encoder = f * pretrained + (1 - f) * random")
    a("--train-encoder", action="store_true", help="App. J: train the encoder with the heads (no feature cache)")
    a("--bn-stats", choices=("mix", "pretrained"), default="mix",
      help="BatchNorm running statistics: mixed like the weights (the released code) or the pretrained ones")
    a("--data-fraction", type=float, default=1.0, help="share of the train split trained on (App. J: 0.01-0.3)")
    a("--subset", choices=("cover", "random"), default="cover", help="how the fraction is drawn (subset_rows)")
    a("--ensemble", type=int, default=20, help="E heads")
    a("--hidden", type=int, default=None, help="heads' hidden width (default: the embedding size)")
    a("--dropout", type=float, default=0.7)
    a("--focal", choices=FOCAL_MODES, default="gmu")
    a("--u0", type=float, default=0.25)
    a("--focal-k", type=float, default=1.0)
    a("--weights", choices=("none", *WEIGHT_PRESETS), default="code")
    a("--w0", type=float, default=0.25)
    a("--reduction", choices=("sum", "mean"), default="sum", help="sum: heads x batch x nodes, the released code")
    a("--epochs", type=int, default=20)
    a("--batch-size", type=int, default=128, help="the batch is min(d, this)")
    a("--lr", type=float, default=1e-3)
    a("--weight-decay", type=float, default=1e-4)
    a("--seed", type=int, default=0)
    a("--encode-batch", type=int, default=64, help="images per encoder call while caching features")
    a("--feature-cache", default=None, help="folder for cached features (default $HMLJAX_CACHE/rare_vision)")
    a("--out", default=None, help="run folder (default runs/rare_vision/<dataset>-<backbone>-f<factor>-...)")
    a("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.ensemble < 1:
        ap.error("--ensemble must be >= 1")
    if args.epochs < 1 or args.batch_size < 1 or args.encode_batch < 1 or args.image_size < 1:
        ap.error("--epochs, --batch-size, --encode-batch and --image-size must be >= 1")
    if not 0.0 <= args.training_factor <= 1.0:
        ap.error(f"--training-factor must be in [0, 1], got {args.training_factor}")
    if args.training_factor > 0.0 and not args.pretrained:
        ap.error(f"--training-factor {args.training_factor:g} mixes in pretrained weights: pass --pretrained "
                 "FILE.npz (or --training-factor 0 for a random encoder)")
    if not 0.0 < args.data_fraction <= 1.0:
        ap.error(f"--data-fraction must be in (0, 1], got {args.data_fraction}")
    if args.resize is not None and args.resize < args.image_size:
        ap.error(f"--resize ({args.resize}) must be at least --image-size ({args.image_size})")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        return _run(args, argv)
    except (EdgeListError, DataError, HierarchyError) as err:
        print(f"rare_vision: error: {err}", file=sys.stderr)
        return 2


def _run(args, argv) -> int:
    progress = not args.quiet
    size = args.image_size
    resize = args.resize or int(round(size * 256 / 224))
    name = re.sub(r"[^A-Za-z0-9.]+", "-", f"{args.tfds}-{args.backbone}{'-trained' if args.train_encoder else ''}-"
                  f"f{args.training_factor:g}-d{args.data_fraction:g}-{args.focal}-{args.weights}-s{args.seed}")
    out = args.out or os.path.join("runs", "rare_vision", name)
    os.makedirs(out, exist_ok=True)
    command = "python experiments/rare_vision.py " + shlex.join(argv)
    atomic_write_text(os.path.join(out, "config.json"), json.dumps(
        {"command": command, "argv": argv, "args": vars(args), "resize": resize,
         "machine": {"jax": jax.__version__, "backend": jax.default_backend(), "python": platform.python_version(),
                     "host": platform.node()}}, indent=2))

    # Data and hierarchy (the file's lines and cycles are checked before any decoding, its leaves after).
    read_edge_list(args.hierarchy)
    kw = dict(size=resize, data_dir=args.tfds_data_dir, label_key=args.label_key, image_key=args.image_key,
              progress=progress)
    train_images, train_labels, class_names = load_split(args.tfds, args.train_split, **kw)
    h, dropped = hierarchy_from_edge_list(args.hierarchy, class_names, unlisted=args.unlisted)
    test_images, test_labels, test_names = load_split(args.tfds, args.test_split, **kw)
    if test_names != class_names:
        raise DataError(f"{args.tfds}: the {args.test_split!r} split's classes differ from {args.train_split!r}'s")
    Y_all = node_labels(train_labels, class_names, h)
    Y_test = node_labels(test_labels, class_names, h)

    # The encoder at this training factor: frozen, its features cached once per split; or trained (App. J).
    mean, std = NORMS[args.norm]
    enc = image_encoder(args.backbone, image_size=size, width=args.width, mean=mean, std=std)
    pretrained = None
    if args.pretrained:
        try:
            pretrained = load_encoder_npz(args.pretrained, backbone=args.backbone, image_size=size, width=args.width)
        except ValueError as err:  # names the file: unreadable, damaged, or another backbone or width
            raise DataError(str(err)) from None
    enc_key = jax.random.fold_in(jax.random.key(args.seed), 0)
    variables = encoder_variables(enc, key=enc_key, image_size=size, pretrained=pretrained,
                                  factor=args.training_factor, bn_stats=args.bn_stats)
    rows = subset_rows(Y_all, fraction=args.data_fraction, seed=args.seed, evaluated=h.evaluated, mode=args.subset)
    features_s = 0.0
    if args.train_encoder:  # the heads see the encoder's output of each batch; nothing to cache
        X, X_test = np.asarray(train_images[rows]), test_images
    else:
        def encode(v, x):  # Resize(R) was done when decoding; CenterCrop(S) here, eval-mode BatchNorm (ResNets)
            return enc.apply(v["params"], v["batch_stats"], center_crop(x, size), train=False)[0]

        t0 = time.perf_counter()
        feats = {split: cache_features(encode, variables, images, batch_size=args.encode_batch,
                                       path=_features_path(args, split, resize), progress=progress)
                 for split, images in ((args.train_split, train_images), (args.test_split, test_images))}
        features_s = time.perf_counter() - t0
        X, X_test = np.asarray(feats[args.train_split][rows], np.float32), np.asarray(feats[args.test_split],
                                                                                       np.float32)
    Y = Y_all[rows]
    hidden = args.hidden or enc.num_features
    ev = np.asarray(h.evaluated, bool)
    with_pos = int((Y[:, ev].sum(0) > 0).sum())
    print(f"{args.tfds}: train rows {len(rows)} of {len(Y_all)} (fraction {args.data_fraction:g}, {args.subset}), "
          f"test rows {len(Y_test)}; nodes {h.num_nodes} ({int(ev.sum())} evaluated, {with_pos} with a train "
          f"positive){f', classes dropped: {dropped}' if dropped else ''}; features {enc.num_features} "
          f"({args.backbone}, factor {args.training_factor:g}, {'trained' if args.train_encoder else 'frozen'}); "
          f"heads {args.ensemble} x [{enc.num_features}-{hidden}-{hidden}-{h.num_nodes}], batch "
          f"{min(len(rows), args.batch_size)}", flush=True)

    method = build_method(h, X, Y, args, hidden=hidden, num_features=enc.num_features,
                          encoder=(enc, variables, size) if args.train_encoder else None)
    state, history, train_s = train(method, epochs=args.epochs, seed=args.seed, progress=progress)
    probs = make_predict_fn(method, batch_size=args.encode_batch)(state.params, state.model_state, X_test)
    metrics = method.metrics.evaluate(Y_test, probs)
    results = {
        "test": metrics, "command": command, "loss_per_epoch": history,
        "rows": {"train": int(len(rows)), "train_split": int(len(Y_all)), "test": int(len(Y_test))},
        "subset": {"fraction": args.data_fraction, "mode": args.subset, "seed": args.seed,
                   "evaluated_nodes_with_positive": with_pos,
                   "evaluated_nodes_with_positive_in_split": int((Y_all[:, ev].sum(0) > 0).sum())},
        "hierarchy": {"nodes": h.num_nodes, "evaluated": int(ev.sum()), "names": list(h.names),
                      "dropped_classes": dropped},
        "encoder": {"backbone": args.backbone, "trained": bool(args.train_encoder)},
        "features": {"dim": int(enc.num_features), "seconds": features_s, "paths": None if args.train_encoder else {
            s: _features_path(args, s, resize) for s in (args.train_split, args.test_split)}},
        "train_seconds": train_s, "node_weights": method.info["node_weights"],
    }
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(results, indent=2, default=float))
    for label, value in method.metrics.table(metrics):
        print(f"  {label:<28s} {value:.4f}")
    print(f"wrote {os.path.join(out, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
