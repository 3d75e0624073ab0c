"""``method=hlstm`` / ``method=chmc_lstm``: the level LSTM, its level assignment, and the hybrid loss on the engine."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from hmljax.engine import Batch, ModelOutput
from hmljax.hierarchy import Hierarchy
from hmljax.losses import hybrid_loss, parent_graph
from hmljax.methods import RareLoss, hybrid_elementwise, level_index, make_rare_loss, node_levels
from hmljax.models import LevelLSTM, lstm_over_levels
from hmljax.training import TrainConfig, train_and_evaluate


def _dag() -> Hierarchy:
    # root -> {a, b}; a -> c; b -> c (c has parents on level 1); c -> d; a -> e -> f -> g (depth 4)
    return Hierarchy.from_edges([("root", "a"), ("root", "b"), ("a", "c"), ("b", "c"), ("c", "d"), ("a", "e"),
                                 ("e", "f"), ("f", "g")])


def test_levels_start_below_the_unevaluated_roots_and_clip():
    h = _dag()
    lv = dict(zip(h.names, node_levels(h).tolist(), strict=True))
    assert lv == {"root": -1, "a": 1, "b": 1, "c": 2, "d": 3, "e": 2, "f": 3, "g": 4}
    clipped = dict(zip(h.names, node_levels(h, max_levels=2).tolist(), strict=True))
    assert clipped == {"root": -1, "a": 1, "b": 1, "c": 2, "d": 2, "e": 2, "f": 2, "g": 2}
    idx = level_index(h, max_levels=3)
    assert [sorted(h.names[j] for j in lvl) for lvl in idx] == [["a", "b"], ["c", "e"], ["d", "f", "g"]]
    # GO-like: unevaluated namespace roots under the artificial root shift every level by one.
    go = Hierarchy.from_edges([("root", "BP"), ("BP", "x"), ("x", "y"), ("root", "MF"), ("MF", "z")],
                              skip=["BP", "MF"])
    assert [int(node_levels(go)[go.index[n]]) for n in ("BP", "x", "y", "z")] == [-1, 1, 2, 1]


def _np_lstm(params, x, level_sizes, index, C):
    """Eq. 6-13 in float64 numpy: concatenated gates [A; x], F/I/Ĉ/O order, relu transitions, linear heads."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    P = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    H = P["gates_a"]["kernel"].shape[0]
    W = np.concatenate([P["gates_a"]["kernel"], P["gates_x"]["kernel"]], 0)  # eq. 6-11's W over [A; x]
    a = np.zeros((x.shape[0], H))
    c = np.zeros_like(a)
    parts = []
    for lvl in range(len(level_sizes)):
        z = np.concatenate([a, x], -1) @ W + P["gates_x"]["bias"]
        f, i, g, o = np.split(z, 4, -1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        a = sig(o) * np.tanh(c)
        t = np.maximum(a @ P[f"transition_{lvl}"]["kernel"] + P[f"transition_{lvl}"]["bias"], 0)
        parts.append(t @ P[f"local_{lvl}"]["kernel"] + P[f"local_{lvl}"]["bias"])
    glob = a @ P["global"]["kernel"] + P["global"]["bias"]
    local = np.zeros((x.shape[0], C))
    local[:, index] = np.concatenate(parts, -1)
    return glob, local


def _unrolled_levels(x_proj, w_a, levels):
    # The recurrence written the plain way, for autodiff: what lstm_over_levels's hand-written VJP must equal.
    H = w_a.shape[0]
    a = c = jnp.zeros((x_proj.shape[0], H), x_proj.dtype)
    out = []
    for level in range(levels):
        z = x_proj if level == 0 else x_proj + a @ w_a
        f, i, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        a = jax.nn.sigmoid(o) * jnp.tanh(c)
        out.append(a)
    return jnp.stack(out)


@pytest.mark.parametrize("levels", [1, 2, 5])
def test_lstm_over_levels_vjp_equals_autodiff_of_the_unrolled_loop(levels, rng):
    with jax.enable_x64(True):
        B, H = 3, 4
        x_proj = jnp.asarray(rng.normal(size=(B, 4 * H)))
        w_a = jnp.asarray(rng.normal(size=(H, 4 * H)) * 0.5)
        d_out = jnp.asarray(rng.normal(size=(levels, B, H)))
        out, vjp = jax.vjp(lambda x, w: lstm_over_levels(x, w, levels), x_proj, w_a)
        ref, ref_vjp = jax.vjp(lambda x, w: _unrolled_levels(x, w, levels), x_proj, w_a)
        np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13)
        for got, want in zip(vjp(d_out), ref_vjp(d_out), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        if levels == 1:  # level 1 never reads W_a (A^0 = 0)
            assert not np.any(vjp(d_out)[1])
        check_grads(lambda x, w: lstm_over_levels(x, w, levels), (x_proj, w_a), order=1, modes=("rev",))

    # float32 under jit and vmap (an ensemble's member axis), against the same autodiff
    xs = jnp.asarray(rng.normal(size=(2, 4, 4 * H)), jnp.float32)
    ws = jnp.asarray(rng.normal(size=(2, H, 4 * H)) * 0.5, jnp.float32)

    def loss(fn):
        return jax.jit(jax.grad(lambda x, w: jax.vmap(lambda a, b: fn(a, b, levels))(x, w).sum(), argnums=(0, 1)))

    for got, want in zip(loss(lstm_over_levels)(xs, ws), loss(_unrolled_levels)(xs, ws), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_level_lstm_matches_a_float64_reference_and_the_paper_init(rng):
    h = _dag()
    levels = level_index(h, max_levels=0)
    net = LevelLSTM(hidden=6, transition=5, level_index=levels, num_outputs=h.num_nodes, local_init="normal")
    x = rng.normal(size=(3, 4)).astype(np.float32)
    params = net.init({"params": jax.random.PRNGKey(0)}, jnp.asarray(x), train=False)["params"]
    glob, aux = net.apply({"params": params}, jnp.asarray(x), train=False)
    ref_g, ref_l = _np_lstm(params, x.astype(np.float64), [len(v) for v in levels],
                            [j for v in levels for j in v], h.num_nodes)
    np.testing.assert_allclose(glob, ref_g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(aux["local_logits"], ref_l, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(aux["local_logits"][:, h.index["root"]]).max()) == 0.0  # roots: in no level
    # The paper's local init: every local weight 0.1, biases 0; the LSTM's weights torch-uniform ±1/sqrt(H).
    p = LevelLSTM(hidden=6, transition=5, level_index=levels, num_outputs=h.num_nodes).init(
        {"params": jax.random.PRNGKey(1)}, jnp.asarray(x), train=False)["params"]
    assert all(np.all(p[f"local_{k}"]["kernel"] == np.float32(0.1)) and np.all(p[f"local_{k}"]["bias"] == 0)
               for k in range(len(levels)))
    assert float(jnp.abs(p["gates_x"]["kernel"]).max()) <= 1 / np.sqrt(6)
    # CHMC-LSTM: no local branch at all.
    p0 = LevelLSTM(hidden=6, transition=5, level_index=levels, num_outputs=h.num_nodes, local_heads=False).init(
        {"params": jax.random.PRNGKey(1)}, jnp.asarray(x), train=False)["params"]
    assert set(p0) == {"gates_x", "gates_a", "global"}


def test_dropout_is_train_only_and_key_driven(rng):
    h = _dag()
    net = LevelLSTM(hidden=8, transition=8, level_index=level_index(h, max_levels=0), num_outputs=h.num_nodes,
                    dropout=0.5)
    x = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
    params = net.init({"params": jax.random.PRNGKey(0)}, x, train=False)["params"]
    ev = [net.apply({"params": params}, x, train=False)[0] for _ in range(2)]
    np.testing.assert_array_equal(ev[0], ev[1])
    tr = [net.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.PRNGKey(k)})[0] for k in (1, 2)]
    assert not np.allclose(tr[0], tr[1])


def test_hybrid_through_rare_loss_equals_hybrid_loss_and_has_gradients(rng):
    """RARE's loss with HLSTM's elementwise term is eq. 5 with per-element means; grads reach both heads."""
    h = _dag()
    C = h.num_nodes
    ancestry, parents = jnp.asarray(h.ancestry), parent_graph(h)
    y = np.zeros((4, C), np.float32)
    for i, leaf in enumerate(["d", "g", "b", "c"]):
        y[i] = h.ancestry[:, h.index[leaf]]  # closed under ancestors: the leaf and everything above it
    z, loc = (jnp.asarray(rng.normal(size=(1, 4, C)), jnp.float32) for _ in range(2))
    where = jnp.array([True, True, True, False])
    batch = Batch(x=None, y=jnp.asarray(y), where=where, index=jnp.arange(4), t=jnp.asarray(0))
    loss = make_rare_loss(RareLoss(), ancestry=ancestry, evaluated=h.evaluated,
                          elementwise=hybrid_elementwise(ancestry=ancestry, parents=parents, b_r=0.3, head="mcm"))
    total, out = loss(ModelOutput(z, {"local_logits": loc}, ()), batch)
    mask = where[:, None] & jnp.asarray(h.evaluated)[None]
    ref = hybrid_loss(z[0], jnp.asarray(y), ancestry, parents, b_r=0.3, local_logits=loc[0], where=mask)
    np.testing.assert_allclose(total, ref, rtol=1e-6)
    assert out.per_sample[3] == 0 and bool(jnp.all(out.per_sample[:3] > 0))

    def f(z, loc):
        return loss(ModelOutput(z, {"local_logits": loc}, ()), batch)[0]

    check_grads(f, (z, loc), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    gz, gl = jax.grad(f, argnums=(0, 1))(z, loc)
    assert float(jnp.abs(gz).sum()) > 0 and float(jnp.abs(gl).sum()) > 0
    # b_r = 1 (CHMC-LSTM) ignores the local logits entirely.
    chmc = make_rare_loss(RareLoss(), ancestry=ancestry, evaluated=h.evaluated,
                          elementwise=hybrid_elementwise(ancestry=ancestry, parents=parents, b_r=1.0, head="mcm"))
    g_loc = jax.grad(lambda loc: chmc(ModelOutput(z, {"local_logits": loc}, ()), batch)[0])(loc)
    assert float(jnp.abs(g_loc).max()) == 0.0


SMALL = dict(dataset="synthetic", epochs=2, hidden=16, lr=3e-3)


@pytest.mark.parametrize("keys", [
    # The default run trains HLSTM once, as an ensemble with RARE's terms (which covers the plain path too).
    pytest.param(dict(method="hlstm"), marks=pytest.mark.slow),
    pytest.param(dict(method="chmc_lstm"), marks=pytest.mark.slow),  # b_r = 1's branch: unit-tested above
    pytest.param(dict(method="hlstm", head="none", b_r=0.5, local_init="xavier"), marks=pytest.mark.slow),
    dict(method="hlstm", ensemble=2, focal="gmu", weights="code", levels=2),  # RARE composes with HLSTM
], ids=["hlstm", "chmc_lstm", "hmcn_r", "rare_ensemble"])
def test_methods_train_end_to_end(keys, tmp_path):
    out = train_and_evaluate(TrainConfig(**SMALL, **keys), str(tmp_path / "r"), progress=False)
    res = out["results"]
    assert np.isfinite(res["test"]["auprc"]) and res["test"]["auprc"] > 0
    rows = res["train_rows"]
    assert rows["levels"] == (2 if keys.get("levels") == 2 else len(rows["nodes_per_level"]))


def test_config_checks():
    with pytest.raises(ValueError, match="chmc_lstm is MCLoss only"):
        TrainConfig(dataset="synthetic", method="chmc_lstm", b_r=0.5).resolved()
    with pytest.raises(ValueError, match="bad value for b_r"):
        TrainConfig(dataset="synthetic", method="hlstm", b_r=1.5).resolved()
    with pytest.raises(ValueError, match="bad value for local_init"):
        TrainConfig(dataset="synthetic", method="hlstm", local_init="uniformish").resolved()
    with pytest.raises(ValueError, match="local_init_value"):
        TrainConfig(dataset="synthetic", method="hlstm", local_init="he", local_init_value=0.2).resolved()
    with pytest.raises(ValueError, match="head=none needs b_r < 1"):
        TrainConfig(dataset="synthetic", method="hlstm", head="none", b_r=1.0).resolved()
    cfg = TrainConfig(dataset="synthetic", method="hlstm").resolved()
    m = cfg.method_config
    assert m.transition == m.hidden and m.local_init_value == 0.1 and m.b_r == 0.5 and m.levels == 6
