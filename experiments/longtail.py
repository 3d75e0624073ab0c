"""Long-tailed multi-label learning (HMT-Net's Tables 1-2 and Fig. 2) on long-tailed subsets of MULAN data.

    python experiments/longtail.py tables --data-dir ../shared/data [--seeds 3] [--workers 2]
    python experiments/longtail.py lambda --data-dir ../shared/data      # Fig. 2: HMT-Net's noise strength
    python experiments/longtail.py hierarchy --data-dir ../shared/data   # beyond the paper: HMT groups + MCLoss
    ... --plan          train nothing: the runs left and an estimate of their time
    ... --table-only    rebuild the tables and figures from the finished runs

HMT-Net's benchmarks (VOC-LT, COCO-LT) are images that are not here, so the comparison runs where
features exist: long-tailed train subsets built by DB's procedure (:func:`hmljax.data.longtail_subset`,
run keys ``longtail_max`` / ``longtail_min``) from scene, Corel5k, bibtex and tmc2007-500, and
delicious's natural long tail as it is. The test split is MULAN's, whole.

- ``tables``: ERM, RW, RS, Focal, CB-Focal, DB-Focal, ASL and HMT-Net, head / middle / tail / all test mAP
  (groups by train count: >= 100, 20-99, < 20, on the subset), mean ± std over seeds.
- ``lambda``: HMT-Net with noise strength lambda in {0, 0.5, 1, 2, 4, 8} (0: the three heads and the
  group-weighted loss alone), and with eta = 1 (the global loss alone, no group re-weighting) at
  lambda = 0 and 2, which separates the noise's effect from the loss's: at eta = 1 and lambda = 0
  HMT-Net is ERM with its output layer split into three heads.
- ``hierarchy`` (beyond the paper): HMT-Net's groups on a hierarchy's nodes (by train count), its heads
  followed by the max-constraint and trained with MCLoss, against C-HMCNN and RARE's node weights
  (``weights=code``), on the FUN datasets with C-HMCNN's published settings (hidden size, dropout,
  epochs, batch 4, train+valid, last epoch): AUPRC and node-wise F1 and recall per group.

Every method shares one encoder (the flat MLP: 2 hidden layers of 256, ReLU, dropout 0.2) and one
budget: Adam, lr 1e-3, batch 32, 30 epochs, the last epoch reported (DB and HMT-Net report the last).
RS (class-aware re-sampling, DB's sampler: 3 rows per class visit) gets the same number of training
rows as the others: its epoch is set to the subset's size (``reduce = max_k n_k · C / N``) instead of
DB's ``max_k n_k · C / 4``, since DB's 8 RS epochs against 80 plain ones do not transfer to other sizes.
The losses keep DB's VOC-LT settings (REFERENCE.md §8); HMT-Net lambda = 2, eta = 0.5 (the paper gives
no eta). Results go to ``experiments/results/longtail_<experiment>.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _runner import (  # noqa: E402
    CARRIED_NOTE,
    RunRecords,
    carry_committed_runs,
    check_datasets,
    committed_groups,
    config_from,
    finished_run,
    int_at_least,
    pending,
    plan,
    run_tasks,
    save_png,
)
from rare import where_trained  # noqa: E402

from hmljax.data import atomic_write_text  # noqa: E402
from hmljax.training import TrainConfig, source_commit  # noqa: E402

RESULTS = os.path.join(HERE, "results")
# dataset -> (longtail_max, longtail_min); None: the natural distribution, as it is.
SUBSETS = {"scene": (400, 4), "Corel5k": (800, 1), "bibtex": (800, 1), "tmc2007-500": (2000, 4),
           "delicious": None}
METHODS = {"ERM": "method=mlp", "RW": "method=mlp loss=rw", "RS": "method=mlp sampler=class_aware",
           "Focal": "method=mlp loss=focal", "CB-Focal": "method=mlp loss=cb_focal",
           "DB-Focal": "method=mlp loss=db_focal", "ASL": "method=mlp loss=asl", "HMT-Net": "method=hmt"}
LAMBDAS = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
BUDGET = "optimizer=adam lr=1e-3 batch_size=32 epochs=30 weight_decay=1e-5 protocol=chmcnn"
GROUPS = ("head", "middle", "tail")
FUN = [f"{d}_FUN" for d in ("cellcycle", "derisi", "eisen", "gasch2", "seq", "spo")]
HIER_METHODS = {"C-HMCNN": "method=chmcnn", "C-HMCNN + RARE w": "method=chmcnn weights=code",
                "HMT-Net": "method=hmt encoder_layers=2",
                "HMT-Net + RARE w": "method=hmt encoder_layers=2 weights=code"}


def _subset_keys(d: str) -> str:
    s = SUBSETS.get(d)
    return "" if s is None else f"longtail_max={s[0]} longtail_min={s[1]}"


@functools.cache
def _rs_reduce(d: str, data_dir: str | None) -> float:
    """``reduce`` that makes an RS epoch as long as the (subset) train split."""
    from hmljax.data import load_dataset, longtail_subset

    ds = load_dataset(d, data_dir=data_dir)
    Y = np.asarray(ds.split("train")[1])
    if SUBSETS.get(d):
        Y = Y[longtail_subset(Y, max_count=SUBSETS[d][0], min_count=SUBSETS[d][1], seed=0)]
    counts = Y.sum(0)
    return round(float(counts.max() * (counts > 0).sum() / Y.shape[0]), 4)


def default_datasets(name: str) -> list[str]:
    return FUN if name == "hierarchy" else list(SUBSETS) if name == "tables" else ["bibtex", "tmc2007-500", "Corel5k"]


def cells(name: str, args) -> list[tuple[str, str, str, int]]:
    """``(dataset, label, overrides, seed)`` for every run the experiment needs."""
    out = []
    if name == "hierarchy":
        from hmljax.data import get_spec

        for d in args.datasets or default_datasets(name):
            spec = get_spec(d, args.data_dir)
            for s in range(args.seeds):
                for label, keys in HIER_METHODS.items():
                    size = f" hidden={spec.hidden} dropout={spec.dropout}" if "hmt" in keys else ""
                    out.append((d, label, keys + size, s))
        return out
    for d in args.datasets or default_datasets(name):
        base = f"{BUDGET} {_subset_keys(d)}"
        for s in range(args.seeds):
            if name == "tables":
                for label, keys in METHODS.items():
                    extra = f" reduce={_rs_reduce(d, args.data_dir)}" if label == "RS" else ""
                    out.append((d, label, f"{base} {keys}{extra}", s))
            else:
                out += [(d, f"lambda={lam}", f"{base} method=hmt noise_lambda={lam}", s) for lam in LAMBDAS]
                out += [(d, f"eta=1 lambda={lam}", f"{base} method=hmt eta=1.0 noise_lambda={lam}", s)
                        for lam in (0.0, 2.0)]
    return out


def config(d: str, keys: str, seed: int, args) -> TrainConfig:
    return config_from(dict(dataset=d, data_dir=args.data_dir, seed=seed), keys.split() + list(args.override))


def run_dir(d: str, label: str, seed: int, args) -> str:
    slug = label.replace("=", "").replace(".", "p").replace(" + ", "+").replace(" ", "_")
    return os.path.join(args.runs, d, f"{slug}-s{seed}")


def collect(name: str, args) -> dict:
    """``{dataset: {label: [run results]}}``: the finished runs here, plus the committed table's rows whose runs
    this checkout lacks (``carried``, :func:`_runner.carry_committed_runs`), so a rebuild never drops a row."""
    out: dict = {}
    path = os.path.join(args.results, f"longtail_{name}.json")
    asked = args.datasets or default_datasets(name)
    wide = argparse.Namespace(**{**vars(args), "datasets": list(dict.fromkeys([*asked, *committed_groups(path)]))})
    for d, label, _keys, s in cells(name, wide):  # the committed table's datasets too: their runs may be here
        if (res := finished_run(run_dir(d, label, s, args))) is not None:
            out.setdefault(d, {}).setdefault(label, []).append(res)
    carry_committed_runs(out, path)
    return out


def _carried(res) -> bool:
    return any(r.get("carried") for got in res.values() for rs in got.values() for r in rs)


def _n(rs) -> str:
    return f"{len(rs)} ‡" if any(r.get("carried") for r in rs) else str(len(rs))


def _vals(rs, key: str) -> np.ndarray:
    return np.array([r["test"].get(key, np.nan) for r in rs], float)


def _fmt(v: np.ndarray) -> str:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "—"
    return f"{100 * v.mean():.2f} ± {100 * v.std(ddof=1):.2f}" if v.size > 1 else f"{100 * v.mean():.2f}"


def _header(title: str, command: str, res: dict) -> list[str]:
    where = sorted({"carried from the committed table" if r.get("carried") else where_trained(r["machine"])
                    for d in res.values() for rs in d.values() for r in rs})
    return [f"# {title}", "", f"Command: `{command}`  ",
            f"Commit: `{source_commit()}`; written on {platform.platform()}, {os.cpu_count()} CPUs, "
            f"{datetime.date.today().isoformat()}; runs trained on: {'; '.join(where) or '—'}", ""]


def write(name: str, args, command: str) -> str:
    res = collect(name, args)
    labels = list(METHODS) if name == "tables" else (
        [f"lambda={lam}" for lam in LAMBDAS] + [f"eta=1 lambda={lam}" for lam in (0.0, 2.0)])
    title = ("Long-tailed multi-label: ERM, re-weighting, re-sampling, long-tail losses and HMT-Net (Tables 1-2)"
             if name == "tables" else "HMT-Net's noise strength lambda (Fig. 2)")
    lines = _header(title, command, res) + [
        "Test mAP (%) over the classes with a test positive, by the classes' train-subset counts: head >= 100, "
        "middle 20-99, tail < 20; mean ± sample std over seeds (n). Train split: DB's long-tailed subset "
        "(longtail_max / longtail_min) or the natural one; test: MULAN's test split. Best mean per column in bold.",
        ""]
    rows: dict = {}
    for d, got in res.items():
        info = next((r["train_rows"] for rs in got.values() for r in rs if r.get("train_rows")), {})
        sub = SUBSETS.get(d)
        lines += [f"## {d}: " + (f"{info['rows']} train rows " if "rows" in info else "train rows ‡ ")
                  + (f"(subset, max {sub[0]}, min {sub[1]})" if sub else "(natural)")
                  + (f"; groups head/middle/tail {'/'.join(str(info['groups'][g]) for g in GROUPS)}"
                     if "groups" in info else ""), "",
                  "| method | n | head | middle | tail | all |", "|---|---|---|---|---|---|"]
        means = {k: {lab: np.nanmean(_vals(got[lab], k)) if lab in got else -np.inf for lab in labels}
                 for k in ("map_head", "map_middle", "map_tail", "map")}
        for lab in labels:
            if lab not in got:
                continue
            rs = got[lab]
            rows.setdefault(d, {})[lab] = {k: _vals(rs, k).tolist() for k in
                                           ("map_head", "map_middle", "map_tail", "map", "macro_auc")}
            rows[d][lab]["median_epoch_seconds"] = float(np.median([r["median_epoch_seconds"] for r in rs]))

            def cell(k, lab=lab, rs=rs, means=means):
                s = _fmt(_vals(rs, k))
                best = np.isfinite(means[k][lab]) and means[k][lab] == max(means[k].values())
                return f"**{s}**" if best and s != "—" else s

            lines.append(f"| {lab} | {_n(rs)} | {cell('map_head')} | {cell('map_middle')} | {cell('map_tail')} | "
                         f"{cell('map')} |")
        lines.append("")
    if name == "tables" and rows:
        lines += _orderings(rows)
    if _carried(res):
        lines += ["", CARRIED_NOTE]
    out = os.path.join(args.results, f"longtail_{name}")
    if rows:
        _figure(name, rows, out + ".png", labels)
        lines += ["", f"![{title}](longtail_{name}.png)"]
    atomic_write_text(out + ".md", "\n".join(lines) + "\n")
    atomic_write_text(out + ".json", json.dumps({"command": command, "rows": rows}, indent=2))
    return "\n".join(lines)


def write_hierarchy(args, command: str) -> str:
    res = collect("hierarchy", args)
    lines = _header("HMT-Net's groups on a hierarchy, with MCLoss (beyond the paper)", command, res) + [
        "Test AUPRC (micro) and node-wise F1 / recall (threshold 0.5 on the constrained outputs), overall (every "
        "evaluated node) and per group (nodes with a test positive; head >= 100, middle 20-99, tail < 20 train "
        "positives); mean over seeds (n). C-HMCNN's published settings per dataset.", ""]
    keys = ["auprc", "node_f1", "node_recall"] + [f"node_{m}_{g}" for m in ("f1", "recall") for g in GROUPS]
    head = ["AUPRC", "F1", "recall"] + [f"{m} {g}" for m in ("F1", "recall") for g in GROUPS]
    rows: dict = {}
    for d, got in res.items():
        lines += [f"## {d}", "", "| method | n | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
        for lab in HIER_METHODS:
            if lab not in got:
                continue
            rs = got[lab]
            rows.setdefault(d, {})[lab] = {k: _vals(rs, k).tolist() for k in keys}
            lines.append(f"| {lab} | {_n(rs)} | " + " | ".join(
                f"{np.nanmean(_vals(rs, k)):.3f}" if np.isfinite(_vals(rs, k)).any() else "—" for k in keys) + " |")
        lines.append("")
    if _carried(res):
        lines += [CARRIED_NOTE]
    out = os.path.join(args.results, "longtail_hierarchy")
    atomic_write_text(out + ".md", "\n".join(lines) + "\n")
    atomic_write_text(out + ".json", json.dumps({"command": command, "rows": rows}, indent=2))
    return "\n".join(lines)


def _orderings(rows) -> list[str]:
    """Where the paper's orderings hold: HMT-Net best overall, and above ERM on the tail."""
    out = ["## The paper's orderings on these data", "",
           "| dataset | best 'all' | HMT-Net − ERM, all | HMT-Net − ERM, tail | HMT-Net − DB-Focal, all | "
           "HMT-Net rank (all, of 8) |", "|---|---|---|---|---|---|"]
    for d, got in rows.items():
        m = {lab: float(np.nanmean(v["map"])) for lab, v in got.items()}
        t = {lab: float(np.nanmean(v["map_tail"])) if np.isfinite(v["map_tail"]).any() else np.nan
             for lab, v in got.items()}
        if "HMT-Net" not in m:
            continue
        rank = 1 + sum(v > m["HMT-Net"] for v in m.values())
        f = lambda a, b: "—" if a is None or b is None or not np.isfinite(a - b) else f"{100 * (a - b):+.2f}"  # noqa: E731
        out.append(f"| {d} | {max(m, key=m.get)} | {f(m['HMT-Net'], m.get('ERM'))} | "
                   f"{f(t.get('HMT-Net'), t.get('ERM'))} | {f(m['HMT-Net'], m.get('DB-Focal'))} | {rank} |")
    return out


def _figure(name, rows, path, labels):

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("map_head", "map_middle", "map_tail", "map")
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.6), squeeze=False)
    for i, (d, got) in enumerate(rows.items()):
        ax = axes[0, i]
        present = [lab for lab in labels if lab in got]
        if name == "tables":
            x = np.arange(len(keys))
            w = 0.8 / max(len(present), 1)
            for j, lab in enumerate(present):
                ax.bar(x + (j - len(present) / 2 + 0.5) * w, [100 * np.nanmean(got[lab][k]) for k in keys], w,
                       label=lab)
            ax.set_xticks(x, ["head", "middle", "tail", "all"])
        else:
            sweep = [lab for lab in present if not lab.startswith("eta")]
            lam = [float(lab.split("=")[1]) for lab in sweep]
            for k in keys:
                line = ax.plot(lam, [100 * np.nanmean(got[lab][k]) for lab in sweep], "o-", label=k.replace("map_", ""))
                for lab in present:
                    if lab.startswith("eta"):  # eta = 1 marks (global loss only) at their lambda
                        ax.plot(float(lab.split("=")[-1]), 100 * np.nanmean(got[lab][k]), "x", ms=8,
                                color=line[0].get_color())
            ax.set_xlabel("lambda (x: eta = 1)")
        ax.set_title(d)
        ax.set_ylabel("test mAP (%)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["tables", "lambda", "hierarchy"])
    p.add_argument("--data-dir", default=os.environ.get("HMLJAX_DATA"))
    p.add_argument("--datasets", nargs="*", default=None)
    p.add_argument("--seeds", type=int_at_least(1), default=1)
    p.add_argument("--workers", type=int_at_least(1), default=1)
    p.add_argument("--runs", default=os.path.join("runs", "longtail"))
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--override", nargs="*", default=[], help="extra key=value for every run")
    p.add_argument("--plan", action="store_true", help="train nothing: the runs left and an estimate")
    p.add_argument("--table-only", action="store_true", help="rebuild the outputs from finished runs")
    args = p.parse_args(argv)
    check_datasets(p, args.datasets, args.data_dir)
    command = (f"python experiments/longtail.py {args.experiment} --data-dir ../shared/data"
               + (f" --seeds {args.seeds}" if args.seeds != 1 else "")
               + (f" --datasets {' '.join(args.datasets)}" if args.datasets else "")
               + (f" --override {' '.join(args.override)}" if args.override else ""))
    timing = [args.runs] + ([os.path.join("runs", "chmcnn")] if args.experiment == "hierarchy" else [])
    records = RunRecords(args.runs, args.results)
    records.sync()  # the runs finished in other checkouts and sittings
    todo, done = pending([(config(d, keys, s, args), run_dir(d, label, s, args))
                          for d, label, keys, s in cells(args.experiment, args)])
    if args.plan:
        found = collect(args.experiment, args)
        carried = {(d, lab) for d, got in found.items() for lab, rs in got.items() if any(r.get("carried") for r in rs)}
        left = {rd for _, rd in todo}
        replacing = sum(run_dir(d, lab, s, args) in left for d, lab, _, s in cells(args.experiment, args)
                        if (d, lab) in carried)
        print(plan(todo, timing_roots=[*timing, records.timings], finished=done, workers=args.workers,
                   replacing_carried=replacing))
        return 0
    def table(_=None):
        return write_hierarchy(args, command) if args.experiment == "hierarchy" else write(args.experiment, args,
                                                                                            command)

    failures = [] if args.table_only else run_tasks(todo, workers=args.workers, desc=f"longtail {args.experiment}",
                                                    on_done=table, records=records)
    print(table())
    for rd, err in failures:
        print(f"FAILED {rd}: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
