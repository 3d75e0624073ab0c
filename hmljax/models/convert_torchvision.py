"""Converts a torchvision ResNet or ViT checkpoint to hmljax's ``.npz`` (the only place torch is used).

Usage::

    python -m hmljax.models.convert_torchvision resnet50-11ad3fa6.pth resnet50.npz --arch resnet50
    python -m hmljax.models.convert_torchvision vit_b_16-c867db91.pth vit_b_16.npz --arch vit_b_16

``IN`` is a ``state_dict`` saved with ``torch.save`` (torchvision's downloaded ``.pth`` files are exactly
that), or a checkpoint dict holding one under ``state_dict`` or ``model``; a ``module.`` prefix (from
``DataParallel``) is stripped. ``--depth D`` is the older spelling of ``--arch resnetD``. Load the result with
:func:`hmljax.models.load_encoder_npz` (a ResNet's also with :func:`hmljax.models.load_resnet_npz`): no torch
and no download at run time.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hmljax.models._encoders import BACKBONES, count_params, encoder_variables_from_torch, save_encoder_npz
from hmljax.models._resnet import RESNET_DEPTHS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """The command line: ``IN.pth OUT.npz --arch NAME [--width W] [--image-size S]``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m hmljax.models.convert_torchvision", description=__doc__.split("\n")[0])
    ap.add_argument("src", metavar="IN.pth", help="a torchvision ResNet or ViT state_dict saved with torch.save")
    ap.add_argument("dst", metavar="OUT.npz", help="where to write the converted weights (atomically)")
    arch = ap.add_mutually_exclusive_group(required=True)
    arch.add_argument("--arch", choices=BACKBONES, help="torchvision's model name")
    arch.add_argument("--depth", type=int, choices=sorted(RESNET_DEPTHS), help="the same as --arch resnetDEPTH")
    ap.add_argument("--width", type=float, default=1.0, help="channel (ResNet) or head-count (ViT) multiplier; "
                    "1.0 for torchvision's nets")
    ap.add_argument("--image-size", type=int, default=224, help="ViT: the image side its position embeddings fit")
    args = ap.parse_args(argv)
    backbone = args.arch or f"resnet{args.depth}"
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
        variables = encoder_variables_from_torch(state, backbone=backbone, image_size=args.image_size,
                                                 width=args.width)
    except ValueError as err:
        print(f"{args.src}: {err}", file=sys.stderr)
        return 1
    save_encoder_npz(args.dst, variables, backbone=backbone)
    dropped = "fc" if backbone.startswith("resnet") else "heads"
    print(f"wrote {args.dst}: {backbone}, {count_params(variables):,} parameters ({dropped} ignored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
