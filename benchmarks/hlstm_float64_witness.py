"""A float64 witness for HLSTM's equality checks: where hmljax and PyTorch part in float32, who is off?

    python -m benchmarks.hlstm_float64_witness --data-dir ../shared/data [--cases cellcycle_GO:4 cellcycle_GO:64]
        [--levels "same algorithm" "best effort"] [--device cuda]

For each case, from hmljax's initial parameters and on the same ``--steps``
batches (dropout off), three runs of HLSTM's step: hmljax (float32), PyTorch's
same-algorithm level (float32, fused Adam) and that level in float64 (foreach
Adam), once with the paper's constant 0.1 local initialisation and once with
``bench_hlstm.CHECK_LOCAL_INIT``. Per parameter it records how many elements
the two float32 sides disagree on beyond ``1e-4 |ref| + 1e-6`` and, on those
elements, how far each float32 side is from float64. When both sides stray from
float64 by as much as they differ from each other, the disagreement is float32
rounding, not a different computation. Each side's distance from float64 is also
given as a share of the update (``|side - f64| / |f64 - start|``, norms over the
tensor): rounding that Adam turns into whole steps (a near-cancelling gradient's
sign) shows as comparable shares on both sides; a different computation, as one
side's share far above the other's.

``--levels "best effort"`` puts the same-algorithm step under ``torch.compile``
(float32) in torch's place: on CUDA its equality check failed on 2026-12-04 (5-10 %
of the update norm on the LSTM's gate kernel, beyond the checks' 3 %), and this
says whether it strays from float64 more than hmljax does. Written to
``benchmarks/results/hlstm_witness.json`` (``--device cuda``: ``results/gpu/``);
``run_all`` shows it in section 11.
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
    p.add_argument("--levels", nargs="*", default=["same algorithm"], choices=("same algorithm", "best effort"),
                   help="the float32 torch side(s) set beside hmljax and float64")


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


def torch_float32_run(level: str, problem, params0, batches) -> list[dict]:
    """``level``'s float32 step over ``batches``: its parameters after every step, flax layout (a compiled
    level has taken the first batch's step in compiling)."""
    import numpy as np

    from benchmarks import _torch_hlstm as HL

    ts = HL.build(level, problem, params0, dropout=0.0, x_np=batches[0][0], y_np=batches[0][1])
    if ts.error:
        raise SystemExit(f"{level}: {ts.error}")
    def snapshot():  # copies: on CPU the layout's arrays share the parameters' memory, which Adam updates
        return {k: np.array(v, copy=True) for k, v in ts.params_flax_layout().items()}

    snaps = [snapshot()] if ts.first_loss is not None else []
    for x, y in batches[len(snaps):]:
        ts.step(*ts.prepare(x, y))
        snaps.append(snapshot())
    return snaps


def _share_of_update(side, f64, start) -> float:
    """``|side - f64| / |f64 - start|`` over a tensor (0 when float64 did not move it)."""
    import numpy as np

    moved = float(np.linalg.norm(f64 - start))
    return float(np.linalg.norm(side - f64)) / moved if moved else 0.0


def witness(name: str, B: int, data_dir, steps: int, local_init: str | None,
            level: str = "same algorithm") -> dict:
    """One case: per parameter, the float32 disagreement and each side's distance from float64 on it."""
    import numpy as np

    from benchmarks import _torch_hlstm as HL
    from benchmarks._engine_levels import flat_params, method_trajectory
    from benchmarks.bench_hlstm import setup

    problem, method, X, Y, _ = setup(name, B, data_dir, dropout=0.0, local_init=local_init)
    batches = [(X[k * B:(k + 1) * B], Y[k * B:(k + 1) * B]) for k in range(steps)]
    h_snaps: list[dict] = []
    params0, _, h32 = method_trajectory(method, batches, h_snaps)
    start = {k: np.asarray(v, np.float64) for k, v in flat_params(params0).items()}
    t_snaps = torch_float32_run(level, problem, params0, batches)
    t32, f64 = t_snaps[-1], float64_run(problem, params0, batches)
    ties = HL.near_tie_switches(problem, h_snaps, t_snaps, batches)
    per = {}
    for k in h32:
        h, t, w = (np.asarray(a[k], np.float64) for a in (h32, t32, f64))
        bad = np.abs(t - h) > 1e-4 * np.abs(h) + 1e-6
        per[k] = {"size": int(h.size), "disagree": int(bad.sum()),
                  "max_abs_t32_minus_h32": float(np.abs(t - h).max()),
                  "on_disagreeing_max_abs_h32_minus_f64": float(np.abs(h - w)[bad].max()) if bad.any() else 0.0,
                  "on_disagreeing_max_abs_t32_minus_f64": float(np.abs(t - w)[bad].max()) if bad.any() else 0.0,
                  "h32_off_f64_share_of_update": _share_of_update(h, w, start[k]),
                  "t32_off_f64_share_of_update": _share_of_update(t, w, start[k])}
    total = sum(v["disagree"] for v in per.values())
    size = sum(v["size"] for v in per.values())
    worst = max(per, key=lambda k: max(per[k]["h32_off_f64_share_of_update"], per[k]["t32_off_f64_share_of_update"]))
    print(f"{name} B={B} local_init={local_init or 'constant (paper)'} torch {level}: {total} of {size} elements "
          f"disagree beyond 1e-4 |ref| + 1e-6; max share of a tensor "
          f"{max(v['disagree'] / v['size'] for v in per.values()):.2%}; furthest from float64: {worst}, hmljax "
          f"{per[worst]['h32_off_f64_share_of_update']:.2%} and torch {per[worst]['t32_off_f64_share_of_update']:.2%}"
          " of its update", flush=True)
    for t in ties["first"]:
        print(f"  step {t['step']}: LHLoss's min of sample {t['sample']} at node {t['node']} (row {t['row']}) picks "
              f"entry {t['hmljax_picks']} at hmljax's point and {t['torch_picks']} at torch's; the two entries "
              f"differ by {t['relative_gap_at_hmljax_point']:.1e} and {t['relative_gap_at_torch_point']:.1e} "
              "(relative)", flush=True)
    return {"dataset": name, "B": B, "steps": steps, "local_init": local_init or "constant", "level": level,
            "disagree": total, "params": size, "lmc_switches": ties["switches"], "lmc_first_switches": ties["first"],
            "max_h32_off_f64_share_of_update": max(v["h32_off_f64_share_of_update"] for v in per.values()),
            "max_t32_off_f64_share_of_update": max(v["t32_off_f64_share_of_update"] for v in per.values()),
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

    args = C.parse_args(__doc__, _extra, timed=False)  # it times nothing: a busy machine changes no figure
    rows = []
    for spec in args.cases[:1] if args.quick else args.cases:
        name, _, B = spec.partition(":")
        if not B.isdigit():
            raise SystemExit(f"--cases: {spec!r} is not dataset:batch (e.g. cellcycle_GO:4)")
        for level in args.levels:
            for init in (None, CHECK_LOCAL_INIT):
                rows.append(witness(name, int(B), args.data_dir, args.steps, init, level))
                C.write_rows("hlstm_witness", rows, args, partial=True)  # a sitting's job may stop at its limit
    print("wrote", C.write_rows("hlstm_witness", rows, args))


if __name__ == "__main__":
    main()
