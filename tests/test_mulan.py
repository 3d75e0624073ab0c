"""Flat multi-label data: MULAN (XML) and MEKA (-C q) files, identifiers, imbalance statistics."""

import gzip
import json
import os
import time

import numpy as np
import pytest
from conftest import DATA_DIR, needs_data

from hmljax.cli import main as cli_main
from hmljax.data import (
    ArffError,
    get_spec,
    imbalance_summary,
    irlbl,
    label_cardinality,
    label_density,
    list_datasets,
    load_dataset,
    mean_ir,
    minority_labels,
    read_arff,
    read_mulan_xml,
)

# A toy flat dataset: 4 feature attributes (colour is nominal -> 3 one-hot columns), 3 labels.
FEATURES = [("f0", "numeric"), ("f1", "numeric"), ("flag", "{0,1}"), ("colour", "{red,green,blue}")]
LABELS = ["L1", "L2", "L3"]
ROWS = [  # (f0, f1, flag, colour), (L1, L2, L3)
    (("1.5", "0", "1", "green"), (1, 0, 1)),
    (("-2", "3.25", "0", "red"), (0, 1, 0)),
    (("0", "?", "1", "blue"), (1, 1, 0)),
    (("4", "1", "0", "red"), (0, 0, 0)),  # no label
    (("0.5", "0", "0", "green"), (1, 0, 0)),
    (("2", "-1", "1", "red"), (1, 1, 1)),
    (("3", "2", "0", "blue"), (0, 0, 0)),  # no label
    (("1", "1", "1", "red"), (0, 0, 1)),
    (("0", "5", "0", "green"), (1, 0, 0)),
    (("7", "0", "1", "blue"), (0, 1, 0)),
]
TRAIN, TEST = ROWS[:7], ROWS[7:]


def _header(relation, attrs):
    return f"@relation {relation}\n" + "".join(f"@attribute {n} {t}\n" for n, t in attrs) + "@data\n"


def _dense(rows, layout):
    out = []
    for feats, labs in rows:
        labs = [str(v) for v in labs]
        fields = {"first": labs + list(feats), "last": list(feats) + labs,
                  "middle": list(feats[:2]) + labs + list(feats[2:])}[layout]
        out.append(",".join(fields) + "\n")
    return "".join(out)


def _sparse(rows):
    """MULAN layout, sparse: unlisted values are 0 (numeric) or the first category (red)."""
    out = []
    for feats, labs in rows:
        values = list(feats) + [str(v) for v in labs]
        items = [f"{k} {v}" for k, v in enumerate(values) if v not in ("0", "red")]
        out.append("{" + ",".join(items) + "}\n")
    return "".join(out)


def _attrs(layout):
    labels = [(n, "{0,1}") for n in LABELS]
    return {"first": labels + FEATURES, "last": FEATURES + labels,
            "middle": FEATURES[:2] + labels + FEATURES[2:]}[layout]


def _xml(names, nested=False):
    if nested:  # MULAN's hierarchical label files nest children inside their parent
        body = f'<label name="{names[0]}"><label name="{names[1]}"></label></label>\n' + "".join(
            f'<label name="{n}"></label>\n' for n in names[2:])
    else:
        body = "".join(f'<label name="{n}"></label>\n' for n in names)
    return f'<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">\n{body}</labels>\n'


def _write(folder, name, text, gz=False):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + (".gz" if gz else ""))
    with open(path, "wb") as fh:
        fh.write(gzip.compress(text.encode()) if gz else text.encode())
    return path


def _dataset(folder, stem, relation, layout="last", xml=True, sparse=False, gz=False, nested=False):
    """Writes <stem>-{train,test}.arff (and <stem>.xml) under folder."""
    for split, rows in (("train", TRAIN), ("test", TEST)):
        body = _sparse(rows) if sparse else _dense(rows, layout)
        _write(folder, f"{stem}-{split}.arff", _header(relation, _attrs(layout)) + body, gz=gz)
    if xml:
        _write(folder, f"{stem}.xml", _xml(LABELS, nested=nested))
    return folder


def _expected(rows):
    colour = {"red": [1, 0, 0], "green": [0, 1, 0], "blue": [0, 0, 1]}
    X = [[float(f[0]), float("nan") if f[1] == "?" else float(f[1]), float(f[2]), *colour[f[3]]] for f, _ in rows]
    return np.array(X), np.array([lab for _, lab in rows], dtype=np.uint8)


VARIANTS = {
    "meka_first": dict(relation="'toy: -C 3'", layout="first", xml=False),
    "meka_last": dict(relation="'toy: -C -3 -split 70'", layout="last", xml=False),
    "mulan": dict(relation="toy", layout="last"),
    "mulan_middle": dict(relation="toy", layout="middle"),
    "mulan_nested_xml": dict(relation="toy", layout="last", nested=True),
    # medical's relation is a WEKA filter chain holding "-C 45": the XML must win over it.
    "medical_style": dict(relation="'MEDC: -C 2 -I 0-weka.filters.unsupervised.attribute.Remove-R1-45'",
                          layout="last"),
    "mulan_sparse_gz": dict(relation="toy", sparse=True, gz=True),
    "meka_sparse": dict(relation="'toy: -C -3'", sparse=True, xml=False),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_layouts_read_the_same_arrays(tmp_path, variant):
    folder = _dataset(str(tmp_path / variant), variant, **VARIANTS[variant])
    xml = os.path.join(folder, f"{variant}.xml")
    kw = dict(label_names=read_mulan_xml(xml), label_file=xml) if os.path.exists(xml) else {}
    path = [os.path.join(folder, f) for f in os.listdir(folder) if "-train." in f][0]
    d = read_arff(path, **kw)
    X, Y = _expected(TRAIN)
    np.testing.assert_array_equal(d.features, X)
    np.testing.assert_array_equal(d.labels, Y)
    assert d.label_names == tuple(LABELS)
    assert d.feature_names == ("f0", "f1", "flag", "colour=red", "colour=green", "colour=blue")


def test_meka_and_mulan_twins_load_identically(tmp_path):
    root = str(tmp_path / "data")
    for variant in ("meka_first", "meka_last", "mulan", "mulan_middle", "medical_style", "mulan_sparse_gz"):
        _dataset(os.path.join(root, variant), variant, **VARIANTS[variant])
    ref = load_dataset("mulan", data_dir=root)
    assert ref.spec.hierarchy == "flat" and ref.spec.family == "mulan"
    assert ref.hierarchy.names == tuple(LABELS)
    for name in ("meka_first", "meka_last", "mulan_middle", "medical_style", "mulan_sparse_gz"):
        ds = load_dataset(name, data_dir=root)  # found by name, never registered
        assert ds.spec.hierarchy == "flat" and ds.hierarchy.names == tuple(LABELS), name
        for split in ("train", "test"):
            np.testing.assert_array_equal(ds.X[split], ref.X[split], err_msg=name)
            np.testing.assert_array_equal(ds.Y[split], ref.Y[split], err_msg=name)
    np.testing.assert_array_equal(ref.Y["test"], _expected(TEST)[1])
    assert ref.meta["label_source"].startswith("mulan:")
    assert load_dataset("meka_first", data_dir=root).meta["label_source"] == "meka"
    names = {s.name for s, _ in list_datasets(root)}
    assert {"mulan", "meka_first", "mulan_sparse_gz"} <= names


def test_rows_without_labels_are_kept_and_counted(tmp_path):
    root = _dataset(str(tmp_path / "d"), "toy", relation="toy")
    ds = load_dataset("toy", data_dir=root)
    assert ds.Y["train"].shape == (7, 3)
    info = ds.info()
    assert info["train_rows_without_labels"] == 2 and info["test_rows_without_labels"] == 0
    assert info["imbalance"]["rows_without_labels"] == 2


def test_single_file_mulan_dataset(tmp_path):
    folder = str(tmp_path / "d")
    _write(folder, "solo.arff", _header("solo", _attrs("last")) + _dense(ROWS, "last"))
    _write(folder, "solo.xml", _xml(LABELS))
    assert get_spec("solo", folder).hierarchy == "flat"
    ds = load_dataset("solo", data_dir=folder, split_seed=1)
    assert ds.splits == ("train", "test") and ds.X["train"].shape[0] + ds.X["test"].shape[0] == 10
    assert sorted(map(tuple, np.concatenate([ds.Y["train"], ds.Y["test"]]).tolist())) == sorted(
        tuple(lab) for _, lab in ROWS)


def test_xml_labels_nested_and_namespaced(tmp_path):
    path = _write(str(tmp_path), "n.xml", _xml(["a", "b", "c", "d"], nested=True))
    assert read_mulan_xml(path) == ("a", "b", "c", "d")


def test_escaped_quote_in_label_name(tmp_path):
    # birds: @attribute 'Swainson\'s Thrush' {0,1}; its XML says Swainson's Thrush.
    text = "@relation r\n@attribute f numeric\n@attribute 'Swainson\\'s Thrush' {0,1}\n@data\n1,1\n2,0\n"
    path = _write(str(tmp_path), "b.arff", text)
    d = read_arff(path, label_names=["Swainson's Thrush"])
    assert d.label_names == ("Swainson's Thrush",)
    np.testing.assert_array_equal(d.labels, [[1], [0]])


# ---------------------------------------------------------------------------------------------- errors


def test_bad_xml_names_the_file_and_line(tmp_path):
    root = _dataset(str(tmp_path / "d"), "toy", relation="toy", xml=False)
    xml = _write(root, "toy.xml", '<?xml version="1.0"?>\n<labels>\n<label name="L1">\n</labels>\n')
    with pytest.raises(ArffError) as info:
        read_mulan_xml(xml)
    assert info.value.path == xml and info.value.line == 4 and xml in str(info.value)
    with pytest.raises(ArffError, match="invalid MULAN label XML") as info:
        load_dataset("toy", data_dir=root)
    assert info.value.path == xml
    _write(root, "toy.xml", "<labels><other/></labels>")
    with pytest.raises(ArffError, match="no <label"):
        load_dataset("toy", data_dir=root)


def test_xml_label_missing_from_arff(tmp_path):
    root = _dataset(str(tmp_path / "d"), "toy", relation="toy")
    xml = _write(root, "toy.xml", _xml(["L1", "L2", "L4"]))
    with pytest.raises(ArffError) as info:
        load_dataset("toy", data_dir=root)
    err = info.value
    assert err.path.endswith(".arff") and os.path.basename(err.path).startswith("toy-")
    assert "'L4'" in str(err) and xml in str(err)


def test_label_names_as_one_string_is_refused(tmp_path):
    # A string was iterated letter by letter: "label(s) ... are not attributes of this file: ['L', '1']".
    from hmljax.data import read_arff

    root = _dataset(str(tmp_path / "d"), "toy", relation="toy")
    path = os.path.join(root, sorted(f for f in os.listdir(root) if f.endswith(".arff"))[0])
    with pytest.raises(TypeError, match="label_names is the string 'L1'"):
        read_arff(path, label_names="L1")


@pytest.mark.parametrize("q", [-50, 50, 0])
def test_meka_count_beyond_the_attributes(tmp_path, q):
    text = f"% MEKA\n@relation 'toy: -C {q}'\n@attribute a {{0,1}}\n@attribute f numeric\n@data\n1,2\n"
    path = _write(str(tmp_path), "m.arff", text)
    with pytest.raises(ArffError, match=f"-C {q}") as info:
        read_arff(path)
    assert info.value.path == path and info.value.line == 2


@pytest.mark.parametrize("damage", ["truncated", "flipped", "bad_crc", "cut_header"])
def test_corrupt_gzip(tmp_path, damage):
    text = _header("toy", _attrs("last")) + _dense(ROWS * 50, "last")
    blob = bytearray(gzip.compress(text.encode()))
    if damage == "truncated":
        blob = blob[: len(blob) // 2]  # EOFError inside gzip
    elif damage == "flipped":
        for i in range(20, 60):  # garble the deflate stream: zlib.error
            blob[i] ^= 0xFF
    elif damage == "bad_crc":
        blob[-8] ^= 0xFF  # BadGzipFile: CRC check failed
    else:
        blob = blob[:5]
    root = str(tmp_path / "d")
    os.makedirs(root)
    path = os.path.join(root, "toy-train.arff.gz")
    with open(path, "wb") as fh:
        fh.write(bytes(blob))
    _write(root, "toy-test.arff", _header("toy", _attrs("last")) + _dense(TEST, "last"))
    _write(root, "toy.xml", _xml(LABELS))
    with pytest.raises(ArffError, match="gzip") as info:
        read_arff(path)
    assert info.value.path == path and path in str(info.value)
    with pytest.raises(ArffError, match="gzip"):
        load_dataset("toy", data_dir=root)


def _id_dataset(folder, kind):
    """genbase-like: an identifier attribute first, then YES/NO features, a repeated nominal, labels."""
    n = 6
    ident = "protein {" + ",".join(f"P{i}" for i in range(n + 20)) + "}" if kind == "nominal" else "protein string"
    attrs = [tuple(ident.split(" ", 1)), ("PS1", "{YES,NO}"), ("site", "{1,2,3,4}"), ("A", "{0,1}"), ("B", "{0,1}")]
    body = "".join(f"P{i},{'YES' if i % 2 else 'NO'},{1 + i % 2},{i % 2},{int(i < 2)}\n" for i in range(n))
    for split in ("train", "test"):
        _write(folder, f"gen-{split}.arff", _header("protein-weka.filters.unsupervised.instance.Randomize-S73", attrs)
               + body)
    _write(folder, "gen.xml", _xml(["A", "B"]))
    return folder


@pytest.mark.parametrize("kind", ["nominal", "string"])
def test_identifier_attributes_refused_unless_dropped(tmp_path, kind):
    root = _id_dataset(str(tmp_path / kind), kind)
    with pytest.raises(ArffError, match="protein.*drop_ids=True") as info:
        load_dataset("gen", data_dir=root)
    assert info.value.line == 2  # the @attribute line
    with pytest.warns(UserWarning, match="protein"):
        ds = load_dataset("gen", data_dir=root, drop_ids=True)
    assert ds.meta["options"]["drop_ids"] is True and ds.meta["dropped_attributes"] == ["protein"]
    assert ds.info()["dropped_attributes"] == ["protein"]
    assert ds.X["train"].shape == (6, 2 + 4)  # PS1 one-hot (2) + site one-hot (4): only the id is gone
    np.testing.assert_array_equal(ds.Y["train"][:, 0], [0, 1, 0, 1, 0, 1])


# ------------------------------------------------------------------------------------- imbalance

# Hand-made: label counts 4, 2, 1, 0 over 7 rows, 3 rows without any label.
Y_HAND = np.array([
    [1, 1, 0, 0],
    [1, 0, 0, 0],
    [1, 1, 1, 0],
    [1, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
], dtype=np.uint8)


def test_imbalance_hand_example():
    np.testing.assert_allclose(irlbl(Y_HAND), [1.0, 2.0, 4.0, np.inf])
    assert mean_ir(Y_HAND) == pytest.approx(7 / 3)  # over the labels with positives
    np.testing.assert_array_equal(minority_labels(Y_HAND), [2, 3])  # IRLbl 4 and inf > 7/3
    assert label_cardinality(Y_HAND) == pytest.approx(1.0) and label_density(Y_HAND) == pytest.approx(0.25)
    # Without the empty label: IRLbl 1, 2, 4; MeanIR 7/3; only label 2 is a minority.
    np.testing.assert_array_equal(minority_labels(Y_HAND[:, :3]), [2])
    s = imbalance_summary(Y_HAND, names=["a", "b", "c", "d"])
    assert s == {
        "rows": 7, "labels": 4, "label_cardinality": 1.0, "label_density": 0.25, "rows_without_labels": 3,
        "labels_without_positives": 1, "irlbl_min": 1.0, "irlbl_max": 4.0, "mean_ir": pytest.approx(7 / 3),
        "num_minority": 2, "minority_labels": ["c", "d"],
    }
    json.dumps(s)  # finite, JSON-friendly
    assert imbalance_summary(Y_HAND.astype(bool))["minority_labels"] == [2, 3]
    with pytest.raises(ValueError, match="0/1"):
        irlbl(Y_HAND * 2)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        irlbl(Y_HAND[0])


def test_cli_prints_imbalance_and_truncates_minority_names(tmp_path, capsys):
    root = _dataset(str(tmp_path / "d"), "toy", relation="toy")
    assert cli_main(["data", "info", "toy", "--data-dir", root]) == 0
    out = capsys.readouterr().out
    assert "MeanIR" in out and "minority" in out and "density" in out and "without labels" in out
    # 15 labels: one in every row, 14 in one row each -> 14 minority labels, 10 shown.
    n, q = 40, 15
    attrs = [("f", "numeric")] + [(f"lab{j}", "{0,1}") for j in range(q)]
    Y = np.zeros((n, q), int)
    Y[:, 0] = 1
    Y[np.arange(1, q), np.arange(1, q)] = 1
    body = "".join(f"{i}," + ",".join(map(str, Y[i])) + "\n" for i in range(n))
    folder = str(tmp_path / "many")
    _write(folder, "many.arff", _header("many", attrs) + body)
    _write(folder, "many.xml", _xml([f"lab{j}" for j in range(q)]))
    assert cli_main(["data", "info", "many", "--data-dir", folder]) == 0
    out = capsys.readouterr().out
    assert "14 of 15 labels" in out and "lab10 ... and 4 more" in out
    assert cli_main(["data", "info", "many", "--data-dir", folder, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["imbalance"]["num_minority"] == 14 and info["imbalance"]["mean_ir"] == pytest.approx(
        (1 + 14 * 40) / 15)


# ------------------------------------------------------------------------------------- real data

MULAN_DIR = os.path.join(DATA_DIR or "", "mulan")
# name: (rows per split, labels) from shared/data/README.md; (cardinality, MeanIR) where ADABATCH's
# Table 1 lists the dataset (tmc2007 there is the full-feature version: same labels).
REAL = {
    "yeast": ((1500, 917), 14, (4.24, 7.20)),
    "scene": ((1211, 1196), 6, (1.07, 1.25)),
    "emotions": ((593,), 6, None),
    "bibtex": ((7395,), 159, (2.40, 12.50)),
    "Corel5k": ((4500, 500), 374, (3.52, 189.57)),
    "enron": ((1123, 579), 53, None),  # ADABATCH's 9.93 is after dropping labels with <= 20 positives
    "tmc2007-500": ((21519, 7077), 22, (2.15, 15.16)),
    "medical": ((333, 645), 45, None),
    "genbase": ((463, 199), 27, None),
    "birds": ((322, 323), 19, None),
    "delicious": ((12920, 3185), 983, None),
    "rcv1subset1": ((4000, 2000), 101, (2.88, 54.49)),
    "rcv1subset2": ((4000, 2000), 101, (2.63, 45.51)),
}
SLOW = {"bibtex", "tmc2007-500", "delicious"}  # several seconds each to parse on a busy 2-core machine


@needs_data
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in REAL])
def test_every_mulan_dataset_loads_by_name(name):
    rows, q, published = REAL[name]
    t = time.perf_counter()
    if name == "genbase":
        with pytest.warns(UserWarning, match="protein"):
            ds = load_dataset(name, data_dir=DATA_DIR, drop_ids=True)
    else:
        ds = load_dataset(name, data_dir=DATA_DIR)
    elapsed = time.perf_counter() - t
    print(f"{name}: loaded in {elapsed:.2f} s")
    xml_labels = read_mulan_xml(os.path.join(MULAN_DIR, f"{name}.xml"))
    assert len(xml_labels) == q and ds.hierarchy.names == xml_labels
    assert ds.spec.hierarchy == "flat"
    n_rows = [ds.Y[s].shape[0] for s in ds.splits]
    assert (sum(n_rows),) == rows if len(rows) == 1 else tuple(n_rows) == rows
    info = ds.info()
    im = info["imbalance"]
    assert im["labels"] == q and im["labels_without_positives"] == 0
    if published is not None:
        assert im["label_cardinality"] == pytest.approx(published[0], abs=0.011)
        assert im["mean_ir"] == pytest.approx(published[1], abs=0.006)
    if name == "birds":  # the dataset with label-less rows
        assert info["train_rows_without_labels"] > 0 and info["test_rows_without_labels"] > 0
    assert np.isfinite(np.asarray(ds.X["train"])).all()


@needs_data
def test_real_name_resolution_and_genbase_identifier():
    assert get_spec("enron", DATA_DIR).hierarchy == "flat"  # MULAN's enron when the data has it
    assert get_spec("Enron_corr", DATA_DIR).hierarchy == "tree"
    assert get_spec("enron").name == "Enron_corr"  # no data directory: the registered alias
    assert get_spec("Corel5k", DATA_DIR).stem == "Corel5k"  # "-train-sparse" files
    with pytest.raises(ArffError, match="protein"):
        read_arff(os.path.join(MULAN_DIR, "genbase-train.arff.gz"),
                  label_names=read_mulan_xml(os.path.join(MULAN_DIR, "genbase.xml")))
    listed = {s.name for s, _ in list_datasets(DATA_DIR)}
    assert set(REAL) <= listed
