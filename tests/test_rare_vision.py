"""experiments/rare_vision.py (RARE's vision model): end to end on mock VOC 2007 with a tiny ResNet and a tiny ViT, the
edge-list errors, the training-factor interpolation and the data-fraction subset."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hmljax.models import image_encoder, save_encoder_npz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import rare_vision  # noqa: E402

VOC_TREE = """# a tiny hierarchy over some VOC classes
parent,child
root,animal
root,vehicle
animal,bird
animal,cat
animal,dog
vehicle,car
vehicle,bus
vehicle,aeroplane
"""
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("HMLJAX_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("backbone, width, trained", [("resnet18", 0.125, False), ("vit_b_16", 0.1, False),
                                                      ("resnet18", 0.125, True)])
def test_mock_voc2007_end_to_end(tmp_path, capsys, backbone, width, trained):
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed")
    edges = tmp_path / "edges.csv"
    edges.write_text(VOC_TREE)
    # A stand-in "pretrained" encoder: the same tiny network from another seed, through the .npz format.
    enc = image_encoder(backbone, image_size=32, width=width)
    params, stats = enc.init(jax.random.key(123), np.zeros((1, 32, 32, 3), np.uint8))
    save_encoder_npz(tmp_path / "pre.npz", {"params": params, "batch_stats": stats}, backbone=backbone)
    out = tmp_path / "run"
    argv = ["--tfds", "voc/2007", "--hierarchy", str(edges), "--tfds-data-dir", str(tmp_path / "tfds"),
            "--unlisted", "drop", "--pretrained", str(tmp_path / "pre.npz"), "--backbone", backbone,
            "--width", str(width),
            "--image-size", "32", "--ensemble", "2", "--epochs", "2", "--training-factor", "0.5",
            "--data-fraction", "0.5", "--focal", "gmu", "--weights", "code", "--out", str(out), "--quiet"]
    argv += ["--train-encoder"] if trained else []
    with tfds.testing.mock_data(num_examples=12):
        assert rare_vision.main(argv) == 0
    printed = capsys.readouterr().out
    assert "train rows 6 of 12" in printed and "nodes 9 (8 evaluated" in printed
    assert f"features 64 ({backbone}, factor 0.5, {'trained' if trained else 'frozen'})" in printed
    res = json.loads((out / "results.json").read_text())
    for k in ("auprc", "node_f1", "node_precision", "node_recall"):
        assert np.isfinite(res["test"][k]), (k, res["test"])
    assert res["rows"] == {"train": 6, "train_split": 12, "test": 12}
    assert len(res["loss_per_epoch"]) == 2 and all(np.isfinite(res["loss_per_epoch"]))
    assert sorted(res["hierarchy"]["names"]) == sorted(["root", "animal", "vehicle", "bird", "cat", "dog", "car",
                                                        "bus", "aeroplane"])
    config = json.loads((out / "config.json").read_text())
    assert config["command"].startswith("python experiments/rare_vision.py --tfds voc/2007 ")
    assert config["args"]["training_factor"] == 0.5
    assert res["encoder"] == {"backbone": backbone, "trained": trained}
    if trained:  # App. J's end-to-end network caches no features
        assert res["features"]["paths"] is None and not (tmp_path / "cache" / "rare_vision").exists()
        return
    for path in res["features"]["paths"].values():  # cached under HMLJAX_CACHE (tmp_path here)
        assert path.startswith(str(tmp_path / "cache")) and os.path.exists(path)


def test_trained_encoder_gets_gradients_and_updates_its_statistics():
    """--train-encoder's network: the loss reaches the encoder's weights, and a training forward returns the
    BatchNorm statistics of the batch while evaluation leaves them as they were."""
    from hmljax.methods import chmcnn_model
    from hmljax.models import ChmcnnMLP

    enc = image_encoder("resnet18", width=0.125)
    params, stats = enc.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.uint8))
    heads = chmcnn_model(ChmcnnMLP(hidden=16, num_outputs=5, num_layers=3, dropout=0.7), enc.num_features,
                         members=2)
    model = rare_vision.encoder_heads_model(enc, {"params": params, "batch_stats": stats}, 32, heads)
    p, state = model.init(jax.random.key(1))
    x = np.random.default_rng(0).integers(0, 256, (4, 36, 36, 3), dtype=np.uint8)  # R = 36, crop S = 32

    def loss(q):
        out = model.apply(q, state, x, train=True, key=jax.random.key(2))
        return jnp.sum(out.logits), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(p)
    assert out.logits.shape == (2, 4, 5)
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), out.model_state, state)
    assert all(jax.tree.leaves(moved))
    ev = jax.jit(lambda p, s, x: model.apply(p, s, x, train=False))(p, state, x)
    jax.tree.map(np.testing.assert_array_equal, ev.model_state, state)
    assert float(jnp.abs(grads["encoder"]["conv1"]["kernel"]).sum()) > 0
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads["heads"]) if g.ndim == 3)  # [E, in, out]


@pytest.mark.parametrize("text, line, match", [
    ("root,animal\nanimal cat\n", 2, "expected 'parent,child'"),
    ("root,animal\n\nanimal,cat,dog\n", 3, "expected 'parent,child'"),
    ("root,animal\nanimal,kitten\n", 2, "'kitten' is a leaf of the hierarchy but not a class"),
    ("root,animal\nanimal,Cat\n", 2, "did you mean 'cat'"),
    ("root,animal\nanimal,cat\ncat,animal\n", 3, "closes a cycle: 'cat' -> 'animal' -> 'cat'"),
    ("root,a\na,b\nb,c\nc,a\nc,cat\n", 4, "closes a cycle: 'c' -> 'a' -> 'b' -> 'c'"),
    ("root,root\n", 1, "is its own parent"),
], ids=["no-comma", "three-fields", "unknown-class", "case-typo", "cycle", "long-cycle", "self-loop"])
def test_edge_list_errors_name_the_file_and_line(tmp_path, text, line, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(rare_vision.EdgeListError, match=match) as info:
        rare_vision.hierarchy_from_edge_list(str(path), VOC_CLASSES, unlisted="drop")
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_edge_list_errors_stop_main_with_the_message(tmp_path, capsys):
    path = tmp_path / "cyclic.csv"
    path.write_text("root,animal\nanimal,cat\ncat,animal\n")
    argv = ["--tfds", "voc/2007", "--hierarchy", str(path), "--training-factor", "0", "--out", str(tmp_path / "run"),
            "--quiet"]
    assert rare_vision.main(argv) == 2  # the file is checked before any data is read
    assert f"{path}:3: the edge 'cat' -> 'animal' closes a cycle" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a training factor above 0 needs pretrained weights
        rare_vision.main(["--tfds", "voc/2007", "--hierarchy", str(path), "--training-factor", "0.5"])
    assert "pass --pretrained" in capsys.readouterr().err


def test_unlisted_classes_and_labels_closed_under_ancestors(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text(VOC_TREE)
    with pytest.raises(rare_vision.EdgeListError, match=rf"^{path}: 14 class\(es\) .* --unlisted drop"):
        rare_vision.hierarchy_from_edge_list(str(path), VOC_CLASSES)
    h, dropped = rare_vision.hierarchy_from_edge_list(str(path), VOC_CLASSES, unlisted="drop")
    assert len(dropped) == 14 and "person" in dropped
    assert [h.names[i] for i in np.flatnonzero(~h.evaluated)] == ["root"]
    labels = np.zeros((3, 20), np.uint8)
    labels[0, VOC_CLASSES.index("cat")] = 1
    labels[1, VOC_CLASSES.index("person")] = 1  # dropped: the row has no node
    labels[2, [VOC_CLASSES.index("bus"), VOC_CLASSES.index("dog")]] = 1
    Y = rare_vision.node_labels(labels, VOC_CLASSES, h)
    on = lambda r: sorted(h.names[i] for i in np.flatnonzero(Y[r]))  # noqa: E731
    assert on(0) == ["animal", "cat", "root"] and on(1) == []
    assert on(2) == ["animal", "bus", "dog", "root", "vehicle"]
    assert h.is_closed(Y)


def test_training_factor_interpolates_every_leaf():
    rng = np.random.default_rng(0)
    pre = {"a": {"kernel": rng.normal(size=(3, 4)).astype(np.float32)}, "b": rng.normal(size=5).astype(np.float32)}
    rnd = {"a": {"kernel": rng.normal(size=(3, 4)).astype(np.float32)}, "b": rng.normal(size=5).astype(np.float32)}
    one = rare_vision.interpolate_weights(pre, rnd, factor=1.0)
    zero = rare_vision.interpolate_weights(pre, rnd, factor=0.0)
    half = rare_vision.interpolate_weights(pre, rnd, factor=0.25)
    for got, want in ((one, pre), (zero, rnd)):
        jax.tree.map(np.testing.assert_array_equal, got, want)
    jax.tree.map(lambda h, p, r: np.testing.assert_allclose(h, 0.25 * p + 0.75 * r, rtol=1e-6), half, pre, rnd)
    with pytest.raises(ValueError, match="different structures"):
        rare_vision.interpolate_weights(pre, {"a": rnd["a"]}, factor=0.5)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        rare_vision.interpolate_weights(pre, rnd, factor=1.5)


def test_subset_keeps_a_positive_of_every_node_and_nests():
    rng = np.random.default_rng(3)
    Y = (rng.random((200, 6)) < np.array([1.0, 0.5, 0.3, 0.05, 0.02, 0.0])).astype(np.uint8)
    Y[:, 0] = 1  # an unevaluated root
    ev = np.array([False, True, True, True, True, True])
    small = rare_vision.subset_rows(Y, fraction=0.02, seed=0, evaluated=ev)
    assert len(small) == 4 and (Y[small][:, 1:5].sum(0) > 0).all()  # the rare nodes 3 and 4 kept a positive
    rand = rare_vision.subset_rows(Y, fraction=0.02, seed=0, evaluated=ev, mode="random")
    assert len(rand) == 4
    big = rare_vision.subset_rows(Y, fraction=0.3, seed=0, evaluated=ev)
    assert len(big) == 60 and set(small) <= set(big) and list(big) == sorted(set(big))
    assert set(rand) <= set(rare_vision.subset_rows(Y, fraction=0.3, seed=0, evaluated=ev, mode="random"))
    np.testing.assert_array_equal(rare_vision.subset_rows(Y, fraction=1.0, seed=0, evaluated=ev), np.arange(200))


def test_any_tfds_dataset_through_its_class_label_feature(tmp_path):
    """A dataset the library's loader does not know (CIFAR-100: one ClassLabel per image) is decoded by the script."""
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed")
    data_dir = str(tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=5):
        images, labels, names = rare_vision.load_split("cifar100", "train", size=8, data_dir=data_dir, progress=False)
        source = tfds.data_source("cifar100", split="train", data_dir=data_dir, download=False)
        want = [int(source[i]["label"]) for i in range(5)]
        _, coarse, coarse_names = rare_vision.load_split("cifar100", "test", size=8, data_dir=data_dir,
                                                         label_key="coarse_label", progress=False)
        _, voc, voc_names = rare_vision.load_split("voc/2007", "train", size=8, data_dir=data_dir, label_key="labels",
                                                   progress=False)
        with pytest.raises(rare_vision.DataError, match="no class-label feature 'species'"):
            rare_vision.load_split("cifar100", "train", size=8, data_dir=data_dir, label_key="species", progress=False)
    assert images.shape == (5, 8, 8, 3) and images.dtype == np.uint8
    assert labels.shape == (5, 100) and [int(np.flatnonzero(r)[0]) for r in labels] == want
    assert labels.sum(1).tolist() == [1] * 5 and len(names) == 100
    assert coarse.shape == (5, 20) and len(coarse_names) == 20
    assert voc.shape == (5, 20) and voc_names == VOC_CLASSES
