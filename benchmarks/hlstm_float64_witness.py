"""A float64 witness for HLSTM's equality checks: where hmljax and PyTorch part in float32, who is off?

    python -m benchmarks.hlstm_float64_witness --data-dir ../shared/data [--cases cellcycle_GO:4 cellcycle_GO:64]
        [--levels "same algorithm" "best effort"] [--device cuda] [--take-apart]

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

``--take-apart`` follows the compiled step instead, step by step (:func:`take_apart`): its whole step, its
gradient alone and its Adam alone, each against float64 or eager torch, to name the part that strays
(``hlstm_take_apart.json``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

CASES = ("cellcycle_GO:4", "cellcycle_GO:64")


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cases", nargs="*", default=list(CASES), help="dataset:batch")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--levels", nargs="*", default=["same algorithm"], choices=("same algorithm", "best effort"),
                   help="the float32 torch side(s) set beside hmljax and float64")
    p.add_argument("--take-apart", action="store_true",
                   help="instead: the compiled step's whole step, gradient and Adam against float64, step by step "
                        "(benchmarks/results/hlstm_take_apart.json)")


def float64_run(problem, params0, batches, trace: dict | None = None) -> dict:
    """The same-algorithm step in float64 (foreach Adam) over ``batches``: final parameters, flax layout.

    With a ``trace`` dict, also fills ``trace["snaps"]`` (the parameters after every step, flax layout),
    ``trace["points"]`` and ``trace["grads"]`` (before every step: the parameters and their gradient, by
    torch's parameter names), for :func:`take_apart`."""
    import torch

    from benchmarks import _torch_hlstm as HL

    ts = HL.build("same algorithm", problem, params0, dropout=0.0, x_np=batches[0][0], y_np=batches[0][1])
    model = ts.model.double()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=problem.lr,
                           weight_decay=problem.weight_decay, foreach=True)
    loss_fn = HL.logit_loss(problem)
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        if trace is not None:
            trace.setdefault("points", []).append({n: p.detach().clone() for n, p in model.named_parameters()})
        loss_fn(model(torch.tensor(x, dtype=torch.float64)), torch.tensor(y, dtype=torch.float64)).backward()
        if trace is not None:
            trace.setdefault("grads", []).append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        opt.step()
        if trace is not None:
            trace.setdefault("snaps", []).append({k: np.array(v, copy=True)
                                                  for k, v in ts.params_flax_layout().items()})
    return ts.params_flax_layout()


def torch_float32_run(level: str, problem, params0, batches) -> list[dict]:
    """``level``'s float32 step over ``batches``: its parameters after every step, flax layout (a compiled
    level has taken the first batch's step in compiling)."""
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


def _rel(a, ref, scale) -> float:
    """``|a - ref| / |scale|`` over a tensor, norms in float64 (0 when ``scale`` is 0: nothing moved)."""
    den = float(np.linalg.norm(np.asarray(scale, np.float64)))
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(ref, np.float64))) / den if den else 0.0


def _share_of_update(side, f64, start) -> float:
    """``|side - f64| / |f64 - start|`` over a tensor (0 when float64 did not move it)."""
    return _rel(side, f64, np.asarray(f64, np.float64) - np.asarray(start, np.float64))


def witness(name: str, B: int, data_dir, steps: int, local_init: str | None,
            level: str = "same algorithm") -> dict:
    """One case: per parameter, the float32 disagreement and each side's distance from float64 on it."""

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


def _off(side: dict, ref: dict, scale: dict) -> tuple[float, str]:
    """The largest :func:`_rel` over the tensors of ``ref``, and that tensor's name."""
    shares = {k: _rel(side[k], ref[k], scale[k]) for k in ref}
    worst = max(shares, key=shares.get)
    return shares[worst], worst


def take_apart(name: str, B: int, data_dir, steps: int, local_init: str | None) -> list[dict]:
    """The compiled (best-effort) step taken apart, step by step, from hmljax's initial parameters.

    Per step k, three figures say where a compiled step parts from float64:
    - whole step: each float32 side's parameters after step k off float64's, as a share of float64's update
      so far (``|side - f64| / |f64 - start|``, the witness's measure, per step);
    - gradient: at float64's parameters before step k, float32 gradients off float64's as a share of its norm:
      eager (``.backward()``, as the same-algorithm level) and compiled (``torch.func.grad`` under
      ``torch.compile``, alone);
    - Adam: eager and compiled float32 Adam (:func:`_torch_levels.adam_in_graph`), fed the same float32 casts of
      float64's gradients from the same start, the compiled parameters off the eager ones as a share of the
      eager update so far.
    A compiled gradient far from float64 while eager torch's is close names the forward/backward; a compiled
    Adam off eager names the update; both close while the whole step strays names their composition."""
    import torch
    import torch._dynamo

    from benchmarks import _torch_hlstm as HL
    from benchmarks import _torch_levels as L
    from benchmarks._engine_levels import flat_params, method_trajectory
    from benchmarks.bench_hlstm import setup

    problem, method, X, Y, _ = setup(name, B, data_dir, dropout=0.0, local_init=local_init)
    batches = [(X[k * B:(k + 1) * B], Y[k * B:(k + 1) * B]) for k in range(steps)]
    h_snaps: list[dict] = []
    params0, _, _ = method_trajectory(method, batches, h_snaps)
    start = flat_params(params0)
    t_snaps = torch_float32_run("best effort", problem, params0, batches)
    trace: dict = {}
    float64_run(problem, params0, batches, trace)

    loss_fn = HL.logit_loss(problem)
    names, params, loss_of = L.functional_loss(HL._network(problem, params0, 0.0), loss_fn)
    torch._dynamo.reset()  # the whole step's graphs are done with; this compiles new ones
    grad_compiled = torch.compile(torch.func.grad(loss_of), fullgraph=True)
    eager = HL._network(problem, params0, 0.0)  # eager torch.func.grad refuses _LevelStates (no setup_context)

    def grad_eager(point, x, y):  # the same-algorithm level's way: .backward() at the point
        with torch.no_grad():
            for p, v in zip(eager.parameters(), point, strict=True):
                p.copy_(v)
        eager.zero_grad(set_to_none=True)
        loss_fn(eager(x), y).backward()
        return [p.grad for p in eager.parameters()]

    adam_compiled = torch.compile(lambda *a: L.adam_in_graph(problem, *a), fullgraph=True)
    p0 = {n: p.detach().clone() for n, p in zip(names, params, strict=True)}
    p_e, p_c = [p.detach().clone() for p in params], [p.detach().clone() for p in params]
    st_e, st_c = L.adam_state(p_e), L.adam_state(p_c)
    np_ = lambda ts: {n: t.detach().cpu().numpy() for n, t in zip(names, ts, strict=True)}  # noqa: E731
    rows = []
    for k, (x, y) in enumerate(batches):
        xt, yt = L._float32_batch(x, y)
        point = tuple(trace["points"][k][n].float() for n in names)
        g64 = {n: g.cpu().numpy() for n, g in trace["grads"][k].items()}
        ge, gc = np_(grad_eager(point, xt, yt)), np_(grad_compiled(point, xt, yt))
        g32 = [torch.as_tensor(g64[n], dtype=torch.float32, device=p_e[0].device) for n in names]
        L.adam_in_graph(problem, p_e, [g.clone() for g in g32], *st_e, capturable=p_e[0].is_cuda)
        adam_compiled(p_c, [g.clone() for g in g32], *st_c)
        pe = np_(p_e)
        moved = {n: pe[n] - p0[n].cpu().numpy() for n in names}
        f64_moved = {kk: trace["snaps"][k][kk] - start[kk] for kk in start}
        (wh, _), (wt, wt_name) = (_off(h_snaps[k], trace["snaps"][k], f64_moved),
                                  _off(t_snaps[k], trace["snaps"][k], f64_moved))
        (g_e, _), (g_c, g_name) = _off(ge, g64, g64), _off(gc, g64, g64)
        a_c, a_name = _off(np_(p_c), pe, moved)
        rows.append({"dataset": name, "B": B, "local_init": local_init or "constant", "step": k + 1,
                     "whole_hmljax_off_f64": wh, "whole_compiled_off_f64": wt, "whole_worst": wt_name,
                     "grad_eager_off_f64": g_e, "grad_compiled_off_f64": g_c, "grad_worst": g_name,
                     "adam_compiled_off_eager": a_c, "adam_worst": a_name})
        print(f"{name} B={B} {local_init or 'constant'} step {k + 1}: whole step off float64 hmljax {wh:.2%}, "
              f"compiled {wt:.2%} ({wt_name}); gradient off float64 eager {g_e:.1e}, compiled {g_c:.1e} "
              f"({g_name}); compiled Adam off eager {a_c:.1e} ({a_name})", flush=True)
    return rows


def main():
    from benchmarks.bench_hlstm import CHECK_LOCAL_INIT

    args = C.parse_args(__doc__, _extra, timed=False)  # it times nothing: a busy machine changes no figure
    rows = []
    for spec in args.cases[:1] if args.quick else args.cases:
        name, _, B = spec.partition(":")
        if not B.isdigit():
            raise SystemExit(f"--cases: {spec!r} is not dataset:batch (e.g. cellcycle_GO:4)")
        if args.take_apart:
            for init in (None, CHECK_LOCAL_INIT):
                rows += take_apart(name, int(B), args.data_dir, args.steps, init)
                C.write_rows("hlstm_take_apart", rows, args, partial=True)
            continue
        for level in args.levels:
            for init in (None, CHECK_LOCAL_INIT):
                rows.append(witness(name, int(B), args.data_dir, args.steps, init, level))
                C.write_rows("hlstm_witness", rows, args, partial=True)  # a sitting's job may stop at its limit
    print("wrote", C.write_rows("hlstm_take_apart" if args.take_apart else "hlstm_witness", rows, args))


if __name__ == "__main__":
    main()
