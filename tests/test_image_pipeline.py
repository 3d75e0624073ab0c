"""The image pipeline end to end on tensorflow-datasets data: VOC 2007 as multi-hot classification into the
memmap cache, DB's augmentation under jit, frozen ResNet-18 features into the feature cache, and a linear
multi-label head trained on them with the engine's SGD.

CI installs tensorflow-datasets without TensorFlow, so passing there shows the pipeline does not need it; where
TensorFlow is absent the tests also check nothing tried to import it. (Blocking the import with
``sys.modules["tensorflow"] = None`` would not do: tensorflow-datasets reads that entry as "TensorFlow loaded".)
"""

import functools
import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hmljax.data import (
    DataError,
    augment,
    cache_features,
    eval_transform,
    load_tfds_images,
)
from hmljax.engine import sgd_warmup_step
from hmljax.models import resnet_encoder

tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed (pip install "
                           "'hmljax[data]'); the image pipeline test needs it, TensorFlow not")

SIZE = 32


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("HMLJAX_CACHE", str(tmp_path / "cache"))


def _tensorflow_installed():
    return importlib.util.find_spec("tensorflow") is not None


def _label_sets(source):
    return [set(np.asarray(source[i]["objects"]["label"]).tolist()) for i in range(len(source))]


def test_voc2007_mock_end_to_end(tmp_path):
    data_dir = str(tmp_path / "tfds")  # empty: without the mock nothing is there
    with tfds.testing.mock_data(num_examples=8):
        train = load_tfds_images("voc/2007", "train", size=SIZE, data_dir=data_dir, progress=False)
        test = load_tfds_images("voc/2007", "test", size=SIZE, data_dir=data_dir, progress=False)
        want = _label_sets(tfds.data_source("voc/2007", split="train", data_dir=data_dir, download=False))
        again = load_tfds_images("voc/2007", "train", size=SIZE, data_dir=data_dir, progress=False)
    assert again.path == train.path  # the second load reads the cache
    assert train.path.startswith(str(tmp_path / "cache"))
    for split in (train, test):
        assert split.images.shape == (8, SIZE, SIZE, 3) and split.images.dtype == np.uint8
        assert split.labels.shape == (8, 20) and split.labels.dtype == np.uint8
        assert set(np.unique(split.labels)) <= {0, 1}
    assert [set(np.flatnonzero(row).tolist()) for row in train.labels] == want
    assert train.class_names[:3] == ("aeroplane", "bicycle", "bird") and len(train.class_names) == 20

    # DB's augmentation, jitted: deterministic from the key, different across keys.
    aug = jax.jit(functools.partial(augment, out_size=SIZE))
    batch = jnp.asarray(train.images[:4])
    a, b, c = aug(jax.random.key(0), batch), aug(jax.random.key(0), batch), aug(jax.random.key(1), batch)
    assert a.shape == (4, SIZE, SIZE, 3) and a.dtype == jnp.float32
    assert bool(jnp.all(a == b)) and not bool(jnp.all(a == c))
    assert bool(jnp.all(jnp.isfinite(a)))

    # Frozen ResNet-18 features, cached once.
    enc = resnet_encoder(18, width=0.125)
    params, stats = enc.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3), jnp.uint8))
    variables = {"params": params, "batch_stats": stats}
    encode = lambda v, x: enc.apply(v["params"], v["batch_stats"], eval_transform(x, out_size=SIZE),  # noqa: E731
                                    train=False)[0]
    path = tmp_path / "feats" / "voc2007-train.npy"
    feats = cache_features(encode, variables, train.images, batch_size=3, path=path, progress=False)  # padded
    assert feats.shape == (8, enc.num_features) and feats.dtype == np.float32
    direct = np.asarray(jax.jit(encode)(variables, jnp.asarray(train.images)))  # one unpadded batch
    np.testing.assert_allclose(feats, direct, rtol=1e-4, atol=1e-5)
    stamp = os.stat(path).st_mtime_ns
    again = cache_features(encode, variables, train.images, batch_size=3, path=path, progress=False)
    assert os.stat(path).st_mtime_ns == stamp
    np.testing.assert_array_equal(again, feats)
    other = cache_features(encode, variables, train.images[4:], batch_size=3, path=path, progress=False)
    assert other.shape == (4, enc.num_features)  # other inputs: recomputed
    np.testing.assert_allclose(other, direct[4:], rtol=1e-4, atol=1e-5)

    # A linear multi-label head on the frozen features, trained with the engine's SGD (momentum 0.9).
    x, y = jnp.asarray(feats), jnp.asarray(train.labels, jnp.float32)
    head = {"w": jnp.zeros((x.shape[1], 20)), "b": jnp.zeros(20)}
    opt = sgd_warmup_step(lr=0.5, weight_decay=1e-4, momentum=0.9, warmup_steps=3, decay_every=0, decay_factor=0.1)

    def loss_fn(head):
        logits = x @ head["w"] + head["b"][None, :]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))

    @jax.jit
    def step(head, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(head)
        updates, opt_state = opt.update(grads, opt_state, head)
        return optax.apply_updates(head, updates), opt_state, loss

    opt_state, losses = opt.init(head), []
    for _ in range(30):
        head, opt_state, loss = step(head, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0], losses
    if not _tensorflow_installed():
        assert "tensorflow" not in sys.modules


def _write_voc2007(data_dir, examples):
    """A real (not mocked) voc/2007 folder in the array_record format, written without TensorFlow."""
    from PIL import Image

    info = tfds.builder("voc/2007", data_dir=data_dir, file_format="array_record").info
    os.makedirs(info.data_dir, exist_ok=True)
    writer = tfds.core.SequentialWriter(info, max_examples_per_shard=100, file_format="array_record")
    writer.initialize_splits(list(examples))
    rows = {}
    for split, items in examples.items():
        rows[split] = []
        for i, (image, labels) in enumerate(items):
            n = len(labels)
            rows[split].append({
                "image": Image.fromarray(image), "image/filename": f"{split}{i:04d}.jpg",
                "labels": sorted(set(labels)), "labels_no_difficult": sorted(set(labels)),
                "objects": {"label": np.asarray(labels, np.int64), "bbox": np.full((n, 4), 0.25, np.float32),
                            "pose": np.zeros(n, np.int64), "is_truncated": np.zeros(n, bool),
                            "is_difficult": np.arange(n) % 2 == 1}})
    writer.add_examples(rows)
    writer.close_all()


def test_voc2007_prepared_folder_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    labels = [[0, 0, 14], [], [19], [3, 7]]  # a repeated class, an image with no object, difficult objects
    images = [rng.integers(0, 256, (20 + 3 * i, 30, 3), dtype=np.uint8) for i in range(len(labels))]
    data_dir = str(tmp_path / "tfds")
    _write_voc2007(data_dir, {"train": list(zip(images, labels, strict=True))})

    got = load_tfds_images("voc/2007", "train", size=16, resize="center_crop", data_dir=data_dir, progress=False)
    assert got.images.shape == (4, 16, 16, 3)
    assert [np.flatnonzero(row).tolist() for row in got.labels] == [[0, 14], [], [19], [3, 7]]
    assert got.meta["empty_rows"] == 1
    squash = load_tfds_images("voc/2007", "train", size=16, data_dir=data_dir, progress=False)
    assert squash.path != got.path  # the resize mode is part of the cache key

    with pytest.raises(DataError, match="no split 'validation'"):
        load_tfds_images("voc/2007", "validation", size=16, data_dir=data_dir, progress=False)
    with pytest.raises(DataError, match=r"voc/2012 split 'train'.*no prepared copy"):
        load_tfds_images("voc/2012", "train", size=16, data_dir=data_dir, progress=False)
    with pytest.raises(DataError, match="unknown image dataset"):
        load_tfds_images("voc/2099", "train", data_dir=data_dir)


def test_augment_identity_and_flip():
    """No crop, no photometric distortion: the identity, or an exact mirror when flipped."""
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8))
    plain = jax.jit(functools.partial(augment, out_size=8, min_scale=1.0, photometric=False),
                    static_argnames="flip_prob")
    same, flipped = plain(jax.random.key(0), images, flip_prob=0.0), plain(jax.random.key(0), images, flip_prob=1.0)
    np.testing.assert_allclose(same * 255.0, images.astype(jnp.float32), atol=1e-3)
    np.testing.assert_allclose(flipped * 255.0, images[:, :, ::-1].astype(jnp.float32), atol=1e-3)
    np.testing.assert_allclose(eval_transform(images, out_size=8) * 255.0, images.astype(jnp.float32), atol=1e-4)
