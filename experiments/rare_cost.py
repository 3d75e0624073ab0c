"""Cost of RARE's focal weighting: per-epoch time and peak memory, ensembles of E = 1, 5, 10 vs MC dropout.

    python experiments/rare_cost.py --data-dir ../shared/data [--dataset cellcycle_FUN] [--epochs 3]

Each setting trains cellcycle_FUN at its published settings (train+valid,
batch 4, H = 500) with the released code's node weights (w0 = 0.25) and the GMU
focal term, exactly as ``hmljax train`` would: ensembles are vmapped stacks of
E networks; MC dropout is one network with E gradient-free stochastic passes for
U (``mc_loss=one``, Table 8's setting) or with the loss on every pass and U from those same
passes (``mc_loss=all``). Reported: compile time, median epoch time over ``--epochs`` epochs, XLA's
planned peak for one fused epoch (arguments + outputs + temporaries), and the
training state's size (parameters + Adam moments), which is what grows with E.
The process's peak resident set of whole runs, and F1, need full-length runs:
see ``experiments/rare.py table8``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dataset", default="cellcycle_FUN")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--passes", type=int, default=10, help="MC-dropout passes (paper: as many as ensemble members)")
    args = p.parse_args(argv)

    import jax
    import numpy as np

    from benchmarks._common import xla_memory_bytes
    from hmljax.data import atomic_write_text
    from hmljax.engine import init_train_state, make_epoch
    from hmljax.training import TrainConfig, build_method, jit_train

    settings = [(f"Ensemble E={e}", [f"ensemble={e}"]) for e in (1, 5, 10)]
    # mc_loss=one (Table 8's runs, the default): the loss from one dropout pass, U from the other, gradient-free
    # passes; mc_loss=all: the loss on every pass and U from those same passes (the summed multi-head loss's
    # analogue: every pass gets a gradient; at batch 4 Adam's pass over the parameters still dominates the step).
    settings.append((f"MC dropout ({args.passes} passes, mc_loss=one)", [f"mc_passes={args.passes}", "mc_loss=one"]))
    settings.append((f"MC dropout ({args.passes} passes, mc_loss=all)", [f"mc_passes={args.passes}", "mc_loss=all"]))
    rows = []
    for label, ov in settings:
        cfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir).override(
            ["weights=code", "w0=0.25", "focal=gmu", *ov]).resolved()
        # The method `hmljax train` builds: train+valid rows, RARE's loss, the optimiser and the epoch sampler.
        ds, method, _ = build_method(cfg)
        sampler = method.sampler
        state = init_train_state(method, jax.random.key(0))
        Xd, Yd = jax.device_put(method.train_x), jax.device_put(method.train_y)
        eb = sampler.epoch(0)
        idx, wh = jax.device_put(eb.indices), jax.device_put(eb.where)
        t0 = time.perf_counter()
        with jax.default_matmul_precision(cfg.matmul_precision):
            compiled = jit_train(make_epoch(method)).lower(state, Xd, Yd, idx, wh, jax.random.key(1)).compile()
        compile_s = time.perf_counter() - t0
        plan = xla_memory_bytes(compiled)
        times = []
        for e in range(args.epochs):
            eb = sampler.epoch(e)
            idx, wh = jax.device_put(eb.indices), jax.device_put(eb.where)
            t0 = time.perf_counter()
            state, losses = compiled(state, Xd, Yd, idx, wh, jax.random.key(1))
            jax.block_until_ready(losses)
            times.append(time.perf_counter() - t0)
        n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(state.params))
        state_bytes = sum(a.nbytes for a in jax.tree.leaves((state.params, state.opt_state)))
        row = {"setting": label, "params": n_params, "compile_s": compile_s, "epoch_s": float(np.median(times)),
               "xla_peak_MiB": plan / 2**20 if plan else None, "state_MiB": state_bytes / 2**20,
               "steps": sampler.steps_per_epoch}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next(r for r in rows if r["setting"] == "Ensemble E=10")
    lines = [f"# RARE cost: ensemble vs MC dropout on {args.dataset}", "",
             f"Command: `python experiments/rare_cost.py --data-dir ../shared/data --dataset {args.dataset} "
             f"--epochs {args.epochs}`  ",
             f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
             f"({jax.default_backend()}); date {datetime.date.today().isoformat()}", "",
             "| setting | parameters | compile s | epoch s | vs E=10 | XLA peak MiB | state MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['params']:,} | {r['compile_s']:.1f} | {r['epoch_s']:.3f} | "
                     f"{r['epoch_s'] / base['epoch_s']:.2f}x | {r['xla_peak_MiB']:.1f} | {r['state_MiB']:.1f} |")
    out = os.path.join(HERE, "results", "rare_cost" + ("" if args.dataset == "cellcycle_FUN" else f"_{args.dataset}"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    atomic_write_text(out + ".md", "\n".join(lines) + "\n")
    atomic_write_text(out + ".json", json.dumps(rows, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
