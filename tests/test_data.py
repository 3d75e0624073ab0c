import json
import os

import numpy as np
import pytest
from conftest import DATA_DIR, load, needs_data
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from hmljax.cli import main as cli_main
from hmljax.data import (
    REGISTRY,
    DataError,
    EpochSampler,
    Sampler,
    cached_arrays,
    get_spec,
    list_datasets,
    load_dataset,
    make_synthetic,
    preprocess,
)


def _raw(rng):
    tr, va, te = rng.normal(size=(30, 4)), rng.normal(size=(10, 4)), rng.normal(size=(12, 4)) + 1
    tr[rng.random(tr.shape) < 0.2] = np.nan
    te[rng.random(te.shape) < 0.2] = np.nan
    te[:, 2] = np.nan  # all-NaN within a split
    return {"train": tr, "valid": va, "test": te}


def test_chmcnn_preprocessing_matches_reference_pipeline(rng):
    raw = _raw(rng)
    out, info = preprocess(raw, mode="chmcnn", fit_on=("train", "valid"))
    # The reference: per-split nanmean fill, then imputer+scaler fit on train+valid.
    per = {k: np.where(np.isnan(x), np.nanmean(x, 0), x) if not np.isnan(x).all(0).any() else x for k, x in raw.items()}
    per["test"] = raw["test"].copy()
    m = np.nanmean(raw["test"][:, [0, 1, 3]], 0)
    for j, c in enumerate([0, 1, 3]):
        per["test"][np.isnan(per["test"][:, c]), c] = m[j]
    fit = np.concatenate([per["train"], per["valid"]])
    scaler, imp = StandardScaler().fit(fit), SimpleImputer(strategy="mean").fit(fit)
    for k in raw:
        np.testing.assert_allclose(out[k], scaler.transform(imp.transform(per[k])), rtol=1e-5, atol=1e-5)
        assert out[k].dtype == np.float32
    assert info["dropped_columns"] == []


def test_leakfree_uses_train_statistics_only(rng):
    raw = _raw(rng)
    out, _ = preprocess(raw, mode="leakfree")
    mu = np.nanmean(raw["train"], 0)
    filled = np.where(np.isnan(raw["train"]), mu, raw["train"])
    ref = (np.where(np.isnan(raw["test"]), mu, raw["test"]) - filled.mean(0)) / filled.std(0)
    np.testing.assert_allclose(out["test"], ref, rtol=1e-5, atol=1e-5)
    raw2 = dict(raw, test=raw["test"] * 100)  # test values never change the train features
    np.testing.assert_array_equal(preprocess(raw2, mode="leakfree")[0]["train"], out["train"])


def test_all_nan_column_is_dropped_and_bad_mode(rng):
    raw = {"train": np.c_[rng.normal(size=(5, 2)), np.full(5, np.nan)], "test": rng.normal(size=(3, 3))}
    out, info = preprocess(raw, mode="chmcnn")
    assert out["test"].shape == (3, 2) and info["dropped_columns"] == [2]
    with pytest.raises(ValueError, match="preprocessing mode"):
        preprocess(raw, mode="zscore")


def test_cache_is_atomic_under_interruption(tmp_path, monkeypatch):
    calls = []

    def build():
        calls.append(1)
        return {"X": np.arange(6.0).reshape(2, 3), "Y": np.ones((2, 2), np.uint8)}, {"k": 1}

    real_save = np.save
    count = {"n": 0}

    def flaky_save(path, arr):
        count["n"] += 1
        if count["n"] == 2:
            raise KeyboardInterrupt("killed mid-write")
        real_save(path, arr)

    # The cache writes each array with numpy.save: interrupt the second write (patched on numpy itself, the
    # module the cache calls it from).
    monkeypatch.setattr(np, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        cached_arrays("toy", "h", {}, build, root=str(tmp_path))
    assert [p for p in os.listdir(tmp_path)] == []  # nothing half-written is left behind
    monkeypatch.setattr(np, "save", real_save)
    arrays, meta, path = cached_arrays("toy", "h", {}, build, root=str(tmp_path))
    np.testing.assert_array_equal(arrays["X"], np.arange(6.0).reshape(2, 3))
    assert isinstance(arrays["X"], np.memmap) and not arrays["X"].flags.writeable
    cached_arrays("toy", "h", {}, build, root=str(tmp_path))
    assert len(calls) == 2  # built twice (interrupted + real), then served from the cache


def _toy_dir(tmp_path, extra_row=""):
    d = tmp_path / "mydata" / "toy"
    d.mkdir(parents=True, exist_ok=True)
    head = "@relation r\n@attribute f1 numeric\n@attribute f2 {u,v}\n@attribute class hierarchical a,a/b,c\n@data\n"
    (d / "toy.train.arff").write_text(head + "1,u,a/b\n2,v,c\n3,?,a@c\n" + extra_row)
    (d / "toy.valid.arff").write_text(head + "0,u,a\n")
    (d / "toy.test.arff").write_text(head + "5,v,c\n?,u,a/b\n")
    return str(tmp_path / "mydata")


def test_discovered_dataset_and_rebuild_on_change(tmp_path):
    root = _toy_dir(tmp_path)
    ds = load_dataset("toy", data_dir=root)
    assert ds.spec.hierarchy == "tree" and ds.splits == ("train", "valid", "test")
    assert ds.hierarchy.names == ("a", "c", "root", "a/b")
    np.testing.assert_array_equal(ds.Y["train"], [[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 1, 0]])
    assert ds.X["train"].shape == (3, 3)
    assert any(s.name == "toy" for s, _ in list_datasets(root))
    first = ds.cache_path
    _toy_dir(tmp_path, extra_row="4,u,c\n")
    ds2 = load_dataset("toy", data_dir=root)
    assert ds2.cache_path != first and ds2.X["train"].shape[0] == 4
    X, Y = ds2.split("train+valid")
    assert X.shape == (5, 3) and Y.shape == (5, 4)


def test_errors_name_the_problem(tmp_path, monkeypatch):
    monkeypatch.delenv("HMLJAX_DATA", raising=False)
    with pytest.raises(DataError, match="unknown dataset 'nope'; registered"):
        load_dataset("nope")
    with pytest.raises(DataError, match=r"unknown dataset 'Cellcycle_FUNN' \(did you mean 'cellcycle_FUN'\?\)"):
        load_dataset("Cellcycle_FUNN")
    with pytest.raises(DataError, match="needs a data directory"):
        load_dataset("cellcycle_FUN")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cellcycle_FUN", data_dir=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="no ARFF files"):
        load_dataset("cellcycle_FUN", data_dir=str(tmp_path))


def test_registry_carries_published_settings():
    assert get_spec("cellcycle_go").hidden == 1000 and get_spec("cellcycle_GO").epochs == 62
    assert get_spec("enron").name == "Enron_corr" and get_spec("Enron_corr").lr == 1e-5
    assert REGISTRY["expr_FUN"].published_auprc == 0.302 and not REGISTRY["expr_FUN"].shipped
    assert REGISTRY["seq_GO"].rerun_auprc == pytest.approx((0.386, 0.0028))  # RARE's Table 5, None
    assert REGISTRY["Diatoms"].rerun_auprc is None
    assert REGISTRY["ImCLEF07D"].epochs == 588 and REGISTRY["seq_GO"].hidden == 9000


def test_synthetic_is_deterministic_and_long_tailed():
    a = make_synthetic(seed=3, num_train=300, num_valid=50, num_test=50)
    b = make_synthetic(seed=3, num_train=300, num_valid=50, num_test=50)
    c = make_synthetic(seed=4, num_train=300, num_valid=50, num_test=50)
    np.testing.assert_array_equal(a[0]["train"], b[0]["train"])
    assert a[1] == b[1] and a[2] == b[2]
    assert not np.array_equal(np.nan_to_num(a[0]["train"]), np.nan_to_num(c[0]["train"]))
    ds = load_dataset("synthetic")
    freq = np.sort(np.asarray(ds.Y["train"])[:, ds.hierarchy.evaluated].mean(0))[::-1]
    assert freq[0] > 20 * np.median(freq)  # a head and a long tail, like the real data
    assert ds.hierarchy.depth_min.max() == 4
    dag = load_dataset("synthetic_dag")
    assert not dag.hierarchy.is_tree and dag.hierarchy.is_closed(np.asarray(dag.Y["train"]))


def test_epoch_sampler():
    s = EpochSampler(10, 4, seed=1)
    assert isinstance(s, Sampler) and s.steps_per_epoch == 2
    e0, e0b, e1 = s.epoch(0), s.epoch(0), s.epoch(1)
    assert e0.indices.shape == (2, 4) and e0.where.all()
    np.testing.assert_array_equal(e0.indices, e0b.indices)
    assert not np.array_equal(e0.indices, e1.indices)
    assert len(set(e0.indices.ravel())) == 8
    p = EpochSampler(10, 4, seed=1, drop_remainder=False).epoch(0)
    assert p.indices.shape == (3, 4) and p.where.sum() == 10
    assert sorted(p.indices[p.where]) == list(range(10))
    pool = np.array([0, 0, 0, 5, 5, 7])  # an oversampled pool: duplicates allowed
    o = EpochSampler(pool, 3, seed=0).epoch(2)
    assert sorted(o.indices.ravel()) == sorted(pool)
    X = np.arange(20.0).reshape(10, 2)
    batches = list(s.batches(0, X))
    np.testing.assert_array_equal(batches[0][1], X[e0.indices[0]])
    with pytest.raises(ValueError, match="batch_size"):
        EpochSampler(3, 4, seed=0)


def test_cli_data_info_synthetic(capsys):
    assert cli_main(["data", "info", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "nodes" in out and "label cardinality" in out
    assert cli_main(["data", "info", "nope"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


@needs_data
def test_cli_data_info_matches_readme(capsys):
    assert cli_main(["data", "info", "cellcycle_GO", "--data-dir", DATA_DIR, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["train_rows"], info["valid_rows"], info["test_rows"]) == (1625, 848, 1278)
    assert (info["nodes"], info["edges"], info["features"]) == (4126, 5827, 77)


@needs_data
@pytest.mark.parametrize(
    "name,rows,nodes",
    [("Diatoms", (2065, 1054), 399), ("Enron_corr", (988, 660), 57), ("ImCLEF07A", (10000, 1006), 97),
     ("yeast", (1500, 917), 14), ("scene", (1211, 1196), 6)],
)
def test_other_datasets_load(name, rows, nodes):
    ds = load(name)
    assert (ds.X["train"].shape[0], ds.X["test"].shape[0]) == rows
    assert ds.hierarchy.num_nodes == nodes
    assert np.isfinite(np.asarray(ds.X["train"])).all()


def test_atomic_write_onto_a_folder_names_the_folder(tmp_path):
    # os.replace(temporary, folder) failed with EBUSY or EISDIR naming the temporary, not what was asked for.
    from hmljax.data import atomic_write_bytes

    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder") as err:
        atomic_write_bytes(str(tmp_path / "out"), b"x")
    assert err.value.filename == str(tmp_path / "out") and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_files_and_caches_get_the_mode_a_plain_open_would(tmp_path, umask):
    # mkstemp / mkdtemp create 0600 / 0700, which the rename kept: every results.json, table and cache was
    # unreadable to the rest of a shared group. They now follow the umask like open() and os.makedirs.
    import stat

    from hmljax.data import atomic_write_bytes, atomic_write_text
    from hmljax.metrics import cd_diagram

    old = os.umask(umask)
    try:
        atomic_write_text(str(tmp_path / "a" / "results.json"), "{}")
        atomic_write_bytes(str(tmp_path / "b.npy"), b"x")
        cd_diagram(np.array([1.5, 1.5]), ["p", "q"], 1.0, tmp_path / "cd.png")
        _, _, final = cached_arrays("toy", "h", {}, lambda: ({"X": np.ones((2, 2))}, {}), root=str(tmp_path / "c"))
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    for f in (tmp_path / "a" / "results.json", tmp_path / "b.npy", tmp_path / "cd.png",
              os.path.join(final, "X.npy"), os.path.join(final, "meta.json")):
        assert mode(f) == 0o666 & ~umask, f
    assert mode(final) == 0o777 & ~umask
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
