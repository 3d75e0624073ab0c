"""Finished runs as values: ``hmljax.load_run``, ``hmljax predict`` on new rows, portable run directories."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest
from conftest import DATA_DIR, needs_data

import hmljax
from hmljax.cli import main

ARFF = """@relation toy
@attribute a numeric
@attribute b numeric
@attribute colour {{red,green}}
@attribute class hierarchical A,A/1,A/2,B
@data
{rows}
"""


def _rows(rng, n, order=("a", "b", "colour")):
    out = []
    for _ in range(n):
        vals = {"a": f"{rng.normal():.4f}", "b": "?" if rng.random() < 0.1 else f"{rng.normal():.4f}",
                "colour": rng.choice(["red", "green"])}
        label = rng.choice(["A/1", "A/2", "B", "A/1@B"])
        out.append(",".join(vals[k] for k in order) + "," + label)
    return "\n".join(out)


def _write(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def test_splits_are_matched_by_attribute_name(tmp_path, rng):
    """A test split declaring its columns (and a nominal's categories) in another order is reordered by name."""
    from hmljax.data import load_dataset

    train, test = _rows(rng, 40), _rows(rng, 12)
    for folder, test_header in (("same", ARFF), ("reordered", ARFF.replace(
            "@attribute a numeric\n@attribute b numeric\n@attribute colour {{red,green}}",
            "@attribute colour {{green,red}}\n@attribute b numeric\n@attribute a numeric"))):
        d = tmp_path / folder
        d.mkdir()
        _write(d / "toy.train.arff", ARFF.format(rows=train))
        lines = test.splitlines()
        if folder == "reordered":  # the same rows, written in the reordered column order
            lines = [",".join([r.split(",")[2], r.split(",")[1], r.split(",")[0], r.split(",", 3)[3]]) for r in lines]
        _write(d / "toy.test.arff", test_header.format(rows="\n".join(lines)))
    a = load_dataset("toy", data_dir=str(tmp_path / "same"))
    b = load_dataset("toy", data_dir=str(tmp_path / "reordered"))
    np.testing.assert_array_equal(np.asarray(a.X["test"]), np.asarray(b.X["test"]))
    np.testing.assert_array_equal(np.asarray(a.Y["test"]), np.asarray(b.Y["test"]))
    # A column missing from the test split is refused, naming the file.
    d = tmp_path / "missing"
    d.mkdir()
    _write(d / "toy.train.arff", ARFF.format(rows=train))
    _write(d / "toy.test.arff", ARFF.replace("@attribute b numeric", "@attribute c numeric").format(rows=test))
    with pytest.raises(hmljax.ArffError, match=r"toy.test.arff.*missing: b"):
        load_dataset("toy", data_dir=str(d))


def test_load_run_and_predict_new_rows(tmp_path, rng, capsys):
    d = tmp_path / "data"
    d.mkdir()
    _write(d / "toy.train.arff", ARFF.format(rows=_rows(rng, 60)))
    _write(d / "toy.test.arff", ARFF.format(rows=_rows(rng, 20)))
    run_dir = str(tmp_path / "run")
    assert main(["train", "--dataset", "toy", "--data-dir", str(d), "--epochs", "2", "--out", run_dir,
                 "--no-progress", "hidden=8", "batch_size=16"]) == 0
    run = hmljax.load_run(run_dir, data_dir=str(d))
    assert run.config.method == "chmcnn" and run.epoch == 2 and run.hierarchy.num_nodes == 5
    assert {"impute_means", "center", "scale"} <= set(run.preprocessing)
    # New rows, with columns in another order and gzip-compressed: the same probabilities as the test split.
    new = tmp_path / "new.arff.gz"
    lines = [",".join([r.split(",")[1], r.split(",")[0], r.split(",", 2)[2]]) for r in
             open(d / "toy.test.arff").read().split("@data\n")[1].strip().splitlines()]
    header = ARFF.replace("@attribute a numeric\n@attribute b numeric", "@attribute b numeric\n@attribute a numeric")
    with gzip.open(new, "wt") as fh:
        fh.write(header.format(rows="\n".join(lines)))
    out = tmp_path / "probs.npy"
    assert main(["predict", run_dir, "--input", str(new), "--out", str(out), "--data-dir", str(d)]) == 0
    probs = np.load(out)
    np.testing.assert_allclose(probs, run.predict(run.dataset.X["test"]), rtol=1e-6, atol=1e-7)
    # .csv: the label names as its header, then the same float32 probabilities, exactly.
    assert main(["predict", run_dir, "--input", str(new), "--out", str(tmp_path / "probs.csv"), "--data-dir",
                 str(d)]) == 0
    header, *rows = (tmp_path / "probs.csv").read_text().splitlines()
    assert header.split(",") == list(run.hierarchy.names) and len(rows) == probs.shape[0]
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "probs.csv", delimiter=",", skiprows=1, dtype=np.float32),
                                  probs)
    # An output that cannot be written as asked is refused before predicting, and nothing is written: another
    # suffix (a .txt got .npy bytes), a folder (renaming onto it said "Device or resource busy" of a temporary).
    (tmp_path / "dir.npy").mkdir()
    refused = ((tmp_path / "probs.txt", "name the format by the suffix"), (tmp_path, "is a folder"),
               (tmp_path / "dir.npy", "is a folder"))
    for target, says in refused:
        assert main(["predict", run_dir, "--input", str(new), "--out", str(target), "--data-dir", str(d)]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "probs.txt").exists() and not list(tmp_path.glob(".tmp-*"))
    # The run moved to another machine (its recorded data folder gone) still evaluates there.
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    shutil.copytree(d, tmp_path / "elsewhere")
    shutil.rmtree(d)
    res = json.loads((moved / "results.json").read_text())["test"]
    got = hmljax.evaluate_run(str(moved), data_dir=str(tmp_path / "elsewhere"))
    assert got["auprc"] == pytest.approx(res["auprc"], abs=1e-12)
    # An input whose columns do not match the training data's is refused, naming the file.
    bad = tmp_path / "bad.arff"
    _write(bad, ARFF.replace("@attribute b numeric", "@attribute z numeric").format(rows=_rows(rng, 3)))
    assert main(["predict", str(moved), "--input", str(bad), "--out", str(tmp_path / "x.npy"),
                 "--data-dir", str(tmp_path / "elsewhere")]) == 2
    assert not (tmp_path / "x.npy").exists()


@needs_data
def test_predict_the_test_file_of_a_real_run(tmp_path):
    """The test split's own ARFF through ``predict``: the cached test features' probabilities."""
    run_dir = str(tmp_path / "cc")
    assert main(["train", "--dataset", "cellcycle_FUN", "--data-dir", DATA_DIR, "--epochs", "1", "--out", run_dir,
                 "--no-progress", "hidden=16"]) == 0
    src = os.path.join(DATA_DIR, "hmc", "datasets_FUN", "cellcycle_FUN", "cellcycle_FUN.test.arff.gz")
    probs, names = hmljax.predict_file(run_dir, src, data_dir=DATA_DIR)
    run = hmljax.load_run(run_dir, data_dir=DATA_DIR)
    np.testing.assert_allclose(probs, run.predict(run.dataset.X["test"]), rtol=1e-5, atol=1e-6)
    assert len(names) == probs.shape[1]


def test_predict_flat_rows_without_their_labels(tmp_path, capsys):
    # New rows have no labels yet: an HMC file without its class attribute predicted, a MULAN file without
    # the label attributes was refused ("6 label(s) ... are not attributes of this file").
    from conftest import write_mulan

    d = write_mulan(str(tmp_path / "data" / "flatpred"), "flatpred")
    run_dir = str(tmp_path / "run")
    assert main(["train", "--dataset", "flatpred", "--data-dir", str(tmp_path / "data"), "--epochs", "2", "--out",
                 run_dir, "--no-progress", "method=mlp", "hidden=8"]) == 0
    text = open(os.path.join(d, "flatpred-test.arff")).read()
    head, body = text.split("@data\n")
    unlabelled = "".join(ln + "\n" for ln in head.splitlines() if not ln.startswith("@attribute L")) + "@data\n" + \
        "".join(",".join(r.split(",")[:6]) + "\n" for r in body.strip().splitlines())
    partial = head.replace("@attribute L3 {0,1}\n", "") + "@data\n" + \
        "".join(",".join(r.split(",")[:9]) + "\n" for r in body.strip().splitlines())
    probs = {}
    for name, content in (("labelled", text), ("unlabelled", unlabelled)):
        _write(tmp_path / f"{name}.arff", content)
        out = tmp_path / f"{name}.npy"
        assert main(["predict", run_dir, "--input", str(tmp_path / f"{name}.arff"), "--out", str(out),
                     "--data-dir", str(tmp_path / "data")]) == 0
        probs[name] = np.load(out)
    assert probs["labelled"].shape == (48, 4)
    np.testing.assert_array_equal(probs["unlabelled"], probs["labelled"])
    _write(tmp_path / "partial.arff", partial)  # some labels and not others: ambiguous, still refused
    assert main(["predict", run_dir, "--input", str(tmp_path / "partial.arff"), "--out", str(tmp_path / "p.npy"),
                 "--data-dir", str(tmp_path / "data")]) == 2
    assert "1 label(s) from the label list are not attributes of this file: ['L3']" in capsys.readouterr().err
