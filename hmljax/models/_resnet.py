"""ResNet encoders (torchvision layout) in Flax Linen, and ImageNet weights converted from torchvision.

The network mirrors ``torchvision.models.resnet{18,34,50,101,152}`` module for module, so a torchvision
``state_dict`` maps onto it name by name (:func:`resnet_variables_from_torch`): BasicBlock for depths 18
and 34, Bottleneck v1.5 (the stride on the 3x3 conv) for 50 and up; stem conv 7x7/2, max-pool 3x3/2 with
padding 1; BatchNorm with eps 1e-5 and torch momentum 0.1 (Flax momentum 0.9). It returns the globally
average-pooled features ``[B, F]`` (F = 512 for depths 18/34, 2048 for 50 and up, times ``width``); the
classifier (torchvision's ``fc``) is left to the method.

BatchNorm statistics live in the ``batch_stats`` collection, which is the engine's ``model_state``
(:class:`hmljax.engine.Model`): :func:`resnet_encoder` gives the pair of pure functions a method wraps.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Real

from hmljax.models._weights import check_keys, load_npz, save_npz
from hmljax.models._weights import flat as _flat
from hmljax.models._weights import nest as _nest

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNET_DEPTHS",
    "ResNet",
    "ResNetEncoder",
    "resnet_encoder",
    "resnet_frozen_mask",
    "resnet_variables_from_torch",
    "save_resnet_npz",
    "load_resnet_npz",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation, RGB, on the [0, 1] scale
IMAGENET_STD = (0.229, 0.224, 0.225)

# depth -> (bottleneck?, blocks per stage), as torchvision's resnet18 ... resnet152.
RESNET_DEPTHS = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3)),
                 101: (True, (3, 4, 23, 3)), 152: (True, (3, 8, 36, 3))}

# torchvision initialises convs with kaiming_normal_(mode="fan_out", nonlinearity="relu"): an untruncated normal.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

PyTree = Any


def _channels(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class _Block(nn.Module):
    """One residual block: BasicBlock (two 3x3) or Bottleneck v1.5 (1x1, 3x3 with the stride, 1x1 x4)."""

    planes: int
    stride: int
    bottleneck: bool
    downsample: bool
    frozen: bool  # BatchNorm in eval mode (the gradient is stopped by the caller)
    dtype: Any

    @nn.compact
    def __call__(self, x, *, use_running_average: bool):
        ura = use_running_average or self.frozen
        conv = lambda f, k, s, name: nn.Conv(f, (k, k), strides=(s, s), padding=[(k // 2, k // 2)] * 2,  # noqa: E731
                                             use_bias=False, kernel_init=_conv_init, dtype=self.dtype, name=name)
        bn = lambda name: nn.BatchNorm(use_running_average=ura, momentum=0.9, epsilon=1e-5,  # noqa: E731
                                       use_fast_variance=False, dtype=self.dtype, name=name)
        if self.bottleneck:
            out = nn.relu(bn("bn1")(conv(self.planes, 1, 1, "conv1")(x)))
            out = nn.relu(bn("bn2")(conv(self.planes, 3, self.stride, "conv2")(out)))
            out = bn("bn3")(conv(self.planes * 4, 1, 1, "conv3")(out))
        else:
            out = nn.relu(bn("bn1")(conv(self.planes, 3, self.stride, "conv1")(x)))
            out = bn("bn2")(conv(self.planes, 3, 1, "conv2")(out))
        if self.downsample:
            x = bn("downsample_1")(conv(out.shape[-1], 1, self.stride, "downsample_0")(x))
        return nn.relu(out + x)


class ResNet(nn.Module):
    """A torchvision-layout ResNet encoder: images ``[B, H, W, 3]`` -> pooled features ``[B, F]``.

    Attributes:
        depth: 18, 34, 50, 101 or 152.
        width: channel multiplier (1.0 is torchvision's; small values such as 0.125 make test-sized nets).
        frozen_stages: mmdet's convention: -1 freezes nothing, 0 the stem (conv1, bn1), k >= 1 the stem and
            stages 1..k. Frozen parts get no gradient (``stop_gradient`` on their output) and their BatchNorm
            runs in eval mode. DB (Distribution-Balanced loss) uses 1. Exclude frozen parameters from weight
            decay with :func:`resnet_frozen_mask`.
        norm_eval: every BatchNorm in eval mode even when ``train`` (mmdet's ``norm_eval``; its ResNet, and so
            DB's, defaults to True). The affine parameters still train.
        mean, std: per-channel normalisation on the [0, 1] scale, applied inside (ImageNet's by default).
        dtype: computation dtype (e.g. ``jnp.bfloat16`` on a GPU); parameters and the output stay float32.

    Inputs are uint8 in [0, 255] or floats on the [0, 1] scale (what :func:`hmljax.data.augment` returns).
    ``train=True`` normalises with batch statistics and updates the ``batch_stats`` collection (call
    ``apply`` with ``mutable=["batch_stats"]``). Unlike torch, Flax updates the running variance with the
    biased batch variance (a factor n/(n-1) apart; negligible at image batch sizes).
    """

    depth: int = 50
    width: float = 1.0
    frozen_stages: int = -1
    norm_eval: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Real[Array, "B H W 3"], *, train: bool) -> Float[Array, "B F"]:
        if self.depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {self.depth}")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"ResNet expects NHWC images [B, H, W, 3], got shape {x.shape}")
        if not -1 <= self.frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in -1..4, got {self.frozen_stages}")
        bottleneck, blocks = RESNET_DEPTHS[self.depth]
        x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
        mean = jnp.asarray(self.mean, jnp.float32).reshape(1, 1, 1, 3)
        std = jnp.asarray(self.std, jnp.float32).reshape(1, 1, 1, 3)
        x = ((x - mean) / std).astype(self.dtype)
        ura = not train or self.norm_eval

        stem = _channels(64, self.width)
        x = nn.Conv(stem, (7, 7), strides=(2, 2), padding=[(3, 3), (3, 3)], use_bias=False, kernel_init=_conv_init,
                    dtype=self.dtype, name="conv1")(x)
        x = nn.BatchNorm(use_running_average=ura or self.frozen_stages >= 0, momentum=0.9, epsilon=1e-5,
                         use_fast_variance=False, dtype=self.dtype, name="bn1")(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        if self.frozen_stages >= 0:
            x = jax.lax.stop_gradient(x)
        in_ch = stem
        for s, n in enumerate(blocks):
            planes = _channels(64 * 2**s, self.width)
            frozen = s + 1 <= self.frozen_stages
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                out_ch = planes * 4 if bottleneck else planes
                x = _Block(planes, stride, bottleneck, downsample=(stride != 1 or in_ch != out_ch), frozen=frozen,
                           dtype=self.dtype, name=f"layer{s + 1}_{b}")(x, use_running_average=ura)
                in_ch = out_ch
            if frozen:
                x = jax.lax.stop_gradient(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class ResNetEncoder(NamedTuple):
    """A ResNet as pure functions (built by :func:`resnet_encoder`).

    Attributes:
        module: the :class:`ResNet`.
        init: ``init(key, sample_x [B, H, W, 3]) -> (params, batch_stats)``.
        apply: ``apply(params, batch_stats, x, *, train) -> (features [B, F], new_batch_stats)``; with
            ``train=False`` (or ``norm_eval``) the statistics come back unchanged.
        num_features: F.
    """

    module: ResNet
    init: Any
    apply: Any
    num_features: int


def resnet_encoder(depth: int = 50, *, width: float = 1.0, frozen_stages: int = -1, norm_eval: bool = False,
                   mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                   dtype: Any = jnp.float32) -> ResNetEncoder:
    """A :class:`ResNet` as an ``init``/``apply`` pair whose BatchNorm statistics are explicit state.

    A method wraps it in the engine's :class:`hmljax.engine.Model`, with ``params`` trainable and
    ``batch_stats`` as ``model_state``.

    Args:
        depth, width, frozen_stages, norm_eval, mean, std, dtype: see :class:`ResNet`.

    Returns:
        A :class:`ResNetEncoder`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> enc = resnet_encoder(18, width=0.125)
        >>> params, stats = enc.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))
        >>> feats, stats = enc.apply(params, stats, jnp.zeros((2, 32, 32, 3), jnp.uint8), train=True)
        >>> feats.shape
        (2, 64)
    """
    module = ResNet(depth=depth, width=width, frozen_stages=frozen_stages, norm_eval=norm_eval, mean=mean, std=std,
                    dtype=dtype)
    bottleneck = RESNET_DEPTHS[depth][0] if depth in RESNET_DEPTHS else False
    num_features = _channels(512, width) * (4 if bottleneck else 1)

    def init(key: jax.Array, sample_x) -> tuple[PyTree, PyTree]:
        shapes = jax.eval_shape(lambda x: module.init({"params": jax.random.key(0)}, x, train=False), sample_x)
        return _torchvision_init(key, shapes["params"], shapes["batch_stats"])

    def apply(params, batch_stats, x, *, train: bool):
        variables = {"params": params, "batch_stats": batch_stats}
        if not train or norm_eval:
            return module.apply(variables, x, train=train), batch_stats
        feats, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
        return feats, updates["batch_stats"]

    return ResNetEncoder(module, init, apply, num_features)


@jax.jit
def _torchvision_init(key: jax.Array, param_shapes: PyTree, stat_shapes: PyTree) -> tuple[PyTree, PyTree]:
    """torchvision's initialisation (kaiming-normal fan-out convs, BatchNorm 1 and 0) from one normal draw.

    Same distribution as the module's own initialisers, but one random call instead of one per kernel: on a
    CPU, XLA compiles each threefry call for over a second, so ``ResNet.init`` takes half a minute to compile.
    """
    flat = _flat(param_shapes)
    kernels = [p for p in flat if p[-1] == "kernel"]
    sizes = [math.prod(flat[p].shape) for p in kernels]
    z = jax.random.normal(key, (sum(sizes),), jnp.float32)
    params, offset = {}, 0
    for p, n in zip(kernels, sizes, strict=True):
        kh, kw, _, out_ch = flat[p].shape
        params[p] = z[offset:offset + n].reshape(flat[p].shape) * math.sqrt(2.0 / (kh * kw * out_ch))
        offset += n
    for p, s in flat.items():
        if p[-1] != "kernel":
            params[p] = (jnp.ones if p[-1] == "scale" else jnp.zeros)(s.shape, jnp.float32)
    stats = {p: (jnp.ones if p[-1] == "var" else jnp.zeros)(s.shape, jnp.float32)
             for p, s in _flat(stat_shapes).items()}
    return _nest(params), _nest(stats)


def resnet_frozen_mask(params: PyTree, *, frozen_stages: int) -> PyTree:
    """True on the parameters that ``frozen_stages`` freezes (stem and stages 1..k), False elsewhere.

    Frozen parameters get a zero gradient, but coupled weight decay and momentum would still move them
    (torch skips parameters with ``requires_grad=False``). Train only the others, e.g.
    ``optax.masked(opt, jax.tree.map(lambda f: not f, mask))``.
    """
    frozen = {"conv1", "bn1"} if frozen_stages >= 0 else set()
    frozen_layers = {f"layer{s}" for s in range(1, frozen_stages + 1)}

    def is_frozen(path, _leaf):
        top = path[0].key
        return top in frozen or top.split("_")[0] in frozen_layers

    return jax.tree_util.tree_map_with_path(is_frozen, params)


# --- torchvision weights -------------------------------------------------------------------------------------


def _expected_variables(depth: int, width: float) -> dict:
    """The variables' shapes for this depth and width, without computing anything."""
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
    module = ResNet(depth=depth, width=width)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    shapes = jax.eval_shape(lambda a: module.init({"params": jax.random.key(0)}, a, train=False), x)
    return {"params": shapes["params"], "batch_stats": shapes["batch_stats"]}


_LEAF_TO_TORCH = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
                  ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def _torch_name(collection: str, path: tuple[str, ...]) -> str:
    """('params', ('layer1_0', 'downsample_0', 'kernel')) -> 'layer1.0.downsample.0.weight'."""
    mods = [re.sub(r"_(\d+)$", r".\1", m) for m in path[:-1]]
    return ".".join([*mods, _LEAF_TO_TORCH[collection, path[-1]]])


def resnet_variables_from_torch(state_dict: Mapping[str, Any], *, depth: int, width: float = 1.0) -> dict:
    """Converts a torchvision ResNet ``state_dict`` (numpy arrays) to this module's variables.

    Conv weights go from torch's OIHW to Flax's HWIO; BatchNorm ``weight``/``bias`` become ``scale``/``bias``
    and ``running_mean``/``running_var`` the ``batch_stats``. ``fc.*`` (the ImageNet classifier) and
    ``num_batches_tracked`` are ignored. Anything else missing, extra or misshapen raises.

    Args:
        state_dict: torchvision key -> array (e.g. ``{k: v.numpy() for k, v in model.state_dict().items()}``).
        depth: the ResNet depth the weights are for.
        width: the channel multiplier (1.0 for torchvision's networks).

    Returns:
        ``{"params": ..., "batch_stats": ...}`` as float32 numpy arrays.

    Raises:
        ValueError: on missing or unexpected keys, or a shape that does not fit ``depth``.
    """
    expected = _flat(_expected_variables(depth, width))
    by_torch = {_torch_name(p[0], p[1:]): p for p in expected}
    ignored = lambda k: k.startswith("fc.") or k.endswith("num_batches_tracked")  # noqa: E731
    check_keys([k for k in state_dict if not ignored(k)], by_torch, what=f"a torchvision ResNet-{depth}")
    out = {}
    for name, path in by_torch.items():
        a = np.asarray(state_dict[name], dtype=np.float32)
        if path[-1] == "kernel":
            if a.ndim != 4:
                raise ValueError(f"{name}: expected a 4-d conv weight (O, I, kh, kw), got shape {a.shape}")
            a = a.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        want = tuple(expected[path].shape)
        if a.shape != want:
            torch_shape = (want[3], want[2], want[0], want[1]) if path[-1] == "kernel" else want
            got = (a.shape[3], a.shape[2], a.shape[0], a.shape[1]) if path[-1] == "kernel" else a.shape
            raise ValueError(f"{name}: shape {tuple(got)} does not fit ResNet-{depth} (width {width}); "
                             f"expected {tuple(torch_shape)}")
        out[path] = np.ascontiguousarray(a)
    return _nest(out)


_FORMAT = "hmljax-resnet-v1"


def save_resnet_npz(path: str | os.PathLike, variables: Mapping) -> None:
    """Writes ``{"params", "batch_stats"}`` to ``path`` as an ``.npz``, atomically, with a SHA-256 of the arrays.

    Keys are the variables' paths joined with ``/`` (``params/layer1_0/conv1/kernel``).
    """
    save_npz(path, variables, fmt=_FORMAT)


def load_resnet_npz(path: str | os.PathLike, *, depth: int, width: float = 1.0) -> dict:
    """Reads :func:`save_resnet_npz`'s file, checking its checksum and every shape against ResNet-``depth``.

    Returns:
        ``{"params": ..., "batch_stats": ...}`` (float32 numpy arrays), ready for ``ResNet.apply`` or
        :func:`resnet_encoder`'s ``apply``.

    Raises:
        ValueError: naming the file, when it is unreadable, damaged, or for another depth or width.
    """
    return load_npz(path, fmt=_FORMAT, writer="hmljax.models.save_resnet_npz",
                    expected=_expected_variables(depth, width), what=f"ResNet-{depth} (width {width})")
