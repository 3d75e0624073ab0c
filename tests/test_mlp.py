"""``method=mlp``: flat multi-label learning on the engine, scored with the ``flat`` suite."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA_DIR, needs_data

from hmljax.cli import main
from hmljax.training import TrainConfig, train_and_evaluate

FLAT_KEYS = {"macro_f1", "micro_f1", "macro_auc", "ranking_loss", "hamming_loss", "one_error", "coverage", "map"}
FAST = ["yeast"]  # the default run; every other MULAN dataset with -m slow
SLOW = ["emotions", "scene", "medical", "birds", "enron", "Corel5k", "rcv1subset1", "rcv1subset2", "bibtex",
        "tmc2007-500", "delicious"]


def test_mlp_on_the_synthetic_nodes_as_flat_labels(tmp_path):
    """Any dataset works: a hierarchy's nodes become independent labels, scored with the flat suite."""
    cfg = TrainConfig(dataset="synthetic", method="mlp", epochs=3, lr=3e-3, auc_convention="sklearn")
    m = train_and_evaluate(cfg, str(tmp_path / "a"), progress=False)["results"]["test"]
    # sklearn's convention averages over the labels with both classes in the test split (the adaptive-batch
    # code's divides by all of them, and the synthetic tree has many nodes without test positives).
    assert FLAT_KEYS <= set(m) and m["macro_auc"] > 0.6
    # RARE's options compose: an ensemble with the GMU focal term and label imbalance weights.
    cfg = TrainConfig(dataset="synthetic", method="mlp", epochs=1, ensemble=2, focal="gmu", weights="code")
    out = train_and_evaluate(cfg, str(tmp_path / "b"), progress=False)
    assert np.isfinite(out["results"]["test"]["macro_auc"])
    with pytest.raises(ValueError, match="HROS-PD needs a hierarchy"):
        TrainConfig(dataset="synthetic", method="mlp", resample="hros_pd").resolved()
    with pytest.raises(ValueError, match="'constraint' belongs to method chmcnn"):
        TrainConfig(dataset="synthetic", method="mlp", constraint="dense")


def _train_cli(name, tmp_path, capsys, extra=()):
    run = str(tmp_path / name)
    args = ["train", "--dataset", name, "--data-dir", DATA_DIR, "--epochs", "1", "--out", run, "--no-progress",
            "method=mlp", *extra]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "macro_auc" in printed and "ranking_loss" in printed
    res = json.loads(open(f"{run}/results.json").read())
    assert res["method"] == "mlp" and FLAT_KEYS <= set(res["test"])
    return res


@needs_data
@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_mlp_trains_on_every_mulan_dataset(name, tmp_path, capsys):
    _train_cli(name, tmp_path, capsys)


@needs_data
def test_mlp_on_genbase_needs_its_id_dropped(tmp_path, capsys):
    assert main(["train", "--dataset", "genbase", "--data-dir", DATA_DIR, "--epochs", "1", "--out",
                 str(tmp_path / "g"), "--no-progress", "method=mlp"]) == 2
    assert "protein" in capsys.readouterr().err


@needs_data
@pytest.mark.slow
def test_mlp_on_genbase_with_its_id_dropped(tmp_path, capsys):
    res = _train_cli("genbase", tmp_path, capsys, extra=["drop_ids=true"])
    assert res["test"]["macro_auc"] > 0
