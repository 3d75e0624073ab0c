"""The Flax ResNet encoder: shapes, BatchNorm state, frozen stages, jit, and equality with torchvision's layout."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hmljax.models import (
    ResNet,
    load_resnet_npz,
    resnet_encoder,
    resnet_frozen_mask,
    resnet_variables_from_torch,
    save_resnet_npz,
)

TINY = 0.125  # 8 stem channels: test-sized, same structure


@pytest.fixture(scope="module")
def tiny18():
    """ResNet-18 at width 1/8 (8 stem channels: test-sized, same structure) and its jitted eval forward."""
    enc = resnet_encoder(18, width=TINY)
    params, stats = enc.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))
    return enc, params, stats, jax.jit(functools.partial(enc.apply, train=False))


def _images(seed, n=4, size=32):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_shapes_depth_18_and_eval_mode_keeps_statistics(tiny18):
    enc, params, stats, apply = tiny18
    feats, new_stats = apply(params, stats, _images(0))
    assert feats.shape == (4, enc.num_features) == (4, 64)
    assert feats.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(feats)))
    assert params["layer2_0"]["downsample_0"]["kernel"].shape == (1, 1, 8, 16)  # HWIO
    assert "downsample_0" not in params["layer1_0"]
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), stats, new_stats)))


@pytest.mark.parametrize("depth, features", [(18, 512), (50, 2048)])
def test_shapes_full_width(depth, features):
    """Full-width shapes, traced only: torchvision's feature sizes and parameter counts (fc excluded)."""
    module = ResNet(depth=depth)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda a: module.init({"params": jax.random.key(0)}, a, train=False), x)
    out = jax.eval_shape(lambda v, a: module.apply(v, a, train=False), variables, x)
    assert out.shape == (2, features)
    n = sum(np.prod(a.shape) for a in jax.tree.leaves(variables["params"]))
    assert n == {18: 11_176_512, 50: 23_508_032}[depth]
    if depth == 50:  # Bottleneck v1.5: the stride sits on the 3x3 conv, expansion 4
        assert variables["params"]["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)
        assert variables["params"]["layer2_0"]["conv3"]["kernel"].shape == (1, 1, 128, 512)


def test_uint8_and_unit_float_inputs_agree(tiny18):
    _, params, stats, apply = tiny18
    x = _images(3)
    a, _ = apply(params, stats, x)
    b, _ = apply(params, stats, x.astype(jnp.float32) / 255.0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_train_mode_updates_statistics_and_frozen_stages_get_no_gradient():
    """frozen_stages=1 (DB): stem and stage 1 get zero gradients and keep their BatchNorm statistics; the rest
    train and update theirs (torch momentum 0.1)."""
    enc = resnet_encoder(18, width=TINY, frozen_stages=1)
    params, stats = enc.init(jax.random.key(2), jnp.zeros((1, 32, 32, 3), jnp.uint8))
    x = _images(4)

    @jax.jit
    def loss_and_grad(params, stats):
        def loss(p):
            feats, new_stats = enc.apply(p, stats, x, train=True)
            return jnp.sum(feats**2), new_stats

        return jax.grad(loss, has_aux=True)(params)

    grads, new_stats = loss_and_grad(params, stats)
    mask = resnet_frozen_mask(params, frozen_stages=1)
    frozen_names = {k for k in params if k in ("conv1", "bn1") or k.startswith("layer1_")}
    assert frozen_names == {k for k in params if all(jax.tree.leaves(mask[k]))}
    assert not any(jax.tree.leaves(mask["layer2_0"]))
    for name in params:
        g = jax.tree.leaves(grads[name])
        old, new = jax.tree.leaves(stats.get(name, {})), jax.tree.leaves(new_stats.get(name, {}))
        same = [bool(jnp.array_equal(a, b)) for a, b in zip(old, new, strict=True)]
        if name in frozen_names:
            assert all(bool(jnp.all(a == 0)) for a in g), name
            assert all(same), name
        else:
            assert any(bool(jnp.any(a != 0)) for a in g), name
            assert not any(same), name


def test_norm_eval_trains_with_running_statistics(tiny18):
    """norm_eval (mmdet's default, so DB's): train mode computes exactly what eval mode does (traced only)."""
    enc, params, stats, _ = tiny18
    enc_ne = resnet_encoder(18, width=TINY, norm_eval=True)
    x = _images(5)
    train_ne = jax.make_jaxpr(functools.partial(enc_ne.apply, train=True))(params, stats, x)
    plain_eval = jax.make_jaxpr(functools.partial(enc.apply, train=False))(params, stats, x)
    assert str(train_ne) == str(plain_eval)


def test_npz_round_trip_and_damage(tiny18, tmp_path):
    _, params, stats, _ = tiny18
    path = tmp_path / "w.npz"
    save_resnet_npz(path, {"params": params, "batch_stats": stats})
    back = load_resnet_npz(path, depth=18, width=TINY)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back["params"]), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="ResNet-50"):
        load_resnet_npz(path, depth=50, width=TINY)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="bad.npz"):
        load_resnet_npz(tmp_path / "bad.npz", depth=18, width=TINY)


def test_conversion_errors_name_the_keys():
    good = {"conv1.weight": np.zeros((8, 3, 7, 7), np.float32)}
    with pytest.raises(ValueError, match="missing keys: .*bn1"):
        resnet_variables_from_torch(good, depth=18, width=TINY)
    with pytest.raises(ValueError, match="unexpected keys: .*layer5"):
        resnet_variables_from_torch({**good, "layer5.0.conv1.weight": np.zeros(1)}, depth=18, width=TINY)


# --- equality with a torch module that has torchvision's exact layout and key names -----------------------------


def _torch_resnet18(torch):
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for i, planes in enumerate((64, 128, 256, 512)):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                             BasicBlock(planes, planes, 1)))
                inplanes = planes
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def features(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

    return ResNet18()


def test_matches_torchvision_layout(tmp_path):
    torch = pytest.importorskip("torch")
    from hmljax.models import convert_torchvision

    torch.manual_seed(0)
    net = _torch_resnet18(torch)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
        want = net.features((xt - mean) / std).numpy()

    pth, npz = tmp_path / "r18.pth", tmp_path / "r18.npz"
    torch.save(net.state_dict(), pth)
    assert convert_torchvision.main([str(pth), str(npz), "--depth", "18"]) == 0
    variables = load_resnet_npz(npz, depth=18)
    direct = resnet_variables_from_torch({k: v.numpy() for k, v in net.state_dict().items()}, depth=18)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(direct), strict=True):
        np.testing.assert_array_equal(a, b)

    enc = resnet_encoder(18)
    apply = jax.jit(functools.partial(enc.apply, train=False))
    got, _ = apply(variables["params"], variables["batch_stats"], jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
