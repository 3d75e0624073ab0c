"""Where a train step's time goes, on both sides: the profile behind the targets that are missed.

    python -m benchmarks.profile_step --data-dir ../shared/data --threads 1

Two cases, the ones whose targets bind (cellcycle_FUN sizes, batch 4, dropout 0.7):
one C-HMCNN network, and an ensemble of E = 10.

* jax: ``jax.profiler`` traces ``--steps`` jit-compiled steps; every XLA op the
  step's entry computation runs is timed by the runtime, named by its HLO
  instruction, and put in a group by the ``op_name`` metadata XLA keeps on it
  (the train step names its scopes ``loss`` and ``optimizer``; ``jvp(...)`` is
  the forward pass and ``transpose(jvp(...))`` the backward one).
* torch: ``torch.profiler`` over the same number of eager steps, grouped as
  forward, backward (``autograd::engine``) and ``Optimizer.step``; its top
  operators by self time are listed too.

Profilers add overhead of their own, so each group is also given as a share of
the profiled time, beside the step's unprofiled median wall time. Run it with
``--threads 1``: with more, XLA runs independent ops of the step at the same
time on its thread pool, their traced durations overlap and include each
other's waiting, and the attribution is wrong (a 0.7 ms dot then showed as 6.6 ms).
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

GROUPS = ("forward", "loss", "backward", "optimizer", "dropout rng", "copies", "other")


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, default=200, help="profiled steps per trace")
    p.add_argument("--traces", type=int, default=3, help="jax traces per case (each op's median is used)")
    p.add_argument("--ensemble", type=int, default=10)


def entry_ops(hlo_text: str) -> dict[str, str]:
    """``{instruction name: op_name metadata}`` for the ENTRY computation of compiled HLO text."""
    body = hlo_text[hlo_text.index("\nENTRY"):]
    body = body[: body.index("\n}") + 1]
    ops = {}
    for m in re.finditer(r"^\s+(?:ROOT )?%?([\w.\-]+) = .*$", body, re.M):
        meta = re.search(r'op_name="([^"]*)"', m.group(0))
        ops[m.group(1)] = meta.group(1) if meta else ""
    return ops


def group_of(name: str, op_name: str) -> str:
    """The profile group of one XLA op, from its instruction name and ``op_name`` metadata."""
    if "optimizer" in op_name:
        return "optimizer"
    if any(s in op_name for s in ("_bernoulli", "_uniform", "random_bits", "threefry", "fold_in")):
        return "dropout rng"
    # Under grad the scope shows as ``jvp(loss)`` (forward) or ``transpose(jvp(loss))`` (backward):
    # both count as the loss.
    if re.search(r"(^|[/(])loss([)/]|$)", op_name):
        return "loss"
    if "transpose(jvp(" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    if name.startswith("copy"):
        return "copies"
    return "other"


def _trace_op_us(jitted, state, rest, steps: int, ops: dict) -> tuple[collections.Counter, object]:
    """One trace of ``steps`` calls: per-step microseconds of each entry op."""
    import jax

    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        for _ in range(steps):
            state, loss = jitted(state, *rest)
        jax.block_until_ready(loss)
        jax.profiler.stop_trace()
        path = sorted(glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True))[-1]
        with gzip.open(path) as fh:
            trace = json.load(fh)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    per_op = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in ops:
            per_op[e["name"]] += e.get("dur", 0.0) / steps
    return per_op, state


def jax_profile(jitted, args: tuple, steps: int, traces: int = 3) -> dict:
    """Profiles ``steps`` calls of ``state, loss = jitted(state, *rest)``, ``traces`` times.

    Per-step microseconds by group, from each op's median over the traces (single
    traces on a shared machine moved a group's share by tens of points); the
    groups' min-max over the traces is kept as ``groups_us_range``.
    """
    import jax

    state, rest = args[0], args[1:]
    ops = entry_ops(jitted.lower(state, *rest).compile().as_text())
    for _ in range(5):  # warm up outside the trace
        state, loss = jitted(state, *rest)
    jax.block_until_ready(loss)
    runs = []
    for _ in range(traces):
        per_op, state = _trace_op_us(jitted, state, rest, steps, ops)
        runs.append(per_op)
    names = set().union(*runs)
    med = {n: statistics.median(r.get(n, 0.0) for r in runs) for n in names}
    groups = collections.Counter()
    for n, us in med.items():
        groups[group_of(n, ops[n])] += us
    per_trace = [{g: sum(us for n, us in r.items() if group_of(n, ops[n]) == g) for g in GROUPS} for r in runs]
    top = [{"op": n, "us_per_step": us, "group": group_of(n, ops[n]), "op_name": ops[n][-90:]}
           for n, us in sorted(med.items(), key=lambda t: -t[1])[:12]]
    return {"groups_us": {g: groups.get(g, 0.0) for g in GROUPS}, "profiled_us": sum(med.values()),
            "groups_us_range": {g: [min(t[g] for t in per_trace), max(t[g] for t in per_trace)] for g in GROUPS},
            "traces": traces, "top_ops": top}


def torch_profile(step_fn, steps: int) -> dict:
    """Profiles ``steps`` eager torch steps; per-step microseconds for forward, backward and the optimiser."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):
        step_fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step_fn()
    ka = prof.key_averages()
    total = {e.key: e.cpu_time_total / steps for e in ka}
    opt = sum(v for k, v in total.items() if k.startswith("Optimizer.step"))
    bwd = sum(v for k, v in total.items() if k.startswith("autograd::engine::evaluate_function"))
    # Every aten op's self time, outside the optimiser and the backward, is the forward pass (+ the loss).
    self_all = sum(e.self_cpu_time_total for e in ka) / steps
    top = sorted(ka, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"groups_us": {"forward+loss": max(self_all - opt - bwd, 0.0), "backward": bwd, "optimizer": opt},
            "profiled_us": self_all,
            "top_ops": [{"op": e.key, "us_per_step": e.self_cpu_time_total / steps, "calls_per_step":
                         e.count / steps} for e in top]}


def main():
    args = C.parse_args(__doc__, _extra)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from benchmarks import _torch_ref as T
    from hmljax.constraints import constraint_graph
    from hmljax.data import load_dataset
    from hmljax.models import ChmcnnMLP, stacked_forward
    from hmljax.training import init_state, jit_train, make_optimizer, make_train_step

    if args.quick:
        args.steps = min(args.steps, 20)
    ds = load_dataset("cellcycle_FUN", data_dir=args.data_dir)
    h = ds.hierarchy
    X, Y = ds.split("train+valid")
    B, H = 4, 500
    x_np, y_np = np.asarray(X[:B], np.float32), np.asarray(Y[:B], np.float32)
    D, Cn = x_np.shape[1], h.num_nodes
    graph = constraint_graph(h)
    R_t = torch.from_numpy(np.asarray(h.ancestry, np.float32))
    to_eval = torch.from_numpy(np.asarray(h.evaluated))
    xt, yt = torch.from_numpy(x_np), torch.from_numpy(y_np)
    lr, wd = 1e-4, 1e-5
    opt = make_optimizer(lr=lr, weight_decay=wd)
    model = ChmcnnMLP(hidden=H, num_outputs=Cn, dropout=0.7)
    rows = []
    for E in (1, args.ensemble):
        state = init_state(model, opt, D, key=jax.random.key(0), members=E if E > 1 else 0)
        fwd = stacked_forward(model, E) if E > 1 else None
        step = jit_train(make_train_step(model, opt, ancestry=graph, evaluated=h.evaluated, forward=fwd),
                       donate_argnums=(0,))
        rest = (jnp.asarray(x_np), jnp.asarray(y_np), jnp.ones(B, bool), jax.random.key(1))
        members = [T.mlp(D, H, Cn, 0.7) for _ in range(E)]
        for e, m in enumerate(members):
            T.load_flax_params(m, jax.tree.map(lambda a, e=e: a[e] if E > 1 else a, state.params))
        topt = torch.optim.Adam([p for m in members for p in m.parameters()], lr=lr, weight_decay=wd)
        torch_step = T.loop_step(members, topt, xt, yt, R_t, to_eval)

        holder = [state]

        def run_jax():
            holder[0], loss = step(holder[0], *rest)
            return loss

        wall_j = C.timeit(run_jax, repeats=args.repeats * 5, sync=C.jax_sync)["median_s"]
        wall_t = C.timeit(torch_step, repeats=args.repeats * 2)["median_s"]
        pj = jax_profile(step, (holder[0], *rest), args.steps, traces=1 if args.quick else args.traces)
        pt = torch_profile(torch_step, args.steps)
        for side, prof, wall in (("hmljax jit step", pj, wall_j), ("torch eager", pt, wall_t)):
            row = {"case": f"E={E}", "E": E, "B": B, "impl": side, "wall_us_per_step": wall * 1e6} | prof
            rows.append(row)
            shares = ", ".join(f"{g} {us:.0f} us ({us / max(prof['profiled_us'], 1e-9):.0%})"
                               for g, us in prof["groups_us"].items() if us > 0)
            print(f"E={E:2d} {side:16s} wall {wall * 1e6:8.1f} us/step; profiled {prof['profiled_us']:.0f} us: "
                  f"{shares}", flush=True)
    path = C.write_rows("profile_step", rows, args)
    print("wrote", path)


if __name__ == "__main__":
    main()
