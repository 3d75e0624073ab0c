"""No speed lost to the engine: today's tree against an older commit, side by side in one run.

    python -m benchmarks.bench_engine --data-dir ../shared/data [--baseline 47bdd3c] [--rounds 3]

The baseline commit's ``hmljax/`` is exported (``git archive``) to a temporary folder. Each case trains
through the public ``TrainConfig`` / ``train_and_evaluate`` of each version in a fresh child process
(``benchmarks/_engine_child.py``, with that version first on ``PYTHONPATH``), alternating
baseline, current, baseline, current ... so load changes hit both. Each child trains a few epochs and
reports its epochs' times from ``metrics.jsonl`` (the first epoch, which compiles, is left out) and a
hash of the final parameters. Reported per case: the median epoch time of each version over all its
rounds, their ratio, and whether both versions trained to bitwise-equal parameters.
Default baseline: 47bdd3c, the last commit before the engine was reshaped for any method (issue 17).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [
    ("cellcycle_FUN", "one network", [], 8),
    ("cellcycle_FUN", "E=10 GMU ensemble", ["weights=code", "w0=0.25", "reduction=sum", "ensemble=10",
                                            "focal=gmu"], 3),
]


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--baseline", default="47bdd3c", help="commit to compare against")
    p.add_argument("--rounds", type=int, default=3, help="child processes per version and case")


def _export(commit: str, dest: str) -> None:
    archive = subprocess.run(["git", "archive", commit, "hmljax"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)


def _child(tree: str, dataset: str, overrides: list[str], epochs: int, data_dir: str | None, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "_engine_child.py"), "--dataset", dataset,
           "--epochs", str(epochs), "--threads", str(threads), *(["--data-dir", data_dir] if data_dir else []),
           *overrides]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child failed ({tree}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    args = C.parse_args(__doc__, _extra)
    rounds = 1 if args.quick else args.rounds
    rows = []
    with tempfile.TemporaryDirectory() as base_tree:
        _export(args.baseline, base_tree)
        trees = {"baseline": base_tree, "current": ROOT}
        for dataset, label, overrides, epochs in CASES[:1] if args.quick else CASES:
            times = {k: [] for k in trees}
            hashes = {k: set() for k in trees}
            files = {}
            for r in range(rounds):
                for name, tree in trees.items():
                    res = _child(tree, dataset, overrides, epochs + 1, args.data_dir, args.threads)
                    times[name] += res["epoch_s"][1:]
                    hashes[name].add(res["params_sha256"])
                    files[name] = res["hmljax_file"]
                    print(f"{dataset} {label} round {r + 1} {name}: median epoch "
                          f"{statistics.median(res['epoch_s'][1:]):.3f} s", flush=True)
            a, b = statistics.median(times["baseline"]), statistics.median(times["current"])
            equal = len(hashes["baseline"]) == 1 and hashes["baseline"] == hashes["current"]
            rows.append({"dataset": dataset, "case": label, "baseline": args.baseline,
                         "epochs_timed": len(times["current"]),
                         "baseline_epoch_s": a, "current_epoch_s": b, "current_over_baseline": b / a,
                         "params_bitwise_equal": equal, "baseline_hmljax": files["baseline"],
                         "current_hmljax": files["current"]})
    path = C.write_rows("engine", rows, args)
    C.print_table(rows, ["dataset", "case", "baseline_epoch_s", "current_epoch_s", "current_over_baseline",
                         "params_bitwise_equal", "epochs_timed"])
    print("wrote", path)


if __name__ == "__main__":
    main()
