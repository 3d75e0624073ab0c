"""``hmljax train``, ``hmljax evaluate``, ``hmljax predict`` and ``hmljax methods``."""

from __future__ import annotations

import json
import math
import os
import time


def _print_table(results: dict, rows: list | None = None) -> None:
    t = results["test"]
    pub, rerun = results.get("published_auprc"), results.get("rerun_auprc")
    refs = ([f"published C-HMCNN: {pub:.3f}"] if pub else []) + (
        [f"RARE's rerun of it: {rerun[0]:.3f} ± {rerun[1]:.3f}"] if rerun else [])
    rows = _suite_rows(t) if rows is None else rows
    print()
    print(f"{'metric':<28} {'value':>8}")
    print(f"{'-' * 28} {'-' * 8}")
    for i, (name, value) in enumerate(rows):
        extra = ("   " + "; ".join(refs)) if (i == 0 and refs and name.startswith("AUPRC")) else ""
        if value != value:  # NaN: a metric with nothing to average (a group mAP with no labels in its group)
            why = "   no labels in this group" if name.startswith("map_") else "   undefined on this split"
            print(f"{name:<28} {'n/a':>8}{why}")
            continue
        print(f"{name:<28} {value:>8.4f}{extra}")


def _hier_rows(t: dict) -> list:
    rows = [("AUPRC (micro)", t["auprc"])]
    rows += [(k, t[k]) for k in ("node_f1", "node_precision", "node_recall", "node_f1_with_positives", "micro_f1",
                                 "binary_ap") if k in t]
    rows += [(f"recall @ depth {d}", r) for d, r in sorted(t.get("recall_per_depth", {}).items(),
                                                            key=lambda kv: int(kv[0]))]
    return rows


def _wanted_config(args):
    """The config the command line asks for; with --resume, the saved one checked against every flag given."""
    from hmljax.training import TrainConfig, load_config

    flags = {k: v for k, v in (("dataset", args.dataset), ("seed", args.seed), ("epochs", args.epochs),
                               ("fold", args.fold)) if v is not None}
    if args.resume and os.path.exists(os.path.join(args.out, "config.json")):
        saved = load_config(args.out)
        cfg = saved.replace(data_dir=args.data_dir, **flags).override(args.overrides)
        if args.data_dir is None:
            cfg = cfg.replace(data_dir=None)
        return cfg
    if args.extend:
        raise ValueError("--extend trains a saved run further: it needs --resume and --out RUN_DIR")
    flags.setdefault("dataset", "synthetic")
    return TrainConfig(data_dir=args.data_dir, **flags).override(args.overrides)


# ``hmljax train``'s exit status when the run stopped at a checkpoint before its deadline: not finished, and
# not failed (a scheduler's requeue loop resumes on it).
EXIT_PAUSED = 3


def _train(args) -> int:
    from hmljax.training import TrainingPaused, train_and_evaluate

    cfg = _wanted_config(args)
    t0 = time.perf_counter()
    stop_by = None
    if args.stop_after is not None:
        if not (math.isfinite(args.stop_after) and args.stop_after > 0):
            raise ValueError(f"--stop-after {args.stop_after:g}: expected a positive number of seconds")
        stop_by = time.time() + args.stop_after
    try:
        out = train_and_evaluate(cfg, args.out, resume=args.resume, progress=not args.no_progress,
                                 extend=args.extend, stop_by=stop_by)
    except TrainingPaused as paused:
        print(f"paused at epoch {paused.epoch} of {paused.epochs}, {paused.why}, with a checkpoint in "
              f"{args.out}: `hmljax train --out {args.out} --resume` continues it")
        return EXIT_PAUSED
    _print_table(out["results"])
    print(f"\nrun directory: {args.out}  ({time.perf_counter() - t0:.1f} s)")
    return 0


def _suite_rows(metrics: dict) -> list:
    if "auprc" in metrics:
        return _hier_rows(metrics)
    return [(k, v) for k, v in metrics.items() if isinstance(v, float)]


def _strict(value):
    """NaN (a metric with nothing to average) and infinities as ``null``: Python's json writes ``NaN``, which
    jq and JavaScript's JSON.parse reject."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _evaluate(args) -> int:
    import sys
    import warnings

    from hmljax.training import evaluate_run

    with warnings.catch_warnings(record=True) as caught:  # one line each, not a warning's source listing
        warnings.simplefilter("always", UserWarning)
        metrics = evaluate_run(args.run_dir, split=args.split, data_dir=args.data_dir)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for w in caught:  # hmljax's own as notes; another package's as it would have shown them
        if os.path.abspath(w.filename).startswith(here):
            print(f"hmljax: note: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if args.json:
        print(json.dumps(_strict(metrics), indent=2, allow_nan=False))
    else:
        _print_table({"test": metrics})
    return 0


def _predict(args) -> int:
    import csv
    import io

    import numpy as np

    from hmljax.data import atomic_write_bytes, atomic_write_text
    from hmljax.training import predict_file

    # The output is checked before predicting: a long prediction must not end in "cannot write there".
    kind = os.path.splitext(args.out)[1].lower()
    if os.path.isdir(args.out):
        raise ValueError(f"--out {args.out}: is a folder; give a file name ending in .npy or .csv")
    if kind not in (".npy", ".csv"):
        raise ValueError(f"--out {args.out}: name the format by the suffix: .npy (float32 [rows, labels]) or "
                         ".csv (a header of the label names, then one row of probabilities per input row)")
    probs, names = predict_file(args.run_dir, args.input, data_dir=args.data_dir)
    probs = probs.astype(np.float32)
    if kind == ".npy":
        buf = io.BytesIO()
        np.save(buf, probs)
        atomic_write_bytes(args.out, buf.getvalue())
    else:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(names)
        np.savetxt(text, probs, delimiter=",", fmt="%.9g")  # 9 significant digits: every float32 exactly
        atomic_write_text(args.out, text.getvalue())
    order = f"label order: {names[0]}, {names[1] if len(names) > 1 else ''}..." + (
        "; a .csv --out writes every name as its header" if kind == ".npy" else " (the header)")
    print(f"wrote {args.out}: probabilities [{probs.shape[0]} rows, {probs.shape[1]} labels] ({order})")
    return 0


def _methods(args) -> int:
    import dataclasses

    from hmljax.engine import list_methods, list_samplers

    for kind, specs in (("method", list_methods()), ("sampler", list_samplers())):
        for name, spec in sorted(specs.items()):
            keys = ", ".join(f.name for f in dataclasses.fields(spec.config)) or "(no keys)"
            print(f"{kind}={name}: {spec.doc}\n    keys: {keys}")
    return 0


def add_commands(sub) -> None:
    t = sub.add_parser("train", help="train a method (default: C-HMCNN) and evaluate it on the test split")
    t.add_argument("--dataset", default=None, help="registered or discovered dataset (default: synthetic)")
    t.add_argument("--data-dir", default=None, help="data directory (default: $HMLJAX_DATA)")
    t.add_argument("--seed", type=int, default=None, help="default 0")
    t.add_argument("--epochs", type=int, default=None, help="default: the dataset's published value")
    t.add_argument("--fold", type=int, default=None, help="the held-out fold, with folds=k (same as fold=K)")
    t.add_argument("--out", default=None, help="run directory (default: runs/<dataset>-s<seed>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint; "
                   "flags and keys given must agree with the saved config")
    t.add_argument("--extend", action="store_true", help="with --resume and a larger --epochs: train a finished "
                   "run further")
    t.add_argument("--stop-after", type=float, default=None, metavar="SECONDS",
                   help="a deadline: stop at a checkpoint before one more epoch and checkpoint would end past it "
                   f"(exit status {EXIT_PAUSED}; --resume continues). Default: $HMLJAX_STOP_BY (Unix seconds)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("overrides", nargs="*", help="config keys key=value (method=NAME, hidden=, lr=, weights=code, "
                   "...; `hmljax methods` lists them)")
    t.set_defaults(func=_train_entry)
    e = sub.add_parser("evaluate", help="evaluate a run directory's latest checkpoint")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test")
    e.add_argument("--data-dir", default=None, help="where the dataset lives on this machine (default: $HMLJAX_DATA)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)
    p = sub.add_parser("predict", help="probabilities for the rows of an ARFF file, with a run's preprocessing")
    p.add_argument("run_dir")
    p.add_argument("--input", required=True,
                   help="ARFF file (.arff or .arff.gz) with the training features; labels optional")
    p.add_argument("--out", required=True,
                   help="where to write the probabilities [rows, labels]: .npy, or .csv with the label names as header")
    p.add_argument("--data-dir", default=None, help="where the training dataset lives (default: $HMLJAX_DATA)")
    p.set_defaults(func=_predict)
    m = sub.add_parser("methods", help="the registered methods and samplers, with their keys")
    m.set_defaults(func=_methods)


def _train_entry(args) -> int:
    if args.out is None:
        if args.resume:
            raise ValueError("--resume needs --out RUN_DIR (the run to continue)")
        # A fresh folder per run, so the same command can be run again without clobbering anything.
        # One folder name even for image datasets (``tfds:voc/2012`` has a colon and a slash).
        # Named from the config the command asks for: `dataset=spo_FUN seed=3` given as keys (not flags) named
        # the folder synthetic-s0 before.
        cfg = _wanted_config(args)
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in cfg.dataset)
        args.out = os.path.join("runs", f"{name}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    return _train(args)
