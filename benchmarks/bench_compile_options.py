"""What hmljax's XLA options buy: the fused epoch under ``jax.jit`` against ``jit_train``, side by side.

    python -m benchmarks.bench_compile_options --data-dir ../shared/data [--threads 2]

``jit_train`` compiles with ``train_compiler_options()`` (on CPU, copy insertion
with region analysis, which drops the per-step copies of the weight matrices
that the backward pass reads before the in-place optimiser update). For each
case both versions start from the same state, train the same epochs on the
same batches, and must end with bitwise-equal parameters; their epochs are
timed alternately, so load changes hit both. Reported: median epoch seconds,
the speed-up, the copy instructions left in the compiled epoch, compile time.
"""

from __future__ import annotations

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

CASES = [
    ("cellcycle_FUN", "one network", []),
    ("cellcycle_FUN", "E=10 GMU ensemble", ["weights=code", "w0=0.25", "reduction=sum", "ensemble=10", "focal=gmu"]),
    ("cellcycle_FUN", "MC dropout, 10 passes", ["weights=code", "w0=0.25", "reduction=sum", "mc_passes=10",
                                               "focal=gmu"]),
    ("cellcycle_GO", "one network", []),
]


def _extra(p):
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=4, help="timed epochs per version and case")


def main():
    args = C.parse_args(__doc__, _extra)
    import jax
    import numpy as np

    from hmljax.engine import init_train_state, make_epoch
    from hmljax.training import TrainConfig, build_method, jit_train, train_compiler_options

    options = train_compiler_options()
    print("train_compiler_options():", options or "none on this backend/jaxlib", flush=True)
    epochs = 1 if args.quick else args.epochs
    rows = []
    for dataset, label, overrides in CASES[:2] if args.quick else CASES:
        cfg = TrainConfig(dataset=dataset, data_dir=args.data_dir).override(overrides).resolved()
        # The method `hmljax train` builds: train+valid rows, its loss, optimiser and (host) epoch sampler.
        ds, method, _ = build_method(cfg)
        sampler = method.sampler
        Xd, Yd = jax.device_put(method.train_x), jax.device_put(method.train_y)
        batches = [sampler.epoch(e) for e in range(epochs)]
        versions = {}
        for name, jitter in (("jax.jit", jax.jit), ("jit_train", jit_train)):
            state = init_train_state(method, jax.random.key(0))
            eb = batches[0]
            t0 = time.perf_counter()
            with jax.default_matmul_precision(cfg.matmul_precision):
                compiled = jitter(make_epoch(method), donate_argnums=(0,)).lower(
                    state, Xd, Yd, eb.indices, eb.where, jax.random.key(1)).compile()
            versions[name] = {"compiled": compiled, "state": state, "times": [],
                              "compile_s": time.perf_counter() - t0,
                              "copies": len(re.findall(r"\bcopy\(", compiled.as_text()))}
        for eb in batches:  # alternate the versions, so a change in load hits both
            idx, wh = jax.device_put(eb.indices), jax.device_put(eb.where)
            for v in versions.values():
                t0 = time.perf_counter()
                v["state"], losses = v["compiled"](v["state"], Xd, Yd, idx, wh, jax.random.key(1))
                jax.block_until_ready(losses)
                v["times"].append(time.perf_counter() - t0)
        a, b = versions["jax.jit"], versions["jit_train"]
        equal = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a["state"].params),
                                                          jax.tree.leaves(b["state"].params), strict=True))
        if not equal:
            raise SystemExit(f"{dataset} {label}: jit_train's parameters differ from jax.jit's")
        ta, tb = float(np.median(a["times"])), float(np.median(b["times"]))
        rows.append({"dataset": dataset, "case": label, "steps": sampler.steps_per_epoch, "epochs": epochs,
                     "jit_epoch_s": ta, "jit_train_epoch_s": tb, "speedup": ta / tb,
                     "copies_jit": a["copies"], "copies_jit_train": b["copies"],
                     "compile_s_jit": a["compile_s"], "compile_s_jit_train": b["compile_s"],
                     "params_bitwise_equal": equal, "options": options})
        print(f"{dataset} {label}: {ta:.3f} -> {tb:.3f} s/epoch ({ta / tb:.2f}x), copies {a['copies']} -> "
              f"{b['copies']}, parameters bitwise equal", flush=True)
    path = C.write_rows("compile_options", rows, args)
    C.print_table(rows, ["dataset", "case", "jit_epoch_s", "jit_train_epoch_s", "speedup", "copies_jit",
                         "copies_jit_train", "compile_s_jit", "compile_s_jit_train"])
    print("wrote", path)


if __name__ == "__main__":
    main()
