"""RARE's experiments (Tables 1, 2/4, 5, 6, 7, 8, Figures 2, 3, 5 and 6, Appendix G), one command each.

    python experiments/rare.py table1 --data-dir ../shared/data --seeds 3 --workers 2
    python experiments/rare.py table2 --data-dir ../shared/data --seeds 3      # also writes Table 4
    python experiments/rare.py fig3 | fig6 | table5 | table6 | table7 | table8 | appg ...
    python experiments/rare.py fig2 --data-dir ../shared/data --seeds 1   # node-wise P/R, top-20 nodes
    python experiments/rare.py fig5 --data-dir ../shared/data --seeds 1   # schedulers and the mixed loss

Every (experiment, dataset, method, seed) run goes to
``<runs>/<experiment>/<dataset>/<method>/s<seed>`` and is skipped when its
``results.json`` exists, so a long table can be completed over several
sittings (``--plan`` lists what is left, where each run resumes, and an
estimated time from the epoch times already measured). A run whose config
(dataset, seed, every setting) matches a finished run of another experiment
is not trained again: the tables share it (Table 7's
None, LPROS and w0 = 0.25 rows are Table 1's runs). After the runs, the
experiment's table is rebuilt from every finished run found:
``experiments/results/rare_<experiment>.{md,json}`` (mean ± std over seeds, in
percent, with the paper's > 2σ bolding) plus a PNG figure.

"> 2σ" here: a mean is bold when it exceeds every compared mean by more than
twice the larger of the two standard deviations (a one-seed row's value: by
twice the bold row's own; Table 1: all other methods of
the dataset; Tables 2/4: the baseline; App. G, as the paper's Table 9: both the
unweighted and the imbalance-only ensembles).

Table 8 times its own runs (one worker process per run, so the peak RSS is the
run's) and should run alone on the machine: ``--workers 1`` and nothing else
busy. Its summary gives what MC dropout saves against the E-member ensemble in
time, memory and F1, as the paper's text does.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import functools
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runner import RunRecords, check_datasets, config_from, int_at_least, plan, run_tasks, save_png, variant_suffix  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
FUN = ["cellcycle_FUN", "derisi_FUN", "eisen_FUN", "gasch2_FUN", "seq_FUN", "spo_FUN"]
GO = ["cellcycle_GO", "derisi_GO", "eisen_GO", "gasch2_GO", "seq_GO", "spo_GO"]
METRICS = [("F1", "node_f1"), ("Precision", "node_precision"), ("Recall", "node_recall"),
           ("Bin. AP", "binary_ap"), ("AP", "auprc")]

WEIGHTED = {"code": ["weights=code", "w0=0.25"], "paper": ["weights=paper", "w0=0.25"]}
# The paper's Table 6 (Appendix C): F1, precision, recall, binary AP, AP in percent (means; the paper's ± omitted).
# GO datasets shipped here only; the paper's expr/gasch1 rows are not. Printed beside ours, never used as results.
PAPER_TABLE6 = {
    "cellcycle_GO": {"Baseline": "3.50 5.26 3.24 19.71 40.39", "bBMA": "3.77 5.03 3.67 18.92 39.59",
                     "GMU": "3.79 5.04 3.69 18.89 39.56", "Epistemic JS": "3.51 5.25 3.26 19.67 40.34",
                     "Epistemic KL": "3.53 5.17 3.30 19.64 40.31"},
    "derisi_GO": {"Baseline": "1.28 1.93 1.37 17.26 36.58", "bBMA": "1.40 1.97 1.51 17.03 36.38",
                  "GMU": "1.40 1.96 1.51 17.00 36.38", "Epistemic JS": "1.27 1.81 1.37 17.24 36.56",
                  "Epistemic KL": "1.28 1.90 1.37 17.25 36.54"},
    "eisen_GO": {"Baseline": "5.16 7.20 4.93 22.37 45.05", "bBMA": "5.54 6.93 5.59 21.62 44.41",
                 "GMU": "5.56 6.98 5.60 21.62 44.41", "Epistemic JS": "5.19 7.10 5.01 22.34 45.07",
                 "Epistemic KL": "5.18 7.09 5.00 22.34 45.09"},
    "gasch2_GO": {"Baseline": "3.40 5.24 3.37 20.23 41.73", "bBMA": "3.71 5.11 3.74 19.76 41.49",
                  "GMU": "3.75 5.23 3.77 19.81 41.47", "Epistemic JS": "3.39 5.14 3.38 20.20 41.71",
                  "Epistemic KL": "3.35 5.07 3.31 20.23 41.70"},
    "seq_GO": {"Baseline": "7.52 14.03 6.04 17.77 39.39", "bBMA": "7.31 13.55 5.88 17.30 38.95",
               "GMU": "7.43 13.80 5.98 17.28 38.91", "Epistemic JS": "7.50 14.08 6.01 17.83 39.19",
               "Epistemic KL": "7.73 14.10 6.24 18.11 39.41"},
    "spo_GO": {"Baseline": "2.01 3.36 1.91 17.91 37.57", "bBMA": "2.28 3.47 2.21 17.58 37.49",
               "GMU": "2.34 3.54 2.26 17.62 37.49", "Epistemic JS": "2.03 3.32 1.93 17.89 37.57",
               "Epistemic KL": "2.04 3.41 1.92 17.96 37.64"},
}
FIG2_W0 = ("1.0", "0.75", "0.50", "0.25", "0.0")  # the paper's figure names no values; its text: 0.25, 0.5, 0


def _imbalance_methods(conventions=("code", "paper"), hros=True, train_rows=False):
    m = {"None": [], "LPROS": ["resample=lpros"]}
    if hros:
        # The released code's rule (the default; it matches the code's copies term for term) and the
        # one the tables used before (every root-to-node path oversampled on its own; hmljax.data.hros_pd).
        m["HROS-PD"] = ["resample=hros_pd"]
        m["HROS-PD (paths)"] = ["resample=hros_pd", "hros_rule=paths"]
    if train_rows:
        # The rows above resample every row trained on (train+valid); the released code resamples the train
        # split before valid is appended (resample_rows=train). Table 1 shows both readings.
        m["LPROS (train rows, code)"] = ["resample=lpros", "resample_rows=train"]
        if hros:
            m["HROS-PD (train rows, code)"] = ["resample=hros_pd", "resample_rows=train"]
    for conv in conventions:
        for w0 in ("0.25", "0.50"):
            m[f"w0={w0} ({conv})"] = [f"weights={conv}", f"w0={w0}"]
    return m


def _focal_methods(ensemble: int, conv: str = "code", mc_passes: int = 0):
    # The released focal script sums the loss over members x batch x nodes (REFERENCE.md 2.1) where the
    # non-focal one (Table 1) takes the mean. Under Adam the reduction only rescales the gradient, which
    # changes how much the weight decay (added to the gradient) and eps weigh: measured on spo_FUN, one
    # w0 = 0.25 network gives F1 2.19 with the sum against 1.91 with the mean, and the paper's ensemble
    # baseline (2.48) sits above its Table 1 (1.94) by about that much. The focal tables use the sum;
    # ``--override reduction=mean`` gives the other reading (its runs and table get their own names).
    # mc_passes > 0: one network with that many dropout passes in place of the ensemble (Table 8's
    # cheaper stand-in; the tables name it).
    base = [*WEIGHTED[conv], "reduction=sum", f"mc_passes={mc_passes}" if mc_passes else f"ensemble={ensemble}"]
    return {"Baseline": base, "bBMA": [*base, "focal=bbma"], "GMU": [*base, "focal=gmu"],
            "Epistemic JS": [*base, "focal=js"], "Epistemic KL": [*base, "focal=kl"]}


def experiment(name: str, args) -> dict:
    """``{dataset: {method: [overrides]}}`` for one experiment, restricted to ``args.methods`` if given."""
    exp = _experiment(name, args)
    if not getattr(args, "methods", None):
        return exp
    known = {m for methods in exp.values() for m in methods}
    unknown = sorted(set(args.methods) - known)
    if unknown:
        raise SystemExit(f"--methods: {unknown} not in {name} (its methods: {sorted(known)})")
    # In the order given, so the runs a user needs first are trained first.
    return {d: {m: methods[m] for m in args.methods if m in methods} for d, methods in exp.items()}


def _experiment(name: str, args) -> dict:
    ds = args.datasets
    E = args.ensemble
    if name == "table1":
        return {d: _imbalance_methods(train_rows=True) for d in ds or FUN}
    if name == "table5":
        # HROS-PD on GO counts over the DAG's root-to-node paths, as the released code (hmljax.data.hros_pd).
        return {d: _imbalance_methods() for d in ds or GO}
    if name in ("table2", "table4"):
        return {d: _focal_methods(E, mc_passes=getattr(args, "mc_passes", 0)) for d in ds or FUN}
    if name == "table6":  # Appendix C: Table 2's focal comparison on the GO datasets
        return {d: _focal_methods(E, mc_passes=getattr(args, "mc_passes", 0)) for d in ds or GO}
    if name == "fig3":
        out = {}
        for d in ds or ["cellcycle_FUN"]:
            out[d] = {}
            for e in args.sizes:
                for k, v in _focal_methods(e).items():
                    out[d][f"{k} E={e}"] = [x for x in v if not x.startswith("ensemble=")] + [f"ensemble={e}"]
        return out
    if name == "fig5":
        # Appendix D / Figure 5: the three batch schedulers and the mixed loss against weighting alone (w0 = 0.25,
        # code conventions). The paper: none beats weighting alone.
        sched = {f"{k} scheduler": [*WEIGHTED["code"], f"schedule={k}"] for k in ("linear", "exponential",
                                                                                  "alternating")}
        mixed = {f"mixed lambda={lam}": [*WEIGHTED["code"], f"mix_lambda={lam}"] for lam in (0.25, 0.5, 0.75)}
        return {d: {"w0=0.25 (code)": WEIGHTED["code"], **sched, **mixed} for d in ds or FUN}
    if name == "fig2":
        # Figure 2: one network per w0 (and unweighted), node-wise precision and recall of the 20 most frequent
        # nodes, read from each run's test predictions (the checkpoint, no retraining).
        return {d: {"None": [], **{f"w0={w0}": ["weights=code", f"w0={w0}"] for w0 in FIG2_W0}}
                for d in ds or ["derisi_FUN"]}
    if name == "fig6":
        out = {}
        for d in ds or ["cellcycle_FUN"]:
            m = {}
            for w0 in (0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5):  # the paper's grid reaches 1.5
                m[f"w0={w0}"] = ["weights=code", f"w0={w0}"]
            gmu = _focal_methods(E)["GMU"]  # the focal sweeps share Table 2's GMU settings
            for u0 in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5):
                m[f"u0={u0}"] = [*gmu, f"u0={u0}"]
            for k in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5):  # the paper's k runs from 0 to 3.5
                m[f"k={k}"] = [*gmu, f"focal_k={k}"]
            out[d] = m
        return out
    if name == "table7":
        return {d: {"None": [], "LPROS": ["resample=lpros"], "w0=0.25 (code)": WEIGHTED["code"],
                    # weights=code resolves to weight_fit=train: the weights come from the train split before
                    # resampling; Appendix E computes them on the resampled rows (weight_fit=used).
                    "LPROS + w0=0.25 (code, weights from train)": ["resample=lpros", *WEIGHTED["code"]],
                    "LPROS + w0=0.25 (code, weights on resampled rows)": ["resample=lpros", *WEIGHTED["code"],
                                                                          "weight_fit=used"]}
                for d in ds or FUN + GO}  # the paper's Table 7 has a FUN and a GO column
    if name == "table8":
        # The paper's layout: GMU with an E-member ensemble against one network with E dropout passes on
        # every FUN dataset; cellcycle (the cost report) adds E = 1 and 5.
        mc = [x for x in _focal_methods(1)["GMU"] if not x.startswith("ensemble=")]
        out = {}
        for d in ds or FUN:
            sizes = (1, 5, E) if d == "cellcycle_FUN" else (E,)
            out[d] = {f"Ensemble E={e}": _focal_methods(e)["GMU"] for e in sorted(set(sizes))}
            out[d][f"MC dropout ({E} passes)"] = [*mc, f"mc_passes={E}"]
        return out
    if name == "appg":
        # The paper's Table 9: Table 2's rows plus an ensemble trained without any weighting.
        focal = _focal_methods(E)
        plain = [x for x in focal["Baseline"] if x not in WEIGHTED["code"]]
        return {d: {"No weighting": plain, **focal} for d in ds or ["Enron_corr", "Diatoms"]}
    raise SystemExit(f"unknown experiment {name!r}")


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "=.-" else "_" for c in s)


def _tag(name: str, args) -> str:
    """The experiment's name for its run directories and tables: ``--override`` settings make a
    different experiment, kept apart (``table2__reduction=mean``) so neither overwrites the other."""
    extra = ([f"mc_passes={args.mc_passes}"] if getattr(args, "mc_passes", 0) else []) + list(args.override)
    return name + variant_suffix(extra)


def _config(d: str, overrides: list[str], seed: int, args):
    return config_from(dict(dataset=d, data_dir=args.data_dir, seed=seed), [*overrides, *args.override])


@functools.cache
def finished_runs(data_dir: str | None, *runs_roots: str) -> dict:
    """``{config key: run_dir}`` for every finished run under the ``runs_roots``, any experiment (read once;
    the first root's run wins).

    Experiments share runs: Table 7's None, LPROS and w0 = 0.25 rows are Table
    1's runs, and Table 5's None rows are the C-HMCNN reproduction's GO runs
    (``runs/chmcnn``, the same config), found here by their saved config
    instead of trained again.
    """
    out = {}
    for root, _dirs, files in (w for r in runs_roots for w in os.walk(r)):
        if "results.json" in files and "config.json" in files:
            with open(os.path.join(root, "config.json")) as fh:
                out.setdefault(_config_key(json.load(fh)["config"], data_dir), root)
    return out


def _config_key(cfg: dict, data_dir: str | None) -> str:
    """A config's identity (``TrainConfig.identity``), rebuilt as today's TrainConfig: keys added since the
    run take their defaults. Resolved against today's ``data_dir``: where the data lives is not part of
    a run's identity, and a run directory copied from another machine names a path missing here."""
    from hmljax.training import TrainConfig

    return json.dumps(TrainConfig.from_saved({**cfg, "data_dir": data_dir}).identity(), sort_keys=True)


def _check_same_config(run_dir: str, cfg) -> None:
    """A run directory is skipped or resumed by name: refuse one whose saved config is another's
    (say, made before a method's settings changed) rather than mix it into the table."""
    from hmljax.training import config_diff

    if diff := config_diff(run_dir, cfg):
        what = ", ".join(f"{k}: saved {a!r}, wanted {b!r}" for k, (a, b) in diff.items())
        raise SystemExit(f"{run_dir} holds a run of another config ({what}); move it away or delete it")


def run_dir_for(name: str, d: str, method: str, seed: int, cfg, args) -> str:
    """Where a run's results are: its own directory, or a finished run of the same config elsewhere."""
    own = os.path.join(args.runs, _tag(name, args), d, _slug(method), f"s{seed}")
    _check_same_config(own, cfg)
    if os.path.exists(os.path.join(own, "results.json")) or name == "table8":  # table8 times its own runs
        return own
    return finished_runs(args.data_dir, args.runs, *args.other_runs).get(
        _config_key(cfg.resolved().to_dict(), args.data_dir), own)  # resolved: a key left unset is today's default


def pending_tasks(name: str, args) -> tuple[list, int]:
    """The runs still to do as ``[(config dict, run_dir)]``, in training order, and how many are finished."""
    tasks, finished = [], 0
    for d, methods in experiment(name, args).items():
        for method, overrides in methods.items():
            for seed in range(args.seeds):
                cfg = _config(d, overrides, seed, args)
                run_dir = run_dir_for(name, d, method, seed, cfg, args)
                if os.path.exists(os.path.join(run_dir, "results.json")):
                    finished += 1
                else:
                    tasks.append((cfg.to_dict(), run_dir))
    return tasks, finished


def carried_task_count(name: str, args) -> int:
    """How many of :func:`pending_tasks`' runs belong to cells the committed table shows from runs this
    checkout lacks (``carried``, marked ‡): training them replaces rows that exist, it adds none."""
    try:
        with open(os.path.join(args.results, f"rare_{_tag(name, args)}.json")) as fh:
            committed = json.load(fh)
    except (OSError, ValueError):
        return 0
    count = 0
    for d, methods in experiment(name, args).items():
        for method, overrides in methods.items():
            prev = committed.get(d, {}).get(method) if isinstance(committed.get(d), dict) else None
            n_before = int(prev.get("n") or 0) if isinstance(prev, dict) else 0
            here = sum(os.path.exists(os.path.join(run_dir_for(name, d, method, seed, _config(d, overrides, seed, args),
                                                               args), "results.json")) for seed in range(args.seeds))
            if n_before > here:
                count += args.seeds - here
    return count


def run(name: str, args) -> None:
    tasks, _ = pending_tasks(name, args)
    print(f"{name}: {len(tasks)} runs to do ({args.workers} workers)", flush=True)
    # The table is rewritten after every finished run, so it is never staler than the runs in flight.
    failures = run_tasks(tasks, workers=args.workers, tasks_per_worker=args.tasks_per_worker, desc=name,
                         records=RunRecords(args.runs, args.results),
                         on_done=lambda _run_dir: write_outputs(name, args, echo=False))
    write_outputs(name, args)
    if failures:
        raise SystemExit(f"{len(failures)} runs failed (see above)")


# ----------------------------------------------------------------------------- tables


def _default_cells(name: str, args) -> dict:
    """Every method of the experiment on its default datasets (ignoring ``--datasets``)."""
    return _experiment(name, argparse.Namespace(**{**vars(args), "datasets": None}))


def _committed_datasets(name: str, args) -> list[str]:
    """The datasets the committed table (``rare_<tag>.json``) has rows for, in its order."""
    if not getattr(args, "results", None):  # a bare namespace (tests, callers that write no table)
        return []
    try:
        with open(os.path.join(args.results, f"rare_{_tag(name, args)}.json")) as fh:
            committed = json.load(fh)
    except (OSError, ValueError):
        return []
    return [d for d, v in committed.items() if isinstance(v, dict)] if isinstance(committed, dict) else []


def _table_cells(name: str, args) -> dict:
    """The table's ``{dataset: {method: overrides}}``: every method, on the experiment's default
    datasets plus any named with ``--datasets`` or already in the committed table, so a partial command
    never shrinks the table (Fig. 5's GO datasets, made one command each, are not among its defaults)."""
    cells = _default_cells(name, args)
    extra = [d for d in _committed_datasets(name, args) if d not in cells]
    if extra:
        for d, methods in _experiment(name, argparse.Namespace(**{**vars(args), "datasets": extra})).items():
            cells.setdefault(d, methods)
    for d, methods in _experiment(name, args).items():
        cells.setdefault(d, methods)
    known = FUN + GO  # the added datasets in the paper's order, whichever command added them first
    return dict(sorted(cells.items(), key=lambda kv: known.index(kv[0]) if kv[0] in known else len(known)))


def collect(name: str, args) -> dict:
    """``{dataset: {method: [results.json dicts]}}`` for every finished run of the experiment.

    Seeds found in the method's own directory count, and so do seeds
    ``0 .. --seeds-1`` finished elsewhere with the same config.
    """
    out: dict = {}
    for d, methods in _table_cells(name, args).items():
        for method, overrides in methods.items():
            base = os.path.join(args.runs, _tag(name, args), d, _slug(method))
            found = {}
            if os.path.isdir(base):
                for s in sorted(os.listdir(base)):
                    if os.path.exists(os.path.join(base, s, "results.json")) and s[1:].isdigit():
                        _check_same_config(os.path.join(base, s), _config(d, overrides, int(s[1:]), args))
                        found[s] = os.path.join(base, s)
            for seed in range(args.seeds):
                if f"s{seed}" not in found:
                    found[f"s{seed}"] = run_dir_for(name, d, method, seed, _config(d, overrides, seed, args), args)
            rows = []
            for s in sorted(found):
                p = os.path.join(found[s], "results.json")
                if os.path.exists(p):
                    with open(p) as fh, open(os.path.join(found[s], "config.json")) as cfh:
                        rows.append({**json.load(fh), "machine": json.load(cfh).get("machine", {})})
            out.setdefault(d, {})[method] = rows
    return out


def _stats(rows, key):
    v = np.array([r["test"][key] for r in rows], float) * 100
    return (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)) if len(v) else None


def significantly_greater(a, b) -> bool:
    """mean_a - mean_b > 2 max(std_a, std_b); False unless a has >= 2 seeds.

    A one-seed b has no spread of its own: its value is held against a's alone (mean_a - b > 2 std_a).
    Without that, one seed of a new row in a dataset vetoed the bolding of every other row there."""
    if a is None or b is None or a[2] < 2:
        return False
    return a[0] - b[0] > 2 * (max(a[1], b[1]) if b[2] >= 2 else a[1])


def beats_baseline(summary: dict, key: str = "F1") -> list[tuple[str, int, int, int]]:
    """Per focal method: on how many datasets its mean beats the Baseline's, how many by > 2σ,
    out of how many datasets where both have finished runs (Tables 2/4's acceptance count)."""
    out = {}
    for methods in summary.values():
        base = methods.get("Baseline", {}).get(key)
        for m, s in methods.items():
            if m == "Baseline":
                continue
            row = out.setdefault(m, [0, 0, 0])
            if base is None or s[key] is None:
                continue
            row[0] += s[key][0] > base[0]
            row[1] += significantly_greater(s[key], base)
            row[2] += 1
    return [(m, *row) for m, row in out.items()]


def carry_committed(summary: dict, committed_json: str) -> list[tuple[str, str]]:
    """Fills ``summary``'s cells that have fewer finished runs here than the committed table had with the
    committed values (marked ``carried``); returns the ``(dataset, method)`` cells carried.

    The tables made before runs were recorded keep only each cell's mean, std and n, and their runs are
    not in a fresh checkout: without this, extending such a table (one dataset more, a GPU sitting's rows)
    would blank every row it did not rerun."""
    try:
        with open(committed_json) as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        return []
    carried = []
    for d, methods in summary.items():
        for m, st in methods.items():
            prev = old.get(d, {}).get(m) if isinstance(old.get(d), dict) else None
            if isinstance(prev, dict) and int(prev.get("n") or 0) > st["n"]:
                methods[m] = {**prev, "carried": True}
                carried.append((d, m))
    return carried


def _n(st) -> str:
    return f"{st['n']}{' ‡' if st.get('carried') else ''}"


def _cell(st, bold):
    if st is None:
        return "n/a"
    txt = f"{st[0]:.2f} ± {st[1]:.2f}" if st[2] > 1 else f"{st[0]:.2f}"  # one seed: no spread to show
    return f"**{txt}**" if bold else txt


def _header(name, args) -> list[str]:
    from hmljax.training import source_commit

    commit = source_commit()
    cmd = f"python experiments/rare.py {name} --data-dir {args.data_dir or '$HMLJAX_DATA'} --seeds {args.seeds}"
    # The command that makes the whole table (not a partial one): only datasets beyond the defaults.
    default = _default_cells(name, args)
    extra = [d for d in _table_cells(name, args) if d not in default]
    if extra:
        cmd += " --datasets " + " ".join(list(default) + extra)
    if getattr(args, "mc_passes", 0):
        cmd += f" --mc-passes {args.mc_passes}"
    if args.override:
        cmd += " --override " + " ".join(args.override)
    return [f"Command: `{cmd}`  ", f"Commit: `{commit}`; machine: {platform.platform()}, {os.cpu_count()} CPUs; "
            f"date: {datetime.date.today().isoformat()}. Values in percent, mean ± std over the seeds (n).", ""]


def where_trained(machine: dict) -> str:
    """A run's backend in words, from its config.json: ``gpu (NVIDIA H100 80GB HBM3), jax 0.11.2``."""
    if not machine:
        return "unrecorded"
    backend = machine.get("backend", "?")
    what = (f"{machine.get('cpus', '?')} CPUs" + (f", {machine['cpu_model']}" if machine.get("cpu_model") else "")
            if backend == "cpu" else machine.get("device_kind") or ", ".join(machine.get("devices", [])[:1]) or "?")
    what = f"{backend} ({what})"
    return f"{what}, jax {machine.get('jax', '?')}"


NOT_RECORDED = "not recorded (carried ‡)"


def _trained_on(summary: dict) -> list[str]:
    """The header's line saying where the table's runs were trained: the table is built here, its runs may come
    from another machine (a GPU's runs copied back), and epoch times only compare within one kind. Each cell's
    ``trained_on`` counts its runs by backend; a carried cell brings the committed table's (``NOT_RECORDED``
    where that table did not keep it), so rebuilding a table does not forget where its carried rows came from."""
    counts = collections.Counter()
    for methods in summary.values():
        for st in methods.values():
            counts.update(st.get("trained_on") or ({NOT_RECORDED: st["n"]} if st.get("n") else {}))
    if not counts:
        return []
    return ["Runs trained on: " + "; ".join(f"{w}: {n} run{'s' * (n > 1)}" for w, n in counts.most_common())
            + ".", ""]


def dropout_savings(summary: dict, E: int) -> dict:
    """``{dataset: {"time": %, "memory": %, "F1": %}}``: how much MC dropout (E passes) cuts from the
    E-member ensemble's epoch time, peak memory and F1, for datasets with both finished."""
    out = {}
    for d, ms in summary.items():
        ens, mc = ms.get(f"Ensemble E={E}"), ms.get(f"MC dropout ({E} passes)")
        if not (ens and mc and ens["n"] and mc["n"]):
            continue
        mem = "device_peak_MiB" if ens.get("device_peak_MiB") and mc.get("device_peak_MiB") else "host_max_rss_MiB"
        out[d] = {"time": 100 * (1 - mc["median_epoch_s"] / ens["median_epoch_s"]),
                  "memory": 100 * (1 - mc[mem] / ens[mem]),
                  "F1": 100 * (1 - mc["F1"][0] / ens["F1"][0])}
    return out


def _dropout_vs_ensemble(summary: dict, E: int) -> list[str]:
    cut = dropout_savings(summary, E)
    lines = [f"## MC dropout against the E = {E} ensemble", "",
             "Reduction in percent (positive = dropout lower). The paper (RTX 4090, 8 FUN datasets): time "
             "68.1 ± 5.2, memory 66.4 ± 13.2, F1 6.06 ± 5.48.", "",
             "| dataset | time | memory | F1 |", "|---|---|---|---|"]
    for d, c in cut.items():
        lines.append(f"| {d} | {c['time']:.1f} | {c['memory']:.1f} | {c['F1']:.2f} |")
    if len(cut) > 1:
        agg = {k: (np.mean([c[k] for c in cut.values()]), np.std([c[k] for c in cut.values()], ddof=1))
               for k in ("time", "memory", "F1")}
        lines.append(f"| mean ± std over {len(cut)} | {agg['time'][0]:.1f} ± {agg['time'][1]:.1f} | "
                     f"{agg['memory'][0]:.1f} ± {agg['memory'][1]:.1f} | {agg['F1'][0]:.2f} ± {agg['F1'][1]:.2f} |")
    return lines + [""]


def _median_mib(rows, key):
    v = [r.get("peak_memory_bytes", {}).get(key) for r in rows]
    v = [x for x in v if x is not None]
    return float(np.median(v)) / 2**20 if v else None


def _fmt_mib(v):
    return f"{v:.0f}" if v else "n/a"


def node_scores(run_dir: str, *, top: int = 20, data_dir: str | None = None) -> dict:
    """Node-wise precision and recall on the test split of a finished run's checkpoint, for the ``top`` evaluated
    nodes with the most train+valid positives: ``{"nodes": names, "counts", "precision", "recall"}``."""
    from hmljax.training import load_run

    run = load_run(run_dir, data_dir=data_dir)
    ds, cfg = run.dataset, run.config
    X, Y = ds.split("test")
    pred = run.predict(X)
    pred = pred >= cfg.threshold if cfg.threshold_inclusive else pred > cfg.threshold
    Y = np.asarray(Y, bool)
    ev = np.flatnonzero(ds.hierarchy.evaluated)
    counts = np.asarray(ds.split("train+valid" if "valid" in ds.X else "train")[1], np.int64).sum(0)
    nodes = ev[np.argsort(-counts[ev], kind="stable")[:top]]
    tp = (Y[:, nodes] & pred[:, nodes]).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred[:, nodes].sum(0) > 0, tp / pred[:, nodes].sum(0), 0.0)
        recall = np.where(Y[:, nodes].sum(0) > 0, tp / Y[:, nodes].sum(0), 0.0)
    return {"nodes": [ds.hierarchy.names[k] for k in nodes], "counts": counts[nodes].tolist(),
            "precision": precision.tolist(), "recall": recall.tolist()}


def write_fig2(args, *, echo: bool = True) -> None:
    from hmljax.data import atomic_write_text

    out: dict = {}
    for d, methods in _table_cells("fig2", args).items():
        for method, overrides in methods.items():
            per_seed = []
            for seed in range(args.seeds):
                rd = run_dir_for("fig2", d, method, seed, _config(d, overrides, seed, args), args)
                if os.path.exists(os.path.join(rd, "results.json")):
                    per_seed.append(node_scores(rd, data_dir=args.data_dir))
            if per_seed:
                out.setdefault(d, {})[method] = {
                    "nodes": per_seed[0]["nodes"], "counts": per_seed[0]["counts"], "n": len(per_seed),
                    **{k: np.mean([s[k] for s in per_seed], axis=0).tolist() for k in ("precision", "recall")}}
    stem = os.path.join(args.results, "rare_fig2")
    # The committed figure's settings whose runs this checkout lacks are kept, not dropped (as carry_committed).
    try:
        with open(stem + ".json") as fh:
            committed = json.load(fh)
    except (OSError, ValueError):
        committed = {}
    carried = []
    for d, methods in (committed.items() if isinstance(committed, dict) else ()):
        for method, prev in methods.items():
            if int(prev.get("n") or 0) > out.get(d, {}).get(method, {}).get("n", 0):
                out.setdefault(d, {})[method] = {**prev, "carried": True}
                carried.append(f"{d} / {method}")
    lines = ["# RARE fig2 (hmljax)", "", *_header("fig2", args),
             "Node-wise precision and recall (%) on the test split, for the 20 evaluated nodes with the most "
             "train+valid positives (largest first), mean over seeds; one network per setting, weights=code "
             "(the paper's figure does not name its w0 values; its text discusses 0.25, 0.5 and 0).", ""]
    for d, methods in out.items():
        ms = list(methods)
        lines += [f"## {d}", "", "| node | train+valid count | " + " | ".join(f"P {m} | R {m}" for m in ms) + " |",
                  "|---|---|" + "---|---|" * len(ms)]
        first = methods[ms[0]]
        for i, node in enumerate(first["nodes"]):
            lines.append(f"| {node} | {first['counts'][i]} | " + " | ".join(
                f"{100 * methods[m]['precision'][i]:.1f} | {100 * methods[m]['recall'][i]:.1f}" for m in ms) + " |")
        lines.append("| **mean of the 20** | | " + " | ".join(
            f"**{100 * np.mean(methods[m]['precision']):.1f}** | **{100 * np.mean(methods[m]['recall']):.1f}**"
            for m in ms) + " |")
        lines.append("")
    if carried:
        lines += [f"‡ carried from the committed table (their runs are not in this checkout): {', '.join(carried)}.",
                  ""]
    if out:
        _figure_fig2(out, stem + ".png")
        lines += ["![Figure 2](rare_fig2.png)", ""]
    atomic_write_text(stem + ".md", "\n".join(lines) + "\n")
    atomic_write_text(stem + ".json", json.dumps(out, indent=2))
    if echo:
        print("\n".join(lines))


def _figure_fig2(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(out), 2, figsize=(14, 3.8 * len(out)), squeeze=False)
    for row, (d, methods) in enumerate(out.items()):
        for ax, key in zip(axes[row], ("precision", "recall"), strict=True):
            x = np.arange(len(next(iter(methods.values()))["nodes"]))
            for m, s in methods.items():
                ax.plot(x, 100 * np.asarray(s[key]), marker="o", ms=3, label=m)
            ax.set_xticks(x, next(iter(methods.values()))["nodes"], rotation=60, ha="right", fontsize=7)
            ax.set_ylabel(f"{key} (%)")
            ax.set_title(f"{d}: node-wise {key}, 20 most frequent nodes")
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def write_outputs(name: str, args, *, echo: bool = True) -> None:
    if name == "fig2":
        return write_fig2(args, echo=echo)
    res = collect(name, args)
    os.makedirs(args.results, exist_ok=True)
    from hmljax.data import atomic_write_text

    summary = {d: {m: {k: _stats(rows, key) for k, key in METRICS} | {"n": len(rows),
               "median_epoch_s": float(np.median([r["median_epoch_seconds"] for r in rows])) if rows else None,
               "host_max_rss_MiB": _median_mib(rows, "host_max_rss"),
               "device_peak_MiB": _median_mib(rows, "device_peak"),
               # Runs from before 70ad98c record no compiler options: jax.jit, 12-33% slower epochs on CPU
               # (benchmarks section 9).
               "timed_with_jit_train": all("compiler_options" in r.get("machine", {}) for r in rows) if rows else None,
               "trained_on": dict(collections.Counter(where_trained(r.get("machine", {})) for r in rows))}
                   for m, rows in methods.items()} for d, methods in res.items()}
    stem = os.path.join(args.results, f"rare_{_tag(name, args)}")
    carried = carry_committed(summary, stem + ".json")
    lines = [f"# RARE {name} (hmljax)", "", *_header(name, args), *_trained_on(summary)]
    if carried:
        lines += [f"‡ {len(carried)} rows carried from the committed table: their runs were made before runs were "
                  "recorded (`experiments/results/runs/`) and are not in this checkout; the rest come from the "
                  "runs found here. A carried row is replaced once this checkout has as many seeds of it.", ""]
    if name in ("table1", "table5", "table7", "appg", "fig5"):
        lines += ["| dataset | method | n | " + " | ".join(k for k, _ in METRICS) + " |",
                  "|---|---|---|" + "---|" * len(METRICS)]
        for d, methods in summary.items():
            for m, s in methods.items():
                cells = []
                for k, _ in METRICS:
                    if name == "appg":  # Table 9: a focal row > 2 sigma above both baselines
                        baselines = ("No weighting", "Baseline")
                        rivals = () if m in baselines else baselines
                    else:  # a row above every other row
                        rivals = methods
                    others = [s2[k] for m2, s2 in methods.items() if m2 in rivals and m2 != m and s2[k] is not None]
                    bold = bool(others) and all(significantly_greater(s[k], o) for o in others)
                    cells.append(_cell(s[k], bold))
                lines.append(f"| {d} | {m} | {_n(s)} | " + " | ".join(cells) + " |")
    elif name in ("table2", "table4", "table6"):
        base = _focal_methods(args.ensemble, mc_passes=getattr(args, "mc_passes", 0))["Baseline"]
        lines += [f"Every row: `{' '.join([*base, *args.override])}`"
                  f"{'' if args.override else ' (the released focal code’s summed loss)'}, "
                  "plus `focal=<method>` with u0 = 0.25, k = 1; prediction = "
                  + ("the network's constrained output without dropout > 0.5 (the MC passes give U in training only)."
                     if getattr(args, "mc_passes", 0) else "members' mean constrained output > 0.5."),
                  ""]
        tables = ((("Table 2 (F1)", METRICS[:1]), ("Table 4 (all metrics)", METRICS)) if name != "table6"
                  else (("Table 6 (all metrics)", METRICS),))
        for tname, keys in tables:
            lines += [f"## {tname}", "", "| dataset | method | n | " + " | ".join(k for k, _ in keys) + " |",
                      "|---|---|---|" + "---|" * len(keys)]
            for d, methods in summary.items():
                base = methods.get("Baseline")
                for m, s in methods.items():
                    cells = [_cell(s[k], m != "Baseline" and base is not None and significantly_greater(s[k], base[k]))
                             for k, _ in keys]
                    lines.append(f"| {d} | {m} | {_n(s)} | " + " | ".join(cells) + " |")
                    paper = PAPER_TABLE6.get(d, {}).get(m) if name == "table6" and len(keys) > 1 else None
                    if paper:
                        lines.append(f"| {d} | {m} (paper, E = 10, 3 seeds) | | " + " | ".join(paper.split()) + " |")
            lines.append("")
        lines += ["## Against the baseline (F1)", "", "| method | higher mean | > 2σ | datasets compared |",
                  "|---|---|---|---|"]
        for m, higher, sig, compared in beats_baseline(summary):
            lines.append(f"| {m} | {higher} | {sig} | {compared} |")
        lines.append("")
    else:  # fig3, fig6, table8: a flat table (the figure carries the message)
        # Device peak where the backend reports it (GPU, TPU); the CPU backend has only the process's RSS.
        on_device = any(s["device_peak_MiB"] for ms in summary.values() for s in ms.values())
        extra = ["median epoch s", "device peak MiB" if on_device else "max RSS MiB"] if name == "table8" else []
        lines += ["| dataset | setting | n | " + " | ".join([k for k, _ in METRICS] + extra) + " |",
                  "|---|---|---|" + "---|" * (len(METRICS) + len(extra))]
        for d, methods in summary.items():
            for m, s in methods.items():
                cells = [_cell(s[k], False) for k, _ in METRICS]
                if extra:
                    old = "" if s["timed_with_jit_train"] in (True, None) else " †"
                    cells += [f"{s['median_epoch_s']:.3f}{old}" if s["median_epoch_s"] else "n/a",
                              _fmt_mib(s["device_peak_MiB"] if on_device else s["host_max_rss_MiB"])]
                lines.append(f"| {d} | {m} | {_n(s)} | " + " | ".join(cells) + " |")
    if name == "table8":
        if any(s["timed_with_jit_train"] is False for ms in summary.values() for s in ms.values()):
            lines += ["", "† Trained before commit 70ad98c, with plain `jax.jit`: the same parameters bitwise, but on "
                      "CPU 12-33% slower epochs (8-22% on 2026-11-22's machine) than `jit_train` (benchmarks/README.md "
                      "section 9). Compare times within a dataset, whose two rows were trained together."]
        if not on_device:
            lines += ["", "On CPU the memory column is the worker's max RSS, which includes about 0.5 GB of JAX "
                      "runtime; `experiments/rare_cost.py` reports XLA's planned peak for the fused epoch."]
        lines += ["", *_dropout_vs_ensemble(summary, args.ensemble)]
    atomic_write_text(stem + ".md", "\n".join(lines) + "\n")
    atomic_write_text(stem + ".json", json.dumps(summary, indent=2))
    try:
        _figure(name, summary, stem + ".png")
    except ImportError:
        print("matplotlib not installed: no figure (pip install 'hmljax[plot]')")
    if echo:
        print("\n".join(lines))


def _figure(name, summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if name == "fig3":
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for d, methods in summary.items():
            by = {}
            for m, s in methods.items():
                kind, e = m.rsplit(" E=", 1)
                by.setdefault(kind, []).append((int(e), s))
            for ax, (label, _) in zip(axes, (METRICS[0], METRICS[2]), strict=True):
                for kind, pts in by.items():
                    pts = sorted((e, s[label]) for e, s in pts if s[label] is not None)
                    if not pts:
                        continue
                    e_, st = zip(*pts, strict=True)
                    mu, sd = np.array([s[0] for s in st]), np.array([s[1] for s in st])
                    ax.plot(e_, mu, marker="o", label=kind, lw=2)  # markers: a size run alone still shows
                    ax.fill_between(e_, mu - sd, mu + sd, alpha=0.2)
                ax.set_xlabel("ensemble size E")
                ax.set_ylabel(f"{label} (%)")
                ax.set_title(f"{d}: {label}")
            axes[0].legend()
    elif name == "fig6":
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for d, methods in summary.items():
            for ax, prefix in zip(axes, ("w0", "u0", "k"), strict=True):
                pts = sorted((float(m.split("=")[1]), s) for m, s in methods.items() if m.startswith(prefix + "="))
                for label in ("F1", "Precision", "Recall"):
                    xs = [x for x, s in pts if s[label]]
                    mu = np.array([s[label][0] for x, s in pts if s[label]])
                    sd = np.array([s[label][1] for x, s in pts if s[label]])
                    if len(xs):
                        ax.plot(xs, mu, marker="o", label=label)
                        ax.fill_between(xs, mu - sd, mu + sd, alpha=0.2)
                ax.set_xlabel(prefix)
                ax.set_ylabel("%")
                what = "one network" if prefix == "w0" else "GMU ensemble"
                ax.set_title(f"{d}: sweep of {prefix} ({what})")
            axes[0].legend()
    elif name == "table8":
        # Cost is the point of Table 8, so time and memory get a panel each beside F1.
        mem = next((k for k in ("device_peak_MiB", "host_max_rss_MiB")
                    if any(st[k] for ms in summary.values() for st in ms.values())), "host_max_rss_MiB")
        panels = (("F1 (%)", lambda st: st["F1"][0] if st["F1"] else None,
                   lambda st: st["F1"][1] if st["F1"] else None),
                  ("median s / epoch", lambda st: st["median_epoch_s"], None),
                  (("device peak" if mem == "device_peak_MiB" else "host max RSS") + " (MiB)", lambda st: st[mem],
                   None))
        fig = _grouped_bars(plt, summary, panels, "RARE table8")
    else:
        panels = [(f"{k} (%)", lambda st, k=k: st[k][0] if st[k] else None,
                   lambda st, k=k: st[k][1] if st[k] else None) for k in ("F1", "Recall")]
        fig = _grouped_bars(plt, summary, panels, f"RARE {name}")
    fig.tight_layout()
    save_png(fig, path)


def _grouped_bars(plt, summary, panels, title):
    """One panel per ``(label, mean_fn, std_fn)``: datasets on x, a bar per method (the union over datasets,
    in order). A method the dataset has but with no finished runs gets a mark, so it never reads as 0."""
    datasets = list(summary)
    methods = list(dict.fromkeys(m for ms in summary.values() for m in ms))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels) + 2, 4), squeeze=False)
    width = 0.8 / max(len(methods), 1)
    for ax, (label, mean_fn, std_fn) in zip(axes[0], panels, strict=True):
        for i, m in enumerate(methods):
            st = [summary[d].get(m) for d in datasets]
            mu = np.array([np.nan if s is None or mean_fn(s) is None else mean_fn(s) for s in st], float)
            sd = None if std_fn is None else np.array([np.nan if s is None or std_fn(s) is None else std_fn(s)
                                                       for s in st], float)
            x = np.arange(len(datasets)) + i * width
            bars = ax.bar(x, mu, width, yerr=sd, label=m, capsize=2)
            for xi, v, s in zip(x, mu, st, strict=True):
                if s is not None and np.isnan(v):
                    ax.text(xi, 0, "×", ha="center", va="bottom", fontsize=7, color=bars.patches[0].get_facecolor())
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2)
        ax.set_xticklabels(datasets, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.set_title(f"{title}: {label}")
    # beside the last panel, where it covers no bar (tight_layout makes room for it)
    axes[0][-1].legend(fontsize=7, title="× = not run", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["table1", "table2", "table4", "table5", "table6", "table7", "table8",
                                          "fig2", "fig3", "fig5", "fig6", "appg"])
    p.add_argument("--data-dir", default=None, help="folder with hmc/ (default: $HMLJAX_DATA)")
    p.add_argument("--seeds", type=int_at_least(1), default=3)
    p.add_argument("--datasets", nargs="*", default=None)
    p.add_argument("--methods", nargs="*", default=None,
                   help="train only these methods (names as in the table, e.g. Baseline bBMA GMU), in this order")
    p.add_argument("--ensemble", type=int, default=10, help="E for the focal experiments (paper: 10)")
    p.add_argument("--mc-passes", type=int, default=0,
                   help="tables 2/4/6: one network with this many MC dropout passes in place of the E-member "
                        "ensemble (a cheaper stand-in; outputs get their own names)")
    p.add_argument("--sizes", type=int, nargs="*", default=list(range(1, 11)), help="fig3's ensemble sizes")
    p.add_argument("--override", nargs="*", default=[], help="key=value applied to every run")
    p.add_argument("--runs", default=os.path.join("runs", "rare"))
    p.add_argument("--results", default=RESULTS, help="where the tables and figures go")
    p.add_argument("--workers", type=int_at_least(1), default=1, help="parallel runs (one process each)")
    p.add_argument("--tasks-per-worker", type=int, default=None,
                   help="restart workers after this many runs (1 gives per-run peak RSS, as table8 does)")
    p.add_argument("--table-only", action="store_true", help="rebuild the table from finished runs")
    p.add_argument("--plan", action="store_true",
                   help="train nothing: list the runs still to do, where each resumes, and an estimated time")
    p.add_argument("--other-runs", nargs="*", default=[os.path.join("runs", "chmcnn")],
                   help="more run folders: their finished runs of a wanted config are used instead of training "
                        "it again, and their logged epoch times inform --plan's estimates")
    args = p.parse_args(argv)
    check_datasets(p, args.datasets, args.data_dir)
    if args.experiment == "table8" and args.tasks_per_worker is None:
        args.tasks_per_worker = 1
    if args.experiment == "table8" and args.workers > 1 and not (args.table_only or args.plan):
        print(f"warning: table8 times its runs; with --workers {args.workers} they share the machine and each "
              "epoch time includes the others' load", file=sys.stderr)
    name = "table2" if args.experiment == "table4" else args.experiment
    roots = (args.runs, *args.other_runs)
    for root in roots:  # the runs finished in other checkouts and sittings
        RunRecords(root, args.results).sync()
    if args.plan:
        tasks, finished = pending_tasks(name, args)
        timing_roots = [*roots, *(RunRecords(r, args.results).timings for r in roots)]
        print(plan(tasks, timing_roots=timing_roots, finished=finished, workers=args.workers,
                   replacing_carried=carried_task_count(name, args)))
    elif args.table_only:
        write_outputs(name, args)
    else:
        run(name, args)


if __name__ == "__main__":
    sys.exit(main())
