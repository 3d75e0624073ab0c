"""What the fused CPU Adam (``adam_kernel=fused``) buys a whole train step: each case's scan-fused epoch, with
optax's Adam compiled by XLA and with the fused kernel, side by side in one run.

    python -m benchmarks.bench_adam_kernel --data-dir ../shared/data [--threads 2] [--quick]

The cases are the optimiser-bound ones of sections 7, 11, 15 and 18: batch 4 on networks of 0.5M to 18.6M
parameters, where Adam's 48 bytes a parameter under XLA (28 fused) are a large share of the step. Each case
builds the run's method from its config (``TrainConfig(..., adam_kernel=K)``), compiles the epoch with
donated state (``jit_train(make_epoch(method), donate_argnums=(0,))``) and times a slice of ``steps``
batches; the two kernels alternate, ``--rounds`` times, and the median per step is reported. Each row also
has the loss of the slice's last step under both kernels (they differ in rounding only). The update alone,
against torch's fused Adam, is ``bench_adam_layouts`` (section 18).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

# (label, dataset, config keys, steps in the timed slice)
CASES = (
    ("C-HMCNN", "cellcycle_FUN", {}, 400),
    ("C-HMCNN", "cellcycle_GO", {}, 100),
    ("C-HMCNN E=10", "cellcycle_FUN", {"ensemble": 10}, 100),
    ("HLSTM", "cellcycle_FUN", {"method": "hlstm"}, 200),
    ("HLSTM", "cellcycle_GO", {"method": "hlstm"}, 40),
    ("HLSTM", "ImCLEF07A", {"method": "hlstm"}, 100),
)
QUICK_CASES = CASES[:1]


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--rounds", type=C.count, default=5, help="alternations of the two kernels per case")


def _epoch(dataset: str, keys: dict, kernel: str, data_dir, steps: int):
    """(run one slice -> losses, parameter count) for the case's method at batch 4 with ``kernel``."""
    import jax
    import numpy as np

    from hmljax.data import EpochSampler
    from hmljax.engine import init_train_state, jit_train, make_epoch
    from hmljax.training import TrainConfig, build_method, load_run_dataset

    cfg = TrainConfig(dataset=dataset, data_dir=data_dir, batch_size=4, adam_kernel=kernel, **keys).resolved()
    _, method, _ = build_method(cfg, load_run_dataset(cfg))
    X, Y = jax.device_put(np.asarray(method.train_x, np.float32)), jax.device_put(method.train_y)
    eb = EpochSampler(X.shape[0], 4, seed=0).epoch(0)
    idx, where = jax.device_put(eb.indices[:steps]), jax.device_put(eb.where[:steps])
    epoch = jit_train(make_epoch(method), donate_argnums=(0,))
    holder = [init_train_state(method, jax.random.key(0))]
    n_params = sum(int(np.size(p)) for p in jax.tree.leaves(holder[0].params))

    def run():
        holder[0], losses = epoch(holder[0], X, Y, idx, where, jax.random.key(3))
        return losses

    return run, n_params


def main() -> None:
    args = C.parse_args(__doc__, _extra)
    import numpy as np

    rows = []
    for label, dataset, keys, steps in QUICK_CASES if args.quick else CASES:
        runs = {k: _epoch(dataset, keys, k, args.data_dir, 20 if args.quick else steps) for k in ("xla", "fused")}
        n_params = runs["xla"][1]
        first = {k: np.asarray(C.jax_sync(r())) for k, (r, _) in runs.items()}  # compiles; the same first slice
        per_step = {"xla": [], "fused": []}
        for _ in range(2 if args.quick else args.rounds):
            for k, (run, _) in runs.items():
                t = C.timeit(run, repeats=1, warmup=0, sync=C.jax_sync)
                per_step[k].append(t["median_s"] / len(first[k]))
        ms = {k: float(np.median(v)) * 1e3 for k, v in per_step.items()}
        rows.append({"case": label, "dataset": dataset, "B": 4, "params": n_params, "steps": len(first["xla"]),
                     "xla_ms_per_step": ms["xla"], "fused_ms_per_step": ms["fused"],
                     "speedup": ms["xla"] / ms["fused"],
                     "adam_bytes_saved_per_step": 20 * n_params,  # 48 - 28 B a parameter
                     "first_slice_last_loss": {k: float(v[-1]) for k, v in first.items()}})
        print(f"{label:14s} {dataset:14s} {n_params / 1e6:6.2f}M  xla {ms['xla']:7.2f}  fused {ms['fused']:7.2f} "
              f"ms/step  x{rows[-1]['speedup']:.2f}", flush=True)
    print(C.print_table(rows, ["case", "dataset", "params", "xla_ms_per_step", "fused_ms_per_step", "speedup"]))
    print("wrote", C.write_rows("adam_kernel", rows, args))


if __name__ == "__main__":
    main()
