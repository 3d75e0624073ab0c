import numpy as np
import pytest
from conftest import FUN, GO, load, needs_data

from hmljax.data import ArffError, load_dataset
from hmljax.hierarchy import Hierarchy, HierarchyError


def _closure(h):
    """Reflexive-transitive closure by repeated boolean squaring (independent of Hierarchy.ancestry)."""
    n = h.num_nodes
    a = np.eye(n, dtype=bool)
    a[h.edges[:, 1], h.edges[:, 0]] = True  # parent -> child
    while True:
        nxt = a | ((a.astype(np.float32) @ a.astype(np.float32)) > 0)
        if (nxt == a).all():
            return a
        a = nxt


def test_small_tree():
    h = Hierarchy.from_paths(["01", "01/02", "01/02/03", "02", "10"])
    assert h.names == ("01", "02", "10", "root", "01/02", "01/02/03")  # C-HMCNN order: root after the top level
    assert h.is_tree and list(h.roots) == [3]
    assert h.evaluated.tolist() == [True, True, True, False, True, True]
    assert h.depth_min.tolist() == [1, 1, 1, 0, 2, 3]
    assert h.height.tolist() == [2, 0, 0, 3, 1, 0]
    np.testing.assert_array_equal(h.ancestry, _closure(h))
    y = h.encode([("01/02",), ("10", "01/02/03")])
    assert y.tolist() == [[1, 0, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1]]
    assert h.is_closed(y)


def test_small_dag_depths_and_order():
    edges = [("root", "A"), ("A", "B"), ("B", "C"), ("A", "C"), ("root", "D"), ("D", "C")]
    h = Hierarchy.from_edges(edges, skip=())
    assert h.names == ("root", "A", "D", "B", "C")  # (shortest distance, name)
    assert not h.is_tree
    assert dict(zip(h.names, h.depth_min.tolist())) == {"root": 0, "A": 1, "D": 1, "C": 2, "B": 2}
    assert dict(zip(h.names, h.depth_max.tolist())) == {"root": 0, "A": 1, "D": 1, "C": 3, "B": 2}
    assert [sorted(h.names[i] for i in lvl) for lvl in h.levels()] == [["root"], ["A", "D"], ["B", "C"]]
    np.testing.assert_array_equal(h.ancestry, _closure(h))
    assert h.encode([("C",)]).tolist() == [[1, 1, 1, 1, 1]]


def test_cycles_and_unreachable_nodes_are_rejected():
    with pytest.raises(HierarchyError, match="cycle"):
        Hierarchy.from_edges([("root", "A"), ("A", "B"), ("B", "A")], roots=["root"])
    with pytest.raises(HierarchyError, match="cycle"):
        Hierarchy.from_edges([("A", "A")])
    with pytest.raises(HierarchyError, match="not reachable"):
        Hierarchy.from_edges([("root", "A"), ("X", "Y")], roots=["root"])
    with pytest.raises(HierarchyError, match="malformed path"):
        Hierarchy.from_paths(["01//02"])


def test_unknown_label_names_the_row():
    h = Hierarchy.from_paths(["a", "a/b"])
    with pytest.raises(HierarchyError, match="f.arff:12: label 'zz'"):
        h.encode([("a",), ("zz",)], where=["f.arff:11", "f.arff:12"])


def test_json_round_trip():
    h = Hierarchy.from_edges([("root", "A"), ("A", "B"), ("root", "B")])
    h2 = Hierarchy.from_json(h.to_json())
    assert h2.names == h.names and (h2.edges == h.edges).all() and (h2.evaluated == h.evaluated).all()


@needs_data
@pytest.mark.parametrize("name", FUN + GO)
def test_real_hierarchies(name):
    ds = load(name)
    h = ds.hierarchy
    np.testing.assert_array_equal(h.ancestry, _closure(h))
    assert np.diag(h.ancestry).all()  # every node in its own descendant set: no empty max
    for split in ds.splits:
        assert h.is_closed(np.asarray(ds.Y[split]))
    if name.endswith("FUN"):
        assert h.is_tree and h.names.index("root") == 18 and 1 <= h.depth_min.max() <= 6
        assert h.num_nodes == (462 if name.startswith("eisen") else 500)
    else:
        assert not h.is_tree and h.names[:4] == ("root", "GO0003674", "GO0005575", "GO0008150")
        assert (~h.evaluated).sum() == 4


@needs_data
def test_cellcycle_go_structure():
    h = load("cellcycle_GO").hierarchy
    s = h.summary()
    assert (s["nodes"], s["edges"], s["multi_parent_nodes"]) == (4126, 5827, 1477)
    assert (s["max_depth_min"], s["max_depth_max"]) == (12, 14)


def test_label_outside_hierarchy_in_a_file(tmp_path, monkeypatch):
    d = tmp_path / "data"
    d.mkdir()
    head = "@relation r\n@attribute f numeric\n@attribute class hierarchical a,a/b\n@data\n"
    (d / "toy.train.arff").write_text(head + "1,a/b\n2,a/q\n")
    (d / "toy.test.arff").write_text(head + "1,a\n")
    with pytest.raises(ArffError, match=r"toy.train.arff:6: label 'a/q'"):
        load_dataset("toy", data_dir=str(d))
