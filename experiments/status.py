"""What is made and what is left: every paper table and figure's full grid, its finished runs and an estimate.

    python experiments/status.py --data-dir ../shared/data            # print the table
    python experiments/status.py --data-dir ../shared/data --write    # also experiments/results/STATUS.{md,json}
    python experiments/status.py --data-dir ../shared/data --only RARE

Each row is one experiment command at the grid its issue asks for (the seeds, datasets and models of
``GRID`` below), asked for its ``--plan``: runs finished (on this checkout, the committed run records
included), runs to do, and the hours they would take on one core of this machine, estimated from logged
epoch times (see ``_runner.plan``; runs of a kind never timed here are counted apart as *untimed*).
Nothing is trained. A GPU sitting (``gpu_sitting.py``) or a longer CPU sitting can take the rows with the
most left; the command in each row resumes where the last one stopped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)

FUN = "cellcycle_FUN derisi_FUN eisen_FUN gasch2_FUN seq_FUN spo_FUN"
GO = "cellcycle_GO derisi_GO eisen_GO gasch2_GO seq_GO spo_GO"

# (paper, item, script and arguments): the grids the issues ask for. ``--data-dir`` is added.
GRID: list[tuple[str, str, str]] = [
    ("C-HMCNN", "reproduction, 15 datasets", "reproduce_chmcnn.py --seeds 3"),
    ("RARE", "Table 1 (FUN, weights)", "rare.py table1 --seeds 3"),
    ("RARE", "Tables 2/4 (focal, E = 10)", "rare.py table2 --seeds 1"),
    ("RARE", "Table 5 (GO)", "rare.py table5 --seeds 1"),
    ("RARE", "Table 6 (focal on GO, E = 10)", "rare.py table6 --seeds 1"),
    ("RARE", "Table 6, MC-dropout stand-in", "rare.py table6 --seeds 1 --mc-passes 10"),
    ("RARE", "Table 7 (LPROS + weights), FUN", f"rare.py table7 --seeds 3 --datasets {FUN}"),
    ("RARE", "Table 7, GO column", f"rare.py table7 --seeds 1 --datasets {GO}"),
    ("RARE", "Table 8 (ensemble vs MC dropout)", "rare.py table8 --seeds 1"),
    ("RARE", "Figure 2 (node-wise P/R)", "rare.py fig2 --seeds 1"),
    ("RARE", "Figure 3 (ensemble size)", "rare.py fig3 --seeds 1"),
    ("RARE", "Figure 5 (schedulers, mixed loss), FUN", "rare.py fig5 --seeds 1"),
    ("RARE", "Figure 5 on GO", f"rare.py fig5 --seeds 1 --datasets {GO}"),
    ("RARE", "Figure 6 (w0, u0, k grids)", "rare.py fig6 --seeds 3"),
    ("RARE", "Appendix G (Enron_corr)", "rare.py appg --seeds 1"),
    ("HLSTM", "Tables II-V", "hlstm.py tables --seeds-fun 3 --seeds 1"),
    ("HLSTM", "Fig. 7 (b_r)", "hlstm.py br --seeds 1"),
    ("HLSTM", "Fig. 8 (local init)", "hlstm.py init --seeds 1"),
    ("HLSTM", "Fig. 9 (learning speed)", "hlstm.py speed --seeds 1"),
    ("HLSTM", "early stopping (eisen_FUN)", "hlstm.py tables --seeds-fun 1 --seeds 1 --datasets eisen_FUN "
     "--override protocol=early_stopping"),
    ("Adaptive batch", "Table 2, MLP / C2AE / DELA", "adaptive_batch.py table2 --models mlp c2ae dela"),
    ("Adaptive batch", "Table 2, MPVAE (lr 1e-3)",
     "adaptive_batch.py table2 --models mpvae --datasets yeast scene emotions enron medical bibtex Corel5k "
     "--override lr=0.001"),
    ("Adaptive batch", "Table 4 (AdaC)",
     "adaptive_batch.py table4 --datasets yeast scene emotions enron medical bibtex Corel5k rcv1subset1"),
    ("Adaptive batch", "Fig. 3/4 (convergence)", "adaptive_batch.py curves"),
    ("Adaptive batch", "Fig. 7 (pressure, batch size)", "adaptive_batch.py pressure"),
    ("Adaptive batch", "beyond: hierarchy", "adaptive_batch.py hierarchy --seeds 3"),
    ("HMT-Net", "Tables 1-2 (long-tailed subsets)", "longtail.py tables --seeds 3"),
    ("HMT-Net", "Fig. 2 (noise strength)", "longtail.py lambda --seeds 3"),
    ("HMT-Net", "beyond: hierarchy", "longtail.py hierarchy --seeds 1"),
]

_FINISHED = re.compile(r"^(\d+) runs finished, (\d+) to do(?: \((all|\d+) of them would retrain)?", re.M)
_ESTIMATE = re.compile(r"^Estimated ([\d.]+) hours for (\d+) runs", re.M)
_UNTIMED = re.compile(r"(\d+) runs have no measured epoch time")
_RUN_HOURS = re.compile(r"^\| \S+ \| \d+ \| \d+ \| [^|]* \| ([\d.]+) \|$", re.M)  # a timed run's row
SITTING_H = 2.5  # of one core: a session's 3 hours, less its set-up; a run needing more never finishes in one


def parse_plan(text: str) -> dict:
    """``{"finished", "todo", "carried", "hours", "untimed"}`` from a script's ``--plan`` report (``ValueError``
    if it is not one: the script failed, or printed something else). ``carried``: the runs to do that would
    only retrain rows the committed table already shows (‡)."""
    done, est = _FINISHED.search(text), _ESTIMATE.search(text)
    if not done or not est:
        tail = " | ".join(text.strip().splitlines()[-3:])[-300:]
        raise ValueError(f"not a --plan report: {tail!r}")
    untimed = _UNTIMED.search(text[est.start():])
    todo = int(done.group(2))
    carried = todo if done.group(3) == "all" else int(done.group(3) or 0)
    hours = [float(h) for h in _RUN_HOURS.findall(text[:est.start()])]
    return {"finished": int(done.group(1)), "todo": todo, "carried": carried, "hours": float(est.group(1)),
            "untimed": int(untimed.group(1)) if untimed else 0, "longest_h": max(hours, default=None)}


def ask_plan(command: str, *, data_dir: str | None, timeout_s: float = 600.0) -> dict:
    """Runs ``python experiments/<command> --plan`` and parses its report; a failure is a row with ``error``."""
    argv = shlex.split(command)
    full = [sys.executable, os.path.join(HERE, argv[0]), *argv[1:], "--plan"]
    if data_dir:
        full += ["--data-dir", data_dir]
    t = time.perf_counter()
    try:
        out = subprocess.run(full, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        said = (out.stderr or out.stdout).strip().splitlines() or ["(no output)"]
        row = parse_plan(out.stdout) if out.returncode == 0 else {"error": f"exit {out.returncode}: {said[-1]}"}
    except subprocess.TimeoutExpired:
        row = {"error": f"--plan took more than {timeout_s:.0f} s"}
    except ValueError as err:
        row = {"error": str(err)}
    return row | {"plan_s": round(time.perf_counter() - t, 1)}


def render(rows: list[dict], *, when: str, machine: str) -> str:
    """The status table in Markdown."""
    lines = ["# What is made and what is left", "",
             f"Made by `python experiments/status.py --data-dir ../shared/data --write` on {when} ({machine}).",
             "Each row asks its command for `--plan` (nothing is trained): runs finished here, runs to do, and the",
             "hours those would take on one core of that machine, from logged epoch times; *untimed* runs are of a",
             "kind never timed here, so their hours are not in the estimate. *Carried* runs are among those to do",
             "but only retrain rows the committed table already shows (‡: made before runs were recorded, their",
             "runs are not in this checkout); the rest are new. Add `--data-dir ../shared/data` to a command to run",
             "it; it resumes where the last sitting stopped, but only from what survives it: a session may start",
             "from a fresh clone, where finished runs come back from their records and a run in progress starts",
             f"over. So a run longer than one sitting (**bold**: over {SITTING_H:g} h of a core) finishes here only",
             "if `runs/` survives between sittings (it did between sessions 31 and 32, 32 and 33, 34 and 35, 35",
             "and 36, 37 and 38, 45 and 46, 47 and 48, 48 and 49, 49 and 50, 50 and 51, 51 and 52, and 52 and",
             "53, not between 33 and 34, 38 and 39 (which lost ImCLEF07A's LSTM pair at epochs 189 and 311 of 592)",
             "nor 46 and 47 (which lost Fig. 7's ImCLEF07A b_r = 0.3 at epoch 447 of 592); a run checkpoints every 10",
             "epochs and every 10 minutes, so it otherwise loses minutes), else it needs a GPU sitting (seq_GO's",
             "CHMC-LSTM took 322 s on an H200 on 2026-12-04, priced at 24 h here). Hours come from epochs logged",
             "beside whatever else ran, mostly unpinned: the big LSTM runs took 1.7-1.8x as long beside another one",
             "as alone, as each process's XLA thread pool spread over both cores; `--workers 2` now pins a worker to",
             "each core, so a pair does 1.14-1.21x the work of one big run alone and 3.9x that of a FUN-sized one",
             "(README, HLSTM's \"Cost and what is left\").", "",
             "| paper | item | finished | to do: new | to do: carried ‡ | est. hours (1 core, all to do) | longest "
             "run (h) | untimed | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    total_h = total_new = total_untimed = 0
    for r in rows:
        cmd = f"`python experiments/{r['command']}`"
        if "error" in r:
            lines.append(f"| {r['paper']} | {r['item']} | ? | ? | ? | ? | ? | ? | {cmd} (no plan: {r['error']}) |")
            continue
        new = r["todo"] - r["carried"]
        total_h += r["hours"]
        total_new += new
        total_untimed += r["untimed"]
        state = "**none**" if new == 0 else str(new)
        hours = "" if r["todo"] == 0 else f"{r['hours']:.1f}"
        longest = r.get("longest_h")
        longest = "" if longest is None else (f"**{longest:.1f}**" if longest > SITTING_H else f"{longest:.1f}")
        lines.append(f"| {r['paper']} | {r['item']} | {r['finished']} | {state} | {r['carried'] or ''} | {hours} | "
                     f"{longest} | {r['untimed'] or ''} | {cmd} |")
    lines += ["", f"In all: {total_new} new runs to do; {total_h:.1f} hours of one core for every timed run to do "
                  f"(carried included); {total_untimed} untimed."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--only", nargs="*", default=None, help="only these papers (e.g. RARE HLSTM)")
    p.add_argument("--write", action="store_true", help="write experiments/results/STATUS.{md,json}")
    p.add_argument("--out", default=os.path.join(RESULTS, "STATUS.md"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    papers = {g[0] for g in GRID}
    if args.only and (bad := [o for o in args.only if o not in papers]):
        p.error(f"--only: no paper named {', '.join(map(repr, bad))} (papers: {', '.join(sorted(papers))})")
    from hmljax.data import DataError, resolve_data_dir

    try:  # once here, not as the same failure from every command's --plan
        resolve_data_dir(args.data_dir)
    except DataError as err:
        p.error(f"--data-dir: {err}")
    grid = [g for g in GRID if not args.only or g[0] in args.only]
    rows = []
    for paper, item, command in grid:
        row = {"paper": paper, "item": item, "command": command} | ask_plan(command, data_dir=args.data_dir)
        rows.append(row)
        got = (f"{row['finished']} finished, {row['todo']} to do ({row['carried']} carried), {row['hours']:.1f} h"
               + (f", {row['untimed']} untimed" if row["untimed"] else "")) if "error" not in row else row["error"]
        print(f"{paper:15s} {item:38s} {got}", flush=True)
    from hmljax.data import atomic_write_text
    from hmljax.training import cpu_model

    machine = f"{cpu_model() or 'unknown CPU'}, {os.cpu_count()} cores"
    md = render(rows, when=datetime.date.today().isoformat(), machine=machine)
    print()
    print(md)
    failed = [r for r in rows if "error" in r]
    if args.write and len(failed) == len(rows):  # a table of nothing but "?" rows must not replace a good one
        print(f"not written: no row has a plan ({failed[0]['item']}: {failed[0]['error']}); {args.out} is left "
              "as it was", file=sys.stderr)
    elif args.write:
        atomic_write_text(args.out, md)
        atomic_write_text(os.path.splitext(args.out)[0] + ".json",
                          json.dumps({"machine": machine, "date": datetime.date.today().isoformat(), "rows": rows},
                                     indent=1))
        print("wrote", args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
