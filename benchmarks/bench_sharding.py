"""Item 6: training sharded over 1 to 8 devices: ensemble members, and data-parallel batches.

    python -m benchmarks.bench_sharding --data-dir ../shared/data [--devices 8]

On CPU the devices are simulated (``--xla_force_host_platform_device_count``),
so they share this machine's cores: the numbers show the layouts work and what
they cost here, not multi-GPU scaling. Run the same script on a multi-GPU host
(without the flag) for real scaling. Every sharded epoch is checked equal to
the one-device epoch before timing.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    n_dev = 8
    for i, a in enumerate(sys.argv):
        if a == "--devices":
            n_dev = int(sys.argv[i + 1])
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "") and \
            os.environ.get("JAX_PLATFORMS", "cpu") in ("", "cpu"):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={n_dev}").strip()
    from benchmarks import _common as C

    args = C.parse_args(__doc__, lambda p: (p.add_argument("--data-dir", default=None),
                                            p.add_argument("--devices", type=int, default=8)))
    import jax
    import numpy as np

    from hmljax.constraints import constraint_graph
    from hmljax.data import EpochSampler, load_dataset
    from hmljax.models import ChmcnnMLP, stacked_forward
    from hmljax.training import (
        init_state,
        jit_train,
        make_mesh,
        make_optimizer,
        make_train_epoch,
        make_train_step,
        replicate,
        shard_epoch_batches,
        shard_members,
    )

    ds = load_dataset("cellcycle_FUN", data_dir=args.data_dir)
    h = ds.hierarchy
    Xn, Yn = ds.split("train+valid")
    Xn, Yn = np.asarray(Xn, np.float32), np.asarray(Yn, np.uint8)
    graph = constraint_graph(h)
    opt = make_optimizer(lr=1e-4, weight_decay=1e-5)
    D, Cn = Xn.shape[1], h.num_nodes
    counts = [n for n in (1, 2, 4, 8) if n <= len(jax.devices())]
    rows = []
    for layout, E, B in (("members", 8, 4), ("data", 0, 64)):
        model = ChmcnnMLP(hidden=500, num_outputs=Cn, dropout=0.7)
        fwd = stacked_forward(model, E) if E else None
        epoch = jit_train(make_train_epoch(make_train_step(model, opt, ancestry=graph, evaluated=h.evaluated,
                                                         forward=fwd)))
        eb = EpochSampler(Xn.shape[0], B, seed=0).epoch(0)
        ref = None
        base = None
        for n in counts:
            mesh = make_mesh(n, axis=layout)
            state = init_state(model, opt, D, key=jax.random.key(0), members=E)
            state = shard_members(state, mesh, E) if layout == "members" else replicate(state, mesh)
            X, Y = replicate(Xn, mesh), replicate(Yn, mesh)
            idx, wh = (shard_epoch_batches(eb.indices, eb.where, mesh) if layout == "data"
                       else (replicate(eb.indices, mesh), replicate(eb.where, mesh)))
            # Equality on the epoch's first 20 steps (longer runs drift apart at float32 rounding level,
            # because the cross-device sums add in a different order).
            out, _ = epoch(state, X, Y, idx[:20], wh[:20], jax.random.key(1))
            leaves = [np.asarray(a) for a in jax.tree.leaves(out.params)]
            if ref is None:
                ref = leaves
            for a, b in zip(leaves, ref, strict=True):
                # atol: a tenth of one Adam step (lr 1e-4); Adam's m/sqrt(v) amplifies rounding-level
                # gradient differences on parameters whose gradient is near zero.
                C.assert_close(f"{layout} on {n} devices vs 1", a, b, rtol=1e-4, atol=1e-5)
            t = C.timeit(lambda: epoch(state, X, Y, idx, wh, jax.random.key(1)), repeats=max(3, args.repeats // 10),
                         warmup=1, sync=C.jax_sync)
            base = base or t["median_s"]
            rows.append({"layout": layout, "E": E or 1, "B": B, "devices": n, "epoch_s": t["median_s"],
                         "samples_per_s": Xn.shape[0] / t["median_s"], "speedup_vs_1_device": base / t["median_s"]})
            print(f"{layout:8s} E={E or 1} B={B} devices={n}: {t['median_s']:.3f} s/epoch", flush=True)
    path = C.write_rows("sharding", rows, args)
    C.print_table(rows, ["layout", "E", "B", "devices", "epoch_s", "samples_per_s", "speedup_vs_1_device"])
    print("wrote", path)


if __name__ == "__main__":
    main()
