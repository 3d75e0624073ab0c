"""Item 3: ensembles of E in {1, 5, 10} full C-HMCNN MLPs trained together (cellcycle_FUN sizes, batch 4).

    python -m benchmarks.bench_ensemble --data-dir ../shared/data [--threads 2]

hmljax: a vmapped parameter stack, one jit step (and the scan-fused epoch, per
step). PyTorch: a Python loop over E models with one Adam (as RARE's released
``MultiHeadedModel`` does), and ``torch.func.stack_module_state`` +
``torch.func.vmap(functional_call)`` with Adam on the stacked tensors. The loss
is the members' MCLoss summed (each member's gradient is its own). Before
timing, all three start from the same parameters with dropout off and must
agree on the loss and on the parameters after one step.
"""

from __future__ import annotations

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--sizes", type=int, nargs="*", default=[1, 5, 10])
    p.add_argument("--batch", type=int, default=4)


def main():
    args = C.parse_args(__doc__, _extra)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from torch.func import functional_call, stack_module_state

    from benchmarks import _torch_ref as T
    from benchmarks.bench_train import optimizer_update_seconds
    from hmljax.constraints import constraint_graph
    from hmljax.data import EpochSampler, load_dataset
    from hmljax.models import ChmcnnMLP, stacked_forward
    from hmljax.training import init_state, jit_train, make_optimizer, make_train_epoch, make_train_step

    ds = load_dataset("cellcycle_FUN", data_dir=args.data_dir)
    h = ds.hierarchy
    Xall, Yall = ds.split("train+valid")
    Xall, Yall = np.asarray(Xall, np.float32), np.asarray(Yall, np.float32)
    D, Cn, H, B = Xall.shape[1], h.num_nodes, 500, args.batch
    graph = constraint_graph(h)
    R_t = torch.from_numpy(np.asarray(h.ancestry, np.float32))
    to_eval = torch.from_numpy(np.asarray(h.evaluated))
    eval_idx = torch.nonzero(to_eval).squeeze(1)
    lr, wd = 1e-4, 1e-5
    opt = make_optimizer(lr=lr, weight_decay=wd)
    x_np, y_np = Xall[:B], Yall[:B]
    xt, yt = torch.from_numpy(x_np), torch.from_numpy(y_np)
    xj, yj, wj = jnp.asarray(x_np), jnp.asarray(y_np), jnp.ones(B, bool)
    rows = []
    for E in args.sizes:
        member = lambda p: T.mlp(D, H, Cn, p)  # noqa: E731

        def torch_models(p, params):
            ms = [member(p) for _ in range(E)]
            for e, m in enumerate(ms):
                T.load_flax_params(m, jax.tree.map(lambda a, e=e: a[e], params))
            return ms

        def loop_step_fn(models, topt):
            return T.loop_step(models, topt, xt, yt, R_t, to_eval)

        def vmap_step_fn(models):
            base = copy.deepcopy(models[0]).to("meta")
            params, buffers = stack_module_state(models)
            topt = torch.optim.Adam(list(params.values()), lr=lr, weight_decay=wd)

            def member_loss(p, b, x, y):
                return T.mc_loss(functional_call(base, (p, b), (x,)), y, R_t, eval_idx)

            # The whole member step (forward and loss) is vmapped over the stacked parameters.
            vloss = torch.func.vmap(member_loss, in_dims=(0, 0, None, None), randomness="different")

            def f():
                topt.zero_grad(set_to_none=True)
                loss = vloss(params, buffers, xt, yt).sum()
                loss.backward()
                topt.step()
                return loss
            return f, params

        # ---- equality, dropout off ----
        model0 = ChmcnnMLP(hidden=H, num_outputs=Cn, dropout=0.0)
        s0 = init_state(model0, opt, D, key=jax.random.key(0), members=E)
        step0 = jit_train(make_train_step(model0, opt, ancestry=graph, evaluated=h.evaluated,
                                        forward=stacked_forward(model0, E)))
        s1, loss_j = step0(s0, xj, yj, wj, jax.random.key(1))
        loss_j = float(loss_j) * E  # the step reports the per-member mean; torch sums the members
        ms = torch_models(0.0, s0.params)
        loss_loop = float(loop_step_fn(ms, torch.optim.Adam([p for m in ms for p in m.parameters()], lr=lr,
                                                            weight_decay=wd))())
        f_v, pv = vmap_step_fn(torch_models(0.0, s0.params))
        loss_v = float(f_v())
        C.assert_close(f"E={E} loop loss", loss_j, loss_loop, rtol=1e-4)
        C.assert_close(f"E={E} vmap loss", loss_j, loss_v, rtol=1e-4)
        last = np.asarray(s1.params["dense_2"]["kernel"]).transpose(0, 2, 1)
        C.assert_close(f"E={E} loop params", last, np.stack([m[6].weight.detach().numpy() for m in ms]),
                       rtol=1e-3, atol=1e-6)
        C.assert_close(f"E={E} vmap params", last, pv["6.weight"].detach().numpy(), rtol=1e-3, atol=1e-6)

        # ---- timing, dropout 0.7 ----
        model = ChmcnnMLP(hidden=H, num_outputs=Cn, dropout=0.7)
        fwd = stacked_forward(model, E)
        state = init_state(model, opt, D, key=jax.random.key(0), members=E)
        ms = torch_models(0.7, state.params)
        f_loop = loop_step_fn(ms, torch.optim.Adam([p for m in ms for p in m.parameters()], lr=lr, weight_decay=wd))
        f_vmap, _ = vmap_step_fn(torch_models(0.7, state.params))
        step = make_train_step(model, opt, ancestry=graph, evaluated=h.evaluated, forward=fwd)
        c_s, _ = C.compile_seconds(jit_train(step), state, xj, yj, wj, jax.random.key(2))
        jstep = jit_train(step, donate_argnums=(0,))
        holder = [state]

        def run_jit():
            holder[0], loss = jstep(holder[0], xj, yj, wj, jax.random.key(2))
            return loss

        t_jit = C.timeit(run_jit, repeats=args.repeats * 5, sync=C.jax_sync)
        sampler = EpochSampler(Xall.shape[0], B, seed=0)
        eb = sampler.epoch(0)
        Xd, Yd = jax.device_put(Xall), jax.device_put(Yall.astype(np.uint8))
        idx, wh = jax.device_put(eb.indices), jax.device_put(eb.where)
        epoch = jit_train(make_train_epoch(step), donate_argnums=(0,))

        def run_epoch():
            holder[0], losses = epoch(holder[0], Xd, Yd, idx, wh, jax.random.key(3))
            return losses

        t_ep = C.timeit(run_epoch, repeats=max(3, args.repeats // 10), warmup=1, sync=C.jax_sync)
        scan_step = t_ep["median_s"] / sampler.steps_per_epoch
        adam_s = optimizer_update_seconds(model, opt, D, args.repeats, members=E)
        t_loop = C.timeit(f_loop, repeats=args.repeats * 2)
        t_vmap = C.timeit(f_vmap, repeats=args.repeats * 2)
        for impl, sec, comp in (("hmljax vmapped jit step", t_jit["median_s"], c_s),
                                ("hmljax vmapped scan epoch", scan_step, None),
                                ("torch python loop", t_loop["median_s"], None),
                                ("torch.func vmap", t_vmap["median_s"], None)):
            row = {"E": E, "B": B, "impl": impl, "step_ms": sec * 1e3, "compile_s": comp,
                   "adam_update_ms": adam_s * 1e3,
                   "speedup_vs_torch_loop": t_loop["median_s"] / sec,
                   "speedup_vs_torch_func_vmap": t_vmap["median_s"] / sec}
            rows.append(row)
            print(f"E={E:2d} {impl:26s} {sec * 1e3:8.3f} ms/step  x{row['speedup_vs_torch_loop']:6.1f} vs loop  "
                  f"x{row['speedup_vs_torch_func_vmap']:6.1f} vs torch.func", flush=True)
    path = C.write_rows("ensemble", rows, args)
    C.print_table(rows, ["E", "B", "impl", "step_ms", "speedup_vs_torch_loop", "speedup_vs_torch_func_vmap",
                         "compile_s"])
    print("wrote", path)


if __name__ == "__main__":
    main()
