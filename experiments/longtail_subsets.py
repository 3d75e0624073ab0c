"""Builds a VOC-LT-like subset of VOC2012 trainval with hmljax's long-tail builder and sets it beside VOC-LT.

    python experiments/longtail_subsets.py --data-dir $HMLJAX_DATA [--seed 0] [--spread 10]

DB's construction (REFERENCE.md section 4.3): Pareto(6) profile, max 800, min 1, classes ordered by
the column sums of P(col | row), one greedy add/remove pass. Reads ``longtail/voc2012_trainval_labels.npz``
(the pool) and ``longtail/voc_lt_train_labels.npz`` (the published VOC-LT train set) from the data dir;
writes ``experiments/results/longtail_voc_check.{md,json}``: per class the target, the built count and
VOC-LT's count, the totals, and the head/middle/tail split (thresholds 100 / 20) of both. Numpy only;
runs in about a second.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

from hmljax.data import (
    atomic_write_text,
    class_groups,
    cooccurrence_order,
    group_summary,
    longtail_subset,
    pareto_profile,
)

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
MAX_COUNT, MIN_COUNT, ALPHA, HEAD, TAIL = 800, 1, 6.0, 100, 20
GROUP = ("head", "middle", "tail")


def summary(counts_C: np.ndarray, n_images: int) -> dict:
    groups_C = class_groups(counts_C, head=HEAD, tail=TAIL)
    return {
        "images": int(n_images),
        "max_count": int(counts_C.max()),
        "min_count": int(counts_C.min()),
        "split": np.bincount(groups_C, minlength=3).tolist(),
        "groups": group_summary(counts_C, groups_C),
        "counts": counts_C.astype(int).tolist(),
    }


def build(data_dir: str, seed: int, spread: int) -> dict:
    folder = os.path.join(data_dir, "longtail")
    pool_NxC = np.load(os.path.join(folder, "voc2012_trainval_labels.npz"))["labels"]
    published = np.load(os.path.join(folder, "voc_lt_train_labels.npz"))
    lt_NxC = published["labels"]
    order_C = cooccurrence_order(pool_NxC)
    target_C = pareto_profile(pool_NxC.shape[1], max_count=MAX_COUNT, min_count=MIN_COUNT, alpha=ALPHA)
    rows = longtail_subset(pool_NxC, max_count=MAX_COUNT, min_count=MIN_COUNT, alpha=ALPHA, seed=seed)
    target_by_class_C = np.empty_like(target_C)
    target_by_class_C[order_C] = target_C
    others = []
    for s in range(spread):
        r = longtail_subset(pool_NxC, max_count=MAX_COUNT, min_count=MIN_COUNT, alpha=ALPHA, seed=s)
        others.append(summary(pool_NxC[r].sum(0), len(r)))
    return {
        "pool": {"images": int(len(pool_NxC)), "counts": pool_NxC.sum(0).astype(int).tolist()},
        "order": order_C.tolist(),
        "target": target_by_class_C.tolist(),
        "built": summary(pool_NxC[rows].sum(0), len(rows)),
        "voc_lt": {**summary(lt_NxC.sum(0), len(lt_NxC)), "published_group": published["group"].tolist()},
        "seeds": [{k: o[k] for k in ("images", "max_count", "min_count", "split")} for o in others],
    }


def markdown(res: dict, command: str, seed: int) -> str:
    built, lt = res["built"], res["voc_lt"]
    g_built = class_groups(np.array(built["counts"]), head=HEAD, tail=TAIL)
    g_lt = class_groups(np.array(lt["counts"]), head=HEAD, tail=TAIL)
    lines = [
        "# Long-tail subset of VOC2012 trainval vs the published VOC-LT",
        "",
        f"Command: `{command}`  ",
        f"Written on {platform.platform()}, {os.cpu_count()} CPUs, {datetime.date.today().isoformat()}",
        "",
        f"`longtail_subset(voc2012_trainval, max_count={MAX_COUNT}, min_count={MIN_COUNT}, alpha={ALPHA}, "
        f"seed={seed})` over the {res['pool']['images']} VOC2012 trainval images (DB's procedure, REFERENCE.md 4.3); "
        "VOC-LT is DB's published train set (`voc_lt_train_labels.npz`). Groups by train count: head >= "
        f"{HEAD}, middle {TAIL}-{HEAD - 1}, tail < {TAIL}. The data README gives no class names, so classes are "
        "the label-matrix column indices. The builder draws with numpy's generator, DB drew with Python's "
        "`random`: the same procedure, not the same images.",
        "",
        "| | images | max count | min count | head / middle / tail | mean count head / middle / tail |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in (("built (hmljax)", built), ("VOC-LT (published)", lt)):
        means = " / ".join(
            f"{s['groups'][g]['mean_count']:.1f}" if s["groups"][g]["num_classes"] else "—" for g in GROUP
        )
        lines.append(
            f"| {name} | {s['images']} | {s['max_count']} | {s['min_count']} | "
            f"{' / '.join(map(str, s['split']))} | {means} |"
        )
    seeds = res["seeds"]
    if seeds:
        imgs = [s["images"] for s in seeds]
        mx = [s["max_count"] for s in seeds]
        mn = [s["min_count"] for s in seeds]
        splits = sorted({"/".join(map(str, s["split"])) for s in seeds})
        lines += [
            "",
            f"Seeds 0-{len(seeds) - 1}: images {min(imgs)}-{max(imgs)}, max count {min(mx)}-{max(mx)}, "
            f"min count {min(mn)}-{max(mn)}, splits seen: {', '.join(splits)}.",
        ]
    lines += [
        "",
        "Per class, in the builder's class order (descending column sums of P(col | row) on the pool); "
        "target: the Pareto profile's value for that rank.",
        "",
        "| rank | class | pool count | target | built | built group | VOC-LT | VOC-LT group |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rank, c in enumerate(res["order"]):
        lines.append(
            f"| {rank} | {c} | {res['pool']['counts'][c]} | {res['target'][c]} | {built['counts'][c]} | "
            f"{GROUP[g_built[c]]} | {lt['counts'][c]} | {GROUP[g_lt[c]]} |"
        )
    agree = bool((g_lt == np.array(lt["published_group"])).all())
    lines += [
        "",
        f"VOC-LT's shipped `group` array {'equals' if agree else 'differs from'} the thresholds' split of its counts.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("HMLJAX_DATA"), help="holds longtail/ (default $HMLJAX_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spread", type=int, default=10, help="also summarise seeds 0..spread-1")
    p.add_argument("--out", default=os.path.join(RESULTS, "longtail_voc_check"), help="output stem (.md, .json)")
    args = p.parse_args(argv)
    if not args.data_dir:
        p.error("no data dir: pass --data-dir or set HMLJAX_DATA")
    given = argv if argv is not None else sys.argv[1:]
    shown_dir = args.data_dir if any(a.startswith("--data-dir") for a in given) else "$HMLJAX_DATA"
    command = f"python experiments/longtail_subsets.py --data-dir {shown_dir} --seed {args.seed}"
    command += f" --spread {args.spread}" if args.spread != 10 else ""
    res = build(args.data_dir, args.seed, args.spread)
    atomic_write_text(args.out + ".md", markdown(res, command, args.seed))
    atomic_write_text(args.out + ".json", json.dumps({"command": command, "seed": args.seed, **res}, indent=2) + "\n")
    b, lt = res["built"], res["voc_lt"]
    print(
        f"built: {b['images']} images, counts {b['max_count']}..{b['min_count']}, split {b['split']}; "
        f"VOC-LT: {lt['images']} images, counts {lt['max_count']}..{lt['min_count']}, split {lt['split']}"
    )
    print(f"wrote {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
