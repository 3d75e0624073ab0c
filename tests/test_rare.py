"""RARE: node weights, uncertainty terms, weighted loss, schedulers, ensembles, MC dropout, LPROS, HROS-PD."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load, needs_data
from jax.test_util import check_grads

from hmljax.constraints import constraint_graph
from hmljax.data import EpochSampler, hros_pd, load_dataset, lpros
from hmljax.hierarchy import Hierarchy
from hmljax.losses import (
    bbma_uncertainty,
    epistemic_js,
    epistemic_kl,
    focal_weight,
    gmu_uncertainty,
    imbalance_weights,
    label_weights,
    mc_loss,
    mix_weights,
    node_counts,
    reduce_loss,
    schedule_fraction,
    scheduled_weights,
    uncertainty,
    weighted_mc_loss,
)
from hmljax.models import ChmcnnMLP, stacked_forward
from hmljax.training import (
    LossConfig,
    TrainConfig,
    evaluate_run,
    init_state,
    make_optimizer,
    make_predict,
    make_train_epoch,
    make_train_step,
    train_and_evaluate,
)


def _tree():
    # r -> a, b;  a -> a1, a2
    return Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2")], skip=())


def _closed(h, rows):
    Y = np.zeros((len(rows), h.num_nodes), np.uint8)
    R = np.asarray(h.ancestry)
    for i, terms in enumerate(rows):
        for t in terms:
            Y[i] |= R[:, h.index[t]].astype(np.uint8)  # t and its ancestors
    return Y


# ----------------------------------------------------------------------------- weights


def test_node_counts_closed_supercount_and_inplace():
    h = _tree()
    ix = h.index
    Y = _closed(h, [["a1"], ["a1"], ["a2"], ["b"], ["a"]])
    closed = node_counts(Y, h.ancestry, counts="closed")
    assert closed[ix["r"]] == 5 and closed[ix["a"]] == 4 and closed[ix["a1"]] == 2
    sup = node_counts(Y, h.ancestry, counts="supercount")
    # a: own column 4 + a1 2 + a2 1 = 7; r: 5 + 4 + 1 + 2 + 1 = 13 (the "super-count").
    assert sup[ix["a"]] == 7 and sup[ix["r"]] == 13 and sup[ix["a1"]] == 2 and sup[ix["b"]] == 1
    # Parents sort before children here, so the in-place version equals the plain one.
    np.testing.assert_array_equal(node_counts(Y, h.ancestry, counts="supercount_inplace"), sup)
    # A descendant sorting *before* its ancestor contributes its aggregated value in place.
    R = np.array([[1, 0], [1, 1]], bool)  # node 1 is the parent of node 0
    Y2 = np.array([[1, 1], [0, 1]])
    np.testing.assert_array_equal(node_counts(Y2, R, counts="supercount"), [1, 3])
    np.testing.assert_array_equal(node_counts(Y2, R, counts="supercount_inplace"), [1, 3])
    R3 = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)  # 2 -> 1 -> 0 (0 deepest, sorted first)
    Y3 = np.array([[1, 1, 1]])
    np.testing.assert_array_equal(node_counts(Y3, R3, counts="supercount"), [1, 2, 3])
    np.testing.assert_array_equal(node_counts(Y3, R3, counts="supercount_inplace"), [1, 2, 4])  # 1 + (1+1) + 1
    with pytest.raises(ValueError, match="counts"):
        node_counts(Y, h.ancestry, counts="bogus")
    with pytest.raises(ValueError, match="do not match"):
        node_counts(Y[:, :3], h.ancestry)


def test_imbalance_weights_hand_computed():
    n = np.array([0.0, 10.0, 5.0, 1.0, 20.0])
    num_obs, num_classes = 20, 5
    # w = 20 / (5 n) with gates w = 1 at n = 0 and n = N_obs: [1, 0.4, 0.8, 4, 1]; w_min 0.4, w_max 4.
    w = np.array([1.0, 0.4, 0.8, 4.0, 1.0])
    frac = (w - 0.4) / 3.6
    np.testing.assert_allclose(imbalance_weights(n, num_obs=num_obs, num_classes=num_classes, w0=0.25,
                                                 rescale="paper"), 0.25 + w * frac)
    np.testing.assert_allclose(imbalance_weights(n, num_obs=num_obs, num_classes=num_classes, w0=0.5,
                                                 rescale="code"), 0.5 + 4.0 * frac)
    assert imbalance_weights(n, num_obs=20, num_classes=5, w0=0.25, rescale="code").min() == 0.25
    # N_classes = 2 changes w but (after min-max rescaling) not the paper weights' ordering.
    w2 = imbalance_weights(n, num_obs=20, num_classes=2, rescale="paper")
    assert np.argmax(w2) == 3
    np.testing.assert_allclose(imbalance_weights(np.ones(3), num_obs=4, num_classes=3, w0=0.3), 0.3)
    with pytest.raises(ValueError, match="rescale"):
        imbalance_weights(n, num_obs=20, num_classes=5, rescale="x")


def test_label_weights_index_swap_matches_reference_example():
    # REFERENCE.md §2.1: labels [[1,0,1],[0,1,0]], pos [10,20,30] -> code applies [[1,20,1],[10,1,30]].
    y = np.array([[1, 0, 1], [0, 1, 0]])
    pos = np.array([10.0, 20.0, 30.0])
    np.testing.assert_array_equal(label_weights(pos, y, apply_to="negative"), [[1, 20, 1], [10, 1, 30]])
    np.testing.assert_array_equal(label_weights(pos, y, apply_to="positive"), [[10, 1, 30], [1, 20, 1]])
    with pytest.raises(ValueError, match="apply_to"):
        label_weights(pos, y, apply_to="both")


@needs_data
def test_code_weights_match_reference_measurements():
    ds = load("cellcycle_FUN")
    h = ds.hierarchy
    Y = np.asarray(ds.Y["train"])
    n = node_counts(Y, h.ancestry, counts="supercount_inplace")
    w_t = imbalance_weights(n, num_obs=Y.shape[0], num_classes=h.num_nodes, w0=0.25, rescale="code")
    # REFERENCE.md §2.1, measured on cellcycle_FUN train: w~ min 0.25, median 0.66, max 3.51.
    assert w_t.min() == pytest.approx(0.25)
    assert np.median(w_t) == pytest.approx(0.66, abs=0.01)
    assert w_t.max() == pytest.approx(3.51, abs=0.01)


# ----------------------------------------------------------------------------- uncertainty


def _kl2(p, q, eps=1e-10):
    v = p * (math.log2(p + eps) - math.log2(q + eps)) + (1 - p) * (math.log2(1 - p + eps) - math.log2(1 - q + eps))
    return max(v, 0.0)


def test_uncertainties_hand_computed():
    p = jnp.array([[0.2], [0.6]], jnp.float32)  # E = 2 members, one entry
    mu = 0.4
    assert float(bbma_uncertainty(p)[0]) == pytest.approx(1 - abs(2 * mu - 1))  # 0.8
    sigma = math.sqrt(((0.2 - mu) ** 2 + (0.6 - mu) ** 2) / 1)  # unbiased, N - 1 = 1
    snr = abs(2 * mu - 1) / (2 * sigma + 1e-10)
    assert float(gmu_uncertainty(p)[0]) == pytest.approx(1 - 0.2 * (1 - math.exp(-snr)), rel=1e-6)
    kl = (_kl2(0.2, 0.6) + _kl2(0.6, 0.2)) / 2
    assert float(epistemic_kl(p)[0]) == pytest.approx(kl, rel=1e-5)
    js = 0.5 * _kl2(0.2, 0.4) + 0.5 * _kl2(0.6, 0.4)  # both ordered pairs give the same JS
    assert float(epistemic_js(p)[0]) == pytest.approx(js, rel=1e-5)
    # Three members: mean over the 6 ordered pairs.
    p3 = [0.1, 0.5, 0.8]
    kl3 = sum(_kl2(a, b) for a in p3 for b in p3 if a != b) / 6
    assert float(epistemic_kl(jnp.array(p3)[:, None])[0]) == pytest.approx(kl3, rel=1e-5)
    assert float(uncertainty(jnp.array(p3)[:, None], mode="kl")[0]) == pytest.approx(kl3, rel=1e-5)
    with pytest.raises(ValueError, match="mode"):
        uncertainty(p, mode="entropy")


def test_uncertainty_edge_cases():
    one = jnp.array([[0.3, 0.9]])  # E = 1
    np.testing.assert_allclose(gmu_uncertainty(one), bbma_uncertainty(one), rtol=1e-6)
    np.testing.assert_array_equal(epistemic_kl(one), 0.0)
    np.testing.assert_array_equal(epistemic_js(one), 0.0)
    certain = jnp.array([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])  # p in {0, 1}
    for f in (bbma_uncertainty, gmu_uncertainty, epistemic_kl, epistemic_js):
        u = f(certain)
        assert bool(jnp.all(jnp.isfinite(u))), f.__name__
    np.testing.assert_allclose(bbma_uncertainty(certain)[:2], 0.0)
    np.testing.assert_allclose(gmu_uncertainty(certain)[:2], 0.0, atol=1e-6)  # agree and certain
    assert float(epistemic_js(certain)[2]) == pytest.approx(1.0, abs=1e-6)  # JS(0 || 1) = 1 bit
    assert 0.0 <= float(gmu_uncertainty(certain)[2]) <= 1.0
    half = jnp.full((4, 1), 0.5)
    assert float(bbma_uncertainty(half)[0]) == 1.0 and float(gmu_uncertainty(half)[0]) == 1.0


@pytest.mark.parametrize("name", ["kl", "js"])
def test_epistemic_terms_stay_finite_under_jit_at_saturated_probabilities(name):
    """Members at p = 0 or 1 exactly (sigmoid saturates in float32 from |logit| ~ 17 on) must give the float64
    reference under jit too: XLA folded (1 - q) + 1e-10 into 1 - q there, so KL(1 || 1) was NaN and a KL run
    diverged mid-training while every eager test passed."""
    vals = np.array([0.0, 1e-30, 1e-12, 1e-8, 0.3, 0.5, 1 - 6e-8, 1.0], np.float32)
    P, Q = (a.ravel() for a in np.meshgrid(vals, vals, indexing="ij"))
    probs = jnp.asarray(np.stack([P, Q]))  # [E = 2, pairs]
    p64, q64 = P.astype(np.float64), Q.astype(np.float64)

    def kl64(a, b):
        lg = lambda x: np.log2(x + 1e-10)  # noqa: E731
        return np.maximum(a * (lg(a) - lg(b)) + (1 - a) * (lg(1 - a) - lg(1 - b)), 0.0)

    if name == "kl":
        ref, f = (kl64(p64, q64) + kl64(q64, p64)) / 2, epistemic_kl
    else:
        m = (p64 + q64) / 2
        ref, f = 0.5 * kl64(p64, m) + 0.5 * kl64(q64, m), epistemic_js
    for fn in (f, jax.jit(f)):
        u = np.asarray(fn(probs))
        assert np.isfinite(u).all(), [(a, b) for a, b, v in zip(P, Q, u, strict=True) if not np.isfinite(v)]
        np.testing.assert_allclose(u, ref, rtol=1e-4, atol=2e-5)
    assert float(jax.jit(f)(jnp.array([[1.0], [1.0]]))[0]) == 0.0


def test_uncertainty_has_no_gradient_and_vmaps():
    p = jax.random.uniform(jax.random.key(0), (5, 3, 4))
    for f in (bbma_uncertainty, gmu_uncertainty, epistemic_kl, epistemic_js):
        g = jax.grad(lambda q, f=f: f(q).sum())(p)
        np.testing.assert_array_equal(g, 0.0)
        u = jax.jit(f)(p)
        assert u.shape == (3, 4) and bool(jnp.all((u >= 0) & (u <= 1.0 + 1e-6) | (f is epistemic_kl)))
        np.testing.assert_allclose(jax.vmap(f, in_axes=1, out_axes=0)(p), u, rtol=1e-6)
    np.testing.assert_allclose(focal_weight(jnp.array([0.0, 0.5, 1.0]), u0=0.25, k=2.0), [0.25, 0.5, 1.25])


# ----------------------------------------------------------------------------- loss, schedules


def test_weighted_loss_is_elementwise_product_and_differentiable(key):
    h = _tree()
    anc = jnp.asarray(h.ancestry)
    Y = jnp.asarray(_closed(h, [["a1"], ["b"], ["a2", "b"]]), jnp.float32)
    z = jax.random.normal(key, Y.shape)
    w = jnp.array([0.3, 1.0, 2.0, 0.7, 1.5])
    focal = jax.random.uniform(jax.random.fold_in(key, 1), Y.shape)
    ref = mc_loss(z, Y, anc) * jnp.where(Y > 0, w, 1.0) * focal
    got = weighted_mc_loss(z, Y, anc, node_weights=w, apply_to="positive", focal=focal)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    np.testing.assert_allclose(
        weighted_mc_loss(z, Y, anc, node_weights=w, apply_to="negative"), mc_loss(z, Y, anc) * jnp.where(Y > 0, 1.0, w),
        rtol=1e-6)
    z64 = z.astype(jnp.float64) if jax.config.jax_enable_x64 else z
    check_grads(lambda zz: weighted_mc_loss(zz, Y, anc, node_weights=w, focal=focal).sum(), (z64,), order=1,
                modes=["rev"], atol=5e-2, rtol=5e-2)
    batched = jax.vmap(lambda zz: weighted_mc_loss(zz[None], Y[:1], anc, node_weights=w)[0])(z[:1])
    np.testing.assert_allclose(batched, weighted_mc_loss(z[:1], Y[:1], anc, node_weights=w), rtol=1e-6)
    where = jnp.array([True, True, False])[:, None] & jnp.ones((1, 5), bool)
    masked = weighted_mc_loss(z, Y, anc, node_weights=w, where=where)
    assert float(reduce_loss(masked, where)) == pytest.approx(float(masked.sum() / 10), rel=1e-6)
    assert float(reduce_loss(masked, reduction="sum")) == pytest.approx(float(masked.sum()), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        reduce_loss(masked, reduction="max")


def test_schedulers_and_mixed_loss():
    S = 5
    lin = [float(schedule_fraction(t, S, kind="linear")) for t in range(S)]
    np.testing.assert_allclose(lin, [0, 0.25, 0.5, 0.75, 1.0])
    exp = [float(schedule_fraction(t, S, kind="exponential", k=3)) for t in range(S)]
    np.testing.assert_allclose(exp, np.array([0, 0.25, 0.5, 0.75, 1.0]) ** 3, rtol=1e-6)
    alt = [float(schedule_fraction(t, S, kind="alternating")) for t in range(S)]
    assert alt == [0, 1, 0, 1, 0]
    assert float(schedule_fraction(3, S, kind="none")) == 0.0
    W = jnp.array([[2.0, 1.0], [0.5, 1.0]])
    np.testing.assert_allclose(scheduled_weights(W, 0.0, omega=0.25), W)
    np.testing.assert_allclose(scheduled_weights(W, 1.0, omega=0.25), 0.25)  # the negatives' ones too
    np.testing.assert_allclose(scheduled_weights(W, 0.5, omega=0.25), [[1.125, 0.625], [0.375, 0.625]])
    # λ-mixing: λ mean(W L) + (1 - λ) mean(L) == mean(mix_weights(W) L)
    L = jnp.array([[0.3, 0.7], [1.1, 0.2]])
    np.testing.assert_allclose((mix_weights(W, lam=0.3) * L).mean(), 0.3 * (W * L).mean() + 0.7 * L.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        schedule_fraction(0, S, kind="cosine")


# ----------------------------------------------------------------------------- ensembles


def _synthetic_setup(members=0, hidden=16):
    ds = load_dataset("synthetic")
    h = ds.hierarchy
    anc = constraint_graph(h)
    model = ChmcnnMLP(hidden=hidden, num_outputs=h.num_nodes, dropout=0.5)
    opt = make_optimizer(lr=1e-3, weight_decay=1e-5)
    state = init_state(model, opt, ds.num_features, key=jax.random.key(0), members=members)
    X, Y = np.asarray(ds.X["train"][:64], np.float32), np.asarray(ds.Y["train"][:64], np.float32)
    return ds, h, anc, model, opt, state, X, Y


def test_stacked_members_are_independent_networks():
    ds, h, anc, model, opt, state, X, Y = _synthetic_setup(members=3)
    p = state.params
    assert p["dense_0"]["kernel"].shape[0] == 3
    assert not np.allclose(p["dense_0"]["kernel"][0], p["dense_0"]["kernel"][1])  # own initialisation
    fwd = stacked_forward(model, 3)
    logits = fwd(p, X, train=False)
    for e in range(3):
        pe = jax.tree.map(lambda a, e=e: a[e], p)
        np.testing.assert_allclose(logits[e], model.apply({"params": pe}, X, train=False), rtol=1e-5, atol=1e-6)

    # Each member's gradient is that of its own loss: perturbing member 1 leaves member 0's gradient alone.
    def total(params):
        z = fwd(params, X, train=True, key=jax.random.key(3))
        return jax.vmap(lambda zz: mc_loss(zz, Y, anc))(z).mean((1, 2)).sum()

    grad = jax.jit(jax.grad(total))  # one compile, not op-by-op dispatch
    g = grad(p)
    p2 = jax.tree.map(lambda a: a.at[1].multiply(3.0), p)
    g2 = grad(p2)
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], g), jax.tree.map(lambda a: a[0], g2), rtol=1e-6)
    assert not np.allclose(g["dense_0"]["kernel"][1], g2["dense_0"]["kernel"][1])


# The default run: GMU; no focal term, bBMA, KL and JS (the same code path) with -m slow.
@pytest.mark.parametrize("focal", ["gmu"] + [pytest.param(f, marks=pytest.mark.slow)
                                              for f in ("none", "bbma", "kl", "js")])
def test_ensemble_step_compiles_once_and_focal_term_is_gradient_free(focal):
    ds, h, anc, model, opt, state, X, Y = _synthetic_setup(members=4)
    C = h.num_nodes
    lc = LossConfig(node_weights=np.linspace(0.25, 2.0, C), apply_to="negative", focal=focal)
    step = chex.assert_max_traces(
        make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated, loss_cfg=lc,
                        forward=stacked_forward(model, 4)), n=1)
    epoch = jax.jit(make_train_epoch(step))
    sampler = EpochSampler(64, 16, seed=0)
    s = state
    for e in range(2):
        eb = sampler.epoch(e)
        s, losses = epoch(s, jnp.asarray(X), jnp.asarray(Y), eb.indices, eb.where, jax.random.key(1))
    assert epoch._cache_size() == 1 and bool(jnp.all(jnp.isfinite(losses)))
    chex.clear_trace_counter()
    # With a focal term, members still do not receive gradient through the others' outputs:
    # the gradient of member 0 equals that of its own loss times the (constant) focal factor.
    fwd = stacked_forward(model, 4)
    key = jax.random.key(7)

    def total(params):
        z = fwd(params, X, train=True, key=key)
        per = jax.vmap(lambda zz: mc_loss(zz, Y, anc))(z)
        if focal != "none":
            per = per * focal_weight(uncertainty(jax.nn.sigmoid(z), mode=focal))[None]
        return per.sum()

    g = jax.jit(jax.grad(total))(state.params)  # compiled once, not op-by-op dispatch
    z0 = jax.lax.stop_gradient(fwd(state.params, X, train=True, key=key))
    f_const = focal_weight(uncertainty(jax.nn.sigmoid(z0), mode=focal)) if focal != "none" else 1.0

    def member0(p0):
        params = jax.tree.map(lambda a, b: a.at[0].set(b), state.params, p0)
        z = fwd(params, X, train=True, key=key)
        return (mc_loss(z[0], Y, anc) * f_const).sum()

    g0 = jax.jit(jax.grad(member0))(jax.tree.map(lambda a: a[0], state.params))
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], g), g0, rtol=1e-4, atol=1e-6)


def test_ensemble_prediction_is_mean_of_constrained_members():
    ds, h, anc, model, opt, state, X, Y = _synthetic_setup(members=3)
    fwd = stacked_forward(model, 3)
    got = make_predict(model, ancestry=anc, forward=fwd, batch_size=16)(state.params, X[:20])
    members = []
    for e in range(3):
        pe = jax.tree.map(lambda a, e=e: a[e], state.params)
        members.append(make_predict(model, ancestry=anc)(pe, X[:20]))
    np.testing.assert_allclose(got, np.mean(members, 0), rtol=1e-5, atol=1e-6)


def test_mc_dropout_step_uses_one_network():
    ds, h, anc, model, opt, state, X, Y = _synthetic_setup(members=0)
    lc = LossConfig(focal="gmu", mc_passes=5)
    step = jax.jit(make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated, loss_cfg=lc))
    s, loss = step(state, X[:8], Y[:8], jnp.ones(8, bool), jax.random.key(0))
    assert s.params["dense_0"]["kernel"].ndim == 2 and bool(jnp.isfinite(loss))
    # The focal factor u0 + U lies in [u0, u0 + 1], so it rescales the plain loss within those bounds.
    plain = jax.jit(make_train_step(model, opt, ancestry=anc, evaluated=h.evaluated))
    _, loss_plain = plain(state, X[:8], Y[:8], jnp.ones(8, bool), jax.random.key(0))
    assert 0.25 * float(loss_plain) <= float(loss) <= 1.25 * float(loss_plain)
    assert float(loss) != pytest.approx(float(loss_plain), rel=1e-3)


@pytest.mark.slow  # the default run trains an E = 10 GMU ensemble end to end in test_regression.py
def test_ensemble_run_end_to_end_and_evaluate(tmp_path):
    cfg = TrainConfig(dataset="synthetic", epochs=2, hidden=32, batch_size=32, ensemble=3, focal="gmu",
                      weights="code")
    out = train_and_evaluate(cfg, str(tmp_path / "run"), progress=False)
    again = evaluate_run(str(tmp_path / "run"))
    assert again["auprc"] == pytest.approx(out["results"]["test"]["auprc"], rel=1e-6)
    mc = TrainConfig(dataset="synthetic", epochs=2, hidden=32, batch_size=32, mc_passes=3, focal="bbma",
                     weights="paper")
    assert train_and_evaluate(mc, str(tmp_path / "mc"), progress=False)["results"]["test"]["auprc"] > 0


def test_rare_config_errors():
    with pytest.raises(ValueError, match="focal"):
        TrainConfig(dataset="synthetic", focal="gmu").resolved()
    with pytest.raises(ValueError, match="mc_passes"):
        TrainConfig(dataset="synthetic", focal="gmu", ensemble=2, mc_passes=3).resolved()
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(dataset="synthetic", schedule="linear").resolved()
    with pytest.raises(ValueError, match="weights"):
        TrainConfig(dataset="synthetic", weights="inverse").resolved()
    # Strict keys: RARE's conditional keys are errors where they do not apply, naming the setting they need.
    for key, value, need in (("w0", 0.1, "weights="), ("u0", 0.5, "focal"), ("focal_k", 2.0, "focal"),
                             ("lpros_p", 0.5, "resample=lpros"), ("hros_s", 0.2, "resample=hros_pd"),
                             ("hros_rule", "paths", "resample=hros_pd"),
                             ("omega", 0.5, "schedule"), ("mix_lambda", 0.5, "weights=")):
        with pytest.raises(ValueError, match=f"{key}={value!r} does not apply here.*{need}"):
            TrainConfig(dataset="synthetic", **{key: value}).resolved()
    with pytest.raises(ValueError, match="lpros_p=0.5 does not apply here.*resample=lpros"):
        TrainConfig(dataset="synthetic", resample="hros_pd", lpros_p=0.5).resolved()
    c = TrainConfig(dataset="synthetic").resolved()
    assert (c.w0, c.u0, c.lpros_p, c.omega) == (None, None, None, None)  # not applicable: left unset
    assert TrainConfig(dataset="synthetic", resample="hros_pd").resolved().hros_rule == "code"
    with pytest.raises(ValueError, match="bad value for hros_rule: 'tree'"):
        TrainConfig(dataset="synthetic", resample="hros_pd", hros_rule="tree").resolved()
    c = TrainConfig(dataset="synthetic", resample="lpros", ensemble=2, focal="gmu").resolved()
    assert (c.lpros_p, c.lpros_rounding, c.u0, c.focal_k, c.focal_probs) == (0.25, "real", 0.25, 1.0, "raw")
    c = TrainConfig(dataset="synthetic", weights="code").resolved()
    assert (c.weight_counts, c.weight_rescale, c.weight_apply_to, c.weight_fit) == (
        "supercount_inplace", "code", "negative", "train")
    c = TrainConfig(dataset="synthetic").override(["weights=paper", "weight_apply_to=negative"]).resolved()
    assert (c.weight_counts, c.weight_apply_to, c.weight_fit) == ("closed", "negative", "used")


# ----------------------------------------------------------------------------- resampling


def test_lpros_roundings_hand_computed():
    # Bags: A x6, B x2, C x1, D x1 -> 4 labelsets, meanSize 2.5, minority B, C, D; floor(10 * 0.25) = 2.
    Y = np.array([[1, 0, 0]] * 6 + [[0, 1, 0]] * 2 + [[0, 0, 1]] + [[1, 1, 1]], np.uint8)
    r = lpros(Y, p=0.25, seed=0, rounding="real")
    assert r.num_added == 2 and len(r.indices) == 12
    np.testing.assert_array_equal(r.indices[:10], np.arange(10))
    assert sorted(r.indices[10:].tolist()) == [8, 9]  # the two singletons, one clone each; B gets none
    np.testing.assert_array_equal(r.labels, Y[r.indices])
    j = lpros(Y, p=0.25, seed=0, rounding="java")  # ceil(min(meanSize - |bag|, 2/3)) = 1 per bag, no cap
    assert j.num_added == 3 and set(j.indices[10:].tolist()) <= {6, 7, 8, 9}
    assert lpros(Y, p=0.25, seed=0, rounding="integer").num_added == 0  # meanInc = 2 // 3 = 0
    big = lpros(Y, p=1.0, seed=0)  # 10 to clone: B +1 (to 2.5 -> ceil 1), C and D +2 each (ceil 1.5)
    assert big.num_added == 5
    np.testing.assert_array_equal(lpros(Y, seed=3).indices, lpros(Y, seed=3).indices)  # seeded
    with pytest.raises(ValueError, match="rounding"):
        lpros(Y, seed=0, rounding="round")
    with pytest.raises(ValueError, match="0/1"):
        lpros(Y * 2, seed=0)


@pytest.mark.parametrize("rule", ["code", "paths"])
def test_hros_pd_hand_computed(rule):
    h = _tree()
    rows = [["a1"]] * 6 + [["a2"], ["a2", "b"], ["b"], ["b"]]
    Y = _closed(h, rows)
    # Most specific counts: a1 6, a2 2, b 3 -> a 8, root 11. IRLbP over {a, a1, a2, b} = 8/[8, 6, 2, 3]:
    # HMeanIR = (1 + 4/3 + 4 + 8/3) / 4 = 2.25 -> minority a2, b. samples = floor(1.1) = 1,
    # meanSize = ceil(11 / 4) = 3, maxIncrease = ceil(1 / 2) = 1. a2 (count 2) gets 1 copy; then
    # b: IRLbP = 9 / 3 = 3 > 2.25 but meanSize - count = 0, so nothing. Both rules agree here.
    r = hros_pd(Y, h, s=0.1, seed=0, rule=rule)
    assert r.num_added == 1
    assert r.indices[-1] in (6, 7)  # a row annotated with a2
    np.testing.assert_array_equal(r.labels[-1], _closed(h, [["a2"]])[0])  # relabelled: a2 and ancestors only
    np.testing.assert_array_equal(r.labels[:10], Y)
    more = hros_pd(Y, h, s=1.0, seed=0, rule=rule)  # maxIncrease 6: a2 +1 (meanSize 3), b +0
    assert more.num_added == 1
    with pytest.raises(ValueError, match="rule must be one of"):
        hros_pd(Y, h, seed=0, rule="tree")


def test_hros_pd_code_rule_counts_a_trees_copies_one_level_up():
    """On a tree the released code adds the copies to the term's count and its parent's only (its new-count
    dict holds that one key, so the propagation stops a level up): a grandparent still looks rare and is
    oversampled after its grandchild was. The paths rule counts them all the way up."""
    h = Hierarchy.from_edges([("r", "x"), ("r", "y"), ("r", "z"), ("r", "a"), ("a", "b"), ("b", "c")], skip=())
    Y = _closed(h, [["x"]] * 20 + [["y"]] * 20 + [["z"]] * 20 + [["a"], ["c"]])
    # Counts x, y, z 20, a 2, b 1, c 1, root 62; IRLbP 1, 1, 1, 10, 20, 20, HMeanIR 53/6 = 8.83: minority a, b,
    # c. samples = 31, meanSize = ceil(62 / 6) = 11, maxIncrease = ceil(31 / 3) = 11. Depth 3: c gets
    # min(11, 11 - 1) = 10 copies -> c 11, b 11; a stays 2 under code (12 under paths). Depth 2: b, 20 / 11
    # <= 8.83. Depth 1: code: a, 20 / 2 = 10 > 8.83, gets min(11, 11 - 2) = 9; paths: 20 / 12, none.
    code = hros_pd(Y, h, s=0.5, seed=0, rule="code")
    assert code.num_added == 19
    np.testing.assert_array_equal(code.labels[62:72], np.repeat(_closed(h, [["c"]]), 10, axis=0))
    np.testing.assert_array_equal(code.labels[72:], np.repeat(_closed(h, [["a"]]), 9, axis=0))
    assert set(code.indices[62:72].tolist()) == {61} and set(code.indices[72:].tolist()) == {60}
    assert hros_pd(Y, h, s=0.5, seed=0, rule="paths").num_added == 10


def test_hros_pd_on_a_dag_counts_over_its_paths():
    """On a DAG the statistics run on the tree of root-to-node paths (c, reachable through a and through b,
    counts twice); the released code then oversamples each term once (``code``), the ``paths`` rule each
    path."""
    from hmljax.data import hierarchy_paths

    dag = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "c"), ("b", "c")], skip=())
    node, parent, depth = hierarchy_paths(dag)
    names = [dag.names[i] for i in node]
    assert names == ["r", "a", "b", "c", "c"] and parent.tolist() == [-1, 0, 0, 1, 2]
    assert depth.tolist() == [0, 1, 1, 2, 2]
    Y = _closed(dag, [["c"]] + [["a"]] * 4 + [["b"]] * 4)
    # Path counts: r/a/c 1, r/b/c 1, r/a 5, r/b 5, r 10 (c twice). IRLbP = 5/[5, 5, 1, 1], HMeanIR 3:
    # minority = both c paths. samples = floor(0.5 * 10) = 5, meanSize = ceil(10 / 4) = 3,
    # maxIncrease = ceil(5 / 2) = 3.
    # paths: r/a/c: min(3, 3 - 1) = 2 copies (r/a -> 7, max 7); r/b/c: 7/1 > 3, 2 more. Depth 1: 7/7 <= 3.
    r = hros_pd(Y, dag, s=0.5, seed=0, rule="paths")
    assert r.num_added == 4 and r.indices[9:].tolist() == [0] * 4
    np.testing.assert_array_equal(r.labels[9:], np.repeat(_closed(dag, [["c"]]), 4, axis=0))
    # code: the term c once, min(3, 3 - 1) = 2 copies, counted on both its paths (r/a, r/b -> 7).
    r = hros_pd(Y, dag, s=0.5, seed=0)
    assert r.num_added == 2 and r.indices[9:].tolist() == [0] * 2
    np.testing.assert_array_equal(r.labels[9:], np.repeat(_closed(dag, [["c"]]), 2, axis=0))
    with pytest.raises(ValueError, match="max_paths=4"):
        hros_pd(Y, dag, seed=0, max_paths=4)


def test_a_run_saved_before_hros_rule_reads_as_the_paths_rule(tmp_path):
    """HROS-PD's default changed to the released code's rule: a run saved without the key was made with
    the paths rule, and must never pass for one of today's default (nor a run without resampling gain it)."""
    import json

    from hmljax.training import TrainConfig, config_diff

    old = TrainConfig(dataset="synthetic", resample="hros_pd", hros_rule="paths").resolved().to_dict()
    old.pop("hros_rule")
    (tmp_path / "config.json").write_text(json.dumps({"config": old}))
    assert TrainConfig.from_saved(old).resolved().hros_rule == "paths"
    assert config_diff(str(tmp_path), TrainConfig(dataset="synthetic", resample="hros_pd").resolved()) == {
        "hros_rule": ("paths", "code")}
    assert not config_diff(str(tmp_path), TrainConfig(dataset="synthetic", resample="hros_pd", hros_rule="paths"))
    plain = TrainConfig(dataset="synthetic").resolved().to_dict()
    assert TrainConfig.from_saved(plain).resolved().hros_rule is None


@needs_data
@pytest.mark.parametrize("name, code, paths", [("cellcycle_FUN", 492, 560), ("eisen_GO", 632, 3798)])
def test_hros_pd_code_rule_makes_the_released_codes_copies(name, code, paths):
    """Copy counts on the train split, as the released ``oversampled_pd`` made them (run on the same ARFF on
    2026-12-01, outside hmljax: the copies per term agreed on all twelve FUN and GO datasets; the counts
    do not depend on the seed)."""
    ds = load(name)
    Y = np.asarray(ds.Y["train"])
    assert hros_pd(Y, ds.hierarchy, seed=0).num_added == code
    assert hros_pd(Y, ds.hierarchy, seed=1, rule="paths").num_added == paths


def test_resampling_feeds_training_and_weights(tmp_path):
    from hmljax.methods import node_weights_for, training_rows
    from hmljax.training import build_method

    cfg = TrainConfig(dataset="synthetic", resample="lpros", weights="paper").resolved()
    ds = load_dataset("synthetic")
    X, Y, info = training_rows(cfg.method_config, ds, "train", seed=cfg.seed)
    assert info["added"] == math.floor(info["rows"] * 0.25) and X.shape[0] == Y.shape[0] == info["rows"] + info["added"]
    # The method trains on exactly these rows, and reports them.
    _, method, split = build_method(cfg, ds, split="train")
    assert split == "train" and dict(method.info) == info
    np.testing.assert_array_equal(method.train_x, X)
    np.testing.assert_array_equal(method.train_y, Y)
    w_used = node_weights_for(cfg.method_config, ds, Y)
    cfg_train = TrainConfig(dataset="synthetic", resample="lpros", weights="paper", weight_fit="train").resolved()
    w_train = node_weights_for(cfg_train.method_config, ds, Y)
    assert not np.allclose(w_used, w_train)  # weights follow the resampled data


def test_scheduler_target_defaults_to_w0_as_the_released_code():
    """The released code moves the weights toward its min_weight_const (w0), not a fixed 0.25."""
    from hmljax.training import TrainConfig

    cfg = TrainConfig(dataset="synthetic", weights="code", w0=0.5, schedule="linear").resolved()
    assert cfg.method_config.omega == 0.5
    cfg = TrainConfig(dataset="synthetic", weights="code", schedule="linear").resolved()
    assert cfg.method_config.omega == 0.25
    cfg = TrainConfig(dataset="synthetic", weights="code", w0=0.5, schedule="linear", omega=1.0).resolved()
    assert cfg.method_config.omega == 1.0


@needs_data
def test_resample_rows_train_oversamples_before_valid_is_appended():
    """The released code oversamples the train split, then appends valid: cellcycle_FUN's HROS-PD adds 492
    copies (16.6 % of the rows) where resampling train+valid adds 816 (24.8 %)."""
    from hmljax.training import TrainConfig, build_method

    added = {}
    for rows in ("all", "train"):
        cfg = TrainConfig(dataset="cellcycle_FUN", resample="hros_pd", resample_rows=rows).resolved()
        _, m, split = build_method(cfg)
        assert split == "train+valid"
        added[rows] = (m.info["added"], m.train_x.shape[0])
    assert added == {"all": (816, 3292), "train": (492, 2968)}


def test_mc_loss_all_takes_the_loss_on_every_pass():
    """``mc_loss=all``: P dropout passes with gradients are the loss's members (U from the same passes), so with
    no dropout the objective is P times ``mc_loss=one``'s; ``one`` keeps the passes gradient-free."""
    from hmljax.engine import Batch
    from hmljax.training import TrainConfig, build_method

    out = {}
    for mode in ("one", "all"):
        cfg = TrainConfig(dataset="synthetic", mc_passes=3, mc_loss=mode, focal="gmu", dropout=0.0,
                          batch_size=8).resolved()
        _, m, _ = build_method(cfg)
        params, state = m.model.init(jax.random.key(0))
        x, y = jnp.asarray(m.train_x[:8]), jnp.asarray(m.train_y[:8], jnp.float32)
        batch = Batch(x, y, jnp.ones(8, bool), jnp.arange(8), jnp.int32(0))
        o = jax.eval_shape(lambda p, m=m, state=state, x=x: m.model.apply(p, state, x, train=True,
                                                                          key=jax.random.key(1)), params)
        assert o.logits.shape[0] == (1 if mode == "one" else 3) and ("mc_logits" in o.aux) == (mode == "one")
        objective = jax.jit(lambda p, b, m=m, state=state: m.loss(
            m.model.apply(p, state, b.x, train=True, key=jax.random.key(1)), b)[0])
        out[mode] = float(objective(params, batch))
    assert out["all"] == pytest.approx(3 * out["one"], rel=1e-5)
    with pytest.raises(ValueError, match="mc_loss.*applies only with mc_passes"):
        TrainConfig(dataset="synthetic", mc_loss="all").resolved()
