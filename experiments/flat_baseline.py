"""The flat MLP baseline on every MULAN dataset: k-fold, every flat metric, mean ± std over the folds.

    python experiments/flat_baseline.py --data-dir ../shared/data [--datasets yeast scene] [--folds 5]
        [--workers 2] [--epochs 100] [--plan]

Protocol (the adaptive-batch paper's, as its released code runs it, less its label filter and
feature selection, which are the named options ``min_label_count`` / ``feature_fraction``): 5-fold
iterative stratification (seed 42), each held-out fold halved into valid/test, MinMax scaling
fitted on the fold's train rows (``preprocessing=minmax``; the code's fit on all rows is
``minmax_all``), Adam lr 1e-4, weight decay 1e-4, batch 128, 100 epochs, test metrics of the
epoch with the best validation macro-AUC (``protocol=early_stopping`` with patience = epochs).
``method=mlp``: 2 hidden layers of 256, dropout 0.2. Finished folds are skipped, so the table
can be completed over several sittings; it is rewritten after every run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _runner import RunRecords, check_datasets, config_from, finished_run, int_at_least, plan, run_tasks  # noqa: E402
from rare import where_trained  # noqa: E402

from hmljax.data import atomic_write_text  # noqa: E402
from hmljax.training import TrainConfig, config_diff, source_commit  # noqa: E402

MULAN = ["emotions", "scene", "yeast", "birds", "genbase", "medical", "enron", "Corel5k", "rcv1subset1",
         "rcv1subset2", "bibtex", "tmc2007-500", "delicious"]
METRICS = [("macro_auc", "macro-AUC", True), ("macro_f1", "macro-F1", True), ("micro_f1", "micro-F1", True),
           ("map", "mAP", True), ("ranking_loss", "ranking loss", False), ("hamming_loss", "hamming", False),
           ("one_error", "one-error", False), ("coverage", "coverage", False)]


def config(dataset: str, fold: int, args) -> TrainConfig:
    keys = dict(dataset=dataset, data_dir=args.data_dir, seed=args.seed, method="mlp", epochs=args.epochs, lr=1e-4,
                weight_decay=1e-4, batch_size=128, folds=args.folds, fold=fold, fold_valid=True,
                protocol="early_stopping", patience=args.epochs, preprocessing="minmax",
                drop_ids=dataset == "genbase")
    return config_from(keys, args.override)


def run_dir(dataset: str, fold: int, args) -> str:
    return os.path.join(args.runs, dataset, f"fold{fold}-s{args.seed}")


def tasks(args) -> list:
    out = []
    for d in args.datasets:
        for k in range(args.folds):
            cfg, rd = config(d, k, args), run_dir(d, k, args)
            if os.path.exists(os.path.join(rd, "results.json")) and not config_diff(rd, cfg):
                continue
            if os.path.exists(os.path.join(rd, "config.json")) and config_diff(rd, cfg):
                raise SystemExit(f"{rd} holds a run of another config: move it away or pass another --runs")
            out.append((cfg.to_dict(), rd))
    return out


def collect(args) -> dict:
    out = {}
    for d in args.datasets:
        for k in range(args.folds):
            rd = run_dir(d, k, args)
            if (res := finished_run(rd)) is not None:
                out.setdefault(d, []).append(res)
    return out


def carry_committed(res: dict, committed_json: str) -> dict:
    """Adds to ``res`` the folds of the committed table's datasets that have fewer finished runs here (runs made
    before runs were recorded, or elsewhere), from its per-fold values, marked ``carried``; returns the committed
    rows carried, by dataset. Without it, a command on one dataset rewrote the table with that row alone."""
    try:
        with open(committed_json) as fh:
            rows = json.load(fh).get("rows", {})
    except (OSError, ValueError, AttributeError):
        return {}
    carried = {}
    for d, row in (rows.items() if isinstance(rows, dict) else ()):
        n = int(row.get("folds") or 0) if isinstance(row, dict) else 0
        if n <= len(res.get(d, [])):
            continue
        res[d] = [{"test": {key: row[key][i] for key, _, _ in METRICS if key in row},
                   "train_seconds_this_session": row["train_seconds"][i], "eval_seconds": 0.0,
                   "best_epoch": row["best_epoch"][i], "machine": None, "carried": True} for i in range(n)]
        carried[d] = row
    return carried


def write_table(args, command: str) -> str:
    res = collect(args)
    carried = carry_committed(res, os.path.join(args.results, "flat_baseline.json"))
    lines = ["# Flat MLP baseline (hmljax, method=mlp)", "", f"Command: `{command}`  ",
             f"Commit: `{source_commit()}`; table written on {platform.platform()}, {os.cpu_count()} CPUs; "
             f"date: {datetime.date.today().isoformat()}", "",
             f"{args.folds}-fold iterative stratification (seed 42), held-out fold halved into valid/test, test "
             "metrics at the epoch of best validation macro-AUC; MinMax fitted on each fold's train rows; "
             "Adam lr 1e-4, wd 1e-4, batch 128, 100 epochs; one seed per fold. Mean ± sample std over the folds; "
             "↑ higher is better, ↓ lower. macro-AUC as the adaptive-batch code computes it (ties correct, "
             "divided by all labels).", "",
             "| dataset | folds | " + " | ".join(f"{n} {'↑' if up else '↓'}" for _, n, up in METRICS)
             + " | best epoch | train s per fold | trained on |",
             "|---|---|" + "---|" * len(METRICS) + "---|---|---|"]
    rows = {}
    shown = {*args.datasets, *carried}
    for d in dict.fromkeys([*(d for d in MULAN if d in shown), *args.datasets, *carried]):
        rs = res.get(d)
        if not rs:
            continue
        cells, row = [], {"folds": len(rs)}
        for key, _, _ in METRICS:
            v = np.array([r["test"][key] for r in rs], float)
            row[key] = v.tolist()
            cells.append(f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}")
        secs = np.array([r["train_seconds_this_session"] + r["eval_seconds"] for r in rs])
        best = [r["best_epoch"] for r in rs]
        where = carried[d].get("trained_on") or ["not recorded"] if d in carried else sorted(
            {where_trained(r["machine"]) for r in rs})
        row.update(train_seconds=secs.tolist(), best_epoch=best, trained_on=where)
        rows[d] = row
        lines.append(f"| {d} | {len(rs)}{' ‡' if d in carried else ''} | " + " | ".join(cells)
                     + f" | {np.median(best):.0f} | {np.median(secs):.1f} | {'; '.join(where)} |")
    if carried:
        lines += ["", "‡ carried from the committed table: these folds' runs are not in this checkout, so their "
                  "values come from the table's JSON; a row is replaced once this checkout has as many folds of it."]
    lines += ["", "Train seconds include the per-epoch validation scoring that picks the best epoch (median over "
              "folds, as the runs logged them; runs made side by side with `--workers 2` share the 2 cores)."]
    out = os.path.join(args.results, "flat_baseline")
    atomic_write_text(out + ".md", "\n".join(lines) + "\n")
    atomic_write_text(out + ".json", json.dumps({"command": command, "rows": rows}, indent=2))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("HMLJAX_DATA"))
    p.add_argument("--datasets", nargs="+", default=MULAN)
    p.add_argument("--folds", type=int_at_least(2), default=5)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int_at_least(1), default=1)
    p.add_argument("--runs", default=os.path.join("runs", "flat_baseline"))
    p.add_argument("--results", default=os.path.join(HERE, "results"))
    p.add_argument("--override", nargs="*", default=[], help="extra config keys (key=value) for every run")
    p.add_argument("--plan", action="store_true", help="train nothing: list the runs left and an estimate")
    args = p.parse_args(argv)
    check_datasets(p, args.datasets, args.data_dir)
    command = "python experiments/flat_baseline.py --data-dir ../shared/data" + (
        f" --datasets {' '.join(args.datasets)}" if args.datasets != MULAN else "") + (
        f" --folds {args.folds}" if args.folds != 5 else "") + (
        f" --epochs {args.epochs}" if args.epochs != 100 else "") + (
        f" --override {' '.join(args.override)}" if args.override else "")
    records = RunRecords(args.runs, args.results)
    records.sync()  # the runs finished in other checkouts and sittings
    todo = tasks(args)
    if args.plan:
        found = collect(args)
        done = sum(len(v) for v in found.values())
        carried = carry_committed(found, os.path.join(args.results, "flat_baseline.json"))
        replacing = sum(os.path.basename(os.path.dirname(rd)) in carried for _, rd in todo)
        print(plan(todo, timing_roots=[args.runs, records.timings], finished=done, workers=args.workers,
                   replacing_carried=replacing))
        return 0
    failures = run_tasks(todo, workers=args.workers, desc="flat baseline", on_done=lambda _: write_table(args, command),
                         records=records)
    print(write_table(args, command))
    for rd, err in failures:
        print(f"FAILED {rd}: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
