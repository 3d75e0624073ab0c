"""Memory traffic of hmljax's compiled train steps, counted by XLA: bytes per step and per parameter.

    python -m benchmarks.bench_traffic --data-dir ../shared/data

At batch 4 the GO step, the E = 10 ensemble and HLSTM are bound by memory traffic, not by their matmuls
(section 7's floor). This compiles hmljax's steps as the timing benchmarks do and reads XLA's
``bytes accessed`` (every top-level op's operands and outputs after fusion: the traffic the fusion plan
implies when nothing stays in cache). Divided by the parameter count it says how many bytes each
parameter costs per step, against what a single fused optimiser pass needs: reading the weights for the
forward and backward passes (8 B) and Adam's p, g, m, v read and p, m, v written (28 B): 36 B.
Nothing is timed, so the counts do not depend on the machine's load.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

ONE_PASS_BYTES_PER_PARAM = 8 + 28  # weights read forward and backward; Adam in one pass


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", nargs="*", default=["seq_GO:chmcnn", "seq_GO:chmc_lstm", "seq_GO:hlstm"],
                   metavar="DATASET:METHOD", help="also count the step a run of this method trains (its config's "
                   "defaults: batch 4 on the FUN/GO datasets), from shapes only: no state is allocated, so "
                   "seq_GO's 903M-parameter HLSTM step compiles in under a minute on a 2-core machine")


def _count(compiled, params) -> dict:
    import jax
    import numpy as np

    n = sum(int(np.size(p)) for p in jax.tree.leaves(params))
    b = C.xla_bytes(compiled)
    return {"params": n, "bytes_per_step_xla": b, "bytes_per_param_xla": b / n if b else None,
            "flops_per_step_xla": C.xla_flops(compiled)}


def chmcnn_case(name: str, hidden: int, B: int, members: int, data_dir) -> dict:
    """C-HMCNN's step (``members`` > 0: an E-member vmapped ensemble), built as the timing benchmarks build it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.bench_train import hmljax_step
    from hmljax.data import load_dataset
    from hmljax.training import jit_train

    ds = load_dataset(name, data_dir=data_dir)
    X, Y = (np.asarray(a, np.float32) for a in ds.split("train+valid"))
    _, _, step, state = hmljax_step(ds.hierarchy, X.shape[1], hidden, members)
    args = (state, jnp.asarray(X[:B]), jnp.asarray(Y[:B]), jnp.ones(B, bool), jax.random.key(2))
    compiled = jit_train(step, donate_argnums=(0,)).lower(*args).compile()
    return {"case": f"C-HMCNN E={members}" if members else "C-HMCNN", "dataset": name, "B": B,
            "hidden": hidden} | _count(compiled, state.params)


def hlstm_case(name: str, B: int, data_dir) -> dict:
    """HLSTM's engine step, as bench_hlstm builds it."""
    import jax

    from benchmarks import bench_hlstm as H
    from benchmarks._engine_levels import first_batch
    from hmljax.engine import init_train_state, jit_train, make_step

    problem, method, X, Y, _ = H.setup(name, B, data_dir)
    state = init_train_state(method, jax.random.key(0))
    compiled = jit_train(make_step(method), donate_argnums=(0,)).lower(state, first_batch(X, Y, B),
                                                                       jax.random.key(2)).compile()
    return {"case": "HLSTM", "dataset": name, "B": B, "hidden": problem.hidden} | _count(compiled, state.params)


def run_case(name: str, method_name: str, data_dir) -> dict:
    """The step a run of ``method_name`` on ``name`` trains (the engine's method, the config's defaults), its state
    given as shapes (``jax.eval_shape``): the count needs no memory for the parameters."""
    import jax
    import numpy as np

    from benchmarks._engine_levels import first_batch
    from hmljax.engine import init_train_state, jit_train, make_step
    from hmljax.training import TrainConfig, build_method

    cfg = TrainConfig(dataset=name, data_dir=data_dir, method=method_name).resolved()
    _, method, _ = build_method(cfg)
    state = jax.eval_shape(lambda k: init_train_state(method, k), jax.random.key(0))
    X, Y = np.asarray(method.train_x, np.float32), np.asarray(method.train_y, np.float32)
    compiled = jit_train(make_step(method), donate_argnums=(0,)).lower(
        state, first_batch(X, Y, cfg.batch_size), jax.random.key(2)).compile()
    return {"case": f"run: {method_name}", "dataset": name, "B": cfg.batch_size,
            "hidden": getattr(cfg.method_config, "hidden", None)} | _count(compiled, state.params)


def main():
    args = C.parse_args(__doc__, _extra, timed=False)
    from benchmarks import bench_train as T

    rows = [chmcnn_case(name, hidden, B, 0, args.data_dir) for name, hidden, B in T.CASES]
    rows += [chmcnn_case("cellcycle_FUN", 500, 4, E, args.data_dir) for E in (5, 10)]
    for name in ("cellcycle_FUN", "cellcycle_GO"):
        rows.append(hlstm_case(name, 4, args.data_dir))
    for spec in args.runs:
        name, _, method_name = spec.partition(":")
        if not method_name:
            raise SystemExit(f"--runs {spec!r}: expected DATASET:METHOD, e.g. seq_GO:hlstm")
        rows.append(run_case(name, method_name, args.data_dir))
    for r in rows:
        r["one_pass_bytes_per_param"] = ONE_PASS_BYTES_PER_PARAM
        print(f"{r['case']:<14} {r['dataset']:<14} B={r['B']:<3} params {r['params']:>11,}  "
              f"XLA bytes/step {r['bytes_per_step_xla'] or 0:>14,.0f}  per param {r['bytes_per_param_xla'] or 0:6.1f}",
              flush=True)
    print("wrote", C.write_rows("traffic", rows, args, measure_rates=False))  # nothing timed: no rates


if __name__ == "__main__":
    main()
