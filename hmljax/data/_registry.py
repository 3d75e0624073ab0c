"""Dataset registry, discovery in a data directory, and cached loading.

A data directory is given by a flag or ``$HMLJAX_DATA``. Files are found by
name anywhere under it, so both ``shared/data`` and ``shared/data/hmc`` work:
``<name>.{train,valid,test}.arff[.gz]`` (FUN/GO layout) or
``<name>_{train,trainvalid,test}.arff[.gz]`` (the "others" layout), plus MULAN's
``<name>-{train,test}[-sparse].arff[.gz]`` and single-file ``<name>.arff[.gz]``.

Flat multi-label datasets need no registration: a MULAN dataset is recognised by
its label file ``<name>.xml`` beside the ARFF files (the XML decides which
attributes are labels), a MEKA one by ``-C q`` in its relation name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings

import numpy as np

from hmljax._suggest import did_you_mean
from hmljax.data._arff import _MEKA_RE, ArffData, ArffError, read_arff, read_arff_header, read_mulan_xml
from hmljax.data._cache import cached_arrays, hash_files
from hmljax.data._errors import DataError
from hmljax.data._imbalance import imbalance_summary
from hmljax.data._preprocess import preprocess
from hmljax.data._synthetic import make_synthetic
from hmljax.hierarchy import Hierarchy, HierarchyError

__all__ = [
    "DatasetSpec",
    "Dataset",
    "REGISTRY",
    "DataError",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "resolve_data_dir",
]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and its published C-HMCNN settings.

    ``stem`` is the file-name stem searched for under the data directory;
    ``hierarchy`` is 'tree' (paths), 'dag' (parent/child edges) or 'flat'
    (MULAN labels); ``fit_on`` are the splits C-HMCNN fits its scaler on.
    ``published_auprc`` is C-HMCNN's reported mean test AUPRC (None if absent);
    ``rerun_auprc`` is ``(mean, std)`` of the same metric when RARE's authors reran
    C-HMCNN's released code (RARE Tables 1 and 5, row None): a second reference,
    which for seq_GO and expr_GO lies far below the published value.
    """

    name: str
    stem: str
    hierarchy: str
    hidden: int = 500
    epochs: int = 100
    lr: float = 1e-4
    batch_size: int = 4
    weight_decay: float = 1e-5
    dropout: float = 0.7
    fit_on: tuple[str, ...] = ("train", "valid")
    published_auprc: float | None = None
    rerun_auprc: tuple[float, float] | None = None
    num_labels: int | None = None  # fallback when there is neither a MULAN XML nor a MEKA header
    shipped: bool = True  # False: in the papers' tables but not in shared/data
    family: str = "hmc"


# RARE's rerun of C-HMCNN (its Tables 1 and 5, row None, column AP, in percent): (mean, std) for FUN, GO.
_RARE_RERUN = {
    "cellcycle": ((25.68, 0.13), (41.34, 0.10)),
    "derisi": ((19.58, 0.10), (37.01, 0.06)),
    "eisen": ((30.70, 0.07), (45.34, 0.15)),
    "expr": ((30.13, 0.23), (38.13, 0.25)),
    "gasch1": ((28.44, 0.24), (43.61, 0.12)),
    "gasch2": ((25.83, 0.06), (41.56, 0.10)),
    "seq": ((29.24, 0.15), (38.60, 0.28)),
    "spo": ((21.54, 0.07), (38.19, 0.05)),
}


def _fungo() -> list[DatasetSpec]:
    # (name, H FUN, H GO, epochs FUN, epochs GO, AUPRC FUN, AUPRC GO) from REFERENCE.md 1.4/1.5.
    table = [
        ("cellcycle", 500, 1000, 106, 62, 0.255, 0.413),
        ("derisi", 500, 500, 67, 91, 0.195, 0.370),
        ("eisen", 500, 500, 110, 123, 0.306, 0.455),
        ("expr", 1250, 4000, 20, 70, 0.302, 0.447),
        ("gasch1", 1000, 500, 42, 122, 0.286, 0.436),
        ("gasch2", 500, 500, 123, 177, 0.258, 0.414),
        ("seq", 2000, 9000, 13, 45, 0.292, 0.446),
        ("spo", 250, 500, 115, 103, 0.215, 0.382),
    ]
    out = []
    for name, h_fun, h_go, e_fun, e_go, ap_fun, ap_go in table:
        shipped = name not in ("expr", "gasch1")
        (m_fun, s_fun), (m_go, s_go) = _RARE_RERUN[name]
        out.append(DatasetSpec(f"{name}_FUN", f"{name}_FUN", "tree", h_fun, e_fun, published_auprc=ap_fun,
                               rerun_auprc=(m_fun / 100, s_fun / 100), shipped=shipped))
        out.append(DatasetSpec(f"{name}_GO", f"{name}_GO", "dag", h_go, e_go, published_auprc=ap_go,
                               rerun_auprc=(m_go / 100, s_go / 100), shipped=shipped))
    return out


def _others() -> list[DatasetSpec]:
    common = dict(hierarchy="tree", lr=1e-5, fit_on=("train",))
    return [
        DatasetSpec("Diatoms", "Diatoms", hidden=2000, epochs=474, published_auprc=0.758, **common),
        DatasetSpec("Enron_corr", "Enron_corr", hidden=1000, epochs=133, published_auprc=0.756, **common),
        DatasetSpec("ImCLEF07A", "ImCLEF07A", hidden=1000, epochs=592, published_auprc=0.956, **common),
        DatasetSpec("ImCLEF07D", "ImCLEF07D", hidden=1000, epochs=588, published_auprc=0.927, shipped=False, **common),
    ]


_MULAN_COMMON = dict(hierarchy="flat", fit_on=("train",), family="mulan", batch_size=128, epochs=100)


def _mulan() -> list[DatasetSpec]:
    # Labels come from each dataset's <name>.xml (see _label_source), not from a hard-coded count.
    return [DatasetSpec(name, name, **_MULAN_COMMON) for name in ("yeast", "scene", "emotions", "bibtex")]


SYNTHETIC = DatasetSpec(
    "synthetic", "synthetic", "tree", hidden=256, epochs=30, lr=1e-3, batch_size=32, fit_on=("train", "valid"),
    family="synthetic",
)
SYNTHETIC_DAG = dataclasses.replace(SYNTHETIC, name="synthetic_dag", stem="synthetic_dag", hierarchy="dag")

REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in [*_fungo(), *_others(), *_mulan(), SYNTHETIC, SYNTHETIC_DAG]}
_ALIASES = {"enron": "Enron_corr", "diatoms": "Diatoms", "imclef07a": "ImCLEF07A", "imclef07d": "ImCLEF07D"}


def resolve_data_dir(data_dir: str | None = None) -> str | None:
    """The flag, else ``$HMLJAX_DATA``, else None. A given directory must exist."""
    d = data_dir or os.environ.get("HMLJAX_DATA")
    if d and not os.path.isdir(d):
        src = "given as --data-dir / data_dir" if data_dir else "from HMLJAX_DATA"
        what = "is a file, not a directory" if os.path.exists(d) else "does not exist"
        raise DataError(f"data directory {d!r} ({src}) {what}")
    return d


# MULAN ships some splits as "<name>-train-sparse.arff"; the suffix is not part of the name.
_SPLIT_RE = re.compile(
    r"^(?P<stem>.+?)[._-](?P<split>train|valid|test|trainvalid)(?:[._-]sparse)?\.arff(\.gz)?$", re.IGNORECASE
)
_SINGLE_RE = re.compile(r"^(?P<stem>.+?)(?:[._-]sparse)?\.arff(\.gz)?$", re.IGNORECASE)


def _scan(data_dir: str) -> dict[str, dict[str, str]]:
    """stem -> split -> path for every ARFF file under ``data_dir``."""
    found: dict[str, dict[str, str]] = {}
    for folder, _, files in os.walk(data_dir):
        for f in sorted(files):
            m = _SPLIT_RE.match(f)
            if m:
                split = m.group("split").lower()
                split = "train" if split == "trainvalid" else split
                found.setdefault(m.group("stem"), {})[split] = os.path.join(folder, f)
            elif (m := _SINGLE_RE.match(f)) is not None:
                found.setdefault(m.group("stem"), {})["all"] = os.path.join(folder, f)
    return found


def list_datasets(data_dir: str | None = None) -> list[tuple[DatasetSpec, dict[str, str] | None]]:
    """Every registered dataset (with its files, if found) plus any discovered ones."""
    found = _scan(data_dir) if data_dir else {}
    out, seen = [], set()
    for spec in REGISTRY.values():
        out.append((spec, found.get(spec.stem)))
        seen.add(spec.stem)
    for stem, files in sorted(found.items()):
        if stem not in seen and _loadable(stem, files):
            out.append((_discovered_spec(stem, files), files))
    return out


def _mulan_xml(stem: str, files: dict[str, str]) -> str | None:
    """The MULAN label file ``<stem>.xml`` beside the dataset's ARFF files, if there is one."""
    for path in files.values():
        xml = os.path.join(os.path.dirname(path), f"{stem}.xml")
        if os.path.isfile(xml):
            return xml
    return None


def _label_source(stem: str, files: dict[str, str]) -> tuple[str, str | None] | None:
    """How a flat dataset names its labels: ("mulan", xml), ("meka", None), or None (not flat)."""
    xml = _mulan_xml(stem, files)
    if xml:
        return "mulan", xml
    relation, attrs = read_arff_header(files.get("train") or files.get("all") or next(iter(files.values())))
    if _MEKA_RE.search(relation) and not any(a.kind == "hierarchical" for a in attrs):
        return "meka", None
    return None


def _loadable(stem: str, files: dict[str, str]) -> bool:
    """Discovered files that make a dataset: a train split, or a single flat (MULAN/MEKA) file."""
    if "train" in files:
        return True
    if "all" not in files:
        return False
    try:
        return _label_source(stem, files) is not None
    except ArffError:
        return False


def _discovered_spec(stem: str, files: dict[str, str]) -> DatasetSpec:
    try:
        flat = _label_source(stem, files) is not None
    except ArffError:
        flat = False  # an unreadable header: loading the files reports the problem
    if flat:
        return DatasetSpec(stem, stem, **_MULAN_COMMON)
    kind = "dag" if "_GO" in stem else "tree"
    return DatasetSpec(stem, stem, kind, fit_on=("train", "valid") if "valid" in files else ("train",))


def get_spec(name: str, data_dir: str | None = None) -> DatasetSpec:
    """Looks a dataset up by name (case-insensitive), in the registry then the data directory.

    Order: a registered name, exactly; then a flat (MULAN/MEKA) dataset under
    ``data_dir`` whose stem is exactly ``name`` (so ``enron`` is MULAN's enron when
    the data directory has it, and the hierarchical ``Enron_corr`` otherwise); then
    aliases and case-insensitive matches, registered first. An image dataset (``tfds:voc/2007`` ...) is
    :func:`hmljax.data.image_spec`'s.
    """
    if name.startswith("tfds:"):
        from hmljax.data._image_dataset import image_spec

        return image_spec(name)
    if name in REGISTRY:
        return REGISTRY[name]
    found = _scan(data_dir) if data_dir else {}
    if name in found and _loadable(name, found[name]):
        spec = _discovered_spec(name, found[name])
        if spec.hierarchy == "flat":
            return spec
    key = _ALIASES.get(name.lower(), name)
    by_lower = {k.lower(): v for k, v in REGISTRY.items()}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    for stem, files in found.items():
        if stem.lower() == name.lower() and _loadable(stem, files):
            return _discovered_spec(stem, files)
    known = ", ".join(sorted(REGISTRY))
    hint = "" if data_dir else " (no data directory given)"
    guess = did_you_mean(name, [*REGISTRY, *found])
    raise DataError(f"unknown dataset {name!r}{guess}; registered: {known}{hint}")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A loaded dataset: preprocessed features and labels per split, read-only memmaps.

    ``X[split]`` is float32 ``[n, D]``; ``Y[split]`` is uint8 ``[n, C]``, closed
    under ancestors, in the order of ``hierarchy.names``.
    """

    spec: DatasetSpec
    hierarchy: Hierarchy
    X: dict[str, np.ndarray]
    Y: dict[str, np.ndarray]
    meta: dict
    cache_path: str
    raw: dict = dataclasses.field(default_factory=dict)  # split -> raw float32 features (NaN = missing)

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}={self.X[k].shape[0]}" for k in self.splits)
        return (f"Dataset({self.spec.name!r}, {rows} rows, {self.num_features} features, "
                f"{self.hierarchy!r}, cache={self.cache_path!r})")

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(k for k in ("train", "valid", "test") if k in self.X)

    @property
    def num_features(self) -> int:
        return self.X["train"].shape[1]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, Y)`` for a split, or ``"train+valid"`` (concatenated in memory)."""
        parts = name.split("+")
        for p in parts:
            if p not in self.X:
                raise DataError(f"{self.spec.name} has no split {p!r}; it has {self.splits}")
        if len(parts) == 1:
            return self.X[name], self.Y[name]
        return np.concatenate([self.X[p] for p in parts]), np.concatenate([self.Y[p] for p in parts])

    def info(self) -> dict:
        """Sizes per split; for flat datasets also the label-imbalance statistics over all rows.

        ``<split>_rows_without_labels`` counts rows with no evaluated label (kept in
        the data). Flat datasets add ``imbalance`` (:func:`imbalance_summary` over
        every split together, as MULAN's tables report it), ``label_source`` and
        ``dropped_attributes``.
        """
        ev = self.hierarchy.evaluated
        d = {"name": self.spec.name, **self.hierarchy.summary(), "features": self.num_features}
        for s in self.splits:
            y = np.asarray(self.Y[s])[:, ev]
            d[f"{s}_rows"] = int(y.shape[0])
            d[f"{s}_label_cardinality"] = round(float(y.sum(1).mean()), 3)
            d[f"{s}_rows_without_labels"] = int((~y.any(1)).sum())
        if self.spec.hierarchy == "flat":
            Y_all = np.concatenate([np.asarray(self.Y[s]) for s in self.splits])
            d["imbalance"] = imbalance_summary(Y_all, names=self.hierarchy.names)
            d["label_source"] = self.meta.get("label_source")
            d["dropped_attributes"] = list(self.meta.get("dropped_attributes", []))
        return d


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    preprocessing: str = "chmcnn",
    split_seed: int = 0,
    test_fraction: float = 0.3,
    synthetic_options: dict | None = None,
    cache_root: str | None = None,
    drop_ids: bool = False,
) -> Dataset:
    """Loads (and caches) a dataset by name.

    Args:
        name: a registered name (``cellcycle_FUN``, ``Enron_corr``, ``yeast``,
            ``synthetic``, ...) or the stem of a dataset under ``data_dir``.
        data_dir: where the ARFF files are; default ``$HMLJAX_DATA``. Not needed
            for ``synthetic`` and ``synthetic_dag``.
        preprocessing: ``"chmcnn"`` or ``"leakfree"`` (see :mod:`hmljax.data._preprocess`).
        split_seed, test_fraction: how single-file datasets are split.
        synthetic_options: keyword arguments for :func:`make_synthetic`.
        cache_root: cache folder (default ``$HMLJAX_CACHE`` or ``~/.cache/hmljax``).
        drop_ids: flat datasets only: drop identifier attributes (genbase's
            protein id; see :func:`read_arff`) with a warning naming them, instead
            of raising. Part of the cache key.

    Raises:
        DataError: unknown dataset, missing data directory or files.
        ArffError, HierarchyError: malformed input (naming file and line).
    """
    if not isinstance(name, str) or not name:
        raise DataError(f"a dataset name is a non-empty string (cellcycle_FUN, yeast, synthetic, ...), got {name!r}")
    data_dir = resolve_data_dir(data_dir)
    spec = get_spec(name, data_dir)
    if spec.family == "synthetic":
        opts = dict(synthetic_options or {}, kind=spec.hierarchy)
        options = {"preprocessing": preprocessing, "synthetic": opts}
        build = lambda: _build_synthetic(spec, opts, preprocessing)  # noqa: E731
        arrays, meta, path = cached_arrays(spec.name, "synthetic", options, build, root=cache_root)
        return _dataset(spec, arrays, meta, path)
    if not spec.shipped and data_dir is None:
        raise DataError(f"{spec.name} is in the published tables but not shipped; put its files under a data directory")
    if data_dir is None:
        raise DataError(f"dataset {spec.name!r} needs a data directory: pass --data-dir or set HMLJAX_DATA")
    files = _scan(data_dir).get(spec.stem)
    if not files or not ({"train", "test"} <= set(files) or "all" in files):
        raise DataError(
            f"{spec.name}: no ARFF files named like {spec.stem}.{{train,valid,test}}.arff[.gz] under {data_dir!r}"
            + (" (this dataset is not shipped with shared/data)" if not spec.shipped else "")
        )
    paths = [files[k] for k in sorted(files)]
    options = {"preprocessing": preprocessing, "split_seed": split_seed, "test_fraction": test_fraction,
               "hierarchy": spec.hierarchy, "num_labels": spec.num_labels, "fit_on": list(spec.fit_on)}
    xml = None
    if spec.hierarchy == "flat":
        xml = _mulan_xml(spec.stem, files)
        paths.extend([xml] if xml else [])  # a changed label file rebuilds the cache
        options["drop_ids"] = bool(drop_ids)
    build = lambda: _build_arff(spec, files, preprocessing, split_seed, test_fraction, xml, drop_ids)  # noqa: E731
    arrays, meta, path = cached_arrays(spec.name, hash_files(paths), options, build, root=cache_root)
    if meta.get("dropped_attributes"):
        warnings.warn(f"{spec.name}: dropped identifier attribute(s) {meta['dropped_attributes']} (drop_ids=True)",
                      stacklevel=2)
    return _dataset(spec, arrays, meta, path)


def _dataset(spec, arrays, meta, path) -> Dataset:
    h = Hierarchy.from_json(meta["hierarchy"])
    X = {k[2:]: v for k, v in arrays.items() if k.startswith("X_")}
    Y = {k[2:]: v for k, v in arrays.items() if k.startswith("Y_")}
    raw = {k[2:]: v for k, v in arrays.items() if k.startswith("R_")}
    return Dataset(spec, h, X, Y, meta, path, raw)


def _hierarchy_from_arff(spec: DatasetSpec, data: ArffData) -> Hierarchy:
    entries = data.hierarchy_entries
    try:
        if spec.hierarchy == "dag":
            edges = []
            for e in entries:
                parts = e.split("/")
                if len(parts) != 2:
                    raise ArffError(data.path, None, f"GO hierarchy entry {e!r} is not 'parent/child'")
                edges.append((parts[0], parts[1]))
            roots = ["root"] if any(p == "root" for p, _ in edges) else None
            return Hierarchy.from_edges(edges, roots=roots)
        return Hierarchy.from_paths(entries)
    except HierarchyError as err:
        raise ArffError(data.path, None, f"invalid hierarchy: {err}") from None


def _labels(h: Hierarchy, data: ArffData) -> np.ndarray:
    for ann, line in zip(data.annotations, data.annotation_lines, strict=True):
        for t in ann:
            if t not in h.index:
                raise ArffError(data.path, line, f"label {t!r} is not in the class hierarchy")
    return h.encode(data.annotations)


def _build_arff(spec, files, preprocessing, split_seed, test_fraction, xml=None, drop_ids=False):
    kw = {"num_labels": spec.num_labels}
    if spec.hierarchy == "flat":
        kw["drop_ids"] = drop_ids
        if xml:
            kw.update(label_names=read_mulan_xml(xml), label_file=xml)
    raw = {k: read_arff(p, **kw) for k, p in files.items()}
    if "all" in raw:
        raw = _split_single(raw["all"], split_seed, test_fraction)
    first = raw["train"]
    if spec.hierarchy == "flat":
        for d in raw.values():
            if d.dropped_attributes != first.dropped_attributes:
                raise ArffError(d.path, None, f"identifier attributes {list(d.dropped_attributes)} differ from the "
                                              f"train split's {list(first.dropped_attributes)}")
            if d.label_names != first.label_names:
                raise ArffError(d.path, None, "its label attributes differ from the train split's")
    raw = {k: _align_columns(d, first) for k, d in raw.items()}
    for d in raw.values():
        if d.features.shape[1] != first.features.shape[1]:
            msg = f"{d.features.shape[1]} features but the train split has {first.features.shape[1]}"
            raise ArffError(d.path, None, msg)
        if spec.hierarchy != "flat" and d.hierarchy_entries != first.hierarchy_entries:
            raise ArffError(d.path, None, "its class hierarchy differs from the train split's")
    if spec.hierarchy == "flat":
        if first.labels is None:
            raise ArffError(first.path, None, f"no label attributes: put the MULAN label file {spec.stem}.xml beside "
                                              "it, or name the labels with a MEKA '-C q' relation")
        h = Hierarchy.flat(first.label_names)
        Y = {k: d.labels for k, d in raw.items()}
    else:
        if not first.hierarchy_entries:
            raise ArffError(first.path, None, "no 'hierarchical' class attribute")
        h = _hierarchy_from_arff(spec, first)
        Y = {k: _labels(h, d) for k, d in raw.items()}
    X, info = preprocess({k: d.features for k, d in raw.items()}, mode=preprocessing, fit_on=spec.fit_on)
    arrays = {**{f"X_{k}": v for k, v in X.items()}, **{f"Y_{k}": v for k, v in Y.items()},
              # The raw features (NaN = missing) too: folds and label/feature filters preprocess afresh.
              **{f"R_{k}": d.features.astype(np.float32) for k, d in raw.items()}}
    meta = {"hierarchy": h.to_json(), "preprocessing": info, "files": {k: d.path for k, d in raw.items()},
            "feature_names": list(first.feature_names)}
    if spec.hierarchy == "flat":
        meta["label_source"] = f"mulan:{xml}" if xml else ("meka" if _MEKA_RE.search(first.relation) else "num_labels")
        meta["dropped_attributes"] = list(first.dropped_attributes)
    return arrays, meta


def _align_columns(d: ArffData, first: ArffData) -> ArffData:
    """``d`` with its feature columns in the train split's order, matched by name (attributes, and nominal
    categories as ``attr=value`` columns, declared in another order are reordered, not read by position)."""
    if d is first or d.feature_names == first.feature_names:
        return d
    want, have = list(first.feature_names), list(d.feature_names)
    missing, extra = [n for n in want if n not in have], [n for n in have if n not in want]
    if missing or extra or len(set(have)) != len(have):
        def show(names):
            return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") or "none"
        raise ArffError(d.path, None, f"its feature attributes differ from the train split's {first.path} "
                                      f"(missing: {show(missing)}; not in train: {show(extra)})")
    pos = {n: i for i, n in enumerate(have)}
    return dataclasses.replace(d, features=d.features[:, [pos[n] for n in want]], feature_names=first.feature_names)


def _split_single(d: ArffData, seed: int, test_fraction: float) -> dict[str, ArffData]:
    perm = np.random.default_rng(seed).permutation(d.num_rows)
    n_test = int(round(test_fraction * d.num_rows))
    out = {}
    for k, idx in (("train", np.sort(perm[n_test:])), ("test", np.sort(perm[:n_test]))):
        out[k] = dataclasses.replace(
            d,
            features=d.features[idx],
            labels=None if d.labels is None else d.labels[idx],
            annotations=tuple(d.annotations[i] for i in idx) if d.annotations else (),
            annotation_lines=tuple(d.annotation_lines[i] for i in idx),
        )
    return out


def _build_synthetic(spec, opts, preprocessing):
    feats, ann, edges = make_synthetic(**opts)
    if spec.hierarchy == "tree":
        h = Hierarchy.from_edges(edges, roots=["root"], skip=(), order="chmcnn")
    else:
        h = Hierarchy.from_edges(edges, roots=["root"], skip=())
    Y = {k: h.encode(a) for k, a in ann.items()}
    X, info = preprocess(feats, mode=preprocessing, fit_on=spec.fit_on)
    arrays = {**{f"X_{k}": v for k, v in X.items()}, **{f"Y_{k}": v for k, v in Y.items()},
              **{f"R_{k}": np.asarray(v, np.float32) for k, v in feats.items()}}
    names = [f"x{j}" for j in range(next(iter(feats.values())).shape[1])]
    return arrays, {"hierarchy": h.to_json(), "preprocessing": info, "synthetic": opts, "feature_names": names}
