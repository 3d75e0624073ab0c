"""One timed training run of whichever hmljax is first on PYTHONPATH (see bench_engine.py); prints one JSON line.

Uses only what every version since the C-HMCNN trainer has: ``TrainConfig(...).override`` and
``train_and_evaluate``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    n = args.threads
    multi = "true" if n > 1 else "false"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen={multi}"
                               f" intra_op_parallelism_threads={n}").strip()
    import jax
    import numpy as np

    import hmljax
    from hmljax.training import TrainConfig, train_and_evaluate

    cfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs).override(
        ["checkpoint_every=100000", *args.overrides])
    with tempfile.TemporaryDirectory() as d:
        out = train_and_evaluate(cfg, d, progress=False)
        with open(os.path.join(d, "metrics.jsonl")) as fh:
            epoch_s = [json.loads(line)["epoch_s"] for line in fh if line.strip()]
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(out["params"]):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    print(json.dumps({"epoch_s": epoch_s, "params_sha256": h.hexdigest(), "hmljax_file": hmljax.__file__,
                      "auprc": out["results"]["test"]["auprc"]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
