"""Items 2, 4 and 7: the C-HMCNN train step, one end-to-end epoch, and the compute floor.

    python -m benchmarks.bench_train --data-dir ../shared/data [--threads 2]

Train step: MLP + max-constraint loss + Adam (torch-style weight decay) for
cellcycle_FUN (H = 500) and cellcycle_GO (H = 1000), batch 4 and 64: hmljax's
jit step and its scan-fused epoch (per step) against PyTorch eager (the
reference's loop) and ``torch.compile`` (compile time reported on its own).
Before timing, both sides start from the same parameters with dropout off and
must agree on the loss and on the parameters after one Adam step.

End to end: one epoch of cellcycle_FUN at the published settings (train+valid,
batch 4, shuffled, dropout 0.7), samples per second: the scan-fused epoch vs
the reference's DataLoader loop.

Compute floor: FLOPs per step (XLA's count and the analytic matmul count), the
machine's measured matmul rate and memory bandwidth, and the bytes Adam must
move per step; each step time is stated as a fraction of the larger floor.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")


def machine_rates(repeats: int) -> dict:
    """Measured float32 matmul FLOP/s (jax, 2048^3) and copy bandwidth (bytes/s, 256 MiB)."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    t = C.timeit(lambda: mm(a), repeats=max(5, repeats // 3), sync=C.jax_sync)["median_s"]
    big = jnp.ones((64 * 2**20,), jnp.float32)
    cp = jax.jit(lambda x: x * 1.0001)
    tb = C.timeit(lambda: cp(big), repeats=max(5, repeats // 3), sync=C.jax_sync)["median_s"]
    return {"matmul_flops_per_s": 2 * n**3 / t, "copy_bytes_per_s": 2 * big.nbytes / tb}


def optimizer_update_seconds(model, opt, num_features: int, repeats: int, members: int = 0) -> float:
    """Median time of the optimiser update alone (torch-style wd + Adam) on this model's (stacked) parameters."""
    import jax
    import optax

    from hmljax.training import init_state

    st = init_state(model, opt, num_features, key=jax.random.key(0), members=members)
    grads = jax.tree.map(lambda p: p * 1e-3, st.params)

    # Not donated: each call writes fresh parameter and moment buffers, so this is an upper bound
    # on what the update costs inside the (donating) train step.
    @jax.jit
    def upd(params, opt_state):
        u, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, u), opt_state

    holder = [(st.params, st.opt_state)]

    def run():
        holder[0] = upd(*holder[0])
        return holder[0]

    return C.timeit(run, repeats=repeats * 5, sync=C.jax_sync)["median_s"]


def main():
    args = C.parse_args(__doc__, _extra)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from benchmarks import _torch_ref as T
    from hmljax.constraints import constraint_graph
    from hmljax.data import EpochSampler, load_dataset
    from hmljax.models import ChmcnnMLP
    from hmljax.training import init_state, jit_train, make_optimizer, make_train_epoch, make_train_step

    rates = machine_rates(args.repeats)
    print(f"machine: matmul {rates['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, "
          f"copy {rates['copy_bytes_per_s'] / 1e9:.1f} GB/s", flush=True)
    rows = []
    lr, wd = 1e-4, 1e-5
    for name, hidden in (("cellcycle_FUN", 500), ("cellcycle_GO", 1000)):
        ds = load_dataset(name, data_dir=args.data_dir)
        h = ds.hierarchy
        Xall, Yall = ds.split("train+valid")
        Xall, Yall = np.asarray(Xall, np.float32), np.asarray(Yall, np.float32)
        D, Cn = Xall.shape[1], h.num_nodes
        graph = constraint_graph(h)
        R_t = torch.from_numpy(np.asarray(h.ancestry, np.float32))
        to_eval = torch.from_numpy(np.asarray(h.evaluated))
        opt = make_optimizer(lr=lr, weight_decay=wd)
        n_params = D * hidden + hidden + hidden * hidden + hidden + hidden * Cn + Cn
        for B in (4, 64):
            x_np, y_np = Xall[:B], Yall[:B]
            # ---- equality: same start, dropout off, one Adam step ----
            model0 = ChmcnnMLP(hidden=hidden, num_outputs=Cn, dropout=0.0)
            s0 = init_state(model0, opt, D, key=jax.random.key(0))
            step0 = jit_train(make_train_step(model0, opt, ancestry=graph, evaluated=h.evaluated))
            s1, loss_j = step0(s0, jnp.asarray(x_np), jnp.asarray(y_np), jnp.ones(B, bool), jax.random.key(1))
            tm0 = T.mlp(D, hidden, Cn, 0.0)
            T.load_flax_params(tm0, s0.params)
            topt0 = torch.optim.Adam(tm0.parameters(), lr=lr, weight_decay=wd)
            xt, yt = torch.from_numpy(x_np), torch.from_numpy(y_np)
            topt0.zero_grad()
            loss_t = T.mc_loss(tm0(xt), yt, R_t, to_eval)
            loss_t.backward()
            topt0.step()
            C.assert_close(f"{name} B={B} loss", float(loss_j), float(loss_t.detach()), rtol=1e-4)
            C.assert_close(f"{name} B={B} params after one step",
                           np.asarray(s1.params["dense_2"]["kernel"]).T, tm0[6].weight.detach().numpy(),
                           rtol=1e-3, atol=1e-6)
            # ---- timing, dropout 0.7 on both sides ----
            model = ChmcnnMLP(hidden=hidden, num_outputs=Cn, dropout=0.7)
            state = init_state(model, opt, D, key=jax.random.key(0))
            tm = T.mlp(D, hidden, Cn, 0.7)
            T.load_flax_params(tm, state.params)  # before the jax timing donates `state`
            step = make_train_step(model, opt, ancestry=graph, evaluated=h.evaluated)
            jstep = jit_train(step, donate_argnums=(0,))
            xj, yj, wj, key = jnp.asarray(x_np), jnp.asarray(y_np), jnp.ones(B, bool), jax.random.key(2)
            c_s, compiled = C.compile_seconds(jit_train(step), state, xj, yj, wj, key)
            flops_xla = C.xla_flops(compiled)
            holder = [state]

            def run_jit():
                holder[0], loss = jstep(holder[0], xj, yj, wj, key)
                return loss

            t_jit = C.timeit(run_jit, repeats=args.repeats * 10, sync=C.jax_sync)
            n = Xall.shape[0]
            sampler = EpochSampler(n, B, seed=0)
            eb = sampler.epoch(0)
            Xd, Yd = jax.device_put(Xall), jax.device_put(Yall.astype(np.uint8))
            idx, wh = jax.device_put(eb.indices), jax.device_put(eb.where)
            epoch = jit_train(make_train_epoch(step), donate_argnums=(0,))
            ec_s, _ = C.compile_seconds(jit_train(make_train_epoch(step)), holder[0], Xd, Yd, idx, wh, key)
            ep_holder = [init_state(model, opt, D, key=jax.random.key(0))]

            def run_epoch():
                ep_holder[0], losses = epoch(ep_holder[0], Xd, Yd, idx, wh, key)
                return losses

            reps_epoch = max(3, args.repeats // (10 if name.endswith("GO") else 3))
            t_ep = C.timeit(run_epoch, repeats=reps_epoch, warmup=1, sync=C.jax_sync)
            per_step_scan = t_ep["median_s"] / sampler.steps_per_epoch

            tm.train()
            topt = torch.optim.Adam(tm.parameters(), lr=lr, weight_decay=wd)

            def torch_step(fwd=lambda x, y: T.mc_loss(tm(x), y, R_t, to_eval)):
                topt.zero_grad(set_to_none=True)
                loss = fwd(xt, yt)
                loss.backward()
                topt.step()
                return loss

            torch_reps = args.repeats * (10 if name.endswith("FUN") else 1)
            t_torch = C.timeit(torch_step, repeats=torch_reps)
            compiled_row = None
            if not args.no_compile:
                try:
                    cfn = torch.compile(lambda x, y: T.mc_loss(tm(x), y, R_t, to_eval))
                    t0 = time.perf_counter()
                    torch_step(cfn)
                    tc_compile = time.perf_counter() - t0
                    t_tc = C.timeit(lambda: torch_step(cfn), repeats=torch_reps)
                    compiled_row = (tc_compile, t_tc)
                except Exception as e:  # noqa: BLE001 - reported, not fatal
                    print(f"torch.compile failed: {type(e).__name__}: {e}", flush=True)
            flops_analytic = 3 * 2 * B * (D * hidden + hidden * hidden + hidden * Cn)  # fwd + 2x for bwd
            adam_bytes = n_params * 4 * 7  # read p, g, m, v; write p, m, v
            adam_s = optimizer_update_seconds(model, opt, D, args.repeats)
            matmul_s = (flops_xla or flops_analytic) / rates["matmul_flops_per_s"]
            # The step cannot beat its matmuls at the machine's best matmul rate, nor Adam's
            # elementwise pass over every parameter (measured alone: it is memory-bound).
            floor_s = max(matmul_s, adam_s)
            base = {"dataset": name, "H": hidden, "B": B, "params": n_params,
                    "flops_per_step_xla": flops_xla, "flops_per_step_matmul": flops_analytic,
                    "adam_bytes_per_step": adam_bytes, "matmul_floor_s": matmul_s, "adam_update_s": adam_s,
                    "floor_step_s": floor_s}
            entries = [("hmljax jit step", t_jit["median_s"], c_s), ("hmljax scan epoch", per_step_scan, ec_s),
                       ("torch eager", t_torch["median_s"], None)]
            if compiled_row:
                entries.append(("torch.compile", compiled_row[1]["median_s"], compiled_row[0]))
            for impl, sec, comp in entries:
                rows.append(base | {"impl": impl, "step_ms": sec * 1e3, "steps_per_s": 1 / sec,
                                    "compile_s": comp, "speedup_vs_torch_eager": t_torch["median_s"] / sec,
                                    "fraction_of_floor": floor_s / sec})
                print(f"{name} B={B:3d} {impl:18s} {sec * 1e3:8.3f} ms/step  "
                      f"x{t_torch['median_s'] / sec:6.1f} vs eager  floor {floor_s / sec:6.1%}", flush=True)

    # ---- item 4: one end-to-end epoch of cellcycle_FUN at the published settings ----
    ds = load_dataset("cellcycle_FUN", data_dir=args.data_dir)
    h = ds.hierarchy
    Xall, Yall = ds.split("train+valid")
    Xall, Yall = np.asarray(Xall, np.float32), np.asarray(Yall, np.uint8)
    D, Cn, B = Xall.shape[1], h.num_nodes, 4
    model = ChmcnnMLP(hidden=500, num_outputs=Cn, dropout=0.7)
    opt = make_optimizer(lr=1e-4, weight_decay=1e-5)
    graph = constraint_graph(h)
    epoch = jit_train(make_train_epoch(make_train_step(model, opt, ancestry=graph, evaluated=h.evaluated)),
                    donate_argnums=(0,))
    sampler = EpochSampler(Xall.shape[0], B, seed=0)
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
    R_t = torch.from_numpy(np.asarray(h.ancestry, np.float32))
    to_eval = torch.from_numpy(np.asarray(h.evaluated))
    tm = T.mlp(D, 500, Cn, 0.7)
    T.load_flax_params(tm, init_state(model, opt, D, key=jax.random.key(0)).params)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-4, weight_decay=1e-5)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(Xall), torch.from_numpy(Yall.astype(np.float32))),
        batch_size=B, shuffle=True)

    def torch_epoch():
        tm.train()
        for x, y in loader:
            topt.zero_grad()
            loss = T.mc_loss(tm(x), y, R_t, to_eval)
            loss.backward()
            topt.step()

    t_t = C.timeit(torch_epoch, repeats=3 if not args.quick else 1, warmup=1 if not args.quick else 0)
    n = Xall.shape[0]
    e2e = {"dataset": "cellcycle_FUN", "B": B, "rows": n, "steps": sampler.steps_per_epoch,
           "hmljax_epoch_s": t_j["median_s"], "hmljax_first_epoch_s_incl_compile": first,
           "hmljax_samples_per_s": n / t_j["median_s"], "torch_epoch_s": t_t["median_s"],
           "torch_samples_per_s": n / t_t["median_s"], "ratio": t_t["median_s"] / t_j["median_s"]}
    print(f"end to end cellcycle_FUN epoch: hmljax {e2e['hmljax_samples_per_s']:.0f} samples/s, torch "
          f"{e2e['torch_samples_per_s']:.0f} samples/s: x{e2e['ratio']:.1f}", flush=True)
    path = C.write_rows("train", rows + [{"end_to_end": e2e, "machine_rates": rates}], args)
    C.print_table(rows, ["dataset", "B", "impl", "step_ms", "steps_per_s", "speedup_vs_torch_eager", "compile_s",
                         "fraction_of_floor"])
    print("wrote", path)


if __name__ == "__main__":
    main()
