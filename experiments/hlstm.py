"""HLSTM's experiments (Qi & Chelmis): Tables II-V, Fig. 5-9, on the engine's ``method=hlstm`` / ``chmc_lstm``.

    python experiments/hlstm.py tables --data-dir ../shared/data [--seeds 1] [--seeds-fun 3] [--workers 2]
    python experiments/hlstm.py br     --data-dir ../shared/data      # Fig. 7: b_r in {0.1, ..., 0.9}
    python experiments/hlstm.py init   --data-dir ../shared/data      # Fig. 8: local weight initialisation
    python experiments/hlstm.py speed  --data-dir ../shared/data      # Fig. 9: learning speed on eisen_FUN
    ... --plan          train nothing: the runs left and an estimate of their time
    ... --table-only    rebuild the tables and figures from the finished runs

- ``tables``: HLSTM, CHMC-LSTM and our C-HMCNN on every shipped FUN/GO dataset, Diatoms, Enron_corr and
  ImCLEF07A (``--seeds-fun`` seeds on FUN, ``--seeds`` elsewhere), beside the paper's Tables II-V; the
  Friedman test and a Nemenyi critical-difference diagram over the datasets with every method finished
  (Fig. 5, over our three methods: the paper's other baselines have no code here), and HLSTM's lift over
  CHMC-LSTM per dataset (Fig. 6, eq. 14).
- ``br``: HLSTM with b_r in {0.1, 0.3, 0.5, 0.7, 0.9} on cellcycle_FUN, cellcycle_GO and ImCLEF07A.
- ``init``: the local weights' initialisation on cellcycle_FUN (constant 0.1/0.2/0.4/0.6/0.8, zeros, ones,
  normal, Xavier, He), test AUPRC every 5 epochs (``test_curve_every``: a curve, not a model choice).
- ``speed``: C-HMCNN against HLSTM_sw (constant 0.1) and HLSTM_rw (normal) on eisen_FUN, test AUPRC after
  every epoch, against epochs and against training seconds.

Every run uses the paper's protocol as hmljax defaults it: C-HMCNN's per-dataset hidden size, dropout, lr
and epochs, trained on train+valid, the last epoch reported (REFERENCE.md §3.3). Runs resume from their
checkpoints; finished runs are skipped; tables are rewritten after every run. Results go to
``experiments/results/hlstm_<experiment>.{md,json,png}`` with the command, seeds and backend.
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
    RunRecords,
    adopt_twins,
    check_datasets,
    config_from,
    finished_run,
    identity_settings,
    int_at_least,
    pending,
    plan,
    run_tasks,
    save_png,
    variant_suffix,
)
from rare import significantly_greater, where_trained  # noqa: E402

from hmljax.data import atomic_write_text  # noqa: E402
from hmljax.training import TrainConfig, source_commit  # noqa: E402

RESULTS = os.path.join(HERE, "results")
FUN = [f"{d}_FUN" for d in ("cellcycle", "derisi", "eisen", "gasch2", "seq", "spo")]
GO = [f"{d}_GO" for d in ("cellcycle", "derisi", "eisen", "gasch2", "seq", "spo")]
OTHERS = ["Diatoms", "Enron_corr", "ImCLEF07A"]
# The paper's AU(PRC) (Tables II-V): HLSTM, CHMC-LSTM and C-HMCNN (the last copied by the paper from [15]).
PUBLISHED = {
    "cellcycle_FUN": (0.267, 0.232, 0.255), "derisi_FUN": (0.199, 0.222, 0.195), "eisen_FUN": (0.289, 0.223, 0.306),
    "gasch2_FUN": (0.328, 0.302, 0.258), "seq_FUN": (0.311, 0.278, 0.292), "spo_FUN": (0.272, 0.288, 0.215),
    "cellcycle_GO": (0.452, 0.433, 0.413), "derisi_GO": (0.454, 0.185, 0.370), "eisen_GO": (0.487, 0.440, 0.455),
    "gasch2_GO": (0.474, 0.440, 0.414), "seq_GO": (0.491, 0.308, 0.446), "spo_GO": (0.450, 0.349, 0.382),
    "Diatoms": (0.776, 0.547, 0.758), "Enron_corr": (0.781, 0.624, 0.756), "ImCLEF07A": (0.932, 0.828, 0.956),
}
METHODS = {"HLSTM": "method=hlstm", "CHMC-LSTM": "method=chmc_lstm", "C-HMCNN": "method=chmcnn"}
BR = [0.1, 0.3, 0.5, 0.7, 0.9]
INITS = {**{f"constant {v}": f"local_init=constant local_init_value={v}" for v in (0.1, 0.2, 0.4, 0.6, 0.8)},
         "zeros": "local_init=zeros", "ones": "local_init=ones", "normal": "local_init=normal",
         "xavier": "local_init=xavier", "he": "local_init=he"}


def cells(name: str, args) -> list[tuple[str, str, str, int]]:
    """``(dataset, label, overrides, seed)`` for every run the experiment needs."""
    out = []
    if name == "tables":
        for d in args.datasets or FUN + GO + OTHERS:
            for s in range(args.seeds_fun if d.endswith("_FUN") else args.seeds):
                out += [(d, label, keys, s) for label, keys in METHODS.items()]
    elif name == "br":
        for d in args.datasets or ["cellcycle_FUN", "cellcycle_GO", "ImCLEF07A"]:
            out += [(d, f"b_r={b}", f"method=hlstm b_r={b}", s) for b in BR for s in range(args.seeds)]
    elif name == "init":
        for d in args.datasets or ["cellcycle_FUN"]:
            out += [(d, label, f"method=hlstm test_curve_every=5 {keys}", s)
                    for label, keys in INITS.items() for s in range(args.seeds)]
    elif name == "speed":
        for d in args.datasets or ["eisen_FUN"]:
            for s in range(args.seeds):
                out += [(d, "C-HMCNN", f"method=chmcnn test_curve_every=1 epochs={args.speed_epochs}", s),
                        (d, "HLSTM_sw", f"method=hlstm test_curve_every=1 epochs={args.speed_epochs}", s),
                        (d, "HLSTM_rw", f"method=hlstm local_init=normal test_curve_every=1 "
                                        f"epochs={args.speed_epochs}", s)]
    return out


def config(d: str, keys: str, seed: int, args) -> TrainConfig:
    kv = dict(k.split("=", 1) for k in keys.split())
    return config_from(dict(dataset=d, data_dir=args.data_dir, seed=seed),
                       [f"{k}={v}" for k, v in kv.items()] + list(args.override))


DEFAULT_DATASETS = {"tables": FUN + GO + OTHERS, "br": ["cellcycle_FUN", "cellcycle_GO", "ImCLEF07A"],
                    "init": ["cellcycle_FUN"], "speed": ["eisen_FUN"]}


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace("=", "").replace(".", "p")


def tag(name: str, args) -> str:
    """The experiment's name for its runs folder and outputs: ``--override`` settings make another experiment
    (``tables__protocol=early_stopping``), kept apart so that neither refuses nor overwrites the other's runs."""
    return name + variant_suffix(args.override)


def run_dir(name: str, d: str, label: str, seed: int, args) -> str:
    """``<runs>/<experiment>/<dataset>/<label>-s<seed>``: experiments name their cells alike (the tables' and
    the speed figure's "C-HMCNN" differ in epochs), so each has its own folder."""
    return os.path.join(args.runs, tag(name, args), d, f"{_slug(label)}-s{seed}")


def tasks(name: str, args) -> tuple[list, int]:
    chosen = cells(name, args)
    if wanted := getattr(args, "labels", None):  # only these cells, in this order (datasets, then seeds, kept)
        known = list(dict.fromkeys(label for _, label, _, _ in chosen))
        if bad := [w for w in wanted if w not in known]:
            raise SystemExit(f"--labels: no cell named {', '.join(map(repr, bad))} in {name} "
                             f"(its labels: {', '.join(map(repr, known))})")
        chosen = sorted((c for c in chosen if c[1] in wanted), key=lambda c: wanted.index(c[1]))
    runs = [(config(d, keys, s, args), run_dir(name, d, label, s, args)) for d, label, keys, s in chosen]
    if name == "br":  # b_r = 0.5 is the paper's default: the tables' HLSTM run, when it has finished
        twins = {run_dir(name, d, label, s, args): run_dir("tables", d, "HLSTM", s, args)
                 for d, label, _, s in chosen if label == "b_r=0.5"}
        for rd in adopt_twins(runs, twins):
            print(f"{rd}: the finished {twins[rd]} (same config)")
    return pending(runs)


def collect(name: str, args) -> dict:
    """``{dataset: {label: [run record]}}`` for every finished run of the experiment, whatever command made
    it: every cell on the default datasets and any named with ``--datasets``, every seed found (so a
    partial command, or a GPU sitting's rows, never shrinks a table). A run whose saved config is not the
    cell's is refused rather than mixed in."""
    from hmljax.training import config_diff

    named = [d for d in args.datasets or [] if d not in DEFAULT_DATASETS[name]]
    wide = argparse.Namespace(**{**vars(args), "datasets": DEFAULT_DATASETS[name] + named, "seeds": 1, "seeds_fun": 1})
    out: dict = {}
    for d, label, keys, _ in cells(name, wide):  # one cell per (dataset, label), at seed 0
        base, pat = os.path.join(args.runs, tag(name, args), d), re.compile(rf"{re.escape(_slug(label))}-s(\d+)")
        seeds = sorted(int(m.group(1)) for f in (os.listdir(base) if os.path.isdir(base) else ())
                       if (m := pat.fullmatch(f)))
        for s in seeds:
            rd = run_dir(name, d, label, s, args)
            if (res := finished_run(rd)) is None:
                continue
            if diff := config_diff(rd, config(d, keys, s, args)):
                raise SystemExit(f"{rd} holds a run of another config ({diff}): move it away or pass another --runs")
            out.setdefault(d, {}).setdefault(label, []).append(res)
    return out


def full_command(name: str, res: dict, args) -> str:
    """The command that makes every row of the experiment's outputs (the seeds found; partial commands and
    sittings fill it over time)."""
    n = lambda fun: max([len(rs) for d, got in res.items() for rs in got.values()  # noqa: E731
                         if (d.endswith("_FUN") == fun or name != "tables")] or [1])
    named = [d for d in args.datasets or [] if d not in DEFAULT_DATASETS[name]]
    return (f"python experiments/hlstm.py {name} --data-dir ../shared/data"
            + (f" --seeds-fun {n(True)} --seeds {n(False)}" if name == "tables" else f" --seeds {n(True)}")
            + (f" --speed-epochs {args.speed_epochs}" if name == "speed" else "")
            + (f" --datasets {' '.join(DEFAULT_DATASETS[name] + named)}" if named else "")
            + (f" --override {' '.join(args.override)}" if args.override else ""))


def _fmt(v: np.ndarray) -> str:
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if v.size > 1 else f"{v.mean():.3f}"


def _auprc(rs) -> np.ndarray:
    return np.array([r["test"]["auprc"] for r in rs], float)


def _stat(rs) -> tuple[float, float, int]:
    """(mean, sample std, n) of a cell's AU(PRC), as the RARE tables' > 2σ rule takes it."""
    v = _auprc(rs)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _header(title: str, command: str, res: dict) -> list[str]:
    where = sorted({where_trained(r["machine"]) for d in res.values() for rs in d.values() for r in rs})
    return [f"# {title}", "", f"Command: `{command}`  ",
            f"Commit: `{source_commit()}`; written on {platform.platform()}, {os.cpu_count()} CPUs, "
            f"{datetime.date.today().isoformat()}; runs trained on: {'; '.join(where) or '—'}", ""]


def write_tables(args) -> str:
    from hmljax.metrics import friedman_test, nemenyi_cd

    res = collect("tables", args)
    command = full_command("tables", res, args)
    lines = _header("HLSTM, CHMC-LSTM and C-HMCNN (Tables II-V)", command, res) + [
        "Test AU(PRC) (micro-pooled AP), mean ± sample std over seeds (n = seeds finished). Published: the paper's "
        "Tables II-V (its C-HMCNN column is C-HMCNN's own published values). Protocol: C-HMCNN's per-dataset "
        "hidden size, dropout, lr and epochs, trained on train+valid, last epoch; HLSTM b_r = 0.5, local weights "
        "0.1, LSTM over min(depth, 6) levels; CHMC-LSTM is the same network without the local branch, MCLoss only. "
        "s/epoch: the median epoch of the runs, on a CPU unless marked (GPU)."
        + (f" **Every run here also has `{' '.join(identity_settings(args.override))}`** (the protocol above unless "
           "it says otherwise; `protocol=early_stopping`: trained on train, the epoch of best validation AU(PRC) "
           "tested, patience 20)." if identity_settings(args.override) else ""),
        "", "| dataset | n | HLSTM | CHMC-LSTM | C-HMCNN | published HLSTM | published CHMC-LSTM | published C-HMCNN "
        "| lift % (ours) | lift % (paper) | s/epoch HLSTM / C-HMCNN |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows, complete = {}, []
    for d in res:
        got = res[d]
        if not got:
            continue
        means = {m: _auprc(got[m]).mean() if m in got else None for m in METHODS}
        pub = PUBLISHED.get(d, (None,) * 3)
        lift = (100 * (means["HLSTM"] - means["CHMC-LSTM"]) / means["CHMC-LSTM"]
                if means["HLSTM"] is not None and means["CHMC-LSTM"] else None)
        lift_pub = 100 * (pub[0] - pub[1]) / pub[1] if pub[0] else None
        secs = {m: np.median([r["median_epoch_seconds"] for r in got[m]]) if m in got else None for m in METHODS}
        # A GPU's seconds beside a CPU core's would read as a speed-up of the method: say which they are.
        on_gpu = {m: any((r.get("machine") or {}).get("backend") == "gpu" for r in got.get(m, [])) for m in METHODS}
        n = min(len(got.get(m, [])) for m in METHODS)
        rows[d] = {"auprc": {m: _auprc(got[m]).tolist() for m in got},
                   "published": dict(zip(METHODS, pub, strict=True)), "lift": lift, "lift_published": lift_pub,
                   "median_epoch_seconds": secs}
        if all(m in got for m in METHODS):
            complete.append(d)
        st = {m: _stat(got[m]) for m in METHODS if m in got}
        # Bold: above each other method of the row by > 2σ (the RARE tables' rule; it needs >= 2 seeds).
        bold = {m: len(st) > 1 and all(significantly_greater(st[m], o) for m2, o in st.items() if m2 != m) for m in st}
        rows[d]["above_2sigma"] = {m: [m2 for m2, o in st.items() if m2 != m and significantly_greater(st[m], o)]
                                   for m in st}
        cell = lambda m: (f"**{_fmt(_auprc(got[m]))}**" if bold[m] else _fmt(_auprc(got[m]))) if m in got else "—"  # noqa: E731, B023
        f = lambda v, p=3: "—" if v is None else f"{v:.{p}f}"  # noqa: E731
        lines.append(f"| {d} | {n} | {cell('HLSTM')} | {cell('CHMC-LSTM')} | {cell('C-HMCNN')} | {f(pub[0])} | "
                     f"{f(pub[1])} | {f(pub[2])} | {f(lift, 1)} | {f(lift_pub, 1)} | "
                     f"{f(secs['HLSTM'], 2)}{' (GPU)' * on_gpu['HLSTM']} / "
                     f"{f(secs['C-HMCNN'], 2)}{' (GPU)' * on_gpu['C-HMCNN']} |")
    stats = {}
    if len(complete) >= 2:
        scores = np.array([[np.mean(rows[d]["auprc"][m]) for m in METHODS] for d in complete])
        fr = friedman_test(scores)
        cd = nemenyi_cd(len(METHODS), len(complete))
        stats = {"datasets": complete, "friedman": {k: float(v) for k, v in fr._asdict().items() if np.ndim(v) == 0},
                 "avg_ranks": dict(zip(METHODS, np.asarray(fr.avg_ranks).tolist(), strict=True)), "cd": cd}
        h_wins = sum(np.mean(rows[d]["auprc"]["HLSTM"]) > np.mean(rows[d]["auprc"]["CHMC-LSTM"]) for d in complete)
        lines += ["", f"Over the {len(complete)} datasets with all three methods: Friedman (Iman-Davenport) p = "
                  f"{fr.pvalue:.3g} (chi-square p = {fr.pvalue_chi2:.3g}); average ranks "
                  + ", ".join(f"{m} {r:.2f}" for m, r in stats["avg_ranks"].items())
                  + f" (Nemenyi CD = {cd:.2f} at α = 0.05). HLSTM > CHMC-LSTM on {h_wins} of {len(complete)} "
                  "(the paper: 17 of 20)."]
        seeded = [d for d in complete if min(len(rows[d]["auprc"][m]) for m in METHODS) > 1]
        if seeded:
            sig = lambda a, b: [d for d in seeded if b in rows[d]["above_2sigma"][a]]  # noqa: E731
            lines += ["", f"Bold: above the row's other methods by more than twice the larger std (n >= 2). On the "
                      f"{len(seeded)} datasets with >= 2 seeds of each method ({', '.join(seeded)}): HLSTM above "
                      f"CHMC-LSTM by > 2σ on {len(sig('HLSTM', 'CHMC-LSTM'))} "
                      f"({', '.join(sig('HLSTM', 'CHMC-LSTM')) or 'none'}), CHMC-LSTM above HLSTM on "
                      f"{len(sig('CHMC-LSTM', 'HLSTM'))}; C-HMCNN above HLSTM on {len(sig('C-HMCNN', 'HLSTM'))}, "
                      f"HLSTM above C-HMCNN on {len(sig('HLSTM', 'C-HMCNN'))}."]
        out = f"hlstm_{tag('tables', args)}"
        _figures_tables(rows, stats, os.path.join(args.results, out))
        lines += ["", f"![Fig. 5: CD diagram]({out}_cd.png)", "", f"![Fig. 6: lift]({out}.png)"]
    out = os.path.join(args.results, f"hlstm_{tag('tables', args)}")
    atomic_write_text(out + ".md", "\n".join(lines) + "\n")
    atomic_write_text(out + ".json", json.dumps({"command": command, "rows": rows, "stats": stats}, indent=2))
    return "\n".join(lines)


def _figures_tables(rows, stats, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hmljax.metrics import cd_diagram

    cd_png = out + "_cd.png"
    if stats.get("avg_ranks"):
        cd_diagram(list(stats["avg_ranks"].values()), list(stats["avg_ranks"]), stats["cd"], cd_png,
                   title=f"Fig. 5: Nemenyi CD over {len(stats['datasets'])} datasets")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ds = [d for d in rows if rows[d]["lift"] is not None]
    x = np.arange(len(ds))
    ax.bar(x - 0.2, [rows[d]["lift"] for d in ds], 0.4, label="ours")
    ax.bar(x + 0.2, [rows[d]["lift_published"] or 0 for d in ds], 0.4, label="paper")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, ds, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("lift of HLSTM over CHMC-LSTM (%)")
    ax.set_title("Fig. 6: HLSTM's lift over CHMC-LSTM (eq. 14)")
    ax.legend()
    fig.tight_layout()
    _save(fig, out + ".png")


def _save(fig, path):
    save_png(fig, path, dpi=120)


def write_curves(name: str, args) -> str:
    """``br``: AUPRC per b_r; ``init`` / ``speed``: test AUPRC curves against epochs (and seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = collect(name, args)
    command = full_command(name, res, args)
    title = {"br": "HLSTM's b_r (Fig. 7)", "init": "HLSTM's local weight initialisation (Fig. 8)",
             "speed": "Learning speed on eisen_FUN (Fig. 9)"}[name]
    lines = _header(title, command, res) + [
        "Test AU(PRC), mean over seeds." + (" Curves: test AU(PRC) logged every few epochs (`test_curve_every`); "
                                             "they choose nothing; a dot marks the final epoch's." if name != "br"
                                             else ""), "",
        "| dataset | setting | n | final AU(PRC) | best logged AU(PRC) (epoch) | median s/epoch |",
        "|---|---|---|---|---|---|"]
    rows = {}
    fig, axes = plt.subplots(1, max(len(res), 1) * (2 if name == "speed" else 1),
                             figsize=(5 * max(len(res), 1) * (2 if name == "speed" else 1), 3.6), squeeze=False)
    for i, (d, got) in enumerate(res.items()):
        for label, rs in got.items():
            final = _auprc(rs)
            curve = _mean_curve(rs)
            best = max(curve, key=lambda p: p[1]) if curve else None
            secs = float(np.median([r["median_epoch_seconds"] for r in rs]))
            rows.setdefault(d, {})[label] = {"auprc": final.tolist(), "curve": curve, "median_epoch_seconds": secs}
            lines.append(f"| {d} | {label} | {len(rs)} | {_fmt(final)} | "
                         + (f"{best[1]:.3f} ({best[0]})" if best else "—") + f" | {secs:.2f} |")
            if name == "br":
                continue
            ep, val = [p[0] for p in curve], [p[1] for p in curve]
            ax = axes[0, i * (2 if name == "speed" else 1)]
            (line,) = ax.plot(ep, val, label=label)
            last = max(m["epoch"] for r in rs for m in r["curve"])  # the final epoch: the table's AU(PRC)
            if ep and last not in ep and np.isfinite(final).all():  # joined by a dotted line when not logged
                ax.plot([ep[-1], last], [val[-1], float(np.mean(final))], ":", color=line.get_color())
                ax.plot([last], [float(np.mean(final))], "o", ms=3, color=line.get_color())
            if name == "speed":
                wall = np.cumsum([r["epoch_s"] for r in rs[0]["curve"]])
                axes[0, 2 * i + 1].plot([wall[e - 1] for e in ep], val, label=label)
        if name == "br":
            b = [float(lab.split("=")[1]) for lab in got]
            axes[0, i].plot(b, [np.mean(rows[d][lab]["auprc"]) for lab in got], "o-")
            axes[0, i].set_xlabel("b_r")
        else:
            axes[0, i * (2 if name == "speed" else 1)].set_xlabel("epoch")
            if name == "speed":
                axes[0, 2 * i + 1].set_xlabel("training seconds")
                axes[0, 2 * i + 1].legend(fontsize=7)
            axes[0, i * (2 if name == "speed" else 1)].legend(fontsize=7)
        axes[0, i * (2 if name == "speed" else 1)].set_title(d)
        axes[0, i * (2 if name == "speed" else 1)].set_ylabel("test AU(PRC)")
    fig.suptitle(title)
    fig.tight_layout()
    out = os.path.join(args.results, f"hlstm_{tag(name, args)}")
    if res:
        _save(fig, out + ".png")
        lines += ["", f"![{title}](hlstm_{tag(name, args)}.png)"]
    else:
        plt.close(fig)
    atomic_write_text(out + ".md", "\n".join(lines) + "\n")
    atomic_write_text(out + ".json", json.dumps({"command": command, "rows": rows}, indent=2))
    return "\n".join(lines)


def _mean_curve(rs) -> list[tuple[int, float]]:
    """``[(epoch, mean test AUPRC over the seeds)]`` at the epochs every seed logged."""
    per = [{m["epoch"]: m["test_auprc"] for m in r["curve"] if "test_auprc" in m} for r in rs]
    common = sorted(set.intersection(*(set(p) for p in per))) if per else []
    return [(e, float(np.mean([p[e] for p in per]))) for e in common]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["tables", "br", "init", "speed"])
    p.add_argument("--data-dir", default=os.environ.get("HMLJAX_DATA"))
    p.add_argument("--datasets", nargs="*", default=None)
    p.add_argument("--seeds", type=int_at_least(1), default=1, help="seeds per cell (tables: outside FUN)")
    p.add_argument("--seeds-fun", type=int_at_least(1), default=3, help="tables: seeds on the FUN datasets")
    p.add_argument("--speed-epochs", type=int, default=30, help="speed: epochs per run")
    p.add_argument("--workers", type=int_at_least(1), default=1)
    p.add_argument("--runs", default=os.path.join("runs", "hlstm"))
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--override", nargs="*", default=[], help="extra key=value for every run")
    p.add_argument("--labels", nargs="*", default=None,
                   help="train only these cells (labels as in the outputs, e.g. 'constant 0.1' zeros), in this order")
    p.add_argument("--plan", action="store_true", help="train nothing: the runs left and an estimate")
    p.add_argument("--table-only", action="store_true", help="rebuild the outputs from finished runs")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_datasets(p, args.datasets, args.data_dir)

    def write(_=None):
        return write_tables(args) if args.experiment == "tables" else write_curves(args.experiment, args)

    records = RunRecords(args.runs, args.results)
    records.sync()  # the runs finished in other checkouts and sittings
    todo, done = tasks(args.experiment, args)
    records.sync()  # records the runs tasks() finished from their twins
    if args.plan:
        # C-HMCNN's own epoch times (the reproduction's and RARE's runs) scale HLSTM's to untimed datasets.
        timing = [args.runs, records.timings, os.path.join("runs", "chmcnn"), os.path.join("runs", "rare")]
        print(plan(todo, timing_roots=timing, finished=done, workers=args.workers))
        return 0
    failures = [] if args.table_only else run_tasks(todo, workers=args.workers, desc=f"hlstm {args.experiment}",
                                                    on_done=write, records=records)
    print(write())
    for rd, err in failures:
        print(f"FAILED {rd}: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
