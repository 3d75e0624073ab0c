"""Vision Transformer encoders (torchvision layout) in Flax Linen, and ImageNet weights converted from torchvision.

The network mirrors ``torchvision.models.vit_{b_16,b_32,l_16,l_32,h_14}`` module for module, so a torchvision
``state_dict`` maps onto it name by name (:func:`vit_variables_from_torch`): a ``P x P`` stride-``P`` patch
convolution (``conv_proj``), a learnt class token put in front of the patch tokens, learnt position
embeddings, ``L`` pre-norm encoder blocks (LayerNorm eps 1e-6, multi-head self-attention with torch's packed
``in_proj``, an MLP ``D -> M -> D`` with exact GELU), a final LayerNorm, and the class token's output as the
embedding ``[B, D]`` (torchvision's ``heads``, the ImageNet classifier, is left to the method). Dropout is 0
in every torchvision ViT, so training and evaluation compute the same function and there is no state:
:func:`vit_encoder` has :class:`hmljax.models.ResNetEncoder`'s interface with an empty ``batch_stats``.

The position embeddings fix the image size (224 for the ImageNet weights): a ``state_dict`` for another size
is refused with both shapes, as torchvision's own model refuses other inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Real

from hmljax.models._resnet import IMAGENET_MEAN, IMAGENET_STD
from hmljax.models._weights import check_keys
from hmljax.models._weights import flat as _flat
from hmljax.models._weights import nest as _nest

__all__ = ["VIT_VARIANTS", "ViTConfig", "ViTEncoder", "VisionTransformer", "vit_config", "vit_encoder",
           "vit_variables_from_torch"]

PyTree = Any


class ViTConfig(NamedTuple):
    """A ViT's shape: patch size P, layers L, heads H, width D (= H x head size) and MLP width M."""

    patch: int
    layers: int
    heads: int
    hidden: int
    mlp: int


# torchvision's vit_b_16 ... vit_h_14.
VIT_VARIANTS = {"b_16": ViTConfig(16, 12, 12, 768, 3072), "b_32": ViTConfig(32, 12, 12, 768, 3072),
                "l_16": ViTConfig(16, 24, 16, 1024, 4096), "l_32": ViTConfig(32, 24, 16, 1024, 4096),
                "h_14": ViTConfig(14, 32, 16, 1280, 5120)}


def vit_config(variant: str, *, width: float = 1.0, layers: int | None = None) -> ViTConfig:
    """The shape of ``vit_<variant>``; ``width < 1`` keeps the head size and scales the head count (at least one
    head), and the MLP width with it; ``layers`` replaces the depth: test-sized networks of the same structure."""
    if variant not in VIT_VARIANTS:
        raise ValueError(f"ViT variant must be one of {sorted(VIT_VARIANTS)}, got {variant!r}")
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    c = VIT_VARIANTS[variant]
    if layers is not None:
        if not (isinstance(layers, int) and layers >= 1):
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        c = c._replace(layers=layers)
    if width == 1.0:
        return c
    heads = max(1, int(round(c.heads * width)))
    head_size = c.hidden // c.heads
    return ViTConfig(c.patch, c.layers, heads, heads * head_size, heads * head_size * (c.mlp // c.hidden))


# torchvision's initialisation, so a training factor below 1 mixes in the same random network torch would.
_xavier = nn.initializers.xavier_uniform()


def _torch_linear_kernel(key, shape, dtype=jnp.float32):
    """torch.nn.Linear's default weight init, kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _patch_kernel_init(key, shape, dtype=jnp.float32):
    """torchvision: ``trunc_normal_(std=sqrt(1 / fan_in))``, truncated at +-2 *absolute* (torch's default
    bounds), i.e. at ~55 standard deviations for ViT-B/16: in effect a plain normal, drawn as one."""
    kh, kw, cin, _ = shape
    return jax.random.normal(key, shape, dtype) * math.sqrt(1.0 / (kh * kw * cin))


class _SelfAttention(nn.Module):
    """torch.nn.MultiheadAttention(D, H, batch_first=True) on ``x`` as query, key and value (no mask)."""

    heads: int
    dtype: Any

    @nn.compact
    def __call__(self, x: Float[Array, "B S D"]) -> Float[Array, "B S D"]:
        b, s, d = x.shape
        w_in = self.param("in_proj_kernel", _xavier, (d, 3 * d))  # torch's in_proj_weight [3D, D], transposed
        b_in = self.param("in_proj_bias", nn.initializers.zeros, (3 * d,))
        qkv = x @ w_in.astype(self.dtype) + b_in.astype(self.dtype).reshape(1, 1, 3 * d)
        q, k, v = (t.reshape(b, s, self.heads, d // self.heads) for t in jnp.split(qkv, 3, axis=-1))
        logits = jnp.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(d // self.heads)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhc->bqhc", attn, v).reshape(b, s, d)
        return nn.Dense(d, kernel_init=_torch_linear_kernel, bias_init=nn.initializers.zeros, dtype=self.dtype,
                        name="out_proj")(out)


class _EncoderBlock(nn.Module):
    """torchvision's EncoderBlock: ``x + attn(ln_1(x))``, then ``+ mlp(ln_2(.))`` (pre-norm)."""

    heads: int
    mlp: int
    dtype: Any

    @nn.compact
    def __call__(self, x):
        ln = lambda name: nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, dtype=self.dtype, name=name)  # noqa: E731
        dense = lambda f, name: nn.Dense(f, kernel_init=_xavier, bias_init=nn.initializers.normal(1e-6),  # noqa: E731
                                         dtype=self.dtype, name=name)
        x = x + _SelfAttention(self.heads, self.dtype, name="self_attention")(ln("ln_1")(x))
        y = dense(self.mlp, "mlp_0")(ln("ln_2")(x))
        y = dense(x.shape[-1], "mlp_3")(nn.gelu(y, approximate=False))  # torch.nn.GELU(): the exact erf form
        return x + y


class _Encoder(nn.Module):
    seq_len: int
    config: ViTConfig
    dtype: Any

    @nn.compact
    def __call__(self, x):
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, self.seq_len, self.config.hidden))
        x = x + pos.astype(self.dtype)
        for i in range(self.config.layers):
            x = _EncoderBlock(self.config.heads, self.config.mlp, self.dtype, name=f"encoder_layer_{i}")(x)
        return nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, dtype=self.dtype, name="ln")(x)


class VisionTransformer(nn.Module):
    """A torchvision-layout ViT encoder: images ``[B, S, S, 3]`` -> the class token's embedding ``[B, D]``.

    Attributes:
        variant: ``b_16``, ``b_32``, ``l_16``, ``l_32`` or ``h_14`` (torchvision's ``vit_<variant>``).
        image_size: S, fixed by the position embeddings (224 for the ImageNet weights); a multiple of the patch.
        width: scales the head count (see :func:`vit_config`); 1.0 is torchvision's network.
        layers: the number of encoder blocks; None is the variant's (fewer: test-sized networks).
        mean, std: per-channel normalisation on the [0, 1] scale, applied inside (ImageNet's by default).
        dtype: computation dtype (e.g. ``jnp.bfloat16`` on a GPU); parameters, the softmax and the output
            stay float32.

    Inputs are uint8 in [0, 255] or floats on the [0, 1] scale, as :class:`hmljax.models.ResNet`'s.
    """

    variant: str = "b_16"
    image_size: int = 224
    width: float = 1.0
    layers: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Real[Array, "B S S 3"], *, train: bool = False) -> Float[Array, "B D"]:
        del train  # torchvision's ViTs have dropout 0: the same function in both modes
        c = vit_config(self.variant, width=self.width, layers=self.layers)
        if self.image_size % c.patch:
            raise ValueError(f"ViT-{self.variant}: image_size {self.image_size} is not a multiple of the patch "
                             f"size {c.patch}")
        if x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"ViT-{self.variant} built for {self.image_size}x{self.image_size} RGB images expects "
                             f"[B, {self.image_size}, {self.image_size}, 3], got shape {x.shape}")
        x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
        mean = jnp.asarray(self.mean, jnp.float32).reshape(1, 1, 1, 3)
        std = jnp.asarray(self.std, jnp.float32).reshape(1, 1, 1, 3)
        x = ((x - mean) / std).astype(self.dtype)
        x = nn.Conv(c.hidden, (c.patch, c.patch), strides=(c.patch, c.patch), padding="VALID",
                    kernel_init=_patch_kernel_init, dtype=self.dtype, name="conv_proj")(x)
        b, gh, gw, d = x.shape
        x = x.reshape(b, gh * gw, d)  # row-major over the patch grid, as torch's flatten(2).permute(0, 2, 1)
        cls = self.param("class_token", nn.initializers.zeros, (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (b, 1, d)), x], axis=1)
        x = _Encoder(gh * gw + 1, c, self.dtype, name="encoder")(x)
        return x[:, 0].astype(jnp.float32)


class ViTEncoder(NamedTuple):
    """A ViT as pure functions, with :class:`hmljax.models.ResNetEncoder`'s interface (``batch_stats`` is ``{}``)."""

    module: VisionTransformer
    init: Any
    apply: Any
    num_features: int


def vit_encoder(variant: str = "b_16", *, image_size: int = 224, width: float = 1.0, layers: int | None = None,
                mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
                dtype: Any = jnp.float32) -> ViTEncoder:
    """A :class:`VisionTransformer` as an ``init``/``apply`` pair, interchangeable with :func:`resnet_encoder`'s.

    ``init(key, sample_x) -> (params, {})`` draws torchvision's initialisation; ``apply(params, batch_stats, x,
    *, train) -> (features [B, D], batch_stats)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> enc = vit_encoder("b_16", image_size=32, width=0.1)
        >>> params, stats = enc.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))
        >>> enc.apply(params, stats, jnp.zeros((2, 32, 32, 3), jnp.uint8), train=False)[0].shape
        (2, 64)
    """
    module = VisionTransformer(variant=variant, image_size=image_size, width=width, layers=layers, mean=mean,
                               std=std, dtype=dtype)
    num_features = vit_config(variant, width=width, layers=layers).hidden

    def init(key: jax.Array, sample_x) -> tuple[PyTree, PyTree]:
        shapes = jax.eval_shape(lambda x: module.init({"params": jax.random.key(0)}, x)["params"], sample_x)
        return _torchvision_init(key, shapes), {}

    def apply(params, batch_stats, x, *, train: bool):
        return module.apply({"params": params}, x, train=train), batch_stats

    return ViTEncoder(module, init, apply, num_features)


def _init_rule(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, float]:
    """torchvision's initialisation of one leaf as (kind, scale): a normal's std, a uniform's bound, a constant."""
    leaf, parent = path[-1], path[-2] if len(path) > 1 else ""
    if leaf == "kernel" and parent == "conv_proj":
        return "normal", math.sqrt(1.0 / math.prod(shape[:3]))  # see _patch_kernel_init
    if leaf == "pos_embedding":
        return "normal", 0.02
    if leaf == "in_proj_kernel" or (leaf == "kernel" and parent in ("mlp_0", "mlp_3")):
        return "uniform", math.sqrt(6.0 / (shape[0] + shape[1]))  # xavier_uniform
    if leaf == "kernel" and parent == "out_proj":
        return "uniform", 1.0 / math.sqrt(shape[0])  # torch.nn.Linear's default
    if leaf == "bias" and parent in ("mlp_0", "mlp_3"):
        return "normal", 1e-6
    return "constant", 1.0 if leaf == "scale" else 0.0


@jax.jit
def _torchvision_init(key: jax.Array, param_shapes: PyTree) -> PyTree:
    """The module's initialisation (torchvision's), from one normal and one uniform draw for all leaves.

    Same distributions as the module's own initialisers, but two random calls instead of one per weight: on a
    CPU, XLA compiles each threefry call separately, so ``module.init`` of a 12-layer ViT takes ~20 s to compile.
    """
    flat_shapes = _flat(param_shapes)
    rules = {p: _init_rule(p, tuple(s.shape)) for p, s in flat_shapes.items()}
    sizes = {kind: sum(math.prod(flat_shapes[p].shape) for p, (k, _) in rules.items() if k == kind)
             for kind in ("normal", "uniform")}
    k_normal, k_uniform = jax.random.split(key)
    pools = {"normal": jax.random.normal(k_normal, (sizes["normal"],), jnp.float32),
             "uniform": jax.random.uniform(k_uniform, (sizes["uniform"],), jnp.float32, -1.0, 1.0)}
    offsets, out = {"normal": 0, "uniform": 0}, {}
    for p, (kind, scale) in rules.items():
        shape = tuple(flat_shapes[p].shape)
        if kind == "constant":
            out[p] = jnp.full(shape, scale, jnp.float32)
            continue
        n = math.prod(shape)
        out[p] = pools[kind][offsets[kind]:offsets[kind] + n].reshape(shape) * scale
        offsets[kind] += n
    return _nest(out)


# --- torchvision weights -------------------------------------------------------------------------------------


def _expected_params(variant: str, image_size: int, width: float) -> dict:
    module = VisionTransformer(variant=variant, image_size=image_size, width=width)
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    return jax.eval_shape(lambda a: module.init({"params": jax.random.key(0)}, a), x)["params"]


def _torch_name(path: tuple[str, ...]) -> str:
    """('encoder', 'encoder_layer_0', 'mlp_0', 'kernel') -> 'encoder.layers.encoder_layer_0.mlp.0.weight'."""
    *mods, leaf = path
    if leaf in ("class_token", "pos_embedding", "in_proj_bias"):
        torch_leaf = leaf
    elif leaf == "in_proj_kernel":
        torch_leaf = "in_proj_weight"
    else:
        torch_leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
    names = []
    for m in mods:
        if m.startswith("encoder_layer_"):
            names += ["layers", m]
        elif m in ("mlp_0", "mlp_3"):
            names += m.split("_")
        else:
            names.append(m)
    return ".".join([*names, torch_leaf])


def _from_torch(path: tuple[str, ...], a: np.ndarray) -> np.ndarray:
    """A torch tensor in this module's layout: conv OIHW -> HWIO, linear [out, in] -> [in, out]."""
    if path[-1] == "kernel" and path[-2] == "conv_proj":
        return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a
    if path[-1] in ("kernel", "in_proj_kernel"):
        return a.T if a.ndim == 2 else a
    return a


def vit_variables_from_torch(state_dict: Mapping[str, Any], *, variant: str, image_size: int = 224,
                             width: float = 1.0) -> dict:
    """Converts a torchvision ViT ``state_dict`` (numpy arrays) to this module's ``{"params": ...}``.

    ``heads.*`` (the ImageNet classifier) is ignored; anything else missing, extra or misshapen raises,
    naming the key (a position embedding for another image size included).

    Returns:
        ``{"params": ...}`` as float32 numpy arrays (no ``batch_stats``: a ViT has none).
    """
    expected = _flat(_expected_params(variant, image_size, width))
    by_torch = {_torch_name(p): p for p in expected}
    check_keys([k for k in state_dict if not k.startswith("heads.")], by_torch, what=f"a torchvision ViT-{variant}")
    out = {}
    for name, path in by_torch.items():
        a = _from_torch(path, np.asarray(state_dict[name], dtype=np.float32))
        want = tuple(expected[path].shape)
        if a.shape != want:
            hint = (f" (position embeddings for {image_size}x{image_size} images have "
                    f"{want[1]} tokens; pass the image size the weights were trained at)"
                    if path[-1] == "pos_embedding" else "")
            raise ValueError(f"{name}: shape {np.asarray(state_dict[name]).shape} does not fit ViT-{variant} "
                             f"(image size {image_size}, width {width}); in this layout {a.shape} against "
                             f"{want}{hint}")
        out[path] = np.ascontiguousarray(a)
    return {"params": _nest(out)}
