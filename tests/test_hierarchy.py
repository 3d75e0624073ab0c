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
    assert dict(zip(h.names, h.depth_min.tolist(), strict=True)) == {"root": 0, "A": 1, "D": 1, "C": 2, "B": 2}
    assert dict(zip(h.names, h.depth_max.tolist(), strict=True)) == {"root": 0, "A": 1, "D": 1, "C": 3, "B": 2}
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
    for kw in ({"roots": "root"}, {"skip": "A"}):  # roots: "roots not in the hierarchy: ['o', 'r', 't']";
        with pytest.raises(HierarchyError, match="must be a collection of nodes, got the string"):  # skip: ignored
            Hierarchy.from_edges([("root", "A"), ("A", "B")], **kw)
    with pytest.raises(HierarchyError, match="paths is the string 'abc'"):  # was the terms 'a', 'b' and 'c'
        Hierarchy.from_paths("abc")


def test_unknown_label_names_the_row():
    h = Hierarchy.from_paths(["a", "a/b"])
    with pytest.raises(HierarchyError, match="f.arff:12: label 'zz'"):
        h.encode([("a",), ("zz",)], where=["f.arff:11", "f.arff:12"])
    # A row given as a bare name was iterated letter by letter ("label 'b' is not in the hierarchy"), or, where
    # names are one letter, silently encoded; the whole list as one string the same.
    with pytest.raises(HierarchyError, match=r"row 1: the string 'a/b', not a list of names"):
        h.encode([("a",), "a/b"])
    with pytest.raises(HierarchyError, match="annotations is the string 'a'"):
        h.encode("a")


def test_json_round_trip():
    h = Hierarchy.from_edges([("root", "A"), ("A", "B"), ("root", "B")])
    h2 = Hierarchy.from_json(h.to_json())
    assert h2.names == h.names and (h2.edges == h.edges).all() and (h2.evaluated == h.evaluated).all()


@needs_data
# Every FUN tree and cellcycle_GO by default; the other GO DAGs (10-20 s each) with -m slow.
@pytest.mark.parametrize("name", FUN + ["cellcycle_GO"] + [pytest.param(g, marks=pytest.mark.slow) for g in GO[1:]])
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


# ----------------------------------------------------------------------------- from_pairs, repr


@pytest.mark.parametrize(
    "pairs",
    [
        [(0, 1), (0, 2), (2, 3), (1, 3)],
        [(np.int64(0), np.int32(1)), (0, 2), (np.uint8(2), 3), (1, 3)],
        np.array([[0, 1], [0, 2], [2, 3], [1, 3]], np.int32),
    ],
    ids=["ints", "numpy-ints", "int-array"],
)
def test_from_pairs_int_ids_keep_node_i_as_id_i(pairs):
    h = Hierarchy.from_pairs(pairs)
    assert h.names == ("0", "1", "2", "3")
    assert sorted(map(tuple, h.edges.tolist())) == [(1, 0), (2, 0), (3, 1), (3, 2)]  # (child, parent)
    assert not h.is_tree and h.roots.tolist() == [0]
    assert h.evaluated.tolist() == [False, True, True, True]  # the root, as from_edges
    np.testing.assert_array_equal(h.ancestry, _closure(h))


def test_from_pairs_ids_with_names_num_nodes_and_isolated_nodes():
    h = Hierarchy.from_pairs([(2, 0)], names=["leaf", "alone", "top"])
    assert h.names == ("leaf", "alone", "top") and h.roots.tolist() == [1, 2]
    assert h.encode([("leaf",)]).tolist() == [[1, 0, 1]]
    h = Hierarchy.from_pairs([(3, 0), (3, 1)], num_nodes=5, unevaluated=[3])
    assert h.num_nodes == 5 and h.evaluated.tolist() == [True, True, True, False, True]
    assert Hierarchy.from_pairs([(0, 1)], unevaluated=()).evaluated.all()
    assert Hierarchy.from_pairs([], num_nodes=3).summary()["kind"] == "flat"


def test_from_pairs_names_keep_first_appearance_or_given_order():
    pairs = [("z", "b"), ("z", "a"), ("a", "c")]
    assert Hierarchy.from_pairs(pairs).names == ("z", "b", "a", "c")
    h = Hierarchy.from_pairs(pairs, names=["c", "b", "a", "z"])
    assert h.names == ("c", "b", "a", "z")
    assert {(h.names[c], h.names[p]) for c, p in h.edges} == {("b", "z"), ("a", "z"), ("c", "a")}
    assert h.evaluated.tolist() == [True, True, True, False]
    tup = Hierarchy.from_pairs([(("x", 1), ("x", 2))])  # any hashable name
    assert tup.names == (("x", 1), ("x", 2))
    arr = Hierarchy.from_pairs(np.array(pairs))  # a string array reads as names
    assert arr.names == ("z", "b", "a", "c")


def test_from_pairs_other_orders():
    pairs = [(3, 1), (1, 0), (3, 2), (2, 4)]
    topo = Hierarchy.from_pairs(pairs, order="topological")
    assert topo.names == ("3", "1", "0", "2", "4")  # parents first, ties by id
    assert all(topo.names.index(topo.names[p]) < topo.names.index(topo.names[c]) for c, p in topo.edges)
    assert Hierarchy.from_pairs(pairs, order="depth").names == ("3", "1", "2", "0", "4")
    with pytest.raises(ValueError, match="order"):
        Hierarchy.from_pairs(pairs, order="name")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pairs=[(0, 0)]), "self-loop"),
        (dict(pairs=[("a", "a")]), "self-loop"),
        (dict(pairs=[(0, 1), (1, 2), (2, 0)]), "cycle"),
        (dict(pairs=[(0, 1), (1, 2), (2, 1)], roots=[0]), "cycle"),
        (dict(pairs=[(0, 5)], num_nodes=3), "out of range"),
        (dict(pairs=[(-1, 2)]), "out of range"),
        (dict(pairs=[(0, 1)], names=["a", "b", "c"], num_nodes=2), "3 names"),
        (dict(pairs=[(0, 1), (0, 2), (0, 1)]), "repeated"),
        (dict(pairs=[("a", "b"), ("a", "b")]), "repeated"),
        (dict(pairs=[(0, 1), (2, 3)], roots=[0]), "not reachable"),
        (dict(pairs=[("a", "b")], names=["a", "b", "orphan"], roots=["a"]), "not reachable"),
        (dict(pairs=[("a", "b")], names=["a"]), "not in names"),
        (dict(pairs=[("a", "b")], names=["a", "b", "a"]), "duplicate names"),
        (dict(pairs=[(0, "a")]), "mix"),
        (dict(pairs=[(0.0, 1.0)]), "malformed"),
        (dict(pairs=[("a", None)]), "malformed"),
        (dict(pairs=["ab"]), "malformed"),
        (dict(pairs=np.zeros((2, 2))), "dtype"),
        (dict(pairs=np.zeros((2, 3), int)), r"\[M, 2\]"),
        (dict(pairs=[(0, 1)], roots=[7]), "roots"),
        (dict(pairs=[]), "no nodes"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_from_pairs_refuses(kwargs, match):
    with pytest.raises(HierarchyError, match=match):
        Hierarchy.from_pairs(**kwargs)


def test_from_edges_given_order():
    edges = [("root", "b"), ("b", "a"), ("root", "c")]
    assert Hierarchy.from_edges(edges, order="given").names == ("root", "b", "a", "c")
    assert Hierarchy.from_edges(edges).names == ("root", "b", "c", "a")  # the default is unchanged
    with pytest.raises(ValueError, match="given"):
        Hierarchy.from_edges(edges, order="topological")


def test_repr_is_one_short_line_on_5000_nodes():
    rng = np.random.default_rng(0)
    n = 5000
    child = np.arange(1, n)
    pairs = np.stack([rng.integers(0, child), child], 1)  # each node k hangs from one node < k
    pairs = np.concatenate([pairs, [[0, n - 1]] if pairs[-1, 0] != 0 else [[1, n - 1]]])  # one extra parent: a DAG
    h = Hierarchy.from_pairs(pairs)
    r = repr(h)
    assert "\n" not in r and len(r) < 120 and r.startswith(f"Hierarchy(C={n} nodes, {n} edges, DAG, depth 1-")
    assert "1 root: 0" in r and f"{n - 1} evaluated" in r
    assert repr(Hierarchy.from_paths(["01", "01/02", "02"])) == (
        "Hierarchy(C=4 nodes, 3 edges, tree, depth 1-2, 1 root: root, 3 evaluated)"
    )
    assert "4 roots: a, b, c, ..." in repr(Hierarchy.flat(["a", "b", "c", "d"]))


def _random_dag(rng, n):
    """Random DAG over ids 0..n-1 (parents have smaller ids), shortcut edges included."""
    pairs = [(int(rng.integers(0, c)), c) for c in range(1, n)]
    for _ in range(n // 2):
        p, c = sorted(rng.choice(n, 2, replace=False).tolist())
        pairs.append((p, c))
    return Hierarchy.from_pairs(sorted(set(pairs)), num_nodes=n)


@pytest.mark.parametrize("seed", range(5))
def test_from_ancestry_round_trips_the_ancestry_and_reduces_shortcuts(seed):
    h = _random_dag(np.random.default_rng(seed), 30)
    g = Hierarchy.from_ancestry(h.ancestry.astype(np.uint8))
    np.testing.assert_array_equal(g.ancestry, h.ancestry)
    assert g.names == tuple(str(i) for i in range(30)) and g.evaluated.all()
    # Edges: exactly h's minus the shortcuts (an edge p -> c with another path from p to c).
    strict = h.ancestry & ~np.eye(30, dtype=bool)
    shortcut = {(int(c), int(p)) for c, p in h.edges
                if any(strict[p, k] and strict[k, c] for k in range(30))}
    assert {tuple(e) for e in g.edges.tolist()} == {tuple(e) for e in h.edges.tolist()} - shortcut
    assert Hierarchy.from_ancestry(g.ancestry).edges.tolist() == g.edges.tolist()


def test_from_ancestry_names_and_unevaluated():
    R = [[1, 1, 1], [0, 1, 0], [0, 0, 1]]
    h = Hierarchy.from_ancestry(R, names=["r", "a", "b"], unevaluated=["r"])
    assert h.names == ("r", "a", "b") and h.evaluated.tolist() == [False, True, True]
    assert [h.names[int(p)] for p in h.parents[2]] == ["r"]


@pytest.mark.parametrize("R, match", [
    (np.ones((2, 3), bool), "square"),
    (np.array([[1, 2], [0, 1]]), "0/1"),
    (np.array([[1, 1], [0, 0]]), r"ancestry\[1, 1\] is false"),
    (np.array([[1, 1], [1, 1]]), "cycle"),
    (np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]]), r"not transitively closed: node 2 descends from 0.*adjacency"),
    (np.zeros((0, 0), bool), "empty"),
])
def test_from_ancestry_refuses(R, match):
    with pytest.raises(HierarchyError, match=match):
        Hierarchy.from_ancestry(R)
