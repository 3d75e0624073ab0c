"""A float64 witness for HLSTM's equality checks: where hmljax and PyTorch part in float32, who is off?

    python -m benchmarks.hlstm_float64_witness --data-dir ../shared/data [--cases cellcycle_GO:4 cellcycle_GO:64]

For each case, from hmljax's initial parameters and on the same ``--steps``
batches (dropout off), three runs of HLSTM's step: hmljax (float32), PyTorch's
same-algorithm level (float32, fused Adam) and that level in float64 (foreach
Adam), once with the paper's constant 0.1 local initialisation and once with
``bench_hlstm.CHECK_LOCAL_INIT``. Per parameter it records how many elements
the two float32 sides disagree on beyond ``1e-4 |ref| + 1e-6`` and, on those
elements, how far each float32 side is from float64. When both sides stray from
float64 by as much as they differ from each other, the disagreement is float32
rounding, not a different computation. Written to
``benchmarks/results/hlstm_witness.json``; ``run_all`` shows it in section 11.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

CASES = ("cellcycle_GO:4", "cellcycle_GO:64")


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cases", nargs="*", default=list(CASES), help="dataset:batch")
    p.add_argument("--steps", type=int, default=5)


def float64_run(problem, params0, batches) -> dict:
    """The same-algorithm step in float64 (foreach Adam) over ``batches``: final parameters, flax layout."""
    import torch

    from benchmarks import _torch_hlstm as HL

    ts = HL.build("same algorithm", problem, params0, dropout=0.0, x_np=batches[0][0], y_np=batches[0][1])
    model = ts.model.double()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=problem.lr,
                           weight_decay=problem.weight_decay, foreach=True)
    loss_fn = HL.logit_loss(problem)
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(torch.tensor(x, dtype=torch.float64)), torch.tensor(y, dtype=torch.float64)).backward()
        opt.step()
    return ts.params_flax_layout()


def witness(name: str, B: int, data_dir, steps: int, local_init: str | None) -> dict:
    """One case: per parameter, the float32 disagreement and each side's distance from float64 on it."""
    import numpy as np

    from benchmarks import _torch_hlstm as HL
    from benchmarks._engine_levels import method_trajectory
    from benchmarks.bench_hlstm import setup

    problem, method, X, Y, _ = setup(name, B, data_dir, dropout=0.0, local_init=local_init)
    batches = [(X[k * B:(k + 1) * B], Y[k * B:(k + 1) * B]) for k in range(steps)]
    params0, _, h32 = method_trajectory(method, batches)
    ts = HL.build("same algorithm", problem, params0, dropout=0.0, x_np=batches[0][0], y_np=batches[0][1])
    for x, y in batches:
        ts.step(*ts.prepare(x, y))
    t32, f64 = ts.params_flax_layout(), float64_run(problem, params0, batches)
    per = {}
    for k in h32:
        h, t, w = (np.asarray(a[k], np.float64) for a in (h32, t32, f64))
        bad = np.abs(t - h) > 1e-4 * np.abs(h) + 1e-6
        per[k] = {"size": int(h.size), "disagree": int(bad.sum()),
                  "max_abs_t32_minus_h32": float(np.abs(t - h).max()),
                  "on_disagreeing_max_abs_h32_minus_f64": float(np.abs(h - w)[bad].max()) if bad.any() else 0.0,
                  "on_disagreeing_max_abs_t32_minus_f64": float(np.abs(t - w)[bad].max()) if bad.any() else 0.0}
    total = sum(v["disagree"] for v in per.values())
    size = sum(v["size"] for v in per.values())
    print(f"{name} B={B} local_init={local_init or 'constant (paper)'}: {total} of {size} elements disagree "
          f"beyond 1e-4 |ref| + 1e-6; max share of a tensor "
          f"{max(v['disagree'] / v['size'] for v in per.values()):.2%}", flush=True)
    return {"dataset": name, "B": B, "steps": steps, "local_init": local_init or "constant",
            "disagree": total, "params": size,
            "max_tensor_share": max(v["disagree"] / v["size"] for v in per.values()),
            "h32_further_from_f64": sum(v["on_disagreeing_max_abs_h32_minus_f64"]
                                        > v["on_disagreeing_max_abs_t32_minus_f64"] for v in per.values()
                                        if v["disagree"]),
            "t32_further_from_f64": sum(v["on_disagreeing_max_abs_h32_minus_f64"]
                                        < v["on_disagreeing_max_abs_t32_minus_f64"] for v in per.values()
                                        if v["disagree"]),
            "per_parameter": per}


def main():
    from benchmarks.bench_hlstm import CHECK_LOCAL_INIT

    args = C.parse_args(__doc__, _extra)
    rows = []
    for spec in args.cases[:1] if args.quick else args.cases:
        name, _, B = spec.partition(":")
        if not B.isdigit():
            raise SystemExit(f"--cases: {spec!r} is not dataset:batch (e.g. cellcycle_GO:4)")
        for init in (None, CHECK_LOCAL_INIT):
            rows.append(witness(name, int(B), args.data_dir, args.steps, init))
    print("wrote", C.write_rows("hlstm_witness", rows, args))


if __name__ == "__main__":
    main()
