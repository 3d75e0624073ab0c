"""The figures the README quotes from results tables are the committed results' figures.

The README quotes tables by hand (HLSTM's Tables II-V with their statistics and Fig. 7's b_r table,
the C-HMCNN reproduction, RARE's Tables 1, 2 and 5), beside prose that reads them. When a run
finishes and an experiment's ``--table-only`` rebuilds its ``experiments/results/*.json``, these tests
fail until the README says the same: a quoted figure never goes stale silently. Nothing is trained;
only committed files are read.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

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


def test_br_table_is_the_results():
    """Fig. 7's README table has a row for every finished panel (all five b_r), and each row is the results."""
    rows = _results("hlstm_br.json")["rows"]
    table = _markdown_table(_readme(), "| b_r (seed 0) | 0.1 | 0.3 | 0.5 | 0.7 | 0.9 | 1 (CHMC-LSTM) |")
    ratios = ("0.1", "0.3", "0.5", "0.7", "0.9")
    finished = {d for d, r in rows.items() if all(f"b_r={b}" in r for b in ratios)}
    assert set(table) == finished, (
        f"README Fig. 7 rows {sorted(table)}, finished panels in hlstm_br.json {sorted(finished)}")
    tables = _results("hlstm_tables.json")["rows"]
    for dataset in finished:
        chmc = tables[dataset]["auprc"]["CHMC-LSTM"][0]  # b_r = 1, seed 0
        want = [f"{rows[dataset][f'b_r={b}']['auprc'][0]:.3f}" for b in ratios] + [f"{chmc:.3f}"]
        assert table[dataset] == want, f"README.md, Fig. 7, {dataset}: {table[dataset]} but the results give {want}"


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


def _ours(cell: str) -> str:
    """The measured part of a RARE cell: before the paper's bracketed value, bold marks dropped."""
    return cell.split(" (")[0].replace("*", "").strip()


def test_rare_table2_is_the_results():
    res = _results("rare_table2.json")
    table = _markdown_table(_readme(), "| dataset | Baseline | bBMA | GMU | Epistemic JS | Epistemic KL |")
    cols = ("Baseline", "bBMA", "GMU", "Epistemic JS", "Epistemic KL")
    assert set(table) == set(res), f"README rows {sorted(set(table) ^ set(res))} differ from rare_table2.json"
    for d, row in res.items():
        want = [f"{row[c]['F1'][0]:.2f}" for c in cols]
        got = [_ours(c) for c in table[d]]
        assert got == want, f"README.md, RARE Table 2, {d}: node-wise F1 {got} but rare_table2.json gives {want}"


def test_rare_table5_is_the_results():
    res = _results("rare_table5.json")
    header = "| GO dataset | None | w0=0.25 (code) | w0=0.50 (code) | LPROS | HROS-PD | w0=0.25 (paper) |"
    table = _markdown_table(_readme(), header)
    cols = ("None", "w0=0.25 (code)", "w0=0.50 (code)", "LPROS", "HROS-PD", "w0=0.25 (paper)")
    assert {f"{d}_GO" for d in table} == set(res)
    for d, cells in table.items():
        row = res[f"{d}_GO"]
        want = [f"{row[c]['F1'][0]:.2f} / {row[c]['Recall'][0]:.2f}" if row[c]["n"] else "not run" for c in cols]
        got = [_ours(c) for c in cells]
        assert got == want, f"README.md, RARE Table 5, {d}: F1 / recall {got} but rare_table5.json gives {want}"


def test_rare_table1_is_the_results():
    res = _results("rare_table1.json")
    header = ("| dataset | None F1 / recall | w0=0.25 code F1 / recall | recall ratio | F1 gain / 2σ "
              "| w0=0.25 paper F1 / recall |")
    table = _markdown_table(_readme(), header)
    assert set(table) == set(res), f"README rows {sorted(set(table) ^ set(res))} differ from rare_table1.json"

    def pm(stat):  # [mean, std, n] -> "m ± s"
        return f"{stat[0]:.2f} ± {stat[1]:.2f}"

    for d, row in res.items():
        none, code, paper = row["None"], row["w0=0.25 (code)"], row["w0=0.25 (paper)"]
        # the project's > 2σ rule (experiments/rare.py): twice the larger of the two stds
        gain, two_sigma = code["F1"][0] - none["F1"][0], 2 * max(code["F1"][1], none["F1"][1])
        want = [f"{pm(none['F1'])} / {pm(none['Recall'])}", f"{pm(code['F1'])} / {pm(code['Recall'])}",
                f"{code['Recall'][0] / none['Recall'][0]:.2f}x", f"{gain:.2f} / {two_sigma:.2f}",
                f"{pm(paper['F1'])} / {pm(paper['Recall'])}"]
        assert table[d] == want, f"README.md, RARE Table 1, {d}: {table[d]} but rare_table1.json gives {want}"
