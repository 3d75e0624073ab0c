"""The Flax ViT encoder: torchvision's key names, layout and forward (a float64 numpy reference written from
torchvision's definition), full-size shapes, the checked weights file, and the errors on misfit weights."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hmljax.models import (
    VisionTransformer,
    count_params,
    encoder_variables_from_torch,
    image_encoder,
    load_encoder_npz,
    save_encoder_npz,
    vit_config,
    vit_encoder,
    vit_variables_from_torch,
)

# A test-sized vit_b_16: 12 layers, 2 heads of 64 (width 0.17 of 12 heads), MLP 512, 32x32 images (4 patches).
WIDTH, SIZE = 0.17, 32
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _torch_state_dict(rng, *, layers=12, d=128, mlp=512, patch=16, size=SIZE):
    """Random weights under torchvision's VisionTransformer key names and torch layouts (Linear [out, in],
    Conv2d OIHW), written out by hand from torchvision's module tree."""
    n = lambda *shape, s=0.05: rng.normal(0.0, s, shape).astype(np.float32)  # noqa: E731
    sd = {"class_token": n(1, 1, d, s=0.2), "conv_proj.weight": n(d, 3, patch, patch), "conv_proj.bias": n(d),
          "encoder.pos_embedding": n(1, (size // patch) ** 2 + 1, d, s=0.2),
          "encoder.ln.weight": 1 + n(d, s=0.1), "encoder.ln.bias": n(d, s=0.1),
          "heads.head.weight": n(1000, d), "heads.head.bias": n(1000)}  # the classifier, which is dropped
    for i in range(layers):
        p = f"encoder.layers.encoder_layer_{i}."
        sd |= {p + "ln_1.weight": 1 + n(d, s=0.1), p + "ln_1.bias": n(d, s=0.1),
               p + "self_attention.in_proj_weight": n(3 * d, d, s=0.1), p + "self_attention.in_proj_bias": n(3 * d),
               p + "self_attention.out_proj.weight": n(d, d, s=0.1), p + "self_attention.out_proj.bias": n(d),
               p + "ln_2.weight": 1 + n(d, s=0.1), p + "ln_2.bias": n(d, s=0.1),
               p + "mlp.0.weight": n(mlp, d), p + "mlp.0.bias": n(mlp), p + "mlp.3.weight": n(d, mlp),
               p + "mlp.3.bias": n(d)}
    return sd


def _reference_forward(sd, images_uint8, *, heads=2, patch=16):
    """torchvision's VisionTransformer.forward (heads removed) in float64 numpy, from its torch-layout weights."""
    w = {k: v.astype(np.float64) for k, v in sd.items()}
    x = (images_uint8.astype(np.float64) / 255.0 - MEAN) / STD  # [B, S, S, 3]
    b, s = x.shape[0], x.shape[1]
    g = s // patch
    # conv_proj (kernel = stride = patch) as a matmul over each patch's (C, kh, kw) values, row-major patches
    patches = x.reshape(b, g, patch, g, patch, 3).transpose(0, 1, 3, 5, 2, 4).reshape(b, g * g, 3 * patch * patch)
    tok = patches @ w["conv_proj.weight"].reshape(len(w["conv_proj.bias"]), -1).T + w["conv_proj.bias"]
    x = np.concatenate([np.broadcast_to(w["class_token"], (b, 1, tok.shape[-1])), tok], axis=1)
    x = x + w["encoder.pos_embedding"]

    def ln(v, name):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * w[name + ".weight"] + w[name + ".bias"]

    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))
    d = x.shape[-1]
    hd = d // heads
    for i in range(sum(k.endswith("ln_1.weight") for k in w)):
        p = f"encoder.layers.encoder_layer_{i}."
        h = ln(x, p + "ln_1")
        qkv = h @ w[p + "self_attention.in_proj_weight"].T + w[p + "self_attention.in_proj_bias"]
        q, k, v = (t.reshape(b, -1, heads, hd).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, axis=-1))
        logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        o = (attn @ v).transpose(0, 2, 1, 3).reshape(b, -1, d)
        x = x + o @ w[p + "self_attention.out_proj.weight"].T + w[p + "self_attention.out_proj.bias"]
        m = gelu(ln(x, p + "ln_2") @ w[p + "mlp.0.weight"].T + w[p + "mlp.0.bias"])
        x = x + m @ w[p + "mlp.3.weight"].T + w[p + "mlp.3.bias"]
    return ln(x, "encoder.ln")[:, 0]


def test_tiny_config_is_vit_b_16_with_fewer_heads():
    assert vit_config("b_16") == (16, 12, 12, 768, 3072)
    assert vit_config("b_16", width=WIDTH) == (16, 12, 2, 128, 512)
    assert vit_config("l_16", layers=2) == (16, 2, 16, 1024, 4096)
    with pytest.raises(ValueError, match="one of"):
        vit_config("b_8")
    with pytest.raises(ValueError, match="layers must be a positive integer"):
        vit_config("b_16", layers=0)


def test_full_size_parameter_counts_match_torchvision():
    """Traced only: torchvision's vit_b_16 has 86,567,656 parameters, of which its ImageNet head is 769,000."""
    for variant, total in (("b_16", 86_567_656), ("b_32", 88_224_232)):
        module = VisionTransformer(variant=variant)
        x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.uint8)
        shapes = jax.eval_shape(lambda a, m=module: m.init({"params": jax.random.key(0)}, a), x)
        assert sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)) == total - 769_000
        assert shapes["params"]["encoder"]["pos_embedding"].shape == (1, (224 // int(variant[2:])) ** 2 + 1, 768)


def test_matches_float64_reference_of_torchvisions_forward():
    rng = np.random.default_rng(0)
    sd = _torch_state_dict(rng)
    images = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    want = _reference_forward(sd, images)
    variables = vit_variables_from_torch(sd, variant="b_16", image_size=SIZE, width=WIDTH)
    enc = image_encoder("vit_b_16", image_size=SIZE, width=WIDTH)
    got, stats = jax.jit(lambda p, x: enc.apply(p, {}, x, train=False))(variables["params"], jnp.asarray(images))
    assert stats == {} and got.dtype == jnp.float32 and got.shape == (3, 128)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
    # floats on the [0, 1] scale are the same images
    got_f, _ = enc.apply(variables["params"], {}, jnp.asarray(images, jnp.float32) / 255.0, train=True)
    np.testing.assert_allclose(np.asarray(got_f), want, rtol=1e-4, atol=1e-4)


def test_jit_vmap_and_grad_through_the_encoder():
    # two blocks: the same code per block as twelve, at a sixth of the backward's compile time
    enc = vit_encoder("b_16", image_size=SIZE, width=WIDTH, layers=2)
    params, _ = enc.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3), jnp.uint8))
    x = jax.random.uniform(jax.random.key(1), (2, SIZE, SIZE, 3))
    f = lambda p, x: enc.apply(p, {}, x, train=True)[0]  # noqa: E731
    batched = jax.jit(f)(params, x)
    per_image = jax.jit(jax.vmap(lambda xi: f(params, xi[None])[0]))(x)  # images are independent of each other
    np.testing.assert_allclose(np.asarray(per_image), np.asarray(batched), rtol=1e-5, atol=1e-5)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(f(p, x) ** 2)))(params)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads["conv_proj"]["kernel"]).sum()) > 0 and float(jnp.abs(grads["class_token"]).sum()) > 0


def test_weights_file_round_trip_and_refusals(tmp_path):
    sd = _torch_state_dict(np.random.default_rng(1))
    variables = encoder_variables_from_torch(sd, backbone="vit_b_16", image_size=SIZE, width=WIDTH)
    assert variables["batch_stats"] == {} and count_params(variables) == sum(
        v.size for k, v in sd.items() if not k.startswith("heads."))
    path = tmp_path / "vit.npz"
    save_encoder_npz(path, variables, backbone="vit_b_16")
    back = load_encoder_npz(path, backbone="vit_b_16", image_size=SIZE, width=WIDTH)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"conv_proj/kernel has shape \(16, 16, 3, 128\), ViT-b_32"):  # another patch
        load_encoder_npz(path, backbone="vit_b_32", image_size=SIZE, width=WIDTH)
    with pytest.raises(ValueError, match=r"pos_embedding has shape .*for 64x64 images"):
        load_encoder_npz(path, backbone="vit_b_16", image_size=64, width=WIDTH)
    with pytest.raises(ValueError, match="no hmljax-resnet-v1 header"):  # a ViT file is not a ResNet's
        load_encoder_npz(path, backbone="resnet18", width=0.125)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="bad.npz"):
        load_encoder_npz(tmp_path / "bad.npz", backbone="vit_b_16", image_size=SIZE, width=WIDTH)


def test_conversion_errors_name_the_keys_and_the_image_size():
    sd = _torch_state_dict(np.random.default_rng(2))
    kw = dict(variant="b_16", image_size=SIZE, width=WIDTH)
    with pytest.raises(ValueError, match="missing keys: .*encoder_layer_3.mlp.0.weight"):
        vit_variables_from_torch({k: v for k, v in sd.items() if k != "encoder.layers.encoder_layer_3.mlp.0.weight"},
                                 **kw)
    with pytest.raises(ValueError, match="unexpected keys: .*encoder_layer_12"):
        vit_variables_from_torch({**sd, "encoder.layers.encoder_layer_12.ln_1.weight": np.ones(128)}, **kw)
    with pytest.raises(ValueError, match="position embeddings for 64x64 images have 17 tokens"):
        vit_variables_from_torch(sd, variant="b_16", image_size=64, width=WIDTH)
    with pytest.raises(ValueError, match="backbone must be one of"):
        image_encoder("vit_b_8")


def test_convert_torchvision_command_line(tmp_path):
    torch = pytest.importorskip("torch")
    from hmljax.models import convert_torchvision

    sd = _torch_state_dict(np.random.default_rng(3))
    pth, npz = tmp_path / "vit.pth", tmp_path / "vit.npz"
    torch.save({"model": {"module." + k: torch.from_numpy(v) for k, v in sd.items()}}, pth)
    argv = [str(pth), str(npz), "--arch", "vit_b_16", "--width", str(WIDTH), "--image-size", str(SIZE)]
    assert convert_torchvision.main(argv) == 0
    got = load_encoder_npz(npz, backbone="vit_b_16", image_size=SIZE, width=WIDTH)
    want = vit_variables_from_torch(sd, variant="b_16", image_size=SIZE, width=WIDTH)
    for a, b in zip(jax.tree.leaves(got["params"]), jax.tree.leaves(want["params"]), strict=True):
        np.testing.assert_array_equal(a, b)
    # weights for another image size: exit 1, and no file written
    other = tmp_path / "other.npz"
    assert convert_torchvision.main([str(pth), str(other), *argv[2:-1], "64"]) == 1
    assert not other.exists()
