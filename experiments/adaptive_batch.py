"""Adaptive batch selection for multi-label learning: the paper's Tables 2-4 and Fig. 3/4/7 on the engine.

    python experiments/adaptive_batch.py table2 --data-dir ../shared/data [--models mlp c2ae dela]
        [--datasets yeast scene ...] [--folds 5] [--workers 2]
    python experiments/adaptive_batch.py table4   ...   # AdaC against Adaptive
    python experiments/adaptive_batch.py curves   ...   # Fig. 3/4: random, hard, adaptive on scene and bibtex
    python experiments/adaptive_batch.py pressure ...   # Fig. 7: s_e in {2, 8, 16, 64}; batch sizes 256, 512
    python experiments/adaptive_batch.py hierarchy --data-dir ../shared/data [--seeds 3]
        # beyond the paper: C-HMCNN on the FUN datasets, uniform batches against adaptive selection
    ... --plan (train nothing: runs left and an estimate)   ... --table-only (rebuild outputs)

Protocol, as the released code runs it (REFERENCE.md §5.4): 5-fold iterative stratification (seed 42),
each held-out fold halved into valid/test, test metrics at the epoch of best validation macro-AUC (a real
copy of the best parameters), Adam lr 1e-4, weight decay 1e-4, batch 128, 100 epochs; its label filter
(labels with <= 20 positives dropped, ``min_label_count=20``), its feature selection (top 2% of columns
by column sum on rcv1subset*, 1% on tmc2007-500) and its MinMax scaling fitted on all rows
(``preprocessing=minmax_all``). ``--clean`` uses every label, every feature, and MinMax fitted on each
fold's train rows. Both arms share the optimiser: the released code's Random arm also dropped weight
decay and shuffling (a confound the paper does not mention); here Random is ``sampler=random``, a fresh
permutation per epoch, as the paper says. The sampler's defaults are the paper's (probabilities of every
row refreshed after each batch, selection loss weighted by w); ``--override update_probs=batch
selection_loss=unweighted`` is the released code's.

``hierarchy`` runs C-HMCNN's own protocol instead (train on train+valid for the dataset's published epoch
count, test at the last epoch, batch 4, its lr and weight decay; ``--seeds`` seeds, no folds): ``uniform``
is its shuffled batches (``sampler=epoch``), ``adaptive`` the paper's sampler, whose minority labels are
the evaluated nodes with IRLbl > MeanIR by train+valid frequency (the always-positive roots left out).
Node-wise F1 overall and on the tail nodes (fewer than 20 train positives), and AUPRC.

Finished runs are skipped, interrupted ones resume; outputs go to
``experiments/results/adaptive_<experiment>.{md,json,png}`` with the command and where the runs trained.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
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
    variant_suffix,
)
from rare import where_trained  # noqa: E402

from hmljax.data import atomic_write_text  # noqa: E402
from hmljax.training import TrainConfig, source_commit  # noqa: E402

RESULTS = os.path.join(HERE, "results")
DEFAULT = ["yeast", "scene", "emotions", "enron", "medical", "bibtex", "Corel5k"]
FUN = ["cellcycle_FUN", "derisi_FUN", "eisen_FUN", "gasch2_FUN", "seq_FUN", "spo_FUN"]
# hierarchy: results.json test keys, in percent
HIER_METRICS = [("node_f1", "F1"), ("node_precision", "Precision"), ("node_recall", "Recall"),
                ("node_f1_tail", "F1 tail nodes"), ("node_recall_tail", "Recall tail nodes"), ("auprc", "AUPRC")]
FEATURE_FRACTION = {"rcv1subset1": 0.02, "rcv1subset2": 0.02, "tmc2007-500": 0.01}  # the released code's
METRICS = [("macro_f1", "Macro-F", True), ("micro_f1", "Micro-F", True), ("macro_auc", "Macro-AUC", True),
           ("ranking_loss", "Ranking loss", False), ("hamming_loss", "Hamming loss", False),
           ("one_error", "One-error", False)]
with open(os.path.join(HERE, "adaptive_batch_paper.json")) as _fh:
    PAPER = json.load(_fh)["table2"]
MODEL_NAMES = {"mlp": "MLP", "c2ae": "C2AE", "dela": "DELA", "mpvae": "MPVAE"}


def default_datasets(name: str) -> list[str]:
    """The datasets an experiment runs when ``--datasets`` is not given."""
    return FUN if name == "hierarchy" else DEFAULT if name in ("table2", "table4") else ["scene", "bibtex"]


# Table 2's models when --models is not given; each gets its own table (write_all).
TABLE2_MODELS = ("mlp", "c2ae", "dela")


def cells(name: str, args) -> list[tuple[str, str, str, str, int]]:
    """``(dataset, model, arm, overrides, fold)`` for every run."""
    out = []
    if name == "hierarchy":
        for d in args.datasets or default_datasets(name):
            for arm, keys in {"uniform": "sampler=epoch", "adaptive": "sampler=adaptive"}.items():
                out += [(d, "chmcnn", arm, f"method=chmcnn {keys}", k) for k in range(args.seeds)]
        return out
    ds = args.datasets or default_datasets(name)
    models = args.models or (["mlp"] if name != "table2" else list(TABLE2_MODELS))
    arms = {"table2": {"random": "sampler=random", "adaptive": "sampler=adaptive"},
            "table4": {"adaptive": "sampler=adaptive", "adac": "sampler=adac"},
            "curves": {"random": "sampler=random", "hard": "sampler=hard", "adaptive": "sampler=adaptive"},
            "pressure": {**{f"s_e={s}": f"sampler=adaptive selection_pressure={s}" for s in (2, 8, 16, 64)},
                         "random B=256": "sampler=random batch_size=256",
                         "adaptive B=256": "sampler=adaptive batch_size=256",
                         "random B=512": "sampler=random batch_size=512",
                         "adaptive B=512": "sampler=adaptive batch_size=512"}}[name]
    for d in ds:
        for m in models:
            for arm, keys in arms.items():
                out += [(d, m, arm, f"method={m} {keys}", k) for k in range(args.folds)]
    return out


def config(d: str, keys: str, fold: int, args) -> TrainConfig:
    if keys.startswith("method=chmcnn"):  # the hierarchy experiment: C-HMCNN's protocol, `fold` is the seed
        return config_from(dict(dataset=d, data_dir=args.data_dir, seed=fold), keys.split() + list(args.override))
    base = dict(dataset=d, data_dir=args.data_dir, seed=args.seed, epochs=args.epochs, lr=1e-4, weight_decay=1e-4,
                batch_size=128, folds=args.folds, fold=fold, fold_valid=True, protocol="early_stopping",
                patience=args.epochs, drop_ids=d == "genbase")
    if args.clean:
        base.update(preprocessing="minmax")
    else:
        base.update(preprocessing="minmax_all", min_label_count=20, feature_fraction=FEATURE_FRACTION.get(d, 1.0))
    return config_from(base, keys.split() + list(args.override))


def run_dir(d, m, arm, fold, args) -> str:
    variant = variant_suffix(args.override)  # another experiment: its own folders (see variant_suffix)
    if m == "chmcnn":
        return os.path.join(args.runs, "hierarchy" + variant, d, f"{arm}-s{fold}")
    return os.path.join(args.runs, d, m + variant, f"{arm.replace(' ', '_').replace('=', '')}-fold{fold}-s{args.seed}")


def tasks(name: str, args) -> tuple[list, int]:
    return pending([(config(d, keys, k, args), run_dir(d, m, arm, k, args))
                    for d, m, arm, keys, k in cells(name, args)])


def collect(name: str, args) -> dict:
    """``{(dataset, model): {arm: [results with curve and machine]}}`` for every finished run of the
    experiment on its default datasets and any named with ``--datasets``, whatever command made it: a
    command on some datasets (or a sitting's rows) adds to the tables and never shrinks them."""
    out: dict = {}
    named = [d for d in args.datasets or [] if d not in default_datasets(name)]
    seeds = args.seeds
    if name == "hierarchy":  # every seed found, so a command with fewer seeds keeps the others' rows
        root = os.path.join(args.runs, "hierarchy" + variant_suffix(args.override))
        found = [int(m.group(1)) for d in (os.listdir(root) if os.path.isdir(root) else ())
                 if os.path.isdir(os.path.join(root, d))
                 for f in os.listdir(os.path.join(root, d)) if (m := re.fullmatch(r".+-s(\d+)", f))]
        seeds = max([seeds, *(k + 1 for k in found)])
    wide = argparse.Namespace(**{**vars(args), "datasets": default_datasets(name) + named, "seeds": seeds})
    for d, m, arm, _keys, k in cells(name, wide):
        if (res := finished_run(run_dir(d, m, arm, k, args))) is not None:
            out.setdefault((d, m), {}).setdefault(arm, []).append(res)
    return out


def collect_with_committed(name: str, args, stem: str, *, key_of) -> tuple[dict, list[str]]:
    """:func:`collect`, plus the rows of the committed ``<stem>.json`` whose runs this checkout lacks
    (:func:`_runner.carry_committed_runs`), in the experiment's order of datasets and arms; and the cells
    carried."""
    path = os.path.join(args.results, stem + ".json")
    # The committed table's datasets are looked up too: their runs may be here (recorded) though not named.
    committed = [key_of(g)[0] for g in committed_groups(path)]
    res = collect(name, argparse.Namespace(**{**vars(args), "datasets": list(dict.fromkeys(
        [*(args.datasets or []), *(d for d in committed if d not in default_datasets(name))]))}))
    carried = carry_committed_runs(res, path, key_of=key_of)
    if carried:
        wide = argparse.Namespace(**{**vars(args), "datasets": list(dict.fromkeys(
            [*default_datasets(name), *(d for d, _ in res)])), "seeds": max(args.seeds, 1)})
        order = list(dict.fromkeys(arm for _, _, arm, _, _ in cells(name, wide)))
        rank = {a: i for i, a in enumerate(order)}
        keys = sorted(res, key=lambda k: wide.datasets.index(k[0]) if k[0] in wide.datasets else len(wide.datasets))
        res = {k: dict(sorted(res[k].items(), key=lambda kv: rank.get(kv[0], len(rank)))) for k in keys}
    return res, carried


def _replacing_carried(name: str, args, todo) -> int:
    """How many of the ``todo`` runs belong to rows the committed table shows from runs not here (‡)."""
    if name == "table2" and len(args.models or [None, None]) > 1:  # each model's own table (write_all)
        return sum(_replacing_carried(name, argparse.Namespace(**{**vars(args), "models": [m]}), todo)
                   for m in args.models or TABLE2_MODELS)
    if name == "hierarchy":
        stem, key_of = "adaptive_hierarchy" + variant_suffix(args.override), lambda g: (g, "chmcnn")
    else:
        stem, key_of = _stem(name, args), lambda g: tuple(g.split("/", 1))
    _, carried = collect_with_committed(name, args, stem, key_of=key_of)
    cells_carried = {(*key_of(c.split(" / ")[0]), c.split(" / ", 1)[1]) for c in carried}
    left = {rd for _, rd in todo}
    return sum(run_dir(d, m, arm, k, args) in left for d, m, arm, _, k in cells(name, args)
               if (d, m, arm) in cells_carried)


def _where(res) -> list[str]:
    """Where the runs were trained, as the header says it (carried runs, whose machine is not recorded here,
    say so instead)."""
    return sorted({"carried from the committed table" if r.get("carried") else where_trained(r["machine"])
                   for got in res.values() for rs in got.values() for r in rs})


def _n(rs) -> str:
    """A row's run count, marked ‡ when the runs are carried from the committed table."""
    return f"{len(rs)} ‡" if any(r.get("carried") for r in rs) else str(len(rs))


def _ms(v, digits: int = 4) -> str:
    v = np.asarray(v, float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if v.size > 1 else f"{v.mean():.{digits}f}"


def write_all(name: str, args) -> str:
    """Table 2's outputs one per model (``adaptive_table2_mlp``, ``_c2ae``, ``_dela``, ...) whatever models the
    command names, so a command on several models updates the tables the README cites (it used to write a
    combined ``adaptive_table2_mlp_c2ae_dela`` beside them, and left them stale); other experiments: one."""
    if name != "table2":
        return write_outputs(name, args)
    models = args.models or TABLE2_MODELS
    return "\n\n".join(write_outputs(name, argparse.Namespace(**{**vars(args), "models": [m]})) for m in models)


def _stem(name: str, args) -> str:
    """The outputs' file stem: one table per experiment and model selection (``adaptive_table2_mlp``), so
    runs of one model do not overwrite another's table."""
    return f"adaptive_{name}" + (f"_{'_'.join(args.models)}" if args.models else "") + variant_suffix(args.override)


def full_command(args, datasets, *, seeds: int | None = None) -> str:
    """The command that makes the rows of ``datasets`` (all an output holds: partial commands fill it), with
    ``seeds`` seeds for ``hierarchy`` (default ``--seeds``)."""
    seeds = args.seeds if seeds is None else seeds
    named = list(datasets) if list(datasets) != default_datasets(args.experiment) else []
    return (f"python experiments/adaptive_batch.py {args.experiment} --data-dir ../shared/data"
            + (f" --datasets {' '.join(named)}" if named else "")
            + (f" --models {' '.join(args.models)}" if args.models else "")
            + (f" --folds {args.folds}" if args.folds != 5 else "")
            + (f" --epochs {args.epochs}" if args.epochs != 100 else "")
            + (" --clean" if args.clean else "")
            + (f" --seeds {seeds}" if args.experiment == "hierarchy" and seeds != 1 else "")
            + (f" --override {' '.join(args.override)}" if args.override else ""))


def write_outputs(name: str, args) -> str:
    from hmljax.metrics import wilcoxon_signed_rank

    if name == "hierarchy":
        return write_hierarchy(args)
    res, carried = collect_with_committed(name, args, _stem(name, args), key_of=lambda g: tuple(g.split("/", 1)))
    command = full_command(args, dict.fromkeys(d for d, _ in res))
    arms = list(dict.fromkeys(a for got in res.values() for a in got))
    where = _where(res)
    lines = [f"# Adaptive batch selection: {name}", "", f"Command: `{command}`  ",
             f"Commit: `{source_commit()}`; written on {platform.platform()}, {os.cpu_count()} CPUs, "
             f"{datetime.date.today().isoformat()}; runs trained on: {'; '.join(where) or '—'}", "",
             ("Protocol: the released code's (label filter <= 20 positives, its feature selection, MinMax on all "
              "rows)" if not args.clean else "Protocol: all labels and features, MinMax fitted per fold")
             + f"; {args.folds}-fold iterative stratification, test metrics at the best validation macro-AUC epoch; "
             "Adam lr 1e-4, wd 1e-4, batch 128, up to "
             f"{args.epochs} epochs"
             + (f", **then on every run `{' '.join(args.override)}`**" if args.override else "")
             + ". Mean ± sample std over the folds; **bold**: the better arm's mean. "
             "Paper: Table 2's value where the paper has this model and dataset.", ""]
    rows = {}
    head = "| dataset | model | arm | folds | " + " | ".join(f"{n} {'↑' if up else '↓'}" for _, n, up in METRICS) + \
        " | best epoch | s/epoch |"
    lines += [head, "|---|---|---|---|" + "---|" * len(METRICS) + "---|---|"]
    for (d, m), got in res.items():
        means = {a: {k: np.mean([r["test"][k] for r in got[a]]) for k, _, _ in METRICS} for a in got}
        for a, rs in got.items():
            cells_ = []
            for k, _, up in METRICS:
                v = [r["test"][k] for r in rs]
                others = [means[b][k] for b in means if b != a]
                strictly = bool(others) and all((means[a][k] > o) if up else (means[a][k] < o) for o in others)
                txt = _ms(v)
                cells_.append(f"**{txt}**" if strictly else txt)
            ep = np.median([r["best_epoch"] or 0 for r in rs])
            sec = np.median([r["median_epoch_seconds"] for r in rs])
            lines.append(f"| {d} | {MODEL_NAMES.get(m, m)} | {a} | {_n(rs)} | " + " | ".join(cells_)
                         + f" | {ep:.0f} | {sec:.3f} |")
            rows.setdefault(f"{d}/{m}", {})[a] = {k: [r["test"][k] for r in rs] for k, _, _ in METRICS} | {
                "best_epoch": [r["best_epoch"] for r in rs], "median_epoch_seconds": sec}
            paper = PAPER.get(MODEL_NAMES.get(m, ""), {}).get(d)
            if paper and a in ("random", "adaptive"):
                lines.append(f"| {d} | {MODEL_NAMES.get(m, m)} | {a} (paper) | | "
                             + " | ".join(f"{paper[k][a]:.4f}" for k, _, _ in METRICS) + " | | |")
    # Wilcoxon signed-rank over datasets per model and metric (Table 3), adaptive (or adac) against the first arm.
    if len(arms) >= 2:
        a0, a1 = arms[0], arms[1]
        lines += ["", f"Wilcoxon signed-rank test, {a1} against {a0}, over the datasets with both arms finished "
                  f"on all {args.folds} folds (fold means paired by dataset; two-sided; 'win' = {a1} better at "
                  "p < 0.05):", "",
                  "| model | datasets | " + " | ".join(n for _, n, _ in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for m in dict.fromkeys(m for _, m in res):
            # A dataset still training (one arm's folds done, the other's partly) would pair means over
            # different folds: only complete pairs count.
            pairs = [(res[(d, mm)][a0], res[(d, mm)][a1]) for (d, mm) in res if mm == m
                     and len(res[(d, mm)].get(a0, ())) >= args.folds and len(res[(d, mm)].get(a1, ())) >= args.folds]
            if len(pairs) < 2:
                continue
            out = []
            for k, _, up in METRICS:
                x = np.array([np.mean([r["test"][k] for r in p[0]]) for p in pairs])
                y = np.array([np.mean([r["test"][k] for r in p[1]]) for p in pairs])
                try:
                    w = wilcoxon_signed_rank(y, x)
                    better = (y.mean() > x.mean()) == up
                    verdict = ("win" if better else "loss") if w.pvalue < 0.05 else "tie"
                    out.append(f"{verdict} ({w.pvalue:.3g}; {int(((y > x) == up).sum())}/{len(x)} better)")
                except ValueError as e:  # all differences zero
                    out.append(f"— ({e})")
            lines.append(f"| {MODEL_NAMES.get(m, m)} | {len(pairs)} | " + " | ".join(out) + " |")
    if carried:
        lines += ["", CARRIED_NOTE]
    if name in ("curves", "pressure") and res:
        # The curves come from the runs' logs, which carried rows do not have: the committed figure stays.
        if not carried:
            _curves_figure(res, os.path.join(args.results, f"{_stem(name, args)}.png"))
        lines += ["", f"![{name}](./{_stem(name, args)}.png)"]
    base = os.path.join(args.results, _stem(name, args))
    atomic_write_text(base + ".md", "\n".join(lines) + "\n")
    atomic_write_text(base + ".json", json.dumps({"command": command, "rows": rows}, indent=2))
    return "\n".join(lines)


def write_hierarchy(args) -> str:
    """The adaptive sampler on hierarchical data: one row per dataset and arm, in percent, mean ± std over seeds;
    a paired sign count over datasets (seed means) for each metric."""
    res, carried = collect_with_committed("hierarchy", args, "adaptive_hierarchy" + variant_suffix(args.override),
                                          key_of=lambda g: (g, "chmcnn"))
    command = full_command(args, dict.fromkeys(d for d, _ in res),
                           seeds=max([len(rs) for got in res.values() for rs in got.values()] or [args.seeds]))
    where = _where(res)
    lines = ["# Adaptive batch selection on hierarchical data (C-HMCNN, FUN)", "", f"Command: `{command}`  ",
             f"Commit: `{source_commit()}`; written on {platform.platform()}, {os.cpu_count()} CPUs, "
             f"{datetime.date.today().isoformat()}; runs trained on: {'; '.join(where) or '—'}", "",
             "C-HMCNN's protocol (train+valid, the dataset's published epochs, last epoch, batch 4). `uniform`: "
             "shuffled batches; `adaptive`: `sampler=adaptive` at its defaults (s_e = 2, 3 warm-up epochs, weighted "
             "selection loss, every row's p refreshed per batch), minority nodes by train+valid frequency. "
             "Percent, mean ± sample std over the seeds; tail nodes: fewer than 20 train positives.", "",
             "| dataset | arm | seeds | " + " | ".join(n for _, n in HIER_METRICS) + " | s/epoch |",
             "|---|---|---|" + "---|" * len(HIER_METRICS) + "---|"]
    rows = {}
    for (d, _m), got in res.items():
        for a, rs in got.items():
            cells_ = [_ms([100 * r["test"][k] for r in rs], digits=2) for k, _ in HIER_METRICS]
            sec = float(np.median([r["median_epoch_seconds"] for r in rs]))
            lines.append(f"| {d} | {a} | {_n(rs)} | " + " | ".join(cells_) + f" | {sec:.2f} |")
            rows.setdefault(d, {})[a] = {k: [r["test"][k] for r in rs] for k, _ in HIER_METRICS} | {
                "median_epoch_seconds": sec}
    both = [d for d, arms in rows.items() if {"uniform", "adaptive"} <= set(arms)]
    if both:
        lines += ["", f"Adaptive against uniform over the {len(both)} datasets with both arms (seed means):", "",
                  "| metric | adaptive higher | mean difference (points) |", "|---|---|---|"]
        for k, n in HIER_METRICS:
            diff = [100 * (np.mean(rows[d]["adaptive"][k]) - np.mean(rows[d]["uniform"][k])) for d in both]
            lines.append(f"| {n} | {sum(x > 0 for x in diff)}/{len(diff)} | {np.mean(diff):+.2f} |")
    if carried:
        lines += ["", CARRIED_NOTE]
    base = os.path.join(args.results, "adaptive_hierarchy" + variant_suffix(args.override))
    if rows:
        _hierarchy_figure(rows, base + ".png")
        lines += ["", "![hierarchy](./adaptive_hierarchy.png)"]
    atomic_write_text(base + ".md", "\n".join(lines) + "\n")
    atomic_write_text(base + ".json", json.dumps({"command": command, "rows": rows}, indent=2))
    return "\n".join(lines)


def _hierarchy_figure(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("node_f1", "node F1 (%)"), ("node_f1_tail", "tail-node F1 (%)"), ("auprc", "AUPRC (%)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.8))
    ds = list(rows)
    for ax, (k, label) in zip(axes, panels, strict=True):
        for i, arm in enumerate(("uniform", "adaptive")):
            mu = [100 * np.mean(rows[d][arm][k]) if arm in rows[d] else np.nan for d in ds]
            sd = [100 * np.std(rows[d][arm][k], ddof=1) if arm in rows[d] and len(rows[d][arm][k]) > 1 else 0
                  for d in ds]
            ax.bar(np.arange(len(ds)) + (i - 0.5) * 0.4, mu, 0.4, yerr=sd, label=arm, capsize=2)
        ax.set_xticks(np.arange(len(ds)), [d.replace("_FUN", "") for d in ds], rotation=30)
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle("C-HMCNN on FUN: uniform vs adaptive batches")
    fig.tight_layout()
    save_png(fig, path)


def _curves_figure(res, path):
    """Fig. 3/4: training loss by epoch and by training seconds, validation macro-AUC by epoch (fold 0)."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(res)
    fig, axes = plt.subplots(len(keys), 3, figsize=(13, 3.2 * len(keys)), squeeze=False)
    for i, key in enumerate(keys):
        for arm, rs in res[key].items():
            c = rs[0]["curve"]
            ep = [m["epoch"] for m in c]
            axes[i, 0].plot(ep, [m["loss"] for m in c], label=arm)
            axes[i, 1].plot(np.cumsum([m["epoch_s"] for m in c]), [m["loss"] for m in c], label=arm)
            axes[i, 2].plot(ep, [m.get("valid_macro_auc", np.nan) for m in c], label=arm)
        for j, (xl, yl) in enumerate((("epoch", "train loss"), ("training seconds", "train loss"),
                                      ("epoch", "valid macro-AUC"))):
            axes[i, j].set_xlabel(xl)
            axes[i, j].set_ylabel(yl)
            axes[i, j].set_title(f"{key[0]} / {MODEL_NAMES.get(key[1], key[1])}", fontsize=9)
        axes[i, 0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["table2", "table4", "curves", "pressure", "hierarchy"])
    p.add_argument("--data-dir", default=os.environ.get("HMLJAX_DATA"))
    p.add_argument("--datasets", nargs="*", default=None)
    p.add_argument("--models", nargs="*", default=None, choices=list(MODEL_NAMES))
    p.add_argument("--folds", type=int_at_least(2), default=5)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int_at_least(1), default=1, help="hierarchy: seeds per arm (it has no folds)")
    p.add_argument("--clean", action="store_true", help="every label and feature, MinMax fitted per fold")
    p.add_argument("--workers", type=int_at_least(1), default=1)
    p.add_argument("--runs", default=os.path.join("runs", "adaptive_batch"))
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--override", nargs="*", default=[], help="extra key=value for every run")
    p.add_argument("--plan", action="store_true")
    p.add_argument("--table-only", action="store_true")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_datasets(p, args.datasets, args.data_dir)
    records = RunRecords(args.runs, args.results)
    records.sync()  # the runs finished in other checkouts and sittings
    todo, done = tasks(args.experiment, args)
    if args.plan:
        print(plan(todo, timing_roots=[args.runs, records.timings], finished=done, workers=args.workers,
                   replacing_carried=_replacing_carried(args.experiment, args, todo)))
        return 0
    failures = [] if args.table_only else run_tasks(
        todo, workers=args.workers, desc=f"adaptive {args.experiment}",
        on_done=lambda _: write_all(args.experiment, args), records=records)
    print(write_all(args.experiment, args))
    for rd, err in failures:
        print(f"FAILED {rd}: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
