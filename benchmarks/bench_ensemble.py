"""Item 3: ensembles of E in {1, 5, 10} full C-HMCNN MLPs trained together (cellcycle_FUN sizes, batch 4).

    python -m benchmarks.bench_ensemble --data-dir ../shared/data [--threads 2] [--allow-loaded]

RARE's setting: E independent networks (their own initialisations and dropout
masks) trained by one optimiser on the same batches, the members' MCLosses
summed. hmljax: one vmapped parameter stack, timed as the jit step and as the
scan-fused epoch (per step). PyTorch at the three levels of
``benchmarks/_torch_levels.py``: **as published** (RARE's ``MultiHeadedModel``:
a Python loop over E released networks with the dense float64 constraint, one
default Adam), **same algorithm** (the E networks as stacked ``[E, in, out]``
weights, one ``baddbmm`` per layer, the members' rows through one sparse
constraint pass, fused Adam on the stacked tensors) and **best effort** (that
step, optimiser included, as one ``torch.compile`` graph; compile time on its
own). Before timing every level and hmljax run ``--check-steps`` steps from the
same parameters with dropout off and must agree on the loss at every step and
on every parameter at the end; each row holds its check.

The torch levels are timed on one fixed batch; hmljax's scan epoch also gathers
its batches, so its per-step figure is the conservative one.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--sizes", type=int, nargs="*", default=[1, 5, 10])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--no-compile", action="store_true", help="skip the best-effort (torch.compile) level")
    p.add_argument("--check-steps", type=int, default=5, help="steps each level must match hmljax on")


def main():
    args = C.parse_args(__doc__, _extra)
    import numpy as np

    from benchmarks import _torch_levels as L
    from benchmarks import bench_train as T
    from hmljax.data import load_dataset

    rates = C.machine_rates(args.repeats)
    ds = load_dataset("cellcycle_FUN", data_dir=args.data_dir)
    X, Y = ds.split("train+valid")
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
    D, Cn, H, B = X.shape[1], ds.hierarchy.num_nodes, 500, args.batch
    problem = L.Problem(ds.hierarchy, D, H, lr=T.LR, weight_decay=T.WD)
    rows = []
    for E in (args.sizes[:2] if args.quick else args.sizes):
        print(f"E={E} (dropout {T.DROPOUT} when timed)", flush=True)
        checks, params0 = T.run_checks(problem, X, Y, B, args, members=E)
        hj = T.hmljax_timings(problem, X, Y, B, args, members=E)
        torch_t, _ = T.torch_timings(problem, params0, X[:B], Y[:B], checks, args, members=E)
        n_params = E * (D * H + H + H * H + H + H * Cn + Cn)
        flops = 3 * 2 * B * E * (D * H + H * H + H * Cn)  # fwd + 2x for bwd
        adam_s = T.optimizer_update_seconds(hj["model"], hj["opt"], D, args.repeats, members=E)
        base = {"dataset": "cellcycle_FUN", "E": E, "H": H, "B": B} | T.floor_figures(n_params, hj["flops_xla"],
                                                                                      flops, adam_s, rates,
                                                                                      bytes_xla=hj["bytes_xla"])
        rows += T.case_rows(base, hj, torch_t, checks)
        C.write_rows("ensemble", rows + [{"machine_rates": rates}], args, partial=True)
    path = C.write_rows("ensemble", rows + [{"machine_rates": rates}], args)
    C.print_table(rows, ["E", "impl", "step_ms", "speedup_vs_as_published", "speedup_vs_same_algorithm",
                         "speedup_vs_best_effort", "compile_s", "graph_breaks", "fraction_of_floor"])
    print("wrote", path)


if __name__ == "__main__":
    main()
