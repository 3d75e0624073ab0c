import gzip
import os
import time

import numpy as np
import pytest
from conftest import DATA_DIR, needs_data

from hmljax.data import ArffError, read_arff

# rows (train, valid, test), raw feature attributes, hierarchy entries -- from shared/data/README.md
SIZES = {
    "cellcycle_FUN": ((1628, 848, 1281), 77, 499),
    "derisi_FUN": ((1608, 842, 1275), 63, 499),
    "eisen_FUN": ((1058, 529, 837), 79, 461),
    "gasch2_FUN": ((1639, 849, 1291), 52, 499),
    "seq_FUN": ((1701, 879, 1339), 478, 499),
    "spo_FUN": ((1600, 837, 1266), 80, 499),
    "cellcycle_GO": ((1625, 848, 1278), 77, 5827),
    "derisi_GO": ((1605, 842, 1272), 63, 5821),
    "eisen_GO": ((1055, 528, 835), 79, 5037),
    "gasch2_GO": ((1636, 849, 1288), 52, 5837),
    "seq_GO": ((1692, 876, 1332), 478, 5839),
    "spo_GO": ((1597, 837, 1263), 80, 5821),
}
# One-hot expansion of nominal attributes (REFERENCE.md 1.1: seq 478 -> 529, spo 80 -> 86).
EXPANDED = {"seq": 529, "spo": 86}


def _hmc_path(name, split):
    fam = "datasets_FUN" if name.endswith("FUN") else "datasets_GO"
    return os.path.join(DATA_DIR, "hmc", fam, name, f"{name}.{split}.arff.gz")


@needs_data
@pytest.mark.parametrize("name", sorted(SIZES))
def test_hmc_files_parse_to_published_sizes(name):
    rows, n_attr, n_entries = SIZES[name]
    for split, n in zip(("train", "valid", "test"), rows, strict=True):
        d = read_arff(_hmc_path(name, split))
        assert d.num_rows == n
        assert len(d.hierarchy_entries) == n_entries
        base = name.split("_")[0]
        assert d.features.shape[1] == EXPANDED.get(base, n_attr)
        assert len(d.annotations) == n and all(d.annotations)


@needs_data
@pytest.mark.parametrize(
    "stem,split,n,feats,entries",
    [
        ("Diatoms", "train", 2065, 371, 398), ("Diatoms", "test", 1054, 371, 398),
        ("Enron_corr", "trainvalid", 988, 1001, 56), ("Enron_corr", "test", 660, 1001, 56),
        ("ImCLEF07A", "Train", 10000, 80, 96), ("ImCLEF07A", "Test", 1006, 80, 96),
    ],
)
def test_other_files(stem, split, n, feats, entries):
    d = read_arff(os.path.join(DATA_DIR, "hmc", "others", f"{stem}_{split}.arff.gz"))
    assert (d.num_rows, d.features.shape[1], len(d.hierarchy_entries)) == (n, feats, entries)


@needs_data
@pytest.mark.parametrize(
    "file,q,n,feats",
    [("yeast-train", 14, 1500, 103), ("yeast-test", 14, 917, 103), ("scene-train", 6, 1211, 294),
     ("scene-test", 6, 1196, 294), ("emotions", 6, 593, 72), ("bibtex", 159, 7395, 1836)],
)
def test_mulan_files(file, q, n, feats):
    d = read_arff(os.path.join(DATA_DIR, "mulan", f"{file}.arff.gz"), num_labels=q)
    assert d.features.shape == (n, feats)
    assert d.labels.shape == (n, q) and d.labels.dtype == np.uint8
    assert d.labels.sum() > 0


@needs_data
def test_seq_go_parse_time():
    path = _hmc_path("seq_GO", "train")
    read_arff(path)
    t = time.perf_counter()
    read_arff(path)
    # Behavioural guard against accidental quadratic parsing (target is < 2 s; see README figures).
    assert time.perf_counter() - t < 10


def _write(tmp_path, text, name="f.arff", gz=False):
    p = tmp_path / (name + (".gz" if gz else ""))
    data = text.encode()
    p.write_bytes(gzip.compress(data) if gz else data)
    return str(p)


HEADER = """% a comment line
@relation 'toy data'
@attribute 'first name' numeric
@attribute colour {red, green,'dark blue'}
@attribute x2 REAL   % trailing comment
@attribute class hierarchical a,a/b,a/c,d
@data
"""


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_small_hierarchical_file(tmp_path, gz):
    text = HEADER + "1.5,red,2,a/b@d\n?,'dark blue',3,a/c % comment\n2,?,?,d\n\n"
    d = read_arff(_write(tmp_path, text, gz=gz))
    assert d.relation == "toy data"
    assert d.feature_names == ("first name", "colour=red", "colour=green", "colour=dark blue", "x2")
    np.testing.assert_array_equal(
        d.features, [[1.5, 1, 0, 0, 2], [np.nan, 0, 0, 1, 3], [2, 0, 0, 0, np.nan]]
    )
    assert d.annotations == (("a/b", "d"), ("a/c",), ("d",))
    assert d.annotation_lines == (8, 9, 10)
    assert d.hierarchy_entries == ("a", "a/b", "a/c", "d")


def test_sparse_rows_and_mulan_labels(tmp_path):
    text = "@relation r\n@attribute f0 numeric\n@attribute f1 numeric\n@attribute f2 {0,1}\n" \
           "@attribute L1 {0,1}\n@attribute L2 {0,1}\n@data\n{0 2.5,4 1}\n{1 -1,2 1,3 1}\n{}\n"
    d = read_arff(_write(tmp_path, text), num_labels=2)
    np.testing.assert_array_equal(d.features, [[2.5, 0, 0], [0, -1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(d.labels, [[0, 1], [1, 0], [0, 0]])
    assert d.label_names == ("L1", "L2")


def test_meka_header_labels_first(tmp_path):
    text = "@relation 'yeast: -C 2'\n@attribute A {0,1}\n@attribute B {0,1}\n@attribute f numeric\n" \
           "@data\n1,0,0.5\n0,1,-2\n"
    d = read_arff(_write(tmp_path, text))
    assert d.label_names == ("A", "B")
    np.testing.assert_array_equal(d.labels, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(d.features, [[0.5], [-2]])


BAD = {
    "empty_file": ("", None, "empty file"),
    "wrong_field_count": (HEADER + "1,red,2\n", 8, "expected 4 fields"),
    "not_a_number": (HEADER + "1,red,abc,a\n", 8, "is not a number"),
    "nominal_outside_set": (HEADER + "1,purple,2,a\n", 8, "not in"),
    "unterminated_quote": (HEADER + "1,'red,2,a\n", 8, "unterminated quote"),
    "no_data_section": ("@relation r\n@attribute a numeric\n", 2, "missing @data"),
    "no_rows": (HEADER, 7, "no data rows"),
    "bad_type": ("@relation r\n@attribute a date2\n@data\n1\n", 2, "unsupported type"),
    "sparse_index_range": ("@relation r\n@attribute a numeric\n@data\n{5 1}\n", 4, "out of range"),
    "sparse_bad_entry": ("@relation r\n@attribute a numeric\n@data\n{0}\n", 4, "is not 'index value'"),
    "unclosed_nominal": ("@relation r\n@attribute a {x,y\n@data\nx\n", 2, "closing"),
    "junk_header": ("@relation r\nhello\n@attribute a numeric\n@data\n1\n", 2, "unexpected header"),
    "missing_class": (HEADER + "1,red,2,\n", 8, "no class label"),
    "label_not_binary": ("@relation r\n@attribute f numeric\n@attribute L {0,1}\n@data\n1,2\n", 5, "not 0/1"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_input_raises_arff_error(tmp_path, case):
    text, line, msg = BAD[case]
    path = _write(tmp_path, text)
    with pytest.raises(ArffError) as info:
        read_arff(path, num_labels=1 if case == "label_not_binary" else None)
    err = info.value
    assert err.path == path and err.line == line
    assert msg in str(err) and path in str(err)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ArffError, match="cannot read"):
        read_arff(tmp_path / "absent.arff")
    p = tmp_path / "bad.arff.gz"
    p.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ArffError, match="gzip"):
        read_arff(p)


@pytest.mark.parametrize("gz", [False, True])
def test_byte_order_mark_and_windows_line_ends(tmp_path, gz):
    # Windows editors save UTF-8 with a byte-order mark: the header was refused ("unexpected header line
    # '\ufeff@relation ...'"). The header-only reader (used by `hmljax predict`) reads it too.
    from hmljax.data import read_arff_header

    text = "@relation r\n@attribute a numeric\n@attribute b {x,y}\n@attribute class hierarchical A,A/1,B\n@data\n" \
           "1.5,x,A/1\n-2,y,B\n"
    plain, marked = tmp_path / "plain.arff", tmp_path / ("marked.arff.gz" if gz else "marked.arff")
    plain.write_text(text)
    data = ("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8")
    marked.write_bytes(gzip.compress(data) if gz else data)
    a, b = read_arff(str(plain)), read_arff(str(marked))
    np.testing.assert_array_equal(a.features, b.features)
    assert a.feature_names == b.feature_names and a.relation == b.relation == "r"
    assert read_arff_header(str(marked))[0] == "r"
