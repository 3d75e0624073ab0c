"""Items 2, 4 and 7: the C-HMCNN train step, one end-to-end epoch, and the compute floor, against three PyTorch levels.

    python -m benchmarks.bench_train --data-dir ../shared/data [--threads 2] [--allow-loaded]

Train step: MLP + max-constraint loss + Adam (torch-style weight decay) for
cellcycle_FUN (H = 500, batch 4 and 64) and cellcycle_GO (H = 1000, batch 4 and
64): hmljax's jit step and its scan-fused epoch (per step) against PyTorch at
three levels (``benchmarks/_torch_levels.py``): **as published** (the released
C-HMCNN loop: dense float64 constraint, default Adam), **same algorithm**
(hmljax's sparse level-wise constraint with ``scatter_reduce``, fused Adam) and
**best effort** (that step, optimiser included, as one ``torch.compile`` graph;
compile time on its own). Before timing, each level and hmljax run 5 steps
from the same parameters on the same batches with dropout off and must agree
on the loss at every step and on every parameter at the end; each row holds
that check. Every row has its ratio against each level.

End to end: one epoch of cellcycle_FUN at the published settings (train+valid,
batch 4, shuffled, dropout 0.7): the scan-fused epoch against each level's
epoch loop (as published: the released DataLoader over float64 rows).

Compute floor: FLOPs per step (XLA's count and the analytic matmul count) at the
machine's measured matmul rate, and the optimiser state every step must read and
write once (p, m, v: 24 bytes per parameter) at its measured in-place stream
bandwidth on a working set of p, g, m and v's size (in cache where it fits);
the larger is the floor, and each step time is stated as floor / time.
hmljax's Adam update alone (in a loop on donated state) is given beside it.

The machine (CPU model, measured rates) and its load are in the JSON; on a
busy machine the benchmark refuses to run unless ``--allow-loaded`` (then
every row is flagged ``loaded_machine``).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

CASES = (("cellcycle_FUN", 500, 4), ("cellcycle_FUN", 500, 64), ("cellcycle_GO", 1000, 4),
         ("cellcycle_GO", 1000, 64))
QUICK_CASES = CASES[:3]
LR, WD, DROPOUT = 1e-4, 1e-5, 0.7


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-compile", action="store_true", help="skip the best-effort (torch.compile) level")
    p.add_argument("--check-steps", type=int, default=5, help="steps each level must match hmljax on")


def optimizer_update_seconds(model, opt, num_features: int, repeats: int, members: int = 0, passes: int = 20) -> float:
    """Median time of one optimiser update alone (torch-style wd + Adam) on this model's (stacked) parameters."""
    import jax

    from hmljax.training import init_state

    st = init_state(model, opt, num_features, key=jax.random.key(0), members=members)
    return update_seconds(st.params, opt, repeats, passes=passes)


def update_seconds(params, opt, repeats: int, passes: int = 20) -> float:
    """Median time of one ``opt`` update of ``params`` alone.

    ``passes`` updates run in one jitted ``fori_loop`` on donated state, as they
    run inside the train step: no dispatch and no fresh buffers per update.
    """
    import jax

    from hmljax.engine import apply_optimizer

    grads = jax.tree.map(lambda p: p * 1e-3, params)

    def one(_, carry):  # as the train step applies it (a fused optimiser writes the parameters itself)
        params, opt_state = carry
        return apply_optimizer(opt, grads, opt_state, params)

    upd = jax.jit(lambda params, opt_state: jax.lax.fori_loop(0, passes, one, (params, opt_state)),
                  donate_argnums=(0, 1))
    holder = [(jax.tree.map(jax.numpy.array, params), opt.init(params))]

    def run():
        holder[0] = upd(*holder[0])
        return holder[0]

    return C.timeit(run, repeats=max(5, repeats // 2), sync=C.jax_sync)["median_s"] / passes


def floor_figures(n_params: int, flops_xla, flops_analytic: int, adam_s: float, rates: dict, *,
                  bytes_xla: float | None = None) -> dict:
    """The step's floor on this machine: the larger of its matmuls at the measured matmul rate and the
    optimiser state it must read and write once (p, m, v: 24 bytes per parameter) at the in-place stream
    bandwidth measured on a working set of p, g, m and v's size (in cache where they fit). Both are lower
    bounds any implementation pays (torch's fused Adam too).

    ``bytes_xla`` (XLA's bytes accessed by hmljax's compiled step) gives hmljax's own traffic floor: that
    many bytes at the same bandwidth, i.e. what its fusion plan costs before any compute. Per parameter it
    shows how far the plan is from the 24-28 bytes a single fused optimiser pass would move."""
    matmul_s = (flops_xla or flops_analytic) / rates["matmul_flops_per_s"]
    state_bytes = n_params * 4 * 6
    bandwidth = C.stream_bandwidth_for(n_params)
    memory_s = state_bytes / bandwidth
    return {"params": n_params, "flops_per_step_xla": flops_xla, "flops_per_step_matmul": flops_analytic,
            "adam_bytes_per_step": n_params * 4 * 7,  # read p, g, m, v; write p, m, v
            "optimizer_state_bytes": state_bytes, "stream_bytes_per_s_at_state_size": bandwidth,
            "matmul_floor_s": matmul_s, "memory_floor_s": memory_s, "adam_update_s": adam_s,
            "floor_step_s": max(matmul_s, memory_s), "bytes_per_step_xla": bytes_xla,
            "bytes_per_param_xla": bytes_xla / n_params if bytes_xla else None,
            "xla_traffic_s": bytes_xla / bandwidth if bytes_xla else None}


def _mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def dense_float64_skip(B: int, N: int, members: int = 0) -> str | None:
    """Why the as-published level cannot run here, or None.

    Its float64 ``[B, N, N]`` product, the max's gradient and the product's
    gradient are alive together in the backward: about three of them (per member).
    """
    need, have = 3 * B * N * N * 8 * max(members, 1), _mem_available_bytes()
    if have is not None and need > 0.8 * have:
        return (f"skipped: the float64 [B, N, N] constraint needs ~{need / 2**30:.0f} GiB, "
                f"{have / 2**30:.0f} GiB available")
    return None


def hmljax_step(hierarchy, num_features: int, hidden: int, members: int = 0, adam_kernel: str = "xla"):
    """``(model, opt, step, state)``: hmljax's C-HMCNN train step as every timing here builds it (dropout 0.7,
    Adam lr 1e-4, wd 1e-5; ``members=E``: an E-network vmapped stack)."""
    import jax

    from hmljax.constraints import constraint_graph
    from hmljax.models import ChmcnnMLP, stacked_forward
    from hmljax.training import init_state, make_optimizer, make_train_step

    model = ChmcnnMLP(hidden=hidden, num_outputs=hierarchy.num_nodes, dropout=DROPOUT)
    opt = make_optimizer(lr=LR, weight_decay=WD, adam_kernel=adam_kernel)
    step = make_train_step(model, opt, ancestry=constraint_graph(hierarchy), evaluated=hierarchy.evaluated,
                           forward=stacked_forward(model, members) if members else None)
    return model, opt, step, init_state(model, opt, num_features, key=jax.random.key(0), members=members)


def hmljax_timings(problem, X, Y, B: int, args, members: int = 0) -> dict:
    """hmljax's jit step (one batch, donated state) and scan-fused epoch, dropout 0.7: seconds per step.

    ``members=E``: E networks as one vmapped parameter stack.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hmljax.data import EpochSampler
    from hmljax.training import init_state, jit_train, make_train_epoch

    D = X.shape[1]
    model, opt, step, state = hmljax_step(problem.hierarchy, D, problem.hidden, members,
                                          adam_kernel=getattr(args, "adam_kernel", "xla"))
    xj, yj, wj, key = jnp.asarray(X[:B]), jnp.asarray(Y[:B]), jnp.ones(B, bool), jax.random.key(2)
    c_s, compiled = C.compile_seconds(jit_train(step), state, xj, yj, wj, key)
    jstep = jit_train(step, donate_argnums=(0,))
    holder = [state]

    def run_jit():
        holder[0], loss = jstep(holder[0], xj, yj, wj, key)
        return loss

    t_jit = C.timeit(run_jit, repeats=args.repeats * 10, sync=C.jax_sync)
    sampler = EpochSampler(X.shape[0], B, seed=0)
    eb = sampler.epoch(0)
    Xd, Yd = jax.device_put(X), jax.device_put(Y.astype(np.uint8))
    idx, wh = jax.device_put(eb.indices), jax.device_put(eb.where)
    ec_s, _ = C.compile_seconds(jit_train(make_train_epoch(step)), holder[0], Xd, Yd, idx, wh, key)
    epoch = jit_train(make_train_epoch(step), donate_argnums=(0,))
    ep_holder = [init_state(model, opt, D, key=jax.random.key(0), members=members)]

    def run_epoch():
        ep_holder[0], losses = epoch(ep_holder[0], Xd, Yd, idx, wh, key)
        return losses

    reps = max(3, args.repeats // (10 if problem.hidden >= 1000 or members >= 5 else 3))
    t_ep = C.timeit(run_epoch, repeats=reps, warmup=1, sync=C.jax_sync)
    return {"jit": (t_jit, c_s), "scan": ({**t_ep, "median_s": t_ep["median_s"] / sampler.steps_per_epoch}, ec_s),
            "flops_xla": C.xla_flops(compiled), "bytes_xla": C.xla_bytes(compiled), "model": model, "opt": opt}


def torch_timings(problem, params0, x_np, y_np, checks: dict, args, members: int = 0, *, build=None,
                  dropout: float = DROPOUT, reps: int | None = None) -> tuple[dict, dict]:
    """Each level whose equality check passed, timed on one batch: ({level: figures}, {level: step}).

    ``build`` makes a level's step (default: C-HMCNN's, ``_torch_levels.build``;
    another method passes its own), with the timing's ``dropout``.
    """
    from benchmarks import _torch_levels as L

    build = build or L.build
    out, steps = {}, {}
    reps = reps or args.repeats * (10 if problem.hidden < 1000 and members < 5 else 1)
    for level in L.LEVELS:
        check = checks[level]
        if not check.get("passed"):
            out[level] = {"error": check.get("error", "equality check failed")}
            continue
        ts = build(level, problem, params0, dropout=dropout, x_np=x_np, y_np=y_np, members=members)
        if ts.error:
            out[level] = {"error": ts.error}
            continue
        inputs = ts.prepare(x_np, y_np)
        t = C.timeit(lambda ts=ts, inputs=inputs: ts.step(*inputs), repeats=reps)
        out[level] = {"step_s": t["median_s"], "repeats": t["repeats"], "min_s": t["min_s"],
                      "compile_s": ts.compile_s, "graph_breaks": ts.graph_breaks, "graphs": ts.graphs,
                      "optimizer": ts.optimizer_impl}
        steps[level] = ts
    return out, steps


def run_checks(problem, X, Y, B: int, args, members: int = 0) -> tuple[dict, dict]:
    """The equality checks of the three levels on the first ``--check-steps`` batches: (checks, hmljax params)."""
    from benchmarks import _torch_levels as L

    batches = [(X[k * B:(k + 1) * B], Y[k * B:(k + 1) * B]) for k in range(args.check_steps)]
    skip = {}
    if reason := dense_float64_skip(B, problem.num_nodes, members):
        skip["as published"] = reason
    if args.no_compile:
        skip["best effort"] = "skipped: --no-compile"
    checks, params0 = L.check_all(problem, batches, [lv for lv in L.LEVELS if lv not in skip], members)
    checks |= {lv: {"passed": False, "error": why} for lv, why in skip.items()}
    for lv in L.LEVELS:
        c = checks[lv]
        print(f"  equality {lv:15s}: " + (f"loss {c['loss_max_abs_diff']:.2e}, params {c['param_max_abs_diff']:.2e}"
                                          f" over {c['steps']} steps" if c.get("passed") else c["error"]), flush=True)
    return checks, params0


def _ratios(sec: float, torch_t: dict) -> dict:
    """``speedup_vs_<level>``: the level's step time over this row's (None where the level did not run)."""
    out = {}
    for level, t in torch_t.items():
        out[f"speedup_vs_{level.replace(' ', '_')}"] = t["step_s"] / sec if "step_s" in t else None
    return out


def case_rows(base: dict, hj: dict, torch_t: dict, checks: dict) -> list[dict]:
    """One row per implementation of a (dataset, B) case, each with its ratio to every level and its checks.

    hmljax's rows carry a summary of the three levels' checks, a level's row its own check in full.
    """
    from benchmarks import _torch_levels as L

    summary = {lv: {k: c.get(k) for k in ("passed", "steps", "loss_max_abs_diff", "param_max_abs_diff", "error")
                    if k in c} for lv, c in checks.items()}
    entries = [("hmljax jit step", *hj["jit"], None, summary), ("hmljax scan epoch", *hj["scan"], None, summary)]
    for level in L.LEVELS:
        t = torch_t[level]
        entries.append((f"torch {level}", {"median_s": t.get("step_s"), "repeats": t.get("repeats")},
                        t.get("compile_s"), t, checks[level]))
    rows = []
    for impl, timing, comp, extra, equality in entries:
        sec = timing["median_s"]
        row = base | {"impl": impl, "level": impl.removeprefix("torch ") if impl.startswith("torch") else None,
                      "step_ms": sec * 1e3 if sec else None, "steps_per_s": 1 / sec if sec else None,
                      "repeats": timing.get("repeats"), "compile_s": comp,
                      "fraction_of_floor": base["floor_step_s"] / sec if sec else None, "equality": equality}
        if extra is not None:
            row |= {k: extra.get(k) for k in ("graph_breaks", "graphs", "optimizer", "error") if k in extra}
        if sec:
            row |= _ratios(sec, torch_t)
        rows.append(row)
        ratios = "  ".join(f"x{row.get('speedup_vs_' + lv.replace(' ', '_')) or float('nan'):7.2f}" for lv in L.LEVELS)
        print(f"{base['dataset']} B={base['B']:3d} {impl:22s} "
              + (f"{sec * 1e3:9.3f} ms/step  vs levels {ratios}" if sec else row.get("error", "")), flush=True)
    return rows


def train_step_rows(args, rates: dict) -> tuple[list[dict], dict | None]:
    """The train-step rows, and the end-to-end epoch (run right after the FUN batch-4 rows, with their steps)."""
    import numpy as np

    from benchmarks import _torch_levels as L
    from hmljax.data import load_dataset

    rows, e2e = [], None
    for name, hidden, B in (QUICK_CASES if args.quick else CASES):
        ds = load_dataset(name, data_dir=args.data_dir)
        X, Y = ds.split("train+valid")
        X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
        D, Cn = X.shape[1], ds.hierarchy.num_nodes
        problem = L.Problem(ds.hierarchy, D, hidden, lr=LR, weight_decay=WD)
        print(f"{name} B={B}", flush=True)
        checks, params0 = run_checks(problem, X, Y, B, args)
        hj = hmljax_timings(problem, X, Y, B, args)
        torch_t, steps = torch_timings(problem, params0, X[:B], Y[:B], checks, args)
        if (name, B) == ("cellcycle_FUN", 4):
            # Now, while the compiled step is dynamo's latest (the next case's build resets dynamo).
            e2e = end_to_end(args, checks, steps)
        n_params = D * hidden + hidden + hidden * hidden + hidden + hidden * Cn + Cn
        flops_analytic = 3 * 2 * B * (D * hidden + hidden * hidden + hidden * Cn)  # fwd + 2x for bwd
        adam_s = optimizer_update_seconds(hj["model"], hj["opt"], D, args.repeats)
        base = {"dataset": name, "H": hidden, "B": B} | floor_figures(n_params, hj["flops_xla"], flops_analytic,
                                                                       adam_s, rates, bytes_xla=hj["bytes_xla"])
        rows += case_rows(base, hj, torch_t, checks)
        C.write_rows("train", rows + [{"end_to_end": e2e, "machine_rates": rates}], args, partial=True)
    return rows, e2e


def end_to_end(args, checks: dict, steps: dict) -> dict:
    """One cellcycle_FUN epoch at the published settings: hmljax's scan epoch against each level's loop.

    The torch loops reuse the batch-4 steps that passed the equality check
    (their parameters have taken some steps: the speed does not depend on it).
    """
    import jax
    import numpy as np

    from benchmarks import _torch_levels as L
    from hmljax.constraints import constraint_graph
    from hmljax.data import EpochSampler, load_dataset
    from hmljax.models import ChmcnnMLP
    from hmljax.training import init_state, jit_train, make_optimizer, make_train_epoch, make_train_step

    ds = load_dataset("cellcycle_FUN", data_dir=args.data_dir)
    h = ds.hierarchy
    Xall, Yall = ds.split("train+valid")
    Xall, Yall = np.asarray(Xall, np.float32), np.asarray(Yall, np.uint8)
    D, B, n = Xall.shape[1], 4, Xall.shape[0]
    model = ChmcnnMLP(hidden=500, num_outputs=h.num_nodes, dropout=DROPOUT)
    opt = make_optimizer(lr=LR, weight_decay=WD, adam_kernel=getattr(args, "adam_kernel", "xla"))
    epoch = jit_train(make_train_epoch(make_train_step(model, opt, ancestry=constraint_graph(h),
                                                       evaluated=h.evaluated)), donate_argnums=(0,))
    sampler = EpochSampler(n, B, seed=0)
    st = [init_state(model, opt, D, key=jax.random.key(0))]
    Xd, Yd = jax.device_put(Xall), jax.device_put(Yall)
    ep_counter = [0]

    def one_epoch():
        eb = sampler.epoch(ep_counter[0])  # the sampler's shuffle is inside the timed region
        ep_counter[0] += 1
        st[0], losses = epoch(st[0], Xd, Yd, jax.device_put(eb.indices), jax.device_put(eb.where),
                              jax.random.key(0))
        return losses

    t0 = time.perf_counter()
    C.jax_sync(one_epoch())
    first = time.perf_counter() - t0
    t_j = C.timeit(one_epoch, repeats=max(5, args.repeats // 3), warmup=1, sync=C.jax_sync)
    reps, warm = (1, 0) if args.quick else (3, 1)
    e2e = {"dataset": "cellcycle_FUN", "B": B, "rows": n, "steps": sampler.steps_per_epoch,
           "hmljax_epoch_s": t_j["median_s"], "hmljax_first_epoch_s_incl_compile": first,
           "hmljax_samples_per_s": n / t_j["median_s"], "torch_epoch_s_by_level": {}, "ratio_by_level": {},
           "equality": {lv: {k: c.get(k) for k in ("passed", "loss_max_abs_diff", "param_max_abs_diff", "error")
                             if k in c} for lv, c in checks.items()}}
    for level in L.LEVELS:
        ts = steps.get(level)
        if ts is None:
            continue
        loop = _released_epoch(ts, Xall, Yall, B) if level == "as published" else _indexed_epoch(ts, Xall, Yall, B)
        t = C.timeit(loop, repeats=reps, warmup=warm, min_repeats=reps)
        e2e["torch_epoch_s_by_level"][level] = t["median_s"]
        e2e["ratio_by_level"][level] = t["median_s"] / t_j["median_s"]
        print(f"end to end cellcycle_FUN epoch: hmljax {n / t_j['median_s']:.0f} samples/s, torch {level} "
              f"{n / t['median_s']:.0f} samples/s: x{t['median_s'] / t_j['median_s']:.1f}", flush=True)
    return e2e


def _released_epoch(ts, X, Y, B: int):
    """The released loop: a DataLoader over a list of (x, y) float64 row pairs, shuffled; on a GPU the
    rows stay on the host and each batch is moved with ``.to(device)``, as the released code does."""
    import numpy as np
    import torch

    dev = torch.device(C.TORCH_DEVICE)
    with torch.device("cpu"):  # the loader's sampler draws its permutation with a host generator
        rows = list(zip(torch.tensor(X.astype(np.float64)), torch.tensor(Y.astype(np.float64)), strict=True))
        loader = torch.utils.data.DataLoader(dataset=rows, batch_size=B, shuffle=True)

    def run():
        batches = iter(loader)
        while True:
            with torch.device("cpu"):
                batch = next(batches, None)
            if batch is None:
                return
            x, labels = batch
            ts.step(x.to(dev), labels.to(dev))
    return run


def _indexed_epoch(ts, X, Y, B: int):
    """Whole-dataset float32 tensors, one ``randperm`` per epoch, batches by ``index_select`` (no DataLoader)."""
    import torch

    Xt, Yt = ts.prepare(X, Y)
    n = (len(Xt) // B) * B  # full batches only: the compiled step is specialised to B rows

    def run():
        perm = torch.randperm(len(Xt))
        for i in range(0, n, B):
            idx = perm[i:i + B]
            ts.step(Xt.index_select(0, idx), Yt.index_select(0, idx))
    return run


def main():
    args = C.parse_args(__doc__, _extra)
    load = args.load  # parse_args ran guard_load
    rates = C.machine_rates(args.repeats)
    print(f"machine: matmul {rates['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, "
          f"copy {rates['copy_bytes_per_s'] / 1e9:.1f} GB/s; load {load.get('load_1m')} on {load['cpus']} cores"
          + (" (BUSY: loaded-machine numbers)" if load.get("loaded") else ""), flush=True)
    rows, e2e = train_step_rows(args, rates)
    path = C.write_rows("train", rows + [{"end_to_end": e2e, "machine_rates": rates}], args)
    C.print_table(rows, ["dataset", "B", "impl", "step_ms", "speedup_vs_as_published", "speedup_vs_same_algorithm",
                         "speedup_vs_best_effort", "compile_s", "graph_breaks", "fraction_of_floor"])
    print("wrote", path)


if __name__ == "__main__":
    main()
