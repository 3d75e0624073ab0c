"""A fast ARFF reader for hierarchical (HMC) and flat multi-label (MULAN/MEKA) files.

Host-side numpy only. Handles gzip or plain text, ``%`` comments, quoted names,
numeric and nominal attributes (nominal is one-hot; unknown or missing = all
zeros), ``?`` missing values, sparse rows ``{index value, ...}``, the
``hierarchical`` class attribute (FunCat paths or GO ``parent/child`` edges),
MULAN files (labels = the last ``q`` ``{0,1}`` attributes) and MEKA headers
(``-C q`` in the relation name: labels first).

Every problem with the input raises :class:`ArffError`, which names the file and
the line.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re

import numpy as np

__all__ = ["ArffError", "ArffData", "Attribute", "read_arff"]


class ArffError(ValueError):
    """Malformed or inconsistent ARFF input. ``path`` and ``line`` locate it."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One ``@attribute``: kind is 'numeric', 'nominal', 'hierarchical' or 'string'."""

    name: str
    kind: str
    values: tuple[str, ...] = ()  # categories (nominal) or hierarchy entries
    line: int = 0


@dataclasses.dataclass(frozen=True)
class ArffData:
    """What :func:`read_arff` returns.

    Attributes:
        path: the file read.
        relation: the ``@relation`` name.
        features: float64 ``[n, D]``; NaN where a numeric value was ``?``;
            nominal attributes expanded to one-hot columns.
        feature_names: ``D`` names (``attr=value`` for one-hot columns).
        hierarchy_entries: the class attribute's entries (HMC files), else ``()``.
        annotations: per row, the tuple of raw ``@``-separated class terms (HMC).
        annotation_lines: per row, the file line it came from (for error messages).
        labels: uint8 ``[n, q]`` for flat multi-label files, else ``None``.
        label_names: the ``q`` label names.
    """

    path: str
    relation: str
    features: np.ndarray
    feature_names: tuple[str, ...]
    hierarchy_entries: tuple[str, ...] = ()
    annotations: tuple[tuple[str, ...], ...] = ()
    annotation_lines: tuple[int, ...] = ()
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] = ()

    @property
    def num_rows(self) -> int:
        return self.features.shape[0]


_ATTR_RE = re.compile(r"@attribute\s+", re.IGNORECASE)
_MEKA_RE = re.compile(r"-C\s+(-?\d+)")


def _open_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise ArffError(path, None, f"cannot read file: {err.strerror}") from err
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ArffError(path, None, f"corrupt gzip stream: {err}") from err
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _strip_comment(line: str) -> str:
    """Drops a ``%`` comment: one at the line start or after whitespace, outside quotes.

    A ``%`` glued to other text is kept, since real files use it inside names
    (gasch2's ``DES460_Plus_0point02%_MMS``).
    """
    if "%" not in line:
        return line.strip()
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "%" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


def _split_quoted(text: str, sep: str, path: str, lineno: int) -> list[str]:
    """Splits on ``sep`` outside quotes; strips and unquotes each field."""
    out, buf, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = None
            else:
                buf.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == sep:
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    if quote:
        raise ArffError(path, lineno, "unterminated quote")
    out.append("".join(buf).strip())
    return out


def _parse_attribute(rest: str, path: str, lineno: int) -> Attribute:
    rest = rest.strip()
    if not rest:
        raise ArffError(path, lineno, "@attribute without a name")
    if rest[0] in "'\"":
        end = rest.find(rest[0], 1)
        if end < 0:
            raise ArffError(path, lineno, "unterminated quoted attribute name")
        name, spec = rest[1:end], rest[end + 1 :].strip()
    else:
        parts = rest.split(None, 1)
        name, spec = parts[0], (parts[1].strip() if len(parts) > 1 else "")
    if not spec:
        raise ArffError(path, lineno, f"attribute {name!r} has no type")
    low = spec.lower()
    if spec.startswith("{"):
        if not spec.endswith("}"):
            raise ArffError(path, lineno, f"attribute {name!r}: nominal set lacks a closing '}}'")
        values = tuple(v for v in _split_quoted(spec[1:-1], ",", path, lineno))
        if not values or any(v == "" for v in values):
            raise ArffError(path, lineno, f"attribute {name!r}: empty nominal value")
        return Attribute(name, "nominal", values, lineno)
    if low.startswith("hierarchical"):
        entries = tuple(e.strip() for e in spec[len("hierarchical") :].strip().split(",") if e.strip())
        if not entries:
            raise ArffError(path, lineno, f"attribute {name!r}: empty hierarchy")
        return Attribute(name, "hierarchical", entries, lineno)
    if low in ("numeric", "real", "integer") or low.startswith(("numeric", "real", "integer")):
        return Attribute(name, "numeric", (), lineno)
    if low.startswith("string"):
        return Attribute(name, "string", (), lineno)
    raise ArffError(path, lineno, f"attribute {name!r}: unsupported type {spec.split()[0]!r}")


def read_arff(path: str | os.PathLike, *, num_labels: int | None = None) -> ArffData:
    """Reads one ARFF file (gzip or plain).

    Args:
        path: the file.
        num_labels: for flat multi-label files, how many trailing ``{0,1}``
            attributes are labels (MULAN). A MEKA header (``-C q`` in the
            relation name) overrides it. Ignored for hierarchical files.

    Returns:
        An :class:`ArffData`.

    Raises:
        ArffError: naming the file and line, for any malformed input.
    """
    path = os.fspath(path)
    text = _open_text(path)
    lines = text.split("\n")
    relation, attrs, data_start = None, [], None
    for i, raw in enumerate(lines):
        line = _strip_comment(raw)
        if not line:
            continue
        low = line[:10].lower()
        if low.startswith("@relation"):
            relation = _unquote(line[9:].strip())
        elif low.startswith("@attribute"):
            attrs.append(_parse_attribute(_ATTR_RE.sub("", line, count=1), path, i + 1))
        elif low.startswith("@data"):
            data_start = i + 1
            break
        else:
            raise ArffError(path, i + 1, f"unexpected header line {line[:40]!r}")
    if relation is None and not attrs:
        raise ArffError(path, None, "empty file: no @relation, @attribute or @data")
    if not attrs:
        raise ArffError(path, None, "no @attribute declarations")
    if data_start is None:
        raise ArffError(path, len(lines) - (lines[-1] == ""), "missing @data section (end of file)")
    hier = [k for k, a in enumerate(attrs) if a.kind == "hierarchical"]
    if len(hier) > 1:
        raise ArffError(path, attrs[hier[1]].line, "more than one hierarchical attribute")

    # Which attributes are labels (flat multi-label) -- decided from the header alone.
    label_idx: list[int] = []
    meka = _MEKA_RE.search(relation or "")
    if not hier:
        if meka:
            q = int(meka.group(1))
            label_idx = list(range(q)) if q >= 0 else list(range(len(attrs) + q, len(attrs)))
        elif num_labels is not None:
            if not 0 < num_labels <= len(attrs):
                raise ArffError(path, None, f"num_labels={num_labels} but the file has {len(attrs)} attributes")
            label_idx = list(range(len(attrs) - num_labels, len(attrs)))
        for k in label_idx:
            a = attrs[k]
            if not (a.kind == "nominal" and set(a.values) <= {"0", "1"}):
                raise ArffError(path, a.line, f"label attribute {a.name!r} is not {{0,1}}")

    rows, row_lines, sparse_rows = [], [], []
    n_attr = len(attrs)
    for i in range(data_start, len(lines)):
        line = lines[i]
        if "%" in line:
            line = _strip_comment(line)
        else:
            line = line.strip()
        if not line:
            continue
        if line[0] == "{":
            if not line.endswith("}"):
                raise ArffError(path, i + 1, "sparse row lacks a closing '}'")
            sparse_rows.append(len(rows))
            rows.append(line)
        else:
            if "'" in line or '"' in line:
                fields = _split_quoted(line, ",", path, i + 1)
            else:
                fields = line.split(",")
            if len(fields) != n_attr:
                raise ArffError(path, i + 1, f"expected {n_attr} fields, found {len(fields)}")
            rows.append(fields)
        row_lines.append(i + 1)
    if not rows:
        raise ArffError(path, data_start, "no data rows after @data")

    if sparse_rows:
        column = _sparse_columns(rows, attrs, path, row_lines)
    else:
        # Keep the (long) label column out of the table so every other cell stays narrow.
        h = hier[0] if hier else None
        hier_col = np.array([r.pop(h) for r in rows], dtype=object) if h is not None else None
        table = np.array(rows, dtype=str)

        def column(k):
            if k == h:
                return hier_col
            return table[:, k - (h is not None and k > h)]

    return _assemble(path, relation or "", attrs, column, row_lines, hier, label_idx)


def _sparse_columns(rows, attrs, path, row_lines):
    """Column accessor for files with sparse rows (dense rows may be mixed in)."""
    n, n_attr = len(rows), len(attrs)
    r_idx, c_idx, vals = [], [], []
    for r, row in enumerate(rows):
        if not isinstance(row, str):
            r_idx.extend([r] * n_attr)
            c_idx.extend(range(n_attr))
            vals.extend(row)
            continue
        body = row[1:-1].strip()
        if not body:
            continue
        items = _split_quoted(body, ",", path, row_lines[r]) if ("'" in body or '"' in body) else body.split(",")
        for item in items:
            parts = item.split(None, 1)
            if len(parts) != 2:
                raise ArffError(path, row_lines[r], f"sparse entry {item.strip()!r} is not 'index value'")
            try:
                k = int(parts[0])
            except ValueError:
                raise ArffError(path, row_lines[r], f"sparse index {parts[0]!r} is not an integer") from None
            if not 0 <= k < n_attr:
                raise ArffError(path, row_lines[r], f"sparse index {k} out of range 0..{n_attr - 1}")
            r_idx.append(r)
            c_idx.append(k)
            vals.append(_unquote(parts[1]))
    r_idx, c_idx, vals = np.array(r_idx, dtype=np.int64), np.array(c_idx, dtype=np.int64), np.array(vals, dtype=str)
    order = np.argsort(c_idx, kind="stable")
    r_idx, c_idx, vals = r_idx[order], c_idx[order], vals[order]
    bounds = np.searchsorted(c_idx, np.arange(n_attr + 1))

    def column(k):
        # Sparse ARFF: an unlisted value is 0 (numeric) or the first category (nominal).
        default = attrs[k].values[0] if attrs[k].kind == "nominal" else "0"
        lo, hi = bounds[k], bounds[k + 1]
        width = max(len(default), int(np.char.str_len(vals[lo:hi]).max()) if hi > lo else 1)
        col = np.full(n, default, dtype=f"<U{width}")
        col[r_idx[lo:hi]] = vals[lo:hi]
        return col

    return column


def _is_binary(a: Attribute) -> bool:
    return a.kind == "nominal" and sorted(a.values) == ["0", "1"]


def _assemble(path, relation, attrs, column, row_lines, hier, label_idx) -> ArffData:
    n = len(row_lines)
    label_set = set(label_idx)
    numeric = [k for k, a in enumerate(attrs) if (a.kind == "numeric" or _is_binary(a)) and k not in label_set]
    # Convert all numeric columns in one vectorised call; per-column conversion is ~5x slower.
    num_block = np.stack([column(k) for k in numeric], axis=1) if numeric else np.zeros((n, 0), str)
    num_block = np.char.strip(num_block)
    num_block = np.where(num_block == "?", "nan", num_block)
    try:
        num_values = num_block.astype(np.float64)
    except ValueError:
        for j, k in enumerate(numeric):
            bad = [r for r in range(n) if not _is_float(num_block[r, j])]
            if bad:
                raise ArffError(
                    path, row_lines[bad[0]], f"attribute {attrs[k].name!r}: {num_block[bad[0], j]!r} is not a number"
                ) from None
        raise
    num_pos = {k: j for j, k in enumerate(numeric)}
    feat_cols, names = [], []
    for k, a in enumerate(attrs):
        if k in label_set or (hier and k == hier[0]):
            continue
        if k in num_pos:
            # A {0,1} nominal is already a binary indicator: one column, not a one-hot pair.
            feat_cols.append(num_values[:, num_pos[k], None])
            names.append(a.name)
        elif a.kind == "nominal":
            col = np.char.strip(column(k).astype(str))
            if any(c[:1] in "'\"" for c in np.unique(col)):
                col = np.array([_unquote(v) for v in col])
            cats = np.array(a.values)
            order = np.argsort(cats)
            pos = np.clip(np.searchsorted(cats[order], col), 0, len(cats) - 1)
            idx = np.where(cats[order][pos] == col, order[pos], -1)
            bad = np.flatnonzero((idx < 0) & (col != "?"))
            if bad.size:
                r = bad[0]
                raise ArffError(path, row_lines[r], f"attribute {a.name!r}: value {col[r]!r} not in {set(a.values)}")
            ok = idx >= 0
            onehot = np.zeros((n, len(a.values)), dtype=np.float64)
            onehot[np.flatnonzero(ok), idx[ok]] = 1.0
            feat_cols.append(onehot)
            names.extend(f"{a.name}={v}" for v in a.values)
        elif a.kind == "string":
            continue  # free text carries no feature here
        else:
            raise ArffError(path, a.line, f"attribute {a.name!r}: unexpected kind {a.kind}")
    features = np.concatenate(feat_cols, axis=1) if feat_cols else np.zeros((n, 0))

    labels, label_names = None, ()
    if label_idx:
        lab = np.stack([column(k) for k in label_idx], axis=1).astype(str)
        lab = np.char.strip(lab)
        bad = ~np.isin(lab, ["0", "1"])
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ArffError(path, row_lines[r], f"label {attrs[label_idx[c]].name!r} has value {lab[r, c]!r}, not 0/1")
        labels = (lab == "1").astype(np.uint8)
        label_names = tuple(attrs[k].name for k in label_idx)

    entries, annotations = (), ()
    if hier:
        entries = attrs[hier[0]].values
        raw = column(hier[0]).astype(str)
        annotations = tuple(tuple(t.strip() for t in _unquote(v).split("@") if t.strip()) for v in raw)
        for r, ann in enumerate(annotations):
            if not ann:
                raise ArffError(path, row_lines[r], "row has no class label")
    return ArffData(
        path=path,
        relation=relation,
        features=features,
        feature_names=tuple(names),
        hierarchy_entries=entries,
        annotations=annotations,
        annotation_lines=tuple(row_lines),
        labels=labels,
        label_names=label_names,
    )


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
