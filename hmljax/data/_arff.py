"""A fast ARFF reader for hierarchical (HMC) and flat multi-label (MULAN/MEKA) files.

Host-side numpy only. Handles gzip or plain text, ``%`` comments, quoted names,
numeric and nominal attributes (nominal is one-hot; unknown or missing = all
zeros), ``?`` missing values, sparse rows ``{index value, ...}``, the
``hierarchical`` class attribute (FunCat paths or GO ``parent/child`` edges),
MULAN files (labels named by the dataset's ``<name>.xml``, see
:func:`read_mulan_xml`, or the last ``q`` ``{0,1}`` attributes) and MEKA headers
(``-C q`` in the relation name: the first ``q`` attributes, or the last ``q``
when negative).

Every problem with the input raises :class:`ArffError`, which names the file and
the line.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import os
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["ArffError", "ArffData", "Attribute", "read_arff", "read_arff_header", "read_mulan_xml"]


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
            Rows with no label are kept (all zeros).
        label_names: the ``q`` label names.
        dropped_attributes: identifier attributes left out of ``features``
            (only with ``drop_ids=True``).
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
    dropped_attributes: tuple[str, ...] = ()

    @property
    def num_rows(self) -> int:
        return self.features.shape[0]


_ATTR_RE = re.compile(r"@attribute\s+", re.IGNORECASE)
_MEKA_RE = re.compile(r"-C\s+(-?\d+)")
# One sparse row body without quotes: "index value, index value, ...".
_SPARSE_PLAIN_RE = re.compile(r"\s*\d+\s+[^\s,]+\s*(?:,\s*\d+\s+[^\s,]+\s*)*")


def _open_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise ArffError(path, None, f"cannot read file: {err.strerror}") from err
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; truncation is EOFError
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
        # WEKA escapes quotes inside quoted names with a backslash (birds: 'Swainson\'s Thrush').
        end, buf = 1, []
        while end < len(rest) and rest[end] != rest[0]:
            if rest[end] == "\\" and end + 1 < len(rest):
                end += 1
            buf.append(rest[end])
            end += 1
        if end >= len(rest):
            raise ArffError(path, lineno, "unterminated quoted attribute name")
        name, spec = "".join(buf), rest[end + 1 :].strip()
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


def read_mulan_xml(path: str | os.PathLike) -> tuple[str, ...]:
    """The label names of a MULAN label file (``<name>.xml``), in document order.

    Every ``<label name="...">`` element counts, nested ones included (MULAN's
    hierarchical label files nest children inside their parent). The XML
    namespace is ignored.

    Args:
        path: the XML file.

    Returns:
        The label names; they name ARFF attributes, wherever those sit.

    Raises:
        ArffError: naming the file (and line, for XML syntax errors) when it
            cannot be read or parsed, names no label, or repeats a name.
    """
    path = os.fspath(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ArffError(path, err.position[0], f"invalid MULAN label XML: {err}") from None
    except OSError as err:
        raise ArffError(path, None, f"cannot read file: {err.strerror}") from err
    names = []
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.rsplit("}", 1)[-1] == "label":
            name = el.get("name")
            if name is None or not name.strip():
                raise ArffError(path, None, "a <label> element has no name attribute")
            names.append(name)
    if not names:
        raise ArffError(path, None, "no <label name=...> elements: not a MULAN label file")
    dup = sorted(n for n, c in collections.Counter(names).items() if c > 1)
    if dup:
        raise ArffError(path, None, f"label names repeated: {dup[:5]}")
    return tuple(names)


def _header_lines(lines, path):
    """Parses header lines: (relation, relation line, attributes, index of the first data line or None)."""
    relation, relation_line, attrs, data_start = None, None, [], None
    for i, raw in enumerate(lines):
        if i == 0:
            raw = raw.lstrip("\ufeff")  # a UTF-8 byte-order mark, as Windows editors save
        line = _strip_comment(raw)
        if not line:
            continue
        low = line[:10].lower()
        if low.startswith("@relation"):
            relation, relation_line = _unquote(line[9:].strip()), i + 1
        elif low.startswith("@attribute"):
            attrs.append(_parse_attribute(_ATTR_RE.sub("", line, count=1), path, i + 1))
        elif low.startswith("@data"):
            data_start = i + 1
            break
        else:
            raise ArffError(path, i + 1, f"unexpected header line {line[:40]!r}")
    return relation, relation_line, attrs, data_start


def read_arff_header(path: str | os.PathLike) -> tuple[str, list[Attribute]]:
    """``(relation, attributes)`` from the header alone, streaming (gzip or plain); no rows are read."""
    path = os.fspath(path)

    def lines():
        try:
            with open(path, "rb") as fh:
                gz = fh.read(2) == b"\x1f\x8b"
            fh = gzip.open(path, "rb") if gz else open(path, "rb")
            with fh:
                for raw in fh:
                    yield raw.decode("utf-8", errors="replace")
        except (OSError, EOFError, zlib.error) as err:
            raise ArffError(path, None, f"cannot read header: {err}") from err

    relation, _, attrs, data_start = _header_lines(lines(), path)
    if data_start is None:
        raise ArffError(path, None, "missing @data section")
    return relation or "", attrs


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _label_indices(path, attrs, relation, relation_line, hier, num_labels, label_names, label_file):
    """Which attributes are labels: the MULAN XML's names, else MEKA's ``-C q``, else the last num_labels."""
    if label_names is not None:
        src = f"label file {label_file}" if label_file else "the label list"
        if hier:
            raise ArffError(path, attrs[hier[0]].line, f"{src} given for a file with a hierarchical class attribute")
        pos: dict[str, int] = {}
        for k, a in enumerate(attrs):
            pos.setdefault(a.name, k)
        for k, a in enumerate(attrs):
            # Also match with backslash escapes removed, so 'Swainson\'s' in either file finds the other.
            pos.setdefault(_unescape(a.name), k)
        label_names = [n if n in pos else _unescape(n) for n in label_names]
        missing = [n for n in label_names if n not in pos]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise ArffError(path, None, f"{len(missing)} label(s) from {src} are not attributes of this file: "
                                        f"{missing[:5]}{more}")
        if len(set(label_names)) != len(label_names):
            raise ArffError(path, None, f"{src} repeats a label name")
        return [pos[n] for n in label_names]
    if hier:
        return []
    meka = _MEKA_RE.search(relation or "")
    if meka:
        q = int(meka.group(1))
        if q == 0 or abs(q) > len(attrs):
            raise ArffError(path, relation_line, f"MEKA header '-C {q}' asks for {abs(q)} label attributes "
                                                 f"but the file has {len(attrs)} attributes")
        return list(range(q)) if q > 0 else list(range(len(attrs) + q, len(attrs)))
    if num_labels is not None:
        if not 0 < num_labels <= len(attrs):
            raise ArffError(path, None, f"num_labels={num_labels} but the file has {len(attrs)} attributes")
        return list(range(len(attrs) - num_labels, len(attrs)))
    return []


def read_arff(
    path: str | os.PathLike,
    *,
    num_labels: int | None = None,
    label_names: Sequence[str] | None = None,
    label_file: str | None = None,
    drop_ids: bool = False,
) -> ArffData:
    """Reads one ARFF file (gzip or plain).

    Which attributes are labels (flat multi-label files), first rule that applies:

    1. ``label_names`` (a MULAN XML's labels, :func:`read_mulan_xml`): the
       attributes of those names, wherever they sit, in the list's order. A MEKA
       string in the relation name is then ignored (medical's relation is a WEKA
       filter chain that contains ``-C 45``).
    2. A MEKA header, ``-C q`` in the relation name: the first ``q`` attributes,
       or the last ``|q|`` when ``q`` is negative.
    3. ``num_labels``: the last ``num_labels`` attributes (MULAN layout).

    In a flat multi-label file, an attribute that is neither a label nor a
    feature -- a ``string`` attribute, or a nominal one with at least 20
    categories, at least as many categories as rows and a different value in
    every row (genbase's protein id) -- is an identifier: refused unless
    ``drop_ids``, which leaves it out and lists it in ``dropped_attributes``.

    Args:
        path: the file.
        num_labels: how many trailing ``{0,1}`` attributes are labels.
        label_names: label attribute names (see above); ``label_file`` names
            their source in error messages.
        drop_ids: drop identifier attributes instead of raising.

    Returns:
        An :class:`ArffData`.

    Raises:
        ArffError: naming the file and line, for any malformed input.
    """
    path = os.fspath(path)
    if isinstance(label_names, str):  # iterated, 'amazed' was the labels 'a', 'm', 'a', ...
        raise TypeError(f"read_arff: label_names is the string {label_names!r}; give a list of names")
    text = _open_text(path)
    lines = text.split("\n")
    relation, relation_line, attrs, data_start = _header_lines(lines, path)
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
    label_idx = _label_indices(path, attrs, relation, relation_line, hier, num_labels, label_names, label_file)
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

    numeric_block = None
    if sparse_rows:
        column, numeric_block = _sparse_columns(rows, attrs, path, row_lines)
    else:
        # Keep the (long) label column out of the table so every other cell stays narrow.
        h = hier[0] if hier else None
        hier_col = np.array([r.pop(h) for r in rows], dtype=object) if h is not None else None
        table = np.array(rows, dtype=str)

        def column(k):
            if k == h:
                return hier_col
            return table[:, k - (h is not None and k > h)]

    return _assemble(path, relation or "", attrs, column, row_lines, hier, label_idx, numeric_block, drop_ids)


def _float_default(a: Attribute) -> float:
    """The value of an unlisted sparse entry: 0, or a binary nominal's first category."""
    return float(a.values[0]) if a.kind == "nominal" else 0.0


def _sparse_columns(rows, attrs, path, row_lines):
    """Column accessors for files with sparse rows (dense rows may be mixed in).

    Returns ``column(k)`` (the strings of attribute k) and ``numeric_block(cols)``
    (float64 ``[n, len(cols)]``), which converts only the listed entries.
    """
    n, n_attr = len(rows), len(attrs)
    r_idx, c_idx, vals = [], [], []
    plain_rows, plain_bodies = [], []
    for r, row in enumerate(rows):
        if not isinstance(row, str):
            r_idx.extend([r] * n_attr)
            c_idx.extend(range(n_attr))
            vals.extend(row)
            continue
        body = row[1:-1].strip()
        if not body:
            continue
        if _SPARSE_PLAIN_RE.fullmatch(body):
            plain_rows.append(r)  # parsed below, all rows at once
            plain_bodies.append(body)
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
    if plain_bodies:
        # Vectorised: the regex guarantees exactly "index value" per comma-separated item.
        counts = np.array([b.count(",") + 1 for b in plain_bodies], dtype=np.int64)
        tokens = ",".join(plain_bodies).replace(",", " ").split()
        pr = np.repeat(np.array(plain_rows, dtype=np.int64), counts)
        pc = np.array(tokens[0::2], dtype=np.int64)
        bad = np.flatnonzero(pc >= n_attr)
        if bad.size:
            raise ArffError(path, row_lines[pr[bad[0]]], f"sparse index {pc[bad[0]]} out of range 0..{n_attr - 1}")
        r_idx = np.concatenate([r_idx, pr])
        c_idx = np.concatenate([c_idx, pc])
        vals = np.concatenate([vals, np.array(tokens[1::2], dtype=str)]) if vals.size else np.array(tokens[1::2])
    # Row-major order, so a repeated (row, index) keeps the last value, as before.
    order = np.lexsort((np.arange(c_idx.size), r_idx, c_idx))
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

    def numeric_block(cols):
        cols = np.asarray(cols, dtype=np.int64)
        pos = np.full(n_attr, -1, dtype=np.int64)
        pos[cols] = np.arange(cols.size)
        out = np.empty((n, cols.size), dtype=np.float64)
        out[:] = [_float_default(attrs[k]) for k in cols]
        sel = np.flatnonzero(pos[c_idx] >= 0)
        v = np.char.strip(vals[sel])
        missing = v == "?"
        v = np.where(missing, "nan", v)
        try:
            f = v.astype(np.float64)
        except ValueError:
            j = next(j for j in range(v.size) if not _is_float(v[j]))
            a = attrs[c_idx[sel[j]]]
            raise ArffError(path, row_lines[r_idx[sel[j]]], f"attribute {a.name!r}: {v[j]!r} is not a number") from None
        if not np.isfinite(f[~missing]).all():
            j = np.flatnonzero(~np.isfinite(f) & ~missing)[0]
            a = attrs[c_idx[sel[j]]]
            raise ArffError(path, row_lines[r_idx[sel[j]]], _not_finite(a.name, v[j]))
        out[r_idx[sel], pos[c_idx[sel]]] = f
        return out

    return column, numeric_block


def _is_binary(a: Attribute) -> bool:
    return a.kind == "nominal" and sorted(a.values) == ["0", "1"]


_ID_MIN_CATEGORIES = 20  # fewer categories than this is a feature, even if each row has its own (tiny files)


def _identifiers(attrs, column, n, skip) -> list[int]:
    """Attributes that identify rows rather than describe them (flat files): see :func:`read_arff`."""
    out = []
    for k, a in enumerate(attrs):
        if k in skip:
            continue
        if a.kind == "string":
            out.append(k)
        elif a.kind == "nominal" and len(a.values) >= max(n, _ID_MIN_CATEGORIES) and n >= 2:
            col = np.char.strip(column(k).astype(str))
            col = col[col != "?"]
            if col.size == n and np.unique(col).size == n:
                out.append(k)
    return out


def _assemble(path, relation, attrs, column, row_lines, hier, label_idx, numeric_block=None, drop_ids=False):
    n = len(row_lines)
    label_set = set(label_idx)
    dropped = ()
    if label_idx:
        ids = _identifiers(attrs, column, n, label_set)
        if ids and not drop_ids:
            names = [attrs[k].name for k in ids]
            raise ArffError(path, attrs[ids[0]].line,
                            f"attribute(s) {names} look like row identifiers (a string, or a nominal value unique to "
                            f"each row), not features; pass drop_ids=True (hmljax data info --drop-ids) to drop them")
        dropped = tuple(attrs[k].name for k in ids)
        label_set |= set(ids)  # from here on: neither a feature nor a label
    numeric = [k for k, a in enumerate(attrs) if (a.kind == "numeric" or _is_binary(a)) and k not in label_set]
    if numeric_block is not None:
        num_values = numeric_block(numeric) if numeric else np.zeros((n, 0))
    else:
        # Convert all numeric columns in one vectorised call; per-column conversion is ~5x slower.
        num_block = np.stack([column(k) for k in numeric], axis=1) if numeric else np.zeros((n, 0), str)
        num_block = np.char.strip(num_block)
        missing = num_block == "?"
        num_block = np.where(missing, "nan", num_block)
        try:
            num_values = num_block.astype(np.float64)
        except ValueError:
            for j, k in enumerate(numeric):
                bad = [r for r in range(n) if not _is_float(num_block[r, j])]
                if bad:
                    msg = f"attribute {attrs[k].name!r}: {num_block[bad[0], j]!r} is not a number"
                    raise ArffError(path, row_lines[bad[0]], msg) from None
            raise
        if not np.isfinite(num_values[~missing]).all():
            r, j = np.argwhere(~np.isfinite(num_values) & ~missing)[0]
            raise ArffError(path, row_lines[r], _not_finite(attrs[numeric[j]].name, num_block[r, j]))
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
        if numeric_block is not None:
            # Fast path for sparse files; anything odd falls through to the string check for its message.
            try:
                labf = numeric_block(label_idx)
            except ArffError:
                labf = None
            if labf is not None and np.isin(labf, (0.0, 1.0)).all():
                labels = labf.astype(np.uint8)
        if labels is None:
            lab = np.stack([column(k) for k in label_idx], axis=1).astype(str)
            lab = np.char.strip(lab)
            bad = ~np.isin(lab, ["0", "1"])
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ArffError(path, row_lines[r],
                                f"label {attrs[label_idx[c]].name!r} has value {lab[r, c]!r}, not 0/1")
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
        dropped_attributes=dropped,
    )


def _not_finite(name: str, token: str) -> str:
    # inf, nan or an overflow (1e400) would turn a whole column into NaN once standardised.
    return (f"attribute {name!r}: {str(token)!r} is not a finite number (write a missing value as '?'; "
            "hmljax refuses infinities and NaN rather than guess)")


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
