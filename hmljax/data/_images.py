"""Image datasets for users who have the images: tensorflow-datasets' VOC and COCO as multi-hot
classification, cached once as uint8 memmaps; DB's augmentation recipe; frozen-encoder feature caches.

- :func:`load_tfds_images` reads ``voc/2007``, ``voc/2012`` or ``coco/2017`` from a prepared
  tensorflow-datasets folder (array_record format, random access, no TensorFlow), decodes and resizes
  every image once, and caches ``images [N, S, S, 3]`` uint8 and ``labels [N, C]`` uint8.
- :func:`augment` (training) and :func:`eval_transform` (evaluation) are jittable JAX functions of a
  uint8 batch, run on the device.
- :func:`cache_features` runs a frozen encoder over the cached images once and memmaps its features.

The module stays importable without jax (the data package's rule); the three JAX functions import it
when called.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from hmljax.data._cache import (
    _file_sha256,
    _key,
    _read_verified,
    _remove_stale_temporaries,
    atomic_write_text,
    cache_dir,
    publish_cache_folder,
    temp_dir,
    temp_file,
)
from hmljax.data._errors import DataError

__all__ = ["IMAGE_DATASETS", "RESIZE_MODES", "ImageSet", "load_tfds_images", "augment", "eval_transform",
           "cache_features", "tfds_data_dir", "tfds_prepared_folder"]

IMAGE_DATASETS = {"voc/2007": 20, "voc/2012": 20, "coco/2017": 80}  # tfds name -> number of classes C
RESIZE_MODES = ("squash", "center_crop")


class ImageSet(NamedTuple):
    """One split of an image dataset, as read-only memmaps.

    Attributes:
        images: uint8 ``[N, S, S, 3]``, RGB.
        labels: uint8 ``[N, C]`` multi-hot; all-zero rows are images without any labelled object (kept).
        class_names: the C class names, in label order (tfds' ``objects/label`` names).
        name: the tfds name, e.g. ``voc/2007``.
        split: e.g. ``train``.
        meta: the cache's metadata (source, options, ``empty_rows``, checksums).
        path: the cache folder.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    split: str
    meta: dict
    path: str


def tfds_data_dir(data_dir: str | os.PathLike | None) -> str:
    """``data_dir``, else ``$TFDS_DATA_DIR``, else tensorflow-datasets' default ``~/tensorflow_datasets``."""
    return os.fspath(data_dir or os.environ.get("TFDS_DATA_DIR")
                     or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def tfds_prepared_folder(data_dir: str, name: str) -> str | None:
    """``data_dir/<name>/<version>`` holding ``dataset_info.json`` (the highest version), or None."""
    root = os.path.join(data_dir, *name.split("/"))
    try:
        versions = [v for v in os.listdir(root) if re.fullmatch(r"\d+\.\d+\.\d+", v)
                    and os.path.isfile(os.path.join(root, v, "dataset_info.json"))]
    except OSError:
        return None
    if not versions:
        return None
    return os.path.join(root, max(versions, key=lambda v: tuple(int(p) for p in v.split("."))))


def _open_split(name: str, split: str, data_dir: str):
    """(random-access data source, DatasetInfo, identity of the source) for one split, never downloading.

    A prepared folder is opened from its files alone (``builder_from_directory``): the datasets' builder code is
    never run, so nothing imports TensorFlow (COCO's builder code does). Without one, ``tfds.data_source`` is
    asked (with ``download=False``), which is also what ``tfds.testing.mock_data`` patches.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"{name}: loading image datasets needs tensorflow-datasets (pip install 'hmljax[data]'; "
                        "TensorFlow itself is not needed)") from None
    prepare = (f"prepare it once with tensorflow-datasets in the array_record format, e.g. `tfds build {name} "
               f"--data_dir {data_dir} --file_format=array_record` (preparing needs TensorFlow, in any environment; "
               "reading does not); hmljax never downloads")
    folder = tfds_prepared_folder(data_dir, name)
    if folder is None:
        try:
            source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as err:  # tfds raises assorted types for "not prepared" (NotImplementedError, ValueError, ...)
            raise DataError(f"{name} split {split!r}: no prepared copy under {data_dir!r} (no {name}/<version>/"
                            f"dataset_info.json there): {prepare} [tensorflow-datasets said: "
                            f"{type(err).__name__}: {str(err)[:300]}]") from None
        info = source.dataset_info
        return source, info, {"folder": None, "full_name": info.full_name, "data_dir": str(info.data_dir)}
    try:
        builder = tfds.builder_from_directory(folder)
    except Exception as err:
        raise DataError(f"{name}: the prepared folder {folder!r} is unreadable ({type(err).__name__}: {err})") from None
    info = builder.info
    fmt = getattr(info.file_format, "value", info.file_format)
    if fmt != "array_record":
        raise DataError(f"{name} split {split!r}: {folder!r} is in the {fmt} format, which needs TensorFlow to read; "
                        f"hmljax reads array_record only: {prepare} (or convert it with `tfds convert_format`)")
    base = re.split(r"[\[+]", split)[0]
    if base not in info.splits:
        raise DataError(f"{name}: no split {split!r} in {folder!r}; it has {sorted(info.splits)}")
    try:
        source = builder.as_data_source(split=split)
    except Exception as err:
        raise DataError(f"{name} split {split!r}: cannot open the array_record files in {folder!r} "
                        f"({type(err).__name__}: {err})") from None
    with open(os.path.join(folder, "dataset_info.json"), "rb") as fh:
        info_sha = hashlib.sha256(fh.read()).hexdigest()
    return source, info, {"folder": folder, "full_name": info.full_name, "dataset_info_sha256": info_sha}


def _resized(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """An RGB uint8 image resized to ``[size, size, 3]`` with PIL's antialiased bilinear filter."""
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise DataError(f"expected an [H, W, 3] image, got shape {a.shape}")
    a = np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3]
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8))
    if mode == "squash":
        return np.asarray(im.resize((size, size), Image.BILINEAR))
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.resize((nw, nh), Image.BILINEAR).crop((left, top, left + size, top + size)))


def load_tfds_images(name: str, split: str, *, size: int = 256, resize: str = "squash",
                     data_dir: str | os.PathLike | None = None, cache_root: str | None = None,
                     progress: bool = True) -> ImageSet:
    """One split of ``voc/2007``, ``voc/2012`` or ``coco/2017`` as multi-hot classification, cached as memmaps.

    Every image is decoded and resized once, then written with its labels into a cache folder under
    ``cache_root`` (default ``$HMLJAX_CACHE``), atomically; later calls read it back, checked against the
    SHA-256 and shapes written with it.

    Labels: ``labels[i, c] = 1`` iff image i has at least one object of class c (``objects/label``). For VOC
    this counts objects marked "difficult" too (DB's convention, REFERENCE.md §4.3). Images with no labelled
    object keep an all-zero row (``meta["empty_rows"]`` counts them); a split whose annotations are not public
    (e.g. ``coco/2017`` test) comes out all zeros, with a warning.

    Args:
        name: ``voc/2007``, ``voc/2012`` or ``coco/2017``.
        split: a tfds split (``train``, ``validation``, ``test``; slices such as ``train[:10%]`` work).
        size: S, the cached side length. DB resizes its random crops to 224; caching at 256 leaves room for
            :func:`augment`'s crops.
        resize: ``squash`` resizes the whole image to S x S, ignoring the aspect ratio, as DB does
            (``keep_ratio=False``); ``center_crop`` resizes the short side to S and keeps the central square.
        data_dir: the tensorflow-datasets folder (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)
            holding ``<name>/<version>/`` prepared in the array_record format. Nothing is downloaded.
        cache_root: where the cache goes (default :func:`hmljax.data.cache_dir`).
        progress: show a progress bar while decoding.

    Returns:
        An :class:`ImageSet`.

    Raises:
        DataError: naming the dataset and split, when tensorflow-datasets or the prepared data are missing.
    """
    if name not in IMAGE_DATASETS:
        raise DataError(f"unknown image dataset {name!r}; choose one of {sorted(IMAGE_DATASETS)}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if int(size) < 1:
        raise ValueError(f"size must be positive, got {size}")
    size, root = int(size), cache_root or cache_dir()
    source, info, identity = _open_split(name, split, tfds_data_dir(data_dir))
    n, num_classes = len(source), IMAGE_DATASETS[name]
    class_names = tuple(info.features["objects"]["label"].names)
    if len(class_names) != num_classes:
        raise DataError(f"{name}: expected {num_classes} classes, the dataset has {len(class_names)}")
    options = {"dataset": name, "split": split, "size": size, "resize": resize}
    source_hash = hashlib.sha256(json.dumps(dict(identity, rows=n), sort_keys=True).encode()).hexdigest()
    final = os.path.join(root, _key(f"tfds-{name.replace('/', '-')}-{re.sub(r'[^A-Za-z0-9]+', '_', split)}",
                                    source_hash, options))
    if not os.path.exists(os.path.join(final, "meta.json")):
        _build_image_cache(final, root, source, n, num_classes, size, resize, progress,
                           dict(source=identity, name=name, split=split, class_names=list(class_names)), options,
                           source_hash)
    arrays, meta, path = _read_verified(final)
    if arrays["images"].shape != (n, size, size, 3) or arrays["labels"].shape != (n, num_classes):
        raise DataError(f"{path}: holds images {arrays['images'].shape} and labels {arrays['labels'].shape}, "
                        f"expected ({n}, {size}, {size}, 3) and ({n}, {num_classes}): delete it to rebuild")
    if n and meta.get("empty_rows") == n:
        warnings.warn(f"{name} split {split!r}: no image has a label (this split's annotations are not public?)",
                      stacklevel=2)
    return ImageSet(arrays["images"], arrays["labels"], tuple(meta["class_names"]), name, split, meta, path)


def _build_image_cache(final, root, source, n, num_classes, size, resize, progress, meta, options, source_hash):
    """Decodes every image into ``images.npy`` (written in place as a memmap) in a temporary folder, then
    renames the folder into place: an interrupted build leaves only a ``.tmp-*`` folder."""
    from tqdm.auto import tqdm

    try:
        import PIL  # noqa: F401
    except ImportError:
        raise DataError(f"{meta['name']}: resizing images needs Pillow (pip install pillow)") from None

    try:
        os.makedirs(root, exist_ok=True)
        _remove_stale_temporaries(root)
        tmp = temp_dir(root, prefix=f".tmp-{os.path.basename(final)}-")
    except OSError as err:
        raise DataError(f"cannot write to the cache folder {root!r}: {err.strerror} (set HMLJAX_CACHE to a "
                        "writable folder)") from None
    try:
        images = np.lib.format.open_memmap(os.path.join(tmp, "images.npy"), mode="w+", dtype=np.uint8,
                                           shape=(n, size, size, 3))
        labels = np.zeros((n, num_classes), np.uint8)
        for i in tqdm(range(n), desc=f"{meta['name']} {meta['split']}: decoding", unit="img", disable=not progress):
            example = source[i]
            images[i] = _resized(example["image"], size, resize)
            cls = np.asarray(example["objects"]["label"], np.int64).reshape(-1)
            if cls.size and (cls.min() < 0 or cls.max() >= num_classes):
                raise DataError(f"{meta['name']} split {meta['split']!r}: example {i} has a label outside "
                                f"0..{num_classes - 1}: {cls.tolist()}")
            labels[i, cls] = 1
        images.flush()
        del images
        np.save(os.path.join(tmp, "labels.npy"), labels)
        sums = {k: _file_sha256(os.path.join(tmp, f"{k}.npy")) for k in ("images", "labels")}
        meta = dict(meta, arrays=["images", "labels"], options=options, source_hash=source_hash, sha256=sums,
                    shapes={"images": [n, size, size, 3], "labels": [n, num_classes]},
                    empty_rows=int(np.sum(labels.sum(axis=1) == 0)))
        publish_cache_folder(tmp, final, meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- DB's augmentation, on the device ---------------------------------------------------------------------------

_FLT_EPSILON = 1.1920929e-07  # OpenCV's FLT_EPSILON in its float HSV conversions
# OpenCV's HSV -> RGB: per hue sector, which of (v, p, q, t) gives (b, g, r).
_SECTORS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))


def _rgb_to_hsv(x_HxWx3):
    """OpenCV's float RGB -> HSV: H in degrees [0, 360), S = (max - min) / |max|, V = max (any scale)."""
    import jax.numpy as jnp

    r, g, b = x_HxWx3[..., 0], x_HxWx3[..., 1], x_HxWx3[..., 2]
    v = jnp.maximum(jnp.maximum(r, g), b)
    diff = v - jnp.minimum(jnp.minimum(r, g), b)
    s = diff / (jnp.abs(v) + _FLT_EPSILON)
    d = 60.0 / (diff + _FLT_EPSILON)
    h = jnp.where(v == r, (g - b) * d, jnp.where(v == g, (b - r) * d + 120.0, (r - g) * d + 240.0))
    h = jnp.where(h < 0, h + 360.0, h)
    return jnp.stack([h, s, v], axis=-1)


def _hsv_to_rgb(hsv_HxWx3):
    """OpenCV's float HSV -> RGB (the inverse of :func:`_rgb_to_hsv` for values in range)."""
    import jax.numpy as jnp

    h, s, v = hsv_HxWx3[..., 0], hsv_HxWx3[..., 1], hsv_HxWx3[..., 2]
    h6 = jnp.mod(h * (6.0 / 360.0), 6.0)
    sector = jnp.floor(h6)
    f = h6 - sector
    bad = (sector < 0) | (sector >= 6)
    sector, f = jnp.where(bad, 0, sector).astype(jnp.int32), jnp.where(bad, 0.0, f)
    tab_HxWx4 = jnp.stack([v, v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))], axis=-1)
    idx_HxWx3 = jnp.asarray(_SECTORS, jnp.int32)[sector][..., ::-1]  # (b, g, r) -> (r, g, b)
    return jnp.take_along_axis(tab_HxWx4, idx_HxWx3, axis=-1)


def _photometric_one(u, x_HxWx3, *, brightness_delta, contrast_range, saturation_range, hue_delta, prob,
                     swap_prob):
    """mmdet's PhotoMetricDistortion (as DB ships it) on one float image on the [0, 255] scale, not clipped.

    ``u`` holds 13 uniforms in [0, 1): the coins and the amounts.
    """
    import jax.numpy as jnp

    between = lambda v, lo, hi: lo + (hi - lo) * v  # noqa: E731
    x = jnp.where(u[0] < prob, x_HxWx3 + between(u[1], -brightness_delta, brightness_delta), x_HxWx3)
    contrast_first, do_contrast = u[2] < 0.5, u[3] < prob
    alpha = between(u[4], *contrast_range)
    x = jnp.where(contrast_first & do_contrast, x * alpha, x)
    hsv = _rgb_to_hsv(x)
    sat = jnp.where(u[5] < prob, between(u[6], *saturation_range), 1.0)
    h = hsv[..., 0] + jnp.where(u[7] < prob, between(u[8], -hue_delta, hue_delta), 0.0)
    h = jnp.where(h > 360.0, h - 360.0, jnp.where(h < 0.0, h + 360.0, h))
    x = _hsv_to_rgb(jnp.stack([h, hsv[..., 1] * sat, hsv[..., 2]], axis=-1))
    x = jnp.where(~contrast_first & do_contrast, x * alpha, x)
    perm = jnp.argsort(u[10:13])  # a uniformly random permutation of the 3 channels
    return jnp.where(u[9] < swap_prob, x[..., perm], x)


def _augment_one(key, image_HxWx3, *, out_size, min_scale, flip_prob, photometric):
    import jax
    import jax.numpy as jnp

    # One random draw per image: on a CPU each separate threefry call costs about a second of compile time.
    u = jax.random.uniform(key, (18,))
    height, width = image_HxWx3.shape[0], image_HxWx3.shape[1]
    crop_h = (min_scale + (1.0 - min_scale) * u[0]) * height
    crop_w = (min_scale + (1.0 - min_scale) * u[1]) * width
    top, left = u[2] * (height - crop_h), u[3] * (width - crop_w)
    scale = jnp.stack([out_size / crop_h, out_size / crop_w])
    x = jax.image.scale_and_translate(image_HxWx3.astype(jnp.float32), (out_size, out_size, 3), (0, 1), scale,
                                      -jnp.stack([top, left]) * scale, method="linear", antialias=True)
    x = jnp.where(u[4] < flip_prob, x[:, ::-1], x)
    if photometric is not None:
        x = _photometric_one(u[5:], x, **photometric)
    return x / 255.0


def augment(key, images, *, out_size: int = 224, min_scale: float = 0.8, flip_prob: float = 0.5,
            brightness_delta: float = 32.0, contrast_range: tuple[float, float] = (0.5, 1.5),
            saturation_range: tuple[float, float] = (0.5, 1.5), hue_delta: float = 18.0,
            photometric_prob: float = 0.5, channel_swap_prob: float = 0.5, photometric: bool = True):
    """DB's training augmentation (Wu et al., ECCV 2020; HMT-Net's recipe), per image, from one key.

    For each image: a random crop whose height and width are each uniform in [``min_scale``, 1] of the
    image's, resized (bilinear) to ``out_size``; a horizontal flip with probability ``flip_prob``; then mmdet's
    PhotoMetricDistortion as DB ships it, each step with probability ``photometric_prob``: brightness
    ``+ U(-32, 32)``; contrast ``* U(0.5, 1.5)`` (before or after the colour steps, at random); saturation
    ``* U(0.5, 1.5)`` and hue ``+ U(-18, 18)`` degrees in OpenCV's float HSV; finally a random permutation of
    the colour channels with probability ``channel_swap_prob`` (part of DB's PhotoMetricDistortion; pass 0
    to skip it). As in DB, nothing is clipped: the output can leave [0, 1].

    Differences from DB, which works on the full-resolution image: the crop and resize come first (the
    photometric steps are per pixel, so this changes them only through interpolation), and the crop is
    continuous rather than snapped to whole pixels.

    Args:
        key: a PRNG key; image i uses ``jax.random.split(key, B)[i]``, so the result is deterministic.
        images: uint8 ``[B, H, W, 3]`` (e.g. a batch of :class:`ImageSet` ``images``).
        out_size: the output side (224 in DB).
        photometric: False skips the photometric distortion (crop and flip only).

    Returns:
        float32 ``[B, out_size, out_size, 3]`` on the [0, 1] scale (pixel value / 255), RGB: what
        :class:`hmljax.models.ResNet` takes (it normalises inside).
    """
    import jax

    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"augment expects images [B, H, W, 3], got shape {images.shape}")
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    photo = dict(brightness_delta=float(brightness_delta), contrast_range=tuple(map(float, contrast_range)),
                 saturation_range=tuple(map(float, saturation_range)), hue_delta=float(hue_delta),
                 prob=float(photometric_prob), swap_prob=float(channel_swap_prob)) if photometric else None
    one = lambda k, im: _augment_one(k, im, out_size=int(out_size), min_scale=float(min_scale),  # noqa: E731
                                     flip_prob=float(flip_prob), photometric=photo)
    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)


def eval_transform(images, *, out_size: int = 224):
    """The evaluation transform: the whole image resized (bilinear, antialiased) to ``out_size``, as DB tests.

    Args:
        images: uint8 ``[B, H, W, 3]``.

    Returns:
        float32 ``[B, out_size, out_size, 3]`` on the [0, 1] scale (the identity resize when H = W = out_size).
    """
    import jax
    import jax.numpy as jnp

    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"eval_transform expects images [B, H, W, 3], got shape {images.shape}")
    x = jnp.asarray(images).astype(jnp.float32) / 255.0
    if images.shape[1:3] == (out_size, out_size):
        return x
    return jax.image.resize(x, (images.shape[0], out_size, out_size, 3), method="linear", antialias=True)


# --- frozen-encoder features ------------------------------------------------------------------------------------


def _images_identity(images: np.ndarray) -> dict:
    """A memmap is identified by its file (path, size, mtime; caches are written once); anything else by its bytes."""
    filename = getattr(images, "filename", None)
    ident = {"shape": list(images.shape), "dtype": str(images.dtype), "strides": list(images.strides)}
    if filename and os.path.exists(filename):
        root = images
        while isinstance(root.base, np.ndarray):  # a slice of a memmap: where it starts in the mapped array
            root = root.base
        start = images.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        st = os.stat(filename)
        return dict(ident, file=os.path.abspath(filename), size=st.st_size, mtime_ns=st.st_mtime_ns,
                    offset=int(getattr(root, "offset", 0)) + int(start))
    return dict(ident, sha256=hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest())


def _tree_sha256(tree) -> str:
    import jax

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_features(encoder_apply: Callable[[Any, Any], Any], variables, images: np.ndarray, *, batch_size: int,
                   path: str | os.PathLike, progress: bool = True) -> np.ndarray:
    """A frozen encoder's features for every image, computed once and memmapped at ``path``.

    The encoder is jitted once for the batch shape ``[batch_size, H, W, 3]``; the last batch is padded. The
    ``.npy`` is written to a temporary file and renamed into place, and ``path + ".json"`` records its SHA-256
    with a fingerprint of the inputs (the images' file or bytes, the variables' bytes, the traced computation),
    so a later call with the same inputs reads the file back (checked) and any change recomputes it.

    Args:
        encoder_apply: ``encoder_apply(variables, images [B, H, W, 3] uint8) -> features [B, D]``, jittable,
            e.g. ``lambda v, x: enc.apply(v["params"], v["batch_stats"], eval_transform(x, out_size=224),
            train=False)[0]``.
        variables: the encoder's variables (any pytree of arrays).
        images: uint8 ``[N, H, W, 3]``, e.g. :class:`ImageSet` ``images``.
        batch_size: images per encoder call.
        path: the ``.npy`` file to write.
        progress: show a progress bar while computing.

    Returns:
        A read-only float32 memmap ``[N, D]``.

    Raises:
        DataError: when the file at ``path`` does not match the checksum recorded for the same inputs.
    """
    import jax

    path = os.fspath(path)
    meta_path = path + ".json"
    n = int(images.shape[0])
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sample = jax.ShapeDtypeStruct((batch_size, *images.shape[1:]), images.dtype)
    out_shape = jax.eval_shape(encoder_apply, variables, sample)
    if len(out_shape.shape) != 2 or out_shape.shape[0] != batch_size:
        raise ValueError(f"encoder_apply must return features [B, D]; got shape {out_shape.shape} for B={batch_size}")
    dim = int(out_shape.shape[1])
    fingerprint = {"images": _images_identity(images), "variables": _tree_sha256(variables),
                   "computation": hashlib.sha256(str(jax.make_jaxpr(encoder_apply)(variables, sample)).encode())
                   .hexdigest(), "shape": [n, dim]}
    try:
        with open(meta_path) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        meta = None
    if meta is not None and meta.get("fingerprint") == fingerprint and os.path.exists(path):
        if _file_sha256(path) != meta.get("sha256"):
            raise DataError(f"feature cache {path} is damaged (its checksum differs from the one in {meta_path}): "
                            "delete both and it is recomputed")
        feats = np.load(path, mmap_mode="r")
        if feats.shape != (n, dim) or feats.dtype != np.float32:
            raise DataError(f"feature cache {path} holds {feats.dtype} {feats.shape}, not float32 {(n, dim)}: "
                            "delete it and its .json to recompute")
        return feats

    from tqdm.auto import tqdm

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = temp_file(folder, prefix=".tmp-", suffix=".npy")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        step = jax.jit(encoder_apply)
        for start in tqdm(range(0, n, batch_size), desc="features", unit="batch", disable=not progress):
            chunk = np.asarray(images[start:start + batch_size])
            rows = chunk.shape[0]
            if rows < batch_size:  # pad to the one compiled shape
                chunk = np.concatenate([chunk, np.zeros((batch_size - rows, *chunk.shape[1:]), chunk.dtype)])
            out[start:start + rows] = np.asarray(step(variables, jax.device_put(chunk)), np.float32)[:rows]
        out.flush()
        del out
        digest = _file_sha256(tmp)
        if os.path.exists(meta_path):  # no moment where an old record describes the new file
            os.unlink(meta_path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    atomic_write_text(meta_path, json.dumps({"fingerprint": fingerprint, "sha256": digest, "shape": [n, dim]}))
    return np.load(path, mmap_mode="r")
