"""Item 5: batches per second from the preprocessed memmaps, to show the sampler is never the bottleneck.

    python -m benchmarks.bench_sampler --data-dir ../shared/data

For each dataset: one epoch's shuffled ``[S, B]`` indices from :class:`EpochSampler`
plus, per batch, the gather of ``X[idx]`` and ``Y[idx]`` from the on-disk memmaps
(the host-side path a Python feeder would take; the scan-fused epoch gathers on
the device instead and needs only the index array).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402


def _extra(p):
    p.add_argument("--data-dir", default=None)


def main():
    args = C.parse_args(__doc__, _extra)
    import numpy as np

    from hmljax.data import EpochSampler, load_dataset

    rows = []
    for name in ("cellcycle_FUN", "cellcycle_GO", "seq_GO"):
        ds = load_dataset(name, data_dir=args.data_dir)
        X, Y = ds.X["train"], ds.Y["train"]  # numpy memmaps
        for B in (4, 64):
            sampler = EpochSampler(X.shape[0], B, seed=0)
            t0 = time.perf_counter()
            n_epochs = 3 if not args.quick else 1
            for e in range(n_epochs):
                eb = sampler.epoch(e)
            t_idx = (time.perf_counter() - t0) / n_epochs
            t0 = time.perf_counter()
            nb = 0
            for e in range(n_epochs):
                eb = sampler.epoch(e)
                for idx in eb.indices:
                    np.asarray(X[idx]), np.asarray(Y[idx])
                    nb += 1
            dt = time.perf_counter() - t0
            rows.append({"dataset": name, "B": B, "rows": X.shape[0], "features": X.shape[1], "nodes": Y.shape[1],
                         "index_epochs_per_s": 1 / t_idx, "index_batches_per_s": sampler.steps_per_epoch / t_idx,
                         "gather_batches_per_s": nb / dt, "gather_samples_per_s": nb * B / dt})
            print(f"{name} B={B}: indices {sampler.steps_per_epoch / t_idx:,.0f} batches/s; with memmap gather "
                  f"{nb / dt:,.0f} batches/s ({nb * B / dt:,.0f} samples/s)", flush=True)
    path = C.write_rows("sampler", rows, args)
    C.print_table(rows, ["dataset", "B", "rows", "index_batches_per_s", "gather_batches_per_s",
                         "gather_samples_per_s"])
    print("wrote", path)


if __name__ == "__main__":
    main()
