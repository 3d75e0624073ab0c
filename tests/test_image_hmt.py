"""``method=hmt encoder=resnet18`` on an image dataset (``dataset=tfds:voc/2007``) through the engine, on
tensorflow-datasets' mock data: a tiny ResNet (``resnet_width``) on the default 256-pixel cache (224-pixel
crops), on the CPU, no torch.

Checks what the engine must carry for a network with BatchNorm: the statistics live in the model state, are
checkpointed and restored (``load_run`` predicts what the run evaluated), and frozen stages never move.
"""

import numpy as np
import pytest

from hmljax.data import IMAGE_SIZE, DataError, image_spec, load_image_dataset, parse_image_dataset
from hmljax.models import save_resnet_npz
from hmljax.training import TrainConfig, build_method, load_run, train_and_evaluate

tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed (pip install "
                           "'hmljax[data]'); the image tests need it, TensorFlow not")

SIZE = IMAGE_SIZE  # 256, the cached side; the network sees 224-pixel crops


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("HMLJAX_CACHE", str(tmp_path / "cache"))


def test_image_dataset_names_and_splits(tmp_path):
    assert parse_image_dataset("tfds:voc/2012") == ("voc/2012", ("train",))
    assert parse_image_dataset("tfds:voc/2012:train+validation") == ("voc/2012", ("train", "validation"))
    with pytest.raises(DataError, match="test split"):
        parse_image_dataset("tfds:voc/2007:train+test")
    with pytest.raises(DataError, match="unknown image dataset"):
        parse_image_dataset("tfds:mnist")
    spec = image_spec("tfds:coco/2017")
    assert spec.hierarchy == "flat" and spec.num_labels == 80
    with tfds.testing.mock_data(num_examples=6):
        ds = load_image_dataset("tfds:voc/2012:train+validation", data_dir=str(tmp_path), progress=False)
        lt = load_image_dataset("tfds:voc/2012:train+validation", data_dir=str(tmp_path), progress=False,
                                longtail=dict(max_count=3, min_count=1, alpha=6.0, seed=0))
    assert ds.X["train"].shape == (12, SIZE, SIZE, 3) and ds.X["train"].dtype == np.uint8
    assert ds.X["test"].shape == (6, SIZE, SIZE, 3) and ds.Y["test"].shape == (6, 20)
    assert ds.meta["images"]["test"]["dataset"] == "voc/2007"  # VOC2012's test labels are not public
    assert ds.hierarchy.names[:2] == ("aeroplane", "bicycle") and ds.hierarchy.num_nodes == 20
    # The long-tailed cut selects whole rows of the joined train splits.
    assert 0 < lt.X["train"].shape[0] <= 12
    for x, y in zip(lt.X["train"], lt.Y["train"], strict=True):
        i = next(i for i in range(12) if np.array_equal(ds.X["train"][i], x))
        np.testing.assert_array_equal(ds.Y["train"][i], y)


def test_hmt_keys_for_a_resnet_encoder_are_checked():
    base = dict(dataset="tfds:voc/2007", method="hmt")
    cfg = TrainConfig(**base, encoder="resnet50").resolved()
    assert (cfg.pretrained, cfg.frozen_stages, cfg.norm_eval, cfg.resnet_width) == ("", 1, True, 1.0)
    assert TrainConfig(**base).resolved().frozen_stages is None  # encoder=mlp
    with pytest.raises(ValueError, match="frozen_stages.*encoder=resnet18 or resnet50"):
        TrainConfig(**base, frozen_stages=2).resolved()
    with pytest.raises(ValueError, match="encoder_layers.*encoder=mlp"):
        TrainConfig(**base, encoder="resnet18", encoder_layers=1).resolved()
    with pytest.raises(ValueError, match="bad value for encoder"):
        TrainConfig(**base, encoder="vit").resolved()
    with pytest.raises(ValueError, match="ensemble"):
        TrainConfig(**base, encoder="resnet18", ensemble=2).resolved()


def _leaves_equal(a, b) -> bool:
    import jax

    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_hmt_resnet18_trains_end_to_end_on_mock_voc(tmp_path):
    import jax

    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    run_dir = str(tmp_path / "run")
    cfg = TrainConfig(dataset="tfds:voc/2007", data_dir=str(data_dir), method="hmt", encoder="resnet18",
                      resnet_width=0.125, norm_eval=False, frozen_stages=1, group_split="quantile", epochs=1,
                      batch_size=4, optimizer="sgd", lr=0.05, weight_decay=1e-2, momentum=0.9)
    with tfds.testing.mock_data(num_examples=8):
        with pytest.raises(ValueError, match="images need encoder=resnet18 or resnet50"):
            build_method(cfg.replace(encoder="mlp", resnet_width=None, norm_eval=None,
                                     frozen_stages=None).resolved())
        out = train_and_evaluate(cfg, run_dir, progress=False)
        run = load_run(run_dir, data_dir=str(data_dir))
    test = out["results"]["test"]
    for k in ("map", "map_head", "map_middle", "map_tail"):
        assert k in test, sorted(test)
    assert np.isfinite(test["map"])

    # The initial state, as the engine made it (under the run's matmul precision, so the compiled init is reused).
    precision = lambda: jax.default_matmul_precision(run.config.matmul_precision)  # noqa: E731
    init_key, _ = jax.random.split(jax.random.key(run.config.seed))
    with precision():
        params0, state0 = run.method.model.init(init_key)
    params, state = run.params, run.model_state
    enc0, enc = params0["encoder"], params["encoder"]
    # Frozen stem and stage 1: bitwise unchanged (no momentum or weight decay reaches them), statistics too.
    for name in ("conv1", "bn1", "layer1_0", "layer1_1"):
        assert _leaves_equal(enc[name], enc0[name]), name
        if name != "conv1":
            assert _leaves_equal(state["batch_stats"][name], state0["batch_stats"][name]), name
    # The rest trained, and its BatchNorm statistics moved (norm_eval=False), saved in the checkpoint.
    assert not _leaves_equal(enc["layer2_0"], enc0["layer2_0"])
    assert not _leaves_equal(params["heads"], params0["heads"])
    assert not _leaves_equal(state["batch_stats"]["layer4_1"], state0["batch_stats"]["layer4_1"])
    assert _leaves_equal(state, out["model_state"]) and _leaves_equal(params, out["params"])

    # pretrained= loads the encoder's parameters and statistics from a converted .npz; the heads stay random.
    path = str(tmp_path / "resnet18.npz")
    save_resnet_npz(path, {"params": enc, "batch_stats": state["batch_stats"]})
    pre = build_method(cfg.replace(pretrained=path).resolved(), run.dataset)[1]
    with precision():
        params1, state1 = pre.model.init(init_key)
    assert _leaves_equal(params1["encoder"], enc) and _leaves_equal(state1, state)
    assert _leaves_equal(params1["heads"], params0["heads"])

    # load_run predicts what the run evaluated (the same metrics from the restored parameters and statistics).
    Xt, Yt = run.dataset.split("test")
    assert Xt.dtype == np.uint8 and Xt.shape == (8, SIZE, SIZE, 3)
    again = run.method.metrics.evaluate(np.asarray(Yt), run.predict(Xt))
    for k, v in test.items():
        if isinstance(v, float):
            assert again[k] == pytest.approx(v, abs=1e-6, nan_ok=True), k
