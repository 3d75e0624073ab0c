"""Image datasets as run datasets: ``dataset=tfds:voc/2007`` (``voc/2012``, ``coco/2017``) for the engine.

:func:`load_image_dataset` reads the train and test splits through :func:`hmljax.data.load_tfds_images` (decoded
and resized once into uint8 memmaps, ``S = IMAGE_SIZE`` = 256 on a side) and returns a :class:`Dataset` whose
``X[split]`` are the images ``[N, S, S, 3]`` uint8 (not features: no preprocessing), ``Y[split]`` the multi-hot
labels ``[N, C]`` uint8, with a flat hierarchy of the class names. A method that takes images (``method=hmt
encoder=resnet50``) augments them on the device (:func:`hmljax.data.augment`).

Names: ``tfds:<name>`` or ``tfds:<name>:<train splits>`` with ``+`` between tfds splits, e.g.
``tfds:voc/2012:train+validation`` (VOC2012 trainval, the pool DB builds VOC-LT from). The splits:

==============  ===================  =================================================================
name            train (default)      test
==============  ===================  =================================================================
``voc/2007``    ``train``            VOC2007 ``test`` (4,952 images)
``voc/2012``    ``train``            VOC2007 ``test`` (VOC2012's test labels are not public; DB's protocol)
``coco/2017``   ``train``            COCO-2017 ``validation`` (5,000 images; the test labels are not public)
==============  ===================  =================================================================

The tensorflow-datasets folder is the run's ``data_dir`` (``--data-dir``), else ``$TFDS_DATA_DIR``, else
``~/tensorflow_datasets``; nothing is downloaded (see :func:`hmljax.data.load_tfds_images`).
"""

from __future__ import annotations

import os

import numpy as np

from hmljax.data._errors import DataError
from hmljax.data._images import IMAGE_DATASETS, load_tfds_images
from hmljax.data._longtail import longtail_subset
from hmljax.data._registry import Dataset, DatasetSpec
from hmljax.hierarchy import Hierarchy

__all__ = ["IMAGE_SIZE", "TFDS_PREFIX", "is_image_dataset", "parse_image_dataset", "image_spec",
           "load_image_dataset"]

IMAGE_SIZE = 256  # the cached side S: DB's 224-pixel crops (methods use round(0.875 S)) leave room to move
TFDS_PREFIX = "tfds:"

# tfds name -> (test dataset, test split): the split every image run is scored on.
_TEST_SPLITS = {"voc/2007": ("voc/2007", "test"), "voc/2012": ("voc/2007", "test"),
                "coco/2017": ("coco/2017", "validation")}


def is_image_dataset(name: str) -> bool:
    """Whether a run's ``dataset`` names an image dataset (``tfds:...``)."""
    return isinstance(name, str) and name.startswith(TFDS_PREFIX)


def parse_image_dataset(name: str) -> tuple[str, tuple[str, ...]]:
    """``tfds:voc/2012:train+validation`` -> ``("voc/2012", ("train", "validation"))`` (default ``("train",)``).

    Raises:
        DataError: not a ``tfds:`` name, an unknown tfds dataset, or a train split that is the test split.
    """
    if not is_image_dataset(name):
        raise DataError(f"{name!r} is not an image dataset name (tfds:<name>[:<train splits>])")
    rest = name[len(TFDS_PREFIX):]
    tfds_name, _, splits = rest.partition(":")
    if tfds_name not in _TEST_SPLITS:
        raise DataError(f"unknown image dataset {name!r}; choose tfds:<name> with <name> one of "
                        f"{', '.join(sorted(_TEST_SPLITS))} (optionally :<train splits>, e.g. "
                        "tfds:voc/2012:train+validation)")
    train = tuple(s.strip() for s in splits.split("+")) if splits else ("train",)
    if not all(train):
        raise DataError(f"{name!r}: empty train split name (write e.g. tfds:{tfds_name}:train+validation)")
    test_name, test_split = _TEST_SPLITS[tfds_name]
    if test_name == tfds_name and any(s.split("[")[0] == test_split for s in train):
        raise DataError(f"{name!r}: {test_split!r} is the test split of {tfds_name}; it cannot be trained on")
    return tfds_name, train


def image_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of an image run dataset: a flat label set; the run defaults are DB's VOC recipe's
    80 epochs, batch 32 and weight decay 1e-4, with lr 1e-4, safe under the default ``optimizer=adam``
    (DB's SGD recipe sets ``optimizer=sgd lr=0.02`` and its keys explicitly: README)."""
    tfds_name, _ = parse_image_dataset(name)
    return DatasetSpec(name=name, stem=tfds_name, hierarchy="flat", hidden=256, epochs=80, lr=1e-4, batch_size=32,
                       weight_decay=1e-4, dropout=0.0, fit_on=("train",), num_labels=IMAGE_DATASETS[tfds_name],
                       family="images")


def _gather(parts: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """``np.concatenate(parts)[rows]`` without concatenating the (memmapped) parts first."""
    sizes = np.cumsum([0] + [p.shape[0] for p in parts])
    out = np.empty((rows.size, *parts[0].shape[1:]), parts[0].dtype)
    for i, p in enumerate(parts):
        sel = (rows >= sizes[i]) & (rows < sizes[i + 1])
        if sel.any():
            out[sel] = p[rows[sel] - sizes[i]]
    return out


def load_image_dataset(name: str, *, size: int | None = None, data_dir: str | os.PathLike | None = None,
                       longtail: dict | None = None, cache_root: str | None = None,
                       progress: bool = True) -> Dataset:
    """An image dataset (``tfds:voc/2007`` ...) as a :class:`Dataset` of uint8 images, for the engine.

    Args:
        name: ``tfds:<name>[:<train splits>]`` (see the module docstring for the splits).
        size: the cached side S (default :data:`IMAGE_SIZE`, 256).
        data_dir: the tensorflow-datasets folder (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        longtail: keywords of :func:`hmljax.data.longtail_subset` (``max_count``, ``min_count``, ``alpha``,
            ``seed``): the train split is cut to that long-tailed subset (DB's VOC-LT: ``tfds:voc/2012:train+
            validation`` with ``max_count=800, min_count=1``); the test split is kept whole.
        cache_root: the image caches' folder (default :func:`hmljax.data.cache_dir`).
        progress: show a progress bar while decoding (first load only).

    Returns:
        A :class:`Dataset` with ``train`` and ``test`` splits: ``X`` uint8 ``[N, S, S, 3]`` (read-only
        memmaps, or in memory where rows were selected or splits joined), ``Y`` uint8 ``[N, C]``.

    Raises:
        DataError: an unknown name, missing tensorflow-datasets or prepared data, or splits whose classes differ.
    """
    tfds_name, train_splits = parse_image_dataset(name)
    size = IMAGE_SIZE if size is None else int(size)
    kw = dict(size=size, data_dir=data_dir, cache_root=cache_root, progress=progress)
    trains = [load_tfds_images(tfds_name, s, **kw) for s in train_splits]
    test_name, test_split = _TEST_SPLITS[tfds_name]
    test = load_tfds_images(test_name, test_split, **kw)
    names = trains[0].class_names
    for part in (*trains[1:], test):
        if part.class_names != names:
            raise DataError(f"{name}: {part.name} {part.split!r} has the classes {list(part.class_names)}, "
                            f"{tfds_name} {train_splits[0]!r} has {list(names)}")
    Y_train = np.concatenate([np.asarray(t.labels) for t in trains])
    rows = None
    if longtail:
        rows = longtail_subset(Y_train, **longtail)
        if rows.size == 0:
            raise DataError(f"{name}: the long-tailed subset ({longtail}) selected no image")
    if rows is None and len(trains) == 1:
        X_train = trains[0].images
    else:
        X_train = _gather([t.images for t in trains], np.arange(Y_train.shape[0]) if rows is None else rows)
        Y_train = Y_train if rows is None else Y_train[rows]
    h = Hierarchy.flat(names)
    meta = {"hierarchy": h.to_json(), "images": {
        "tfds_name": tfds_name, "size": size,
        "train": [{"dataset": t.name, "split": t.split, "rows": int(t.labels.shape[0]), "cache": t.path}
                  for t in trains],
        "test": {"dataset": test.name, "split": test.split, "rows": int(test.labels.shape[0]), "cache": test.path}},
        "view": {"longtail": longtail, "rows": {"train": int(Y_train.shape[0]), "test": int(test.labels.shape[0])}}}
    return Dataset(image_spec(name), h, {"train": X_train, "test": test.images},
                   {"train": Y_train, "test": np.asarray(test.labels)}, meta, trains[0].path)
