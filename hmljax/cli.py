"""The ``hmljax`` command line: ``data list``, ``data info``, ``train``, ``evaluate``."""

from __future__ import annotations

import argparse
import json
import sys

from hmljax.data import ArffError, DataError, list_datasets, load_dataset, resolve_data_dir
from hmljax.hierarchy import HierarchyError


def _name_list(names, limit: int = 10) -> str:
    """At most ``limit`` names, then "... and N more"."""
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _data_info(args) -> int:
    ds = load_dataset(args.name, data_dir=args.data_dir, preprocessing=args.preprocessing, drop_ids=args.drop_ids)
    info = ds.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    s = ds.spec
    print(f"dataset      {info['name']}  ({info['kind']}, preprocessing={args.preprocessing})")
    flat = s.hierarchy == "flat"
    if flat:
        src = (info.get("label_source") or "").removeprefix("mulan:")
        print(f"labels       {info['nodes']}  (flat; named by {src or 'the ARFF header'})")
    else:
        print(f"nodes        {info['nodes']}  ({info['evaluated']} evaluated, roots: {', '.join(info['roots'])})")
        print(f"edges        {info['edges']}  ({info['multi_parent_nodes']} nodes with several parents)")
        print(f"depth        {info['max_depth_min']} (shortest path), {info['max_depth_max']} (longest path)")
    print(f"features     {info['features']}")
    for split in ds.splits:
        card = info[f"{split}_label_cardinality"]
        line = f"{split:<12} {info[f'{split}_rows']:>6} rows, label cardinality {card:.3f}"
        if flat:
            line += f", {info[f'{split}_rows_without_labels']} without labels"
        print(line)
    if flat:
        im = info["imbalance"]
        print(f"all splits   {im['rows']:>6} rows: cardinality {im['label_cardinality']:.3f}, "
              f"density {im['label_density']:.4f}")
        n_absent = im["labels_without_positives"]
        absent = f"; {n_absent} labels without positives" if n_absent else ""
        print(f"imbalance    IRLbl {im['irlbl_min']:.2f} .. {im['irlbl_max']:.2f}, MeanIR {im['mean_ir']:.2f}{absent}")
        print(f"minority     {im['num_minority']} of {im['labels']} labels (IRLbl > MeanIR): "
              f"{_name_list(im['minority_labels'])}")
        if info.get("dropped_attributes"):
            print(f"dropped      {', '.join(info['dropped_attributes'])} (identifier attributes, --drop-ids)")
    print(f"published    hidden={s.hidden} epochs={s.epochs} lr={s.lr:g} batch={s.batch_size} "
          f"wd={s.weight_decay:g} dropout={s.dropout}" + (f"  AUPRC={s.published_auprc}" if s.published_auprc else ""))
    print(f"cache        {ds.cache_path}")
    return 0


def _data_list(args) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    print(f"{'dataset':<16} {'hierarchy':<9} {'H':>5} {'epochs':>6} {'lr':>6} {'AUPRC':>6}  files")
    for spec, files in list_datasets(data_dir):
        where = "embedded" if spec.family == "synthetic" else (",".join(sorted(files)) if files else "-")
        ap = f"{spec.published_auprc:.3f}" if spec.published_auprc else "-"
        print(f"{spec.name:<16} {spec.hierarchy:<9} {spec.hidden:>5} {spec.epochs:>6} {spec.lr:>6g} {ap:>6}  {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hmljax", description="Hierarchical multi-label learning in JAX.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command", required=True)
    info = data.add_parser("info", help="nodes, edges, depth, split sizes and label cardinality")
    info.add_argument("name")
    info.add_argument("--data-dir", default=None, help="data directory (default: $HMLJAX_DATA)")
    info.add_argument("--preprocessing", default="chmcnn", choices=["chmcnn", "leakfree"])
    info.add_argument("--json", action="store_true")
    info.add_argument("--drop-ids", action="store_true",
                      help="flat datasets: drop identifier attributes (e.g. genbase's protein id) instead of failing")
    info.set_defaults(func=_data_info)
    lst = data.add_parser("list", help="registered and discovered datasets")
    lst.add_argument("--data-dir", default=None)
    lst.set_defaults(func=_data_list)

    try:
        from hmljax.training import _cli as train_cli
    except ImportError:  # training not built yet
        train_cli = None
    if train_cli is not None:
        train_cli.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse gives a positional list one run of the command line: `train --epochs 2 method=hlstm --out r lr=0.1`
    # left lr=0.1 "unrecognized". Config keys may sit anywhere among the flags.
    keys = extra and getattr(args, "overrides", None) is not None and all("=" in e and e[0] != "-" for e in extra)
    if keys:
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except (DataError, ArffError, HierarchyError, ValueError) as err:
        print(f"hmljax: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only or unreadable folder: one line, not a traceback
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        what = err.strerror or str(err)
        print(f"hmljax: error: {what}{where} (errno {err.errno}); nothing was left half-written", file=sys.stderr)
        return 2
    except Exception as err:
        if not _out_of_memory(err):
            raise
        # XLA's allocation failure arrives as a long JaxRuntimeError traceback; the cause is almost always the batch
        # (method=dela's per-label activations are [batch, labels, 512]). Checkpoints are written atomically.
        line = next((ln.strip() for ln in str(err).splitlines() if "memory" in ln.lower()), str(err).splitlines()[0])
        print(f"hmljax: error: the device ran out of memory ({line.removeprefix('INTERNAL: ')[:200]}). Lower "
              "batch_size (or the model's sizes); the checkpoints already written are intact, and --resume "
              "continues from the last one.", file=sys.stderr)
        return 2


def _out_of_memory(err: BaseException) -> bool:
    """An XLA allocation failure (JaxRuntimeError / XlaRuntimeError), told by its message; jax is not imported."""
    text = str(err)
    return (type(err).__name__ in ("JaxRuntimeError", "XlaRuntimeError")
            and ("Out of memory" in text or "RESOURCE_EXHAUSTED" in text))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser"]
