"""``hmljax train`` and ``hmljax evaluate``."""

from __future__ import annotations

import json
import os
import time


def _print_table(results: dict) -> None:
    t = results["test"]
    pub, rerun = results.get("published_auprc"), results.get("rerun_auprc")
    refs = ([f"published C-HMCNN: {pub:.3f}"] if pub else []) + (
        [f"RARE's rerun of it: {rerun[0]:.3f} ± {rerun[1]:.3f}"] if rerun else [])
    print()
    print(f"{'metric':<28} {'value':>8}")
    print(f"{'-' * 28} {'-' * 8}")
    print(f"{'AUPRC (micro)':<28} {t['auprc']:>8.4f}" + ("   " + "; ".join(refs) if refs else ""))
    for k in ("node_f1", "node_precision", "node_recall", "node_f1_with_positives", "micro_f1", "binary_ap"):
        print(f"{k:<28} {t[k]:>8.4f}")
    for d, r in sorted(t.get("recall_per_depth", {}).items(), key=lambda kv: int(kv[0])):
        print(f"{'recall @ depth ' + str(d):<28} {r:>8.4f}")


def _train(args) -> int:
    from hmljax.training._run import TrainConfig, load_config, train_and_evaluate

    if args.resume and os.path.exists(os.path.join(args.out, "config.json")):
        cfg = load_config(args.out)
    else:
        cfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, seed=args.seed, epochs=args.epochs)
    cfg = cfg.override(args.overrides)
    t0 = time.perf_counter()
    out = train_and_evaluate(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    _print_table(out["results"])
    print(f"\nrun directory: {args.out}  ({time.perf_counter() - t0:.1f} s)")
    return 0


def _evaluate(args) -> int:
    from hmljax.training._run import evaluate_run

    metrics = evaluate_run(args.run_dir, split=args.split)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_table({"test": metrics})
    return 0


def add_commands(sub) -> None:
    t = sub.add_parser("train", help="train C-HMCNN and evaluate it on the test split")
    t.add_argument("--dataset", default="synthetic", help="registered or discovered dataset (default: synthetic)")
    t.add_argument("--data-dir", default=None, help="data directory (default: $HMLJAX_DATA)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None, help="default: the dataset's published value")
    t.add_argument("--out", default=None, help="run directory (default: runs/<dataset>-s<seed>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("overrides", nargs="*", help="config overrides key=value (hidden=, lr=, constraint=dense, ...)")
    t.set_defaults(func=_train_entry)
    e = sub.add_parser("evaluate", help="evaluate a run directory's latest checkpoint")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)


def _train_entry(args) -> int:
    if args.out is None:
        if args.resume:
            raise ValueError("--resume needs --out RUN_DIR (the run to continue)")
        # A fresh folder per run, so the same command can be run again without clobbering anything.
        args.out = os.path.join("runs", f"{args.dataset}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    return _train(args)
