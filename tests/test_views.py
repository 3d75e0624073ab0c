"""Dataset views: k-fold splits (with valid/test halves), label filters and feature selection, refitted per fold."""

from __future__ import annotations

import numpy as np
import pytest

from hmljax.data import DataError, dataset_view, load_dataset
from hmljax.training import TrainConfig, train_and_evaluate


def _flat(tmp_path, rng, n=60):
    rows = []
    for i in range(n):
        # Every label gets a positive (row 0), so the rarest count is a real threshold, never 0 ("nothing asked").
        labels = [int(i == 0 or rng.random() < p) for p in (0.5, 0.3, 0.05)]
        rows.append(",".join([*map(str, labels), *(f"{rng.normal():.3f}" for _ in range(4))]))
    text = ("@relation 'toy: -C 3'\n" + "".join(f"@attribute l{j} {{0,1}}\n" for j in range(3))
            + "".join(f"@attribute f{j} numeric\n" for j in range(4)) + "@data\n" + "\n".join(rows) + "\n")
    (tmp_path / "toyflat.arff").write_text(text)
    return load_dataset("toyflat", data_dir=str(tmp_path), test_fraction=0.25)


def test_folds_partition_the_rows_and_refit_the_preprocessing():
    ds = load_dataset("synthetic", preprocessing="minmax")
    total = sum(ds.X[k].shape[0] for k in ds.splits)
    held = []
    for k in range(3):
        v = dataset_view(ds, folds=3, fold=k, fold_valid=True, preprocessing="minmax")
        assert v.splits == ("train", "valid", "test")
        assert sum(v.X[s].shape[0] for s in v.splits) == total
        assert abs(v.X["valid"].shape[0] - v.X["test"].shape[0]) <= 0.15 * v.X["test"].shape[0]
        # MinMax fitted on this fold's train rows only: they span [0, 1] exactly, the others need not.
        assert v.X["train"].min() == 0.0 and v.X["train"].max() == 1.0
        held.append(v.X["valid"].shape[0] + v.X["test"].shape[0])
        assert v.meta["view"]["fold"] == k
    assert sum(held) == total
    assert dataset_view(ds) is ds  # nothing asked: the dataset itself
    with pytest.raises(DataError, match="fold=3 is not one of the 3 folds"):
        dataset_view(ds, folds=3, fold=3)


def test_label_filter_and_feature_selection(tmp_path, rng):
    ds = _flat(tmp_path, rng)
    counts = np.concatenate([ds.Y[k] for k in ds.splits]).sum(0)
    assert counts.min() >= 1
    v = dataset_view(ds, min_label_count=int(counts.min()))
    assert v.hierarchy.num_nodes == int((counts > counts.min()).sum())
    assert all(v.Y[k].shape[1] == v.hierarchy.num_nodes for k in v.splits)
    raw = np.concatenate([ds.raw[k] for k in ds.splits])
    f = dataset_view(ds, feature_fraction=0.5)
    top = sorted(np.argsort(-np.nansum(raw, 0), kind="stable")[:2])
    assert f.meta["feature_names"] == [ds.meta["feature_names"][j] for j in top]
    with pytest.raises(DataError, match="a hierarchy cannot lose"):
        dataset_view(load_dataset("synthetic"), min_label_count=3)


def test_fold_keys_are_strict_and_a_fold_run_trains(tmp_path):
    with pytest.raises(ValueError, match="fold=1 does not apply here: it applies only with folds"):
        TrainConfig(dataset="synthetic", fold=1).resolved()
    with pytest.raises(ValueError, match="bad value for fold: 5"):
        TrainConfig(dataset="synthetic", folds=5, fold=5).resolved()
    cfg = TrainConfig(dataset="synthetic", method="mlp", epochs=2, folds=4, fold=1, fold_valid=True,
                      protocol="early_stopping", patience=100, preprocessing="minmax")
    res = train_and_evaluate(cfg, str(tmp_path / "f"), progress=False)["results"]
    assert res["best_epoch"] in (1, 2) and np.isfinite(res["test"]["macro_auc"])
