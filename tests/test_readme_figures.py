"""The README's HLSTM figures are the committed results' figures.

The README quotes HLSTM's Tables II-V, their statistics and Fig. 7's b_r table by hand, beside prose
that reads them. When a run finishes and ``hlstm.py tables --table-only`` rebuilds
``experiments/results/hlstm_tables.json``, these tests fail until the README says the same: a
quoted figure never goes stale silently. Nothing is trained; only committed files are read.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")
METHODS = ("HLSTM", "CHMC-LSTM", "C-HMCNN")


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def _results(name: str) -> dict:
    with open(os.path.join(RESULTS, name)) as f:
        return json.load(f)


def _markdown_table(text: str, header: str) -> dict[str, list[str]]:
    """``{first cell: other cells}`` of the README table whose header line is ``header``."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip() == header]
    assert len(starts) == 1, f"README.md: {len(starts)} tables headed {header!r}, expected 1"
    rows = {}
    for ln in lines[starts[0] + 2:]:  # past the header and its |---| line
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _cell(auprc: list[float] | None, published: float | None) -> str:
    """A Tables II-V cell as the README writes it: mean ± sample std over seeds (the mean alone at one
    seed, ``-`` when not run), the paper's value in brackets."""
    v = np.asarray(auprc or [], float)
    ours = "-" if v.size == 0 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if v.size > 1 else f"{v.mean():.3f}"
    return ours if published is None else f"{ours} ({published:.3f})"


def test_cell_format_is_the_readmes():
    assert _cell([0.19460256, 0.18589534, 0.193922], 0.267) == "0.191 ± 0.005 (0.267)"
    assert _cell([0.3957517], 0.491) == "0.396 (0.491)"
    assert _cell(None, 0.932) == "- (0.932)"


def test_hlstm_tables_rows_are_the_results():
    rows = _results("hlstm_tables.json")["rows"]
    table = _markdown_table(_readme(), "| dataset | HLSTM | CHMC-LSTM | C-HMCNN |")
    assert set(table) == set(rows), f"README rows {sorted(set(table) ^ set(rows))} differ from hlstm_tables.json"
    for d, row in rows.items():
        want = [_cell(row["auprc"].get(m), row["published"].get(m)) for m in METHODS]
        assert table[d] == want, f"README.md, HLSTM table, {d}: {table[d]} but hlstm_tables.json gives {want}"


def test_hlstm_statistics_in_the_prose_are_the_results():
    stats = _results("hlstm_tables.json")["stats"]
    text = " ".join(_readme().split())  # the prose wraps anywhere
    n = len(stats["datasets"])
    phrase = f"The statistics below are over the {n} datasets"
    assert phrase in text, f"README.md does not say {phrase!r}"
    ranks = stats["avg_ranks"]
    order = sorted(METHODS, key=lambda m: ranks[m])
    quoted = ", ".join(f"{m} {ranks[m]:.2f}" for m in order)
    want = (f"Friedman (Iman-Davenport) p = {stats['friedman']['pvalue']:.4f}; average ranks {quoted}; "
            f"Nemenyi CD {stats['cd']:.2f}")
    assert want in text, f"README.md does not say {want!r}"


def test_hlstm_wins_and_firsts_in_the_prose_are_the_results():
    res = _results("hlstm_tables.json")
    text = " ".join(_readme().split())
    full = res["stats"]["datasets"]
    mean = {d: {m: float(np.mean(res["rows"][d]["auprc"][m])) for m in METHODS} for d in full}
    ahead = sum(mean[d]["HLSTM"] > mean[d]["CHMC-LSTM"] for d in full)
    first = sum(max(mean[d], key=mean[d].get) == "C-HMCNN" for d in full)
    phrase = f"HLSTM is ahead on {ahead} of {len(full)}"
    assert phrase in text, f"README.md does not say {phrase!r}"
    assert re.search(rf"first on {first}\*?\*? of {len(full)}", text), f"README.md: C-HMCNN is first on {first}"


@pytest.mark.parametrize("dataset", ["cellcycle_FUN", "cellcycle_GO"])
def test_br_table_is_the_results(dataset):
    rows = _results("hlstm_br.json")["rows"]
    table = _markdown_table(_readme(), "| b_r (seed 0) | 0.1 | 0.3 | 0.5 | 0.7 | 0.9 | 1 (CHMC-LSTM) |")
    chmc = _results("hlstm_tables.json")["rows"][dataset]["auprc"]["CHMC-LSTM"][0]  # b_r = 1, seed 0
    want = [f"{rows[dataset][f'b_r={b}']['auprc'][0]:.3f}" for b in ("0.1", "0.3", "0.5", "0.7", "0.9")]
    assert table[dataset] == want + [f"{chmc:.3f}"]


def test_chmcnn_reproduction_table_is_the_results():
    res = _results("chmcnn_reproduction.json")
    header = "| dataset (3 seeds) | test AUPRC | published | dataset (3 seeds) | test AUPRC | published |"
    lines = _markdown_table(_readme(), header)
    table = {}  # two datasets a line: fold the right half into rows of its own
    for first, rest in lines.items():
        table[first] = rest[:2]
        if rest[2]:
            table[rest[2]] = rest[3:5]
    assert set(table) == set(res), f"README rows {sorted(set(table) ^ set(res))} differ from chmcnn_reproduction.json"
    for d, row in res.items():
        want = [_cell(row["auprc"], None), f"{row['published']:.3f}"]
        got = [table[d][0].strip("*"), table[d][1]]  # bold marks a value off the published one
        assert got == want, f"README.md, C-HMCNN reproduction, {d}: {got} but chmcnn_reproduction.json gives {want}"
