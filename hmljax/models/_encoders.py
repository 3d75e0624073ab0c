"""Frozen-or-trained image encoders by name: torchvision's ResNets and ViTs behind one interface.

``image_encoder("resnet50")`` and ``image_encoder("vit_b_16")`` both return an ``init``/``apply`` pair with
explicit state (a ResNet's BatchNorm statistics; ``{}`` for a ViT), so a method or script takes any backbone
by its torchvision name. Converted weights go through :func:`encoder_variables_from_torch`,
:func:`save_encoder_npz` and :func:`load_encoder_npz` (the file is checked against the backbone asked for).
A new backbone is a new module and one entry here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from hmljax.models._resnet import (
    _FORMAT as _RESNET_FORMAT,
)
from hmljax.models._resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNET_DEPTHS,
    _expected_variables,
    resnet_encoder,
    resnet_variables_from_torch,
)
from hmljax.models._vit import VIT_VARIANTS, _expected_params, vit_encoder, vit_variables_from_torch
from hmljax.models._weights import load_npz, save_npz

__all__ = ["BACKBONES", "image_encoder", "encoder_variables_from_torch", "save_encoder_npz", "load_encoder_npz",
           "count_params"]

BACKBONES = tuple([f"resnet{d}" for d in sorted(RESNET_DEPTHS)] + [f"vit_{v}" for v in VIT_VARIANTS])
_VIT_FORMAT = "hmljax-vit-v1"


def _parse(backbone: str) -> tuple[str, Any]:
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got {backbone!r}")
    if backbone.startswith("resnet"):
        return "resnet", int(backbone.removeprefix("resnet"))
    return "vit", backbone.removeprefix("vit_")


def image_encoder(backbone: str, *, image_size: int = 224, width: float = 1.0,
                  mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                  dtype: Any = jnp.float32):
    """The encoder ``backbone`` (``resnet18`` ... ``resnet152``, ``vit_b_16`` ... ``vit_h_14``) as pure functions.

    Args:
        backbone: torchvision's model name.
        image_size: the images' side; fixes a ViT's position embeddings (a ResNet takes any size).
        width: test-sized networks: a ResNet's channel multiplier, a ViT's head-count multiplier.
        mean, std, dtype: see :class:`hmljax.models.ResNet`.

    Returns:
        A :class:`hmljax.models.ResNetEncoder` or :class:`hmljax.models.ViTEncoder`: ``init(key, sample_x) ->
        (params, state)``, ``apply(params, state, x, *, train) -> (features [B, F], state)``, ``num_features``.
    """
    kind, spec = _parse(backbone)
    if kind == "resnet":
        return resnet_encoder(spec, width=width, mean=mean, std=std, dtype=dtype)
    return vit_encoder(spec, image_size=image_size, width=width, mean=mean, std=std, dtype=dtype)


def encoder_variables_from_torch(state_dict: Mapping[str, Any], *, backbone: str, image_size: int = 224,
                                 width: float = 1.0) -> dict:
    """A torchvision ``state_dict`` (numpy arrays) as ``{"params", "batch_stats"}`` for ``backbone``."""
    kind, spec = _parse(backbone)
    if kind == "resnet":
        return resnet_variables_from_torch(state_dict, depth=spec, width=width)
    return {**vit_variables_from_torch(state_dict, variant=spec, image_size=image_size, width=width),
            "batch_stats": {}}


def save_encoder_npz(path: str | os.PathLike, variables: Mapping, *, backbone: str) -> None:
    """Writes ``backbone``'s variables atomically with a SHA-256 (a ResNet's file is :func:`save_resnet_npz`'s)."""
    kind, _ = _parse(backbone)
    save_npz(path, variables, fmt=_RESNET_FORMAT if kind == "resnet" else _VIT_FORMAT)


def load_encoder_npz(path: str | os.PathLike, *, backbone: str, image_size: int = 224, width: float = 1.0) -> dict:
    """Reads :func:`save_encoder_npz`'s file for ``backbone``, checked against that network's every shape.

    Raises:
        ValueError: naming the file, when it is unreadable, damaged, or holds another network.
    """
    kind, spec = _parse(backbone)
    if kind == "resnet":
        return load_npz(path, fmt=_RESNET_FORMAT, writer="hmljax.models.save_encoder_npz",
                        expected=_expected_variables(spec, width), what=f"ResNet-{spec} (width {width})")
    expected = {"params": _expected_params(spec, image_size, width)}
    out = load_npz(path, fmt=_VIT_FORMAT, writer="hmljax.models.save_encoder_npz", expected=expected,
                   what=f"ViT-{spec} for {image_size}x{image_size} images (width {width})")
    return {**out, "batch_stats": {}}


def count_params(variables: Mapping) -> int:
    """The number of trainable parameters in ``variables["params"]``."""
    return sum(int(a.size) for a in jax.tree.leaves(variables["params"]))
