"""One-off migration (2026-12-01): run records for the tables made before runs were recorded.

Tables made before ``_runner.RunRecords`` were rebuilt from run directories that a fresh checkout no
longer has, so adding a seed or a dataset to one (the GPU sitting's HLSTM GO rows, DELA's larger
datasets) would rebuild it from the new runs alone. For the tables that keep every run's values
(seed by seed, fold by fold) in their JSON, this writes one record per run from those values, so the
next command extends them instead of shrinking them:

    python experiments/records_from_tables.py            # write the records, then check them
    python experiments/records_from_tables.py --check    # only check: the tables rebuild unchanged

A reconstructed record holds the config the table's command resolves to today (the source has not
changed those runs' configs since), the values the table stored, the machine its header names, and
``"reconstructed"`` saying so; it has no per-epoch log (``metrics.jsonl`` is empty), so ``--plan`` does
not time from it. ``--check`` rebuilds every table from the records alone, in a temporary folder, and
compares its rows with the committed JSON to the last digit.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _runner import RunRecords  # noqa: E402

from hmljax.data import atomic_write_text  # noqa: E402

RESULTS = os.path.join(HERE, "results")
# (script, table stem) of the tables whose JSON keeps each run's values.
TABLES = [("hlstm", "hlstm_tables"), ("adaptive_batch", "adaptive_table2_mlp"),
          ("adaptive_batch", "adaptive_table2_c2ae"), ("adaptive_batch", "adaptive_table2_dela"),
          ("adaptive_batch", "adaptive_table4"), ("adaptive_batch", "adaptive_hierarchy")]
SOURCE_COMMIT = "f38b500"
_ROOTS = {"hlstm": "hlstm", "adaptive_batch": "adaptive_batch"}  # the scripts' default --runs folders


def _machine(md_path: str) -> dict:
    """The machine the table's header names, when it names one CPU kind (``cpu (2 CPUs), jax 0.10.2``)."""
    with open(md_path) as fh:
        m = re.search(r"runs trained on: cpu \((\d+) CPUs\), jax ([\w.]+)\s*$", fh.read(), re.M)
    return {"backend": "cpu", "cpus": int(m.group(1)), "jax": m.group(2)} if m else {}


def _args(script, command: str, runs: str):
    """The script's parsed arguments for the table's command (no data dir: nothing is read)."""
    argv = shlex.split(command)[2:]
    i = argv.index("--data-dir")
    del argv[i:i + 2]
    args = script.build_parser().parse_args([*argv, "--runs", runs])
    args.data_dir = None
    return args


def runs_of(script_name: str, stem: str, runs: str) -> list[tuple]:
    """``[(TrainConfig, run_dir, results dict)]`` for every run the table's JSON holds values of."""
    script = __import__(script_name)
    with open(os.path.join(RESULTS, stem + ".json")) as fh:
        table = json.load(fh)
    args = _args(script, table["command"], runs)
    rows = table["rows"]
    out = []
    if script_name == "hlstm":
        for d, label, keys, s in script.cells("tables", args):
            vals = rows.get(d, {}).get("auprc", {}).get(label, [])
            if s < len(vals):
                out.append((script.config(d, keys, s, args), script.run_dir("tables", d, label, s, args),
                            {"test": {"auprc": vals[s]},
                             "median_epoch_seconds": rows[d]["median_epoch_seconds"][label]}))
        return out
    name = "hierarchy" if stem == "adaptive_hierarchy" else stem.split("_")[1]
    metrics = script.HIER_METRICS if name == "hierarchy" else script.METRICS
    for d, m, arm, keys, k in script.cells(name, args):
        row = rows.get(d if name == "hierarchy" else f"{d}/{m}", {}).get(arm)
        if row is None or k >= len(row[metrics[0][0]]):
            continue
        res = {"test": {key: row[key][k] for key, *_ in metrics}, "median_epoch_seconds": row["median_epoch_seconds"]}
        if "best_epoch" in row:
            res["best_epoch"] = row["best_epoch"][k]
        out.append((script.config(d, keys, k, args), script.run_dir(d, m, arm, k, args), res))
    return out


def write(tmp: str) -> int:
    """Writes each table's runs as finished run directories under ``tmp/runs/<script's runs folder>`` and
    records them (:class:`RunRecords`) beside the committed tables; returns how many."""
    n = 0
    for script_name, stem in TABLES:
        machine = _machine(os.path.join(RESULTS, stem + ".md"))
        runs = os.path.join(tmp, "runs", _ROOTS[script_name])
        for cfg, rd, res in runs_of(script_name, stem, runs):
            res = {**res, "reconstructed": f"from experiments/results/{stem}.json at commit {SOURCE_COMMIT}, which "
                   "stored this run's values; the run directory was not kept (median_epoch_seconds: the "
                   "table's median over the runs of this cell)"}
            atomic_write_text(os.path.join(rd, "config.json"),
                              json.dumps({"config": cfg.to_dict(), "machine": machine}, indent=2))
            atomic_write_text(os.path.join(rd, "metrics.jsonl"), "")
            atomic_write_text(os.path.join(rd, "results.json"), json.dumps(res, indent=2))
            n += 1
    for root in set(_ROOTS.values()):
        RunRecords(os.path.join(tmp, "runs", root), RESULTS).sync()
    return n


def _close(a, b, where="") -> list[str]:
    """Where two JSON values differ (numbers to 1e-12 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [x for k in sorted({*a, *b}) for x in _close(a.get(k), b.get(k), f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [x for i, (u, v) in enumerate(zip(a, b, strict=True)) for x in _close(u, v, f"{where}[{i}]")]
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return [] if np.isclose(a, b, rtol=1e-12, atol=0) else [f"{where}: {a} != {b}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def check(data_dir: str, results: str = RESULTS) -> list[str]:
    """Rebuilds each table from the records alone (copied into a temporary checkout) and lists where its
    rows differ from the committed JSON."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        res = os.path.join(tmp, "results")
        shutil.copytree(os.path.join(results, "runs"), os.path.join(res, "runs"))
        for script_name, stem in TABLES:
            with open(os.path.join(results, stem + ".json")) as fh:
                committed = json.load(fh)
            argv = shlex.split(committed["command"])[2:]
            argv[argv.index("--data-dir") + 1] = data_dir  # nothing is trained: the configs resolve against it
            with contextlib.redirect_stdout(io.StringIO()):
                __import__(script_name).main([*argv, "--runs", os.path.join(tmp, "runs", _ROOTS[script_name]),
                                              "--results", res, "--table-only"])
            with open(os.path.join(res, stem + ".json")) as fh:
                rebuilt = json.load(fh)
            problems += [f"{stem}: {p}" for p in _close(rebuilt["rows"], committed["rows"])]
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check that the tables rebuild from the records")
    p.add_argument("--data-dir", default=os.environ.get("HMLJAX_DATA"), help="the datasets the configs name")
    args = p.parse_args(argv)
    if not args.check:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{write(tmp)} runs recorded under {os.path.join(RESULTS, 'runs')}")
    problems = check(args.data_dir)
    print("\n".join(problems) or "every table rebuilds from its records, row for row")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
