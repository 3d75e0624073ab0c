"""HLSTM's train step: hmljax (jit step and scan-fused epoch) against PyTorch at three levels, and its floor.

    python -m benchmarks.bench_hlstm --data-dir ../shared/data [--threads 2] [--quick] [--no-compile]

HLSTM (``method=hlstm``: an LSTM unrolled over L = 6 hierarchy levels, a local
head per level, a global head, the hybrid ``0.5 LHLoss + 0.5 MCLoss``, Adam with
coupled weight decay, lr 1e-4, wd 1e-5) on cellcycle_FUN and cellcycle_GO at
batch 4 and 64, against the three PyTorch levels of ``benchmarks/_torch_hlstm.py``:
**as published** (the paper in stock modules, ``nn.LSTM`` over x repeated L
times, C-HMCNN's released float64 dense MCLoss, default Adam), **same algorithm**
(hmljax's algorithm: the input's gate projection once, both constraints in
logit space with the sparse ``scatter_reduce`` max and a gathered parent-table
min, fused Adam) and **best effort** (that step with its optimiser as one
``torch.compile(fullgraph=True)`` graph; compile time on its own).

Before timing, each level and hmljax run ``--check-steps`` steps from the same
parameters on the same batches with dropout off (and the local heads started
from Xavier: ``CHECK_LOCAL_INIT``) and must agree on the loss at every step and
on every parameter at the end; each row holds that check.
Timing uses the dataset's dropout on both sides. hmljax's scan epoch is timed
over a slice of the epoch's batches (per step). The floor is bench_train's:
the larger of the matmuls at the measured matmul rate and Adam's state traffic
(24 B/parameter) at the measured stream bandwidth; hmljax's Adam alone beside it.
The issue's target (issue 20): the fused epoch at batch 4 at least 10x the
paper-written twin's loop (the as-published level).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

CASES = (("cellcycle_FUN", 4), ("cellcycle_FUN", 64), ("cellcycle_GO", 4), ("cellcycle_GO", 64))
QUICK_CASES = CASES[:1]
LR, WD = 1e-4, 1e-5
# Steps of hmljax's scan epoch timed per call (a slice of the epoch: the same per-step cost, ~5-10 s a call).
# The equality checks start the local heads from Xavier, not the paper's constant 0.1 (the timed runs keep
# it; initialisation costs nothing per step). With every local weight equal, the nodes a level head
# predicts start bitwise tied, and which of a child and its same-level parent LHLoss's min picks then
# depends on float32 rounding of the matmul's columns: on cellcycle_GO, a float64 run of the same step
# splits each tie evenly while either float32 side breaks some, and a few local-head gradients differ
# by up to 18 % at step 1. From a tie-free start the levels match to 5e-7 at batch 4 (benchmarks/README.md).
CHECK_LOCAL_INIT = "xavier"
SCAN_STEPS = {("cellcycle_FUN", 4): 200, ("cellcycle_FUN", 64): 40, ("cellcycle_GO", 4): 40, ("cellcycle_GO", 64): 10}


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-compile", action="store_true", help="skip the best-effort (torch.compile) level")
    p.add_argument("--check-steps", type=int, default=5, help="steps each level must match hmljax on")


def setup(name: str, B: int, data_dir, *, dropout=None, local_init=None, adam_kernel: str = "xla"):
    """(problem, method, X, Y, dropout): the run's HLSTM method for ``name`` at batch ``B``.

    The equality checks pass ``dropout=0.0``; ``local_init`` overrides the paper's constant 0.1 (witness runs).
    """
    import numpy as np

    from benchmarks import _torch_hlstm as HL
    from hmljax.methods import level_index
    from hmljax.training import TrainConfig, build_method, load_run_dataset

    keys = {k: v for k, v in (("dropout", dropout), ("local_init", local_init)) if v is not None}
    cfg = TrainConfig(dataset=name, data_dir=data_dir, method="hlstm", batch_size=B, lr=LR, weight_decay=WD,
                      adam_kernel=adam_kernel, **keys).resolved()
    ds = load_run_dataset(cfg)
    _, method, _ = build_method(cfg, ds)
    X, Y = np.asarray(method.train_x, np.float32), np.asarray(method.train_y, np.float32)
    m = cfg.method_config
    problem = HL.HlstmProblem(ds.hierarchy, X.shape[1], m.hidden, lr=LR, weight_decay=WD, transition=m.transition,
                              level_index=level_index(ds.hierarchy, max_levels=m.levels), b_r=m.b_r)
    return problem, method, X, Y, m.dropout


def matmul_flops(problem, B: int) -> int:
    """Forward + backward (3x) matmul FLOPs of one step: x's gates once, L - 1 recurrent products, the heads."""
    D, H, T, Cn, Lv = (problem.num_features, problem.hidden, problem.transition, problem.num_nodes,
                       len(problem.level_index))
    fwd = D * 4 * H + (Lv - 1) * H * 4 * H + Lv * H * T + T * len(problem.local_index) + H * Cn
    return 3 * 2 * B * fwd


def case(name: str, B: int, args, rates: dict) -> list[dict]:
    """The rows of one (dataset, B): hmljax's two, the three levels', each with the floor and every ratio."""
    from benchmarks import _engine_levels as EL
    from benchmarks import _torch_hlstm as HL
    from benchmarks.bench_train import dense_float64_skip

    print(f"{name} B={B}", flush=True)
    kernel = getattr(args, "adam_kernel", "xla")
    problem, method0, X, Y, _ = setup(name, B, args.data_dir, dropout=0.0, local_init=CHECK_LOCAL_INIT,
                                      adam_kernel=kernel)
    _, method, _, _, dropout = setup(name, B, args.data_dir, adam_kernel=kernel)
    skip = {"as published": why} if (why := dense_float64_skip(B, problem.num_nodes)) else {}
    return EL.case(HL.build, problem, method0, method, X, Y, B, args, rates,
                   keys={"dataset": name, "levels": len(problem.level_index), "H": problem.hidden,
                         "check_local_init": CHECK_LOCAL_INIT},
                   dropout=dropout, flops_analytic=matmul_flops(problem, B), scan_steps=SCAN_STEPS[(name, B)],
                   reps=args.repeats * (3 if name.endswith("FUN") else 1), skip=skip, explain=HL.explain_near_tie)


def main():
    args = C.parse_args(__doc__, _extra)
    rates = C.machine_rates(args.repeats)
    print(f"machine: matmul {rates['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, "
          f"stream {(rates.get('stream_bytes_per_s') or 0) / 1e9:.1f} GB/s", flush=True)
    rows = []
    for name, B in (QUICK_CASES if args.quick else CASES):
        rows += case(name, B, args, rates)
        C.write_rows("hlstm", rows + [{"machine_rates": rates}], args, partial=True)
    path = C.write_rows("hlstm", rows + [{"machine_rates": rates}], args)
    C.print_table(rows, ["dataset", "B", "impl", "step_ms", "speedup_vs_as_published", "speedup_vs_same_algorithm",
                         "speedup_vs_best_effort", "compile_s", "graph_breaks", "fraction_of_floor"])
    print("wrote", path)


if __name__ == "__main__":
    main()
