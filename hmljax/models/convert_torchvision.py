"""Converts a torchvision ResNet checkpoint to hmljax's ``.npz`` (the only place torch is used).

Usage::

    python -m hmljax.models.convert_torchvision resnet50-0676ba61.pth resnet50.npz --depth 50

``IN`` is a ``state_dict`` saved with ``torch.save`` (torchvision's downloaded ``.pth`` files are exactly
that), or a checkpoint dict holding one under ``state_dict`` or ``model``; a ``module.`` prefix (from
``DataParallel``) is stripped. Load the result with :func:`hmljax.models.load_resnet_npz`: no torch and no
download at run time.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hmljax.models._resnet import RESNET_DEPTHS, resnet_variables_from_torch, save_resnet_npz

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """The command line: ``IN.pth OUT.npz --depth D [--width W]``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m hmljax.models.convert_torchvision", description=__doc__.split("\n")[0])
    ap.add_argument("src", metavar="IN.pth", help="a torchvision ResNet state_dict saved with torch.save")
    ap.add_argument("dst", metavar="OUT.npz", help="where to write the converted weights (atomically)")
    ap.add_argument("--depth", type=int, required=True, choices=sorted(RESNET_DEPTHS))
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 for torchvision's nets)")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("convert_torchvision needs PyTorch to read the .pth file (pip install torch; only this converter "
              "uses it)", file=sys.stderr)
        return 2
    obj = torch.load(args.src, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        print(f"{args.src}: expected a state_dict (a dict of tensors), got {type(obj).__name__}", file=sys.stderr)
        return 2
    state = {k.removeprefix("module."): np.asarray(v.detach().cpu().float().numpy()) for k, v in obj.items()
             if hasattr(v, "detach")}
    try:
        variables = resnet_variables_from_torch(state, depth=args.depth, width=args.width)
    except ValueError as err:
        print(f"{args.src}: {err}", file=sys.stderr)
        return 1
    save_resnet_npz(args.dst, variables)
    n = sum(a.size for a in _leaves(variables["params"]))
    print(f"wrote {args.dst}: ResNet-{args.depth}, {n:,} parameters (fc ignored)")
    return 0


def _leaves(tree):
    for v in tree.values():
        yield from (_leaves(v) if isinstance(v, dict) else [v])


if __name__ == "__main__":
    sys.exit(main())
