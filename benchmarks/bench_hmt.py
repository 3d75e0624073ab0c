"""HMT-Net's train step (group heads, group feature noise, the group-weighted loss) against PyTorch at three levels.

    python -m benchmarks.bench_hmt --data-dir ../shared/data [--threads 2] [--quick] [--no-compile]

``method=hmt`` as the long-tail experiment trains it (``experiments/longtail.py``: an MLP encoder of two
256-wide layers, three group heads by train counts, λ = 2, η = 0.5, BCE, Adam lr 1e-3, weight decay 1e-5):
Corel5k's long-tailed train subset (max 800, min 1; 374 classes) at batch 32, and delicious (983 classes,
its natural distribution) at batch 32 and 256, against the levels of ``benchmarks/_torch_hmt.py``:
**as published** (the paper in stock modules, its loss as eq. 5-7 write it: one BCE per group and one over
all classes; default Adam), **same algorithm** (hmljax's one weighted BCE pass, fused Adam) and **best
effort** (that step with its optimiser as one ``torch.compile(fullgraph=True)`` graph).

Before timing, each level and hmljax run ``--check-steps`` steps from the same parameters on the same
batches with the noise and dropout off and must agree on the loss at every step and on every parameter at
the end. Timing: noise and dropout on, on both sides. The floor is bench_train's.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

# (dataset, batch, the long-tail subset's (max, min) or None for the natural distribution)
CASES = (("Corel5k", 32, (800, 1)), ("delicious", 32, None), ("delicious", 256, None))
QUICK_CASES = CASES[:1]
LR, WD = 1e-3, 1e-5


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-compile", action="store_true", help="skip the best-effort (torch.compile) level")
    p.add_argument("--check-steps", type=int, default=5, help="steps each level must match hmljax on")


def setup(name: str, B: int, subset, data_dir, *, quiet: bool = False, keys: dict | None = None):
    """(problem, method, X, Y, dropout): the run's HMT-Net for ``name``; ``quiet``: noise and dropout off.

    ``keys``: more run keys (the tests' small sizes).
    """
    import numpy as np

    from benchmarks import _torch_hmt as HT
    from hmljax.training import TrainConfig, build_method, load_run_dataset

    keys = dict(keys or {}) | ({"dropout": 0.0, "noise_lambda": 0.0} if quiet else {})
    if subset:
        keys |= {"longtail_max": subset[0], "longtail_min": subset[1]}
    cfg = TrainConfig(dataset=name, data_dir=data_dir, method="hmt", optimizer="adam", batch_size=B, lr=LR,
                      weight_decay=WD, **keys).resolved()
    ds = load_run_dataset(cfg)
    _, method, _ = build_method(cfg, ds)
    X, Y = np.asarray(method.train_x, np.float32), np.asarray(method.train_y, np.float32)
    m = cfg.method_config
    problem = HT.HmtProblem(X.shape[1], m.hidden, m.encoder_layers, group_index(ds, m),
                            tuple(method.info["sigma"].values()), eta=m.eta, lr=LR, weight_decay=WD)
    return problem, method, X, Y, m.dropout


def group_index(ds, m) -> tuple:
    """The heads' class indices as ``build_hmt`` forms them: groups by train counts, empty groups left out."""
    import numpy as np

    from hmljax.methods import hmt_groups

    counts = np.asarray(ds.split("train")[1], np.int64).sum(0)
    groups = hmt_groups(counts, np.asarray(ds.hierarchy.evaluated, bool), head=m.group_head, tail=m.group_tail,
                        split=m.group_split)
    head_of = np.where(groups >= 0, groups, 0)
    return tuple(tuple(int(k) for k in np.flatnonzero(head_of == g)) for g in range(3) if (head_of == g).any())


def matmul_flops(problem, B: int) -> int:
    D, H, Cn = problem.num_features, problem.hidden, problem.num_classes
    widths = [D] + [H] * problem.encoder_layers
    fwd = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True)) + widths[-1] * Cn
    return 3 * 2 * B * fwd


def case(name: str, B: int, subset, args, rates: dict) -> list[dict]:
    from benchmarks import _engine_levels as EL
    from benchmarks import _torch_hmt as HT

    print(f"{name} B={B}", flush=True)
    problem0, method0, X, Y, _ = setup(name, B, subset, args.data_dir, quiet=True)
    problem, method, _, _, dropout = setup(name, B, subset, args.data_dir)
    return EL.case(HT.build, problem, method0, method, X, Y, B, args, rates,
                   keys={"dataset": name, "C": problem.num_classes, "H": problem.hidden,
                         "groups": [len(g) for g in problem.group_index]},
                   dropout=dropout, flops_analytic=matmul_flops(problem, B), scan_steps=X.shape[0] // B,
                   reps=args.repeats * 10)


def main():
    args = C.parse_args(__doc__, _extra)
    rates = C.machine_rates(args.repeats)
    print(f"machine: matmul {rates['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, "
          f"stream {(rates.get('stream_bytes_per_s') or 0) / 1e9:.1f} GB/s", flush=True)
    rows = []
    for name, B, subset in (QUICK_CASES if args.quick else CASES):
        rows += case(name, B, subset, args, rates)
        C.write_rows("hmt", rows + [{"machine_rates": rates}], args, partial=True)
    path = C.write_rows("hmt", rows + [{"machine_rates": rates}], args)
    C.print_table(rows, ["dataset", "B", "impl", "step_ms", "speedup_vs_as_published", "speedup_vs_same_algorithm",
                         "speedup_vs_best_effort", "compile_s", "graph_breaks", "fraction_of_floor"])
    print("wrote", path)


if __name__ == "__main__":
    main()
