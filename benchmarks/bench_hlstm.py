"""HLSTM's train step: hmljax (jit step and scan-fused epoch) against a PyTorch twin.

    python -m benchmarks.bench_hlstm --data-dir ../shared/data [--threads 2] [--quick]

The twin is what a PyTorch user would write from the paper: ``nn.LSTM`` over x repeated L times
(L = the levels, 6 on both datasets), a ``nn.Linear`` transition + ReLU + local ``nn.Linear`` head per
level, a global ``nn.Linear``; LHLoss as BCE of the min over each node and its parents (a padded
parent table and ``torch.min``) of the local sigmoids; MCLoss as C-HMCNN's code writes it (the dense
``[B, C, C]`` masked max) and, since hmljax's constraint is sparse, also with a sparse max in torch
(bottom-up ``scatter_reduce(amax)`` by node height, the same algorithm as hmljax's); the hybrid
``0.5 LHLoss + 0.5 MCLoss``, per-element means; Adam with coupled weight decay (lr 1e-4, wd 1e-5).

Before timing, both sides start from the same parameters with dropout off and must agree on the loss
and on every parameter after one Adam step. Timing: the dataset's dropout on both sides, batch 4 and
64, on cellcycle_FUN and cellcycle_GO (the dense torch MCLoss only where its ``[B, C, C]`` tensors fit:
FUN, and GO at batch 4). The issue's target: the fused epoch at batch 4 at least 10x the twin's loop.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402


def _extra(p):
    p.add_argument("--data-dir", default=None)


def torch_twin(D, H, T, level_index, C_, dropout):
    import torch
    from torch import nn

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.L = len(level_index)
            self.lstm = nn.LSTM(D, H)
            self.trans = nn.ModuleList(nn.Linear(H, T) for _ in level_index)
            self.local = nn.ModuleList(nn.Linear(T, len(n)) for n in level_index)
            self.glob = nn.Linear(H, C_)
            self.drop = nn.Dropout(dropout)
            self.register_buffer("index", torch.tensor([j for n in level_index for j in n]))

        def forward(self, x):
            a, _ = self.lstm(x.unsqueeze(0).expand(self.L, -1, -1))  # [L, B, H]: A^1..A^L
            parts = [head(self.drop(torch.relu(tr(self.drop(a[h])))))
                     for h, (tr, head) in enumerate(zip(self.trans, self.local, strict=True))]
            local = x.new_zeros(x.shape[0], C_).index_copy(1, self.index, torch.cat(parts, 1))
            return self.glob(self.drop(a[-1])), local

    return Twin()


def load_params(twin, params):
    """hmljax's LevelLSTM parameters into the twin (torch's gate order i, f, g, o; ours f, i, ĉ, o)."""
    import numpy as np
    import torch

    def gates(k):  # [in, 4H] in (f, i, c, o) -> torch [4H, in] in (i, f, g, o)
        f, i, c, o = np.split(np.asarray(k), 4, axis=-1)
        return torch.from_numpy(np.concatenate([i, f, c, o], -1).T.copy())

    with torch.no_grad():
        twin.lstm.weight_ih_l0.copy_(gates(params["gates_x"]["kernel"]))
        twin.lstm.weight_hh_l0.copy_(gates(params["gates_a"]["kernel"]))
        twin.lstm.bias_ih_l0.copy_(gates(params["gates_x"]["bias"][None])[:, 0])
        twin.lstm.bias_hh_l0.zero_()  # ours has one bias; the twin's second is held at zero for the check
        for h in range(twin.L):
            for mod, name in ((twin.trans[h], f"transition_{h}"), (twin.local[h], f"local_{h}")):
                mod.weight.copy_(torch.from_numpy(np.asarray(params[name]["kernel"]).T.copy()))
                mod.bias.copy_(torch.from_numpy(np.asarray(params[name]["bias"]).copy()))
        twin.glob.weight.copy_(torch.from_numpy(np.asarray(params["global"]["kernel"]).T.copy()))
        twin.glob.bias.copy_(torch.from_numpy(np.asarray(params["global"]["bias"]).copy()))


def torch_losses(h):
    """LHLoss (padded parent table) and the two MCLoss variants (dense, sparse) for hierarchy ``h``."""
    import numpy as np
    import torch

    C_ = h.num_nodes
    ev = np.asarray(h.evaluated)
    # Parent table [C, P], padded with the node itself; unevaluated parents (roots) left out, as in hmljax.
    pars = [[j] + [int(p) for p in h.parents[j] if ev[p]] for j in range(C_)]
    width = max(map(len, pars))
    table = torch.tensor([p + [p[0]] * (width - len(p)) for p in pars])
    to_eval = torch.from_numpy(np.flatnonzero(ev))
    R = torch.from_numpy(np.asarray(h.ancestry, np.float32))
    height = np.asarray(h.height)
    edges = np.asarray(h.edges).reshape(-1, 2)  # (child, parent)
    by_height = [torch.from_numpy(edges[height[edges[:, 1]] == k].T.copy()) for k in range(1, height.max() + 1)]

    def mcm_dense(p):
        B = p.shape[0]
        return torch.max(R.unsqueeze(0).expand(B, C_, C_) * p.unsqueeze(1).expand(B, C_, C_), dim=2).values

    def mcm_sparse(p):
        out = p
        for e in by_height:  # parents of height k take the max of their children, which are final
            if e.shape[1]:
                child, parent = e
                out = out.scatter_reduce(1, parent.expand(p.shape[0], -1), out[:, child], "amax", include_self=True)
        return out

    def hybrid(glob, local, y, mcm):
        bce = torch.nn.functional.binary_cross_entropy
        pg = torch.sigmoid(glob)
        g = (1 - y) * mcm(pg) + y * mcm(y * pg)
        lmc = torch.sigmoid(local)[:, table].min(-1).values
        return (0.5 * bce(lmc[:, to_eval], y[:, to_eval]) + 0.5 * bce(g[:, to_eval], y[:, to_eval]))

    return hybrid, mcm_dense, mcm_sparse


def main():
    args = C.parse_args(__doc__, _extra)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from hmljax.data import EpochSampler
    from hmljax.engine import Batch, init_train_state, jit_train, make_epoch, make_step
    from hmljax.methods import level_index
    from hmljax.training import TrainConfig, build_method, load_run_dataset

    rows = []
    lr, wd = 1e-4, 1e-5
    for name in ("cellcycle_FUN", "cellcycle_GO"):
        for B in (4, 64):
            cfg0 = TrainConfig(dataset=name, data_dir=args.data_dir, method="hlstm", batch_size=B, lr=lr,
                               weight_decay=wd, dropout=0.0).resolved()
            ds = load_run_dataset(cfg0)
            h = ds.hierarchy
            _, method0, _ = build_method(cfg0, ds)
            X, Y = method0.train_x, method0.train_y.astype(np.float32)
            m = cfg0.method_config

            lv = level_index(h, max_levels=m.levels)
            hybrid, mcm_dense, mcm_sparse = torch_losses(h)
            x_np, y_np = X[:B], Y[:B]
            batch = Batch(jnp.asarray(x_np), jnp.asarray(y_np), jnp.ones(B, bool), jnp.arange(B), jnp.asarray(0))
            # ---- equality: same start, dropout off, one Adam step ----
            s0 = init_train_state(method0, jax.random.key(0))
            twin0 = torch_twin(X.shape[1], m.hidden, m.transition, lv, h.num_nodes, 0.0)
            load_params(twin0, s0.params)
            s1, out1 = jax.jit(make_step(method0))(s0, batch, jax.random.key(1))
            xt, yt = torch.from_numpy(x_np), torch.from_numpy(y_np)
            topt0 = torch.optim.Adam(twin0.parameters(), lr=lr, weight_decay=wd)
            loss_t = hybrid(*twin0(xt), yt, mcm_sparse)
            loss_t.backward()
            topt0.step()
            C.assert_close(f"{name} B={B} loss", float(out1.report), float(loss_t.detach()), rtol=1e-4)
            C.assert_close(f"{name} B={B} global W after one step", np.asarray(s1.params["global"]["kernel"]).T,
                           twin0.glob.weight.detach().numpy(), rtol=1e-3, atol=1e-6)
            C.assert_close(f"{name} B={B} local W after one step", np.asarray(s1.params["local_2"]["kernel"]).T,
                           twin0.local[2].weight.detach().numpy(), rtol=1e-3, atol=1e-6)
            # ---- timing with the dataset's dropout ----
            cfg = TrainConfig(dataset=name, data_dir=args.data_dir, method="hlstm", batch_size=B, lr=lr,
                              weight_decay=wd).resolved()
            _, method, _ = build_method(cfg, ds)
            dropout = cfg.method_config.dropout
            state = init_train_state(method, jax.random.key(0))
            twin = torch_twin(X.shape[1], m.hidden, m.transition, lv, h.num_nodes, dropout)
            load_params(twin, state.params)
            step = jit_train(make_step(method), donate_argnums=(0,))
            c_s, _ = C.compile_seconds(jit_train(make_step(method)), state, batch, jax.random.key(2))
            holder = [state]

            def run_step():
                holder[0], out = step(holder[0], batch, jax.random.key(2))
                return out.report

            reps = args.repeats * (3 if name.endswith("FUN") else 1)
            t_step = C.timeit(run_step, repeats=reps, sync=C.jax_sync)
            sampler = EpochSampler(X.shape[0], B, seed=0)
            eb = sampler.epoch(0)
            # A slice of the epoch (the same per-step cost): ~5-10 s of steps per timed call.
            S = min(sampler.steps_per_epoch, {(True, 4): 200, (True, 64): 40, (False, 4): 40, (False, 64): 10}[
                (name.endswith("FUN"), B)])
            idx, wh = jax.device_put(eb.indices[:S]), jax.device_put(eb.where[:S])
            Xd, Yd = jax.device_put(X), jax.device_put(method.train_y)
            epoch = jit_train(make_epoch(method), donate_argnums=(0,))
            ec_s, _ = C.compile_seconds(jit_train(make_epoch(method)), holder[0], Xd, Yd, idx, wh, jax.random.key(3))
            ep = [init_train_state(method, jax.random.key(0))]

            def run_epoch():
                ep[0], losses = epoch(ep[0], Xd, Yd, idx, wh, jax.random.key(3))
                return losses

            t_ep = C.timeit(run_epoch, repeats=max(3, args.repeats // 5), warmup=1, sync=C.jax_sync)
            C.jax_sync(ep[0].params)
            per_step_scan = t_ep["median_s"] / S
            twin.train()
            topt = torch.optim.Adam(twin.parameters(), lr=lr, weight_decay=wd)

            def torch_step(mcm):
                topt.zero_grad(set_to_none=True)
                loss = hybrid(*twin(xt), yt, mcm)
                loss.backward()
                topt.step()
                return loss

            # The floor: Adam's elementwise pass over every parameter (read p, g, m, v; write p, m, v) is
            # memory-bound and both sides must pay it every step; timed alone, outside the step.
            params = ep[0].params
            grads = jax.tree.map(lambda p: p * 1e-3, params)

            @jax.jit
            def adam_only(params, opt_state):
                import optax

                u, opt_state = method.optimizer.update(grads, opt_state, params)
                return optax.apply_updates(params, u), opt_state

            adam_holder = [(params, method.optimizer.init(params))]

            def run_adam():
                adam_holder[0] = adam_only(*adam_holder[0])
                return adam_holder[0]

            adam_s = C.timeit(run_adam, repeats=reps, sync=C.jax_sync)["median_s"]
            n_params = sum(int(np.size(p)) for p in jax.tree.leaves(params))
            entries = [("hmljax jit step", t_step["median_s"], c_s), ("hmljax scan epoch", per_step_scan, ec_s)]
            t_sparse = C.timeit(lambda: torch_step(mcm_sparse), repeats=reps)["median_s"]
            entries.append(("torch eager, sparse MCM", t_sparse, None))
            dense_fits = name.endswith("FUN") or B == 4
            t_dense = C.timeit(lambda: torch_step(mcm_dense), repeats=max(3, reps // 3))["median_s"] \
                if dense_fits else None
            if t_dense is not None:
                entries.append(("torch eager, dense MCM (C-HMCNN's code)", t_dense, None))
            for impl, sec, comp in entries:
                row = {"dataset": name, "B": B, "levels": len(lv), "H": m.hidden, "impl": impl, "step_ms": sec * 1e3,
                       "params": n_params, "adam_update_s": adam_s, "adam_fraction_of_step": adam_s / sec,
                       "compile_s": comp, "speedup_vs_torch_sparse": t_sparse / sec,
                       "speedup_vs_torch_dense": (t_dense / sec) if t_dense else None}
                rows.append(row)
                print(f"{name} B={B:3d} {impl:40s} {sec * 1e3:9.3f} ms/step  x{t_sparse / sec:6.1f} vs torch sparse"
                      f"  (Adam alone {adam_s * 1e3:.2f} ms)"
                      + (f"  x{t_dense / sec:6.1f} vs torch dense" if t_dense else ""), flush=True)
    print(C.write_rows("hlstm", rows, args))


if __name__ == "__main__":
    main()
