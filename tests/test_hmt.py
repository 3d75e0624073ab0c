"""``method=hmt`` (HMT-Net's group heads and noise), the long-tail loss keys, and the class-aware sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DATA_DIR, needs_data

from hmljax.data import ClassAwareSampler
from hmljax.engine import Batch, ModelOutput
from hmljax.methods import hmt_class_weights, hmt_groups
from hmljax.models import GroupHeadsNet
from hmljax.training import TrainConfig, build_method, train_and_evaluate


def _bce64(z, y):
    return np.logaddexp(0, z) - y * z


def test_hmt_loss_is_a_fixed_group_reweighting_of_the_base_loss(rng):
    """REFERENCE.md §4.1: L_global = Σ_g (|C_g| / C) L_g, so eta L_global + (1 - eta) Σ_g L_g is the mean of the
    base loss times the class weight C (eta / C + (1 - eta) / |C_g|)."""
    B, C, eta = 7, 11, 0.3
    groups = np.array([0, 0, 1, 2, 2, 2, 1, 0, 2, 2, 1])
    z, y = rng.normal(size=(B, C)) * 3, (rng.random((B, C)) < 0.3).astype(float)
    bce = _bce64(z, y)
    L_global = bce.mean()
    L_g = [bce[:, groups == g].mean() for g in range(3)]
    assert L_global == pytest.approx(sum((groups == g).sum() / C * L_g[g] for g in range(3)), rel=1e-12)
    w = hmt_class_weights(groups, eta=eta)
    assert (bce * w).mean() == pytest.approx(eta * L_global + (1 - eta) * sum(L_g), rel=1e-12)
    # Classes outside every group (a hierarchy's unevaluated roots) weigh nothing.
    g2 = np.where(np.arange(C) == 4, -1, groups)
    assert hmt_class_weights(g2, eta=eta)[4] == 0


def test_hmt_groups_by_threshold_and_quantile():
    counts = np.array([500, 150, 100, 99, 20, 19, 3, 0])
    ev = np.ones(8, bool)
    np.testing.assert_array_equal(hmt_groups(counts, ev, head=100, tail=20, split="thresholds"),
                                  [0, 0, 0, 1, 1, 2, 2, 2])
    ev[0] = False  # an unevaluated root is in no group
    assert hmt_groups(counts, ev, head=100, tail=20, split="thresholds")[0] == -1
    q = hmt_groups(np.array([300, 250, 240, 230, 220, 210]), np.ones(6, bool), head=100, tail=20, split="quantile")
    np.testing.assert_array_equal(np.bincount(q), [2, 2, 2])


def _net(sigmas=(0.0, 0.5, 2.0), dropout=0.0, layers=1):
    return GroupHeadsNet(group_index=((0, 3), (1, 4), (2,)), sigmas=sigmas, hidden=8, encoder_layers=layers,
                         dropout=dropout)


def test_group_heads_scatter_into_class_order_and_noise_only_in_training(key):
    net = _net()
    x = jax.random.normal(key, (5, 6))
    params = net.init({"params": key}, x, train=False)["params"]
    z = net.apply({"params": params}, x, train=False)
    assert z.shape == (5, 5)
    # Class order: head g's j-th output is its j-th class.
    f = jax.nn.relu(x @ params["encoder_0"]["kernel"] + params["encoder_0"]["bias"][None])
    head = lambda g: f @ params[f"head_{g}"]["kernel"] + params[f"head_{g}"]["bias"][None]  # noqa: E731
    np.testing.assert_allclose(z[:, [0, 3]], head(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z[:, [1, 4]], head(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z[:, [2]], head(2), rtol=1e-6, atol=1e-6)
    # Training adds noise per group, with the group's scale: none on the head group (sigma 0).
    zt = net.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.fold_in(key, 1)})
    np.testing.assert_allclose(zt[:, [0, 3]], z[:, [0, 3]], rtol=1e-6, atol=1e-6)
    assert not np.allclose(zt[:, 2], z[:, 2])
    # The noise on the features is N(0, sigma^2): the logit shift of head g is noise @ W_g.
    diffs = jax.vmap(lambda k: net.apply({"params": params}, x, train=True, rngs={"dropout": k}) - z)(
        jax.random.split(key, 100))
    w2 = params["head_2"]["kernel"][:, 0]
    assert float(diffs[..., 2].std()) == pytest.approx(2.0 * float(jnp.linalg.norm(w2)), rel=0.15)


def test_group_heads_under_jit_vmap_and_grad(key):
    net = _net(layers=0)
    x = jax.random.normal(key, (4, 3))
    params = net.init({"params": key}, x, train=False)["params"]

    def loss(p, x):
        return net.apply({"params": p}, x, train=True, rngs={"dropout": key}).sum()

    g = jax.jit(jax.grad(loss))(params, x)
    assert all(np.isfinite(v).all() for v in jax.tree_util.tree_leaves(g))
    batched = jax.vmap(lambda xx: net.apply({"params": params}, xx, train=False))(jnp.stack([x, x]))
    np.testing.assert_allclose(batched[0], batched[1])


@needs_data
def test_build_hmt_loss_equals_eq_5_to_7_on_yeast():
    """The method's loss on given logits is eta L_global + (1 - eta) Σ_g L_g with the mean BCE per group."""
    cfg = TrainConfig(dataset="yeast", data_dir=DATA_DIR, method="hmt", eta=0.25, batch_size=16,
                      group_head=300, group_tail=100).resolved()
    ds, method, _ = build_method(cfg)
    groups = hmt_groups(np.asarray(ds.split("train")[1]).sum(0), np.ones(14, bool), head=300, tail=100,
                        split="thresholds")
    assert len(set(groups.tolist())) == 3  # yeast has head, middle and tail labels
    rng = np.random.default_rng(0)
    y = np.asarray(ds.split("train")[1][:16], np.float32)
    z = rng.normal(size=y.shape).astype(np.float32) * 2
    batch = Batch(x=None, y=jnp.asarray(y), where=jnp.ones(16, bool), index=jnp.arange(16), t=jnp.int32(0))
    total, _ = method.loss(ModelOutput(jnp.asarray(z)[None], {}, {}), batch)
    bce = _bce64(z.astype(np.float64), y)
    want = 0.25 * bce.mean() + 0.75 * sum(bce[:, groups == g].mean() for g in range(3))
    assert float(total) == pytest.approx(want, rel=1e-5)


@needs_data
def test_hmt_and_longtail_losses_train_on_a_longtail_subset(tmp_path):
    base = dict(dataset="scene", data_dir=DATA_DIR, epochs=1, lr=1e-3, batch_size=32, longtail_max=400,
                longtail_min=4)
    res = train_and_evaluate(TrainConfig(method="hmt", **base), str(tmp_path / "h"), progress=False)["results"]
    info = res["train_rows"]
    assert info["rows"] < 500 and info["groups"] == {"head": 1, "middle": 2, "tail": 3}
    assert info["sigma"]["tail"] > info["sigma"]["head"] > 0
    assert {"map_head", "map_middle", "map_tail"} <= set(res["test"])
    for extra in ({"loss": "db_focal", "sampler": "class_aware"},):
        r = train_and_evaluate(TrainConfig(method="mlp", **base, **extra), str(tmp_path / str(extra)),
                               progress=False)["results"]
        assert np.isfinite(r["test"]["map"])


@pytest.mark.parametrize("loss,kw", [("rw", {"rw_power": 1.0}), ("focal", {"gamma": 0.0}), ("asl", {})])
def test_longtail_keys_reach_the_mlp_loss(loss, kw):
    """``method=mlp loss=...`` trains the pure function's loss; focal with gamma 0 is BCE exactly."""
    from hmljax.losses import asymmetric_loss, binary_cross_entropy, inverse_frequency_weights

    cfg = TrainConfig(dataset="synthetic", method="mlp", loss=loss, batch_size=8, **kw).resolved()
    ds, method, split = build_method(cfg)
    Y = np.asarray(method.train_y, np.float32)
    y, z = jnp.asarray(Y[:8]), jnp.asarray(np.random.default_rng(1).normal(size=Y[:8].shape), jnp.float32)
    batch = Batch(x=None, y=y, where=jnp.ones(8, bool), index=jnp.arange(8), t=jnp.int32(0))
    total, _ = method.loss(ModelOutput(z[None], {}, {}), batch)
    if loss == "rw":
        n = np.clip(Y.sum(0), 1, Y.shape[0] - 1)
        want = binary_cross_entropy(z, y) * inverse_frequency_weights(n, num_samples=Y.shape[0])[None, :]
    elif loss == "focal":
        want = binary_cross_entropy(z, y)
    else:
        want = asymmetric_loss(z, y)
    assert float(total) == pytest.approx(float(want.mean()), rel=1e-5)


def test_longtail_loss_inside_mcloss_on_a_hierarchy():
    """On a hierarchy the loss replaces the BCE inside MCLoss: focal with gamma 0 is C-HMCNN's loss."""
    cfg = lambda **kw: TrainConfig(dataset="synthetic", method="chmcnn", batch_size=8, **kw).resolved()  # noqa: E731
    _, plain, _ = build_method(cfg())
    _, focal0, _ = build_method(cfg(loss="focal", gamma=0.0))
    _, focal2, _ = build_method(cfg(loss="focal"))
    Y = np.asarray(plain.train_y[:8], np.float32)
    z = jnp.asarray(np.random.default_rng(2).normal(size=Y.shape), jnp.float32)
    batch = Batch(x=None, y=jnp.asarray(Y), where=jnp.ones(8, bool), index=jnp.arange(8), t=jnp.int32(0))
    out = ModelOutput(z[None], {}, {})
    assert float(focal0.loss(out, batch)[0]) == pytest.approx(float(plain.loss(out, batch)[0]), rel=1e-6)
    assert float(focal2.loss(out, batch)[0]) < float(plain.loss(out, batch)[0])


def test_longtail_keys_are_checked():
    with pytest.raises(ValueError, match="gamma.*applies only with"):
        TrainConfig(dataset="synthetic", method="mlp", gamma=2.0).resolved()
    with pytest.raises(ValueError, match="bad value for loss"):
        TrainConfig(dataset="synthetic", method="mlp", loss="nope").resolved()
    with pytest.raises(ValueError, match="bad value for eta"):
        TrainConfig(dataset="synthetic", method="hmt", eta=1.5).resolved()


def test_class_aware_sampler_round_robin():
    rng = np.random.default_rng(0)
    Y = np.zeros((200, 4), np.uint8)
    Y[:150, 0] = 1  # a head class
    Y[150:190, 1] = 1
    Y[190:198, 2] = 1
    Y[198:, 3] = 1  # a tail class of 2 rows
    Y[rng.random(200) < 0.1, 1] = 1
    s = ClassAwareSampler(Y, 8, seed=3)
    assert s.num_samples == int(Y.sum(0).max() * 4 / 4)
    e0, e0b, e1 = s.epoch(0), s.epoch(0), s.epoch(1)
    np.testing.assert_array_equal(e0.indices, e0b.indices)  # deterministic in (seed, epoch)
    assert not np.array_equal(e0.indices, e1.indices)
    assert e0.indices.shape == (s.steps_per_epoch, 8)
    flat = e0.indices.reshape(-1)
    visits = flat[: (flat.size // 3) * 3].reshape(-1, 3)
    # Each visit's three rows hold one class; the classes come round equally often.
    shared = [np.flatnonzero(Y[v].all(0)) for v in visits]
    assert all(len(c) >= 1 for c in shared)
    per_class = np.array([sum(k in c for c in shared) for k in range(4)])
    assert per_class.min() >= visits.shape[0] // 4 - 1
    # The tail class (2 rows) is drawn as often as the head class, through its cyclic list.
    assert (np.isin(flat, [198, 199])).sum() >= 3 * (visits.shape[0] // 4 - 1)
    with pytest.raises(ValueError, match="no class has a positive"):
        ClassAwareSampler(np.zeros((5, 2)), 2, seed=0)
