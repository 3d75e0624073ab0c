"""MPVAE: the probit likelihood, marginal, ranking loss and KL against float64 numpy/scipy, the loss assembled by
hand, padding, gradients, vmap, randomness, and the method end to end (uniform and adaptive batches) on a tiny
MULAN dataset."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import write_mulan
from jax.test_util import check_grads
from scipy import special, stats

from hmljax.engine import Batch, register_method
from hmljax.methods import (
    MpvaeConfig,
    build_mpvae,
    mpvae_loss,
    mpvae_model,
    mpvae_probs,
    probit_bce,
    probit_ranking_loss,
)
from hmljax.models import (
    Mpvae,
    gaussian_kl,
    log_probit,
    probit_log_likelihood,
    probit_marginal,
    probit_scores,
)
from hmljax.training import TrainConfig, train_and_evaluate

register_method("mpvae", MpvaeConfig, build_mpvae, replace=True,
                doc="MPVAE: aligned label/feature VAE embeddings decoded by a multivariate probit model")

DELTA = 1e-6


def _np_probs(scores):
    return special.ndtr(np.asarray(scores, np.float64)) * (1 - DELTA) + DELTA / 2


def _np_loglik(mean, r, noise, y):
    """log mean_S prod_C p^y (1 - p)^(1 - y), p the clamped Phi(mean + R eps'), in float64 (no log-space tricks)."""
    p = _np_probs(np.asarray(noise, np.float64) @ np.asarray(r, np.float64).T + np.asarray(mean, np.float64)[None])
    y = np.asarray(y, np.float64)[None]
    return np.log(np.mean(np.prod(p**y * (1 - p) ** (1 - y), axis=-1), axis=0))


def _np_ranking(probs, y, a=5.0):
    """The released code's ranking loss per row: mean over draws of sum_{p in Y+, q in Y-} exp(-a (P_p - P_q)) /
    (a |Y+| |Y-|), rows without pairs 0."""
    out = np.zeros(probs.shape[1])
    for b in range(probs.shape[1]):
        pos, neg = np.flatnonzero(y[b] > 0.5), np.flatnonzero(y[b] < 0.5)
        if len(pos) and len(neg):
            out[b] = np.mean([sum(np.exp(-a * (P[p] - P[q])) for p in pos for q in neg) / (a * len(pos) * len(neg))
                              for P in probs[:, b]])
    return out


def _np_kl(mu_q, lv_q, mu_p, lv_p):
    """KL(N(mu_q, diag e^lv_q) || N(mu_p, diag e^lv_p)) per row from the general Gaussian formula."""
    out = []
    for a, la, b, lb in zip(mu_q, lv_q, mu_p, lv_p, strict=True):
        sq, sp = np.diag(np.exp(la)), np.diag(np.exp(lb))
        inv = np.linalg.inv(sp)
        out.append(0.5 * (np.trace(inv @ sq) + (b - a) @ inv @ (b - a) - len(a)
                          + np.log(np.linalg.det(sp) / np.linalg.det(sq))))
    return np.array(out)


def _batch(x, y, where):
    return Batch(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(where), jnp.arange(len(where)),
                 jnp.int32(0))


# ------------------------------------------------------------------------------------------ probit pieces
def test_log_probit_matches_scipy_and_stays_finite():
    s = np.array([-40.0, -8.0, -1.5, 0.0, 0.3, 2.0, 8.0, 40.0])
    got = jax.jit(lambda v: (log_probit(v), log_probit(-v), log_probit(v, clamp=0.0)))(jnp.asarray(s, jnp.float32))
    np.testing.assert_allclose(np.asarray(got[0]), np.log(_np_probs(s)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got[1]), np.log(1 - _np_probs(s)), rtol=1e-5)  # log(1 - p) = log_probit(-s)
    np.testing.assert_allclose(np.asarray(got[2]), special.log_ndtr(s), rtol=1e-5)
    assert float(got[0][0]) == pytest.approx(np.log(DELTA / 2), rel=1e-6)  # the clamp bounds a label's cost
    np.testing.assert_allclose(np.asarray(mpvae_probs(jnp.asarray(s, jnp.float32))), _np_probs(s), rtol=1e-6)


def test_probit_log_likelihood_matches_numpy_float64():
    rng = np.random.default_rng(0)
    S, B, C, R = 5, 3, 8, 3
    mean, r, noise = rng.normal(size=(B, C)), 0.7 * rng.normal(size=(C, R)), rng.normal(size=(S, B, R))
    y = (rng.uniform(size=(B, C)) > 0.5).astype(np.float64)
    mean[2] = np.where(y[2] > 0.5, -30.0, 30.0)  # every label confidently wrong: prod_C p ~ 1e-51, below float32
    ll = jax.jit(lambda m, r, e, y: probit_log_likelihood(probit_scores(m, r, e), y))
    got = ll(*(jnp.asarray(v, jnp.float32) for v in (mean, r, noise, y)))
    assert got.shape == (B,)
    np.testing.assert_allclose(np.asarray(got), _np_loglik(mean, r, noise, y), rtol=2e-5)
    assert float(got[2]) == pytest.approx(C * np.log(DELTA / 2), rel=1e-4)
    # Gradients in the mean and the covariance factor, by finite differences.
    f = jax.jit(lambda m, r: ll(m, r, jnp.asarray(noise, jnp.float32), jnp.asarray(y, jnp.float32))[:2].sum())
    check_grads(f, (np.where(np.abs(mean) > 5, 0.0, mean), r), order=1, modes=("rev",), eps=1e-3, atol=2e-2, rtol=2e-2)


def test_the_estimate_converges_to_the_multivariate_probit_probability():
    """With many draws, mean_S prod_C Phi(.) is P(y) under y_c = 1[mean_c + u_c > 0], u ~ N(0, R R^T + I)."""
    mean, r = np.array([[0.4, -0.3]]), np.array([[0.9], [0.8]])  # C = 2, R = 1: correlation 0.72 / sqrt(1.81 * 1.64)
    cov = r @ r.T + np.eye(2)
    noise = jax.random.normal(jax.random.key(0), (200_000, 1, 1))
    ll = jax.jit(lambda y: probit_log_likelihood(probit_scores(jnp.asarray(mean, jnp.float32),
                                                               jnp.asarray(r, jnp.float32), noise), y, clamp=0.0))
    for y in ([1, 1], [1, 0], [0, 0]):
        sign = np.where(np.array(y) > 0, 1.0, -1.0)  # P(sign * (mean + u) > 0) = P(-sign * u < sign * mean)
        want = stats.multivariate_normal(np.zeros(2), cov * np.outer(sign, sign)).cdf(sign * mean[0])
        got = float(jnp.exp(ll(jnp.asarray([y], jnp.float32))[0]))
        assert got == pytest.approx(want, abs=4e-3), y
    # Each label's marginal is Phi(mean / sqrt(1 + ||R_c||^2)): the limit of the mean of Phi over the draws.
    marg = np.asarray(probit_marginal(jnp.asarray(mean, jnp.float32), jnp.asarray(r, jnp.float32)))
    np.testing.assert_allclose(special.ndtr(marg[0]), special.ndtr(mean[0] / np.sqrt(np.diag(cov))), rtol=1e-6)
    mc = special.ndtr(np.asarray(probit_scores(jnp.asarray(mean, jnp.float32), jnp.asarray(r, jnp.float32),
                                               noise))).mean(0)
    np.testing.assert_allclose(mc[0], special.ndtr(marg[0]), atol=3e-3)


def test_ranking_loss_and_bce_match_numpy():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(3, 4, 5))
    y = np.array([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 1]], np.float32)
    got = jax.jit(lambda s, y: probit_ranking_loss(s, y, scale=5.0))(jnp.asarray(scores, jnp.float32), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(got), _np_ranking(_np_probs(scores), y), rtol=1e-5)
    assert float(got[1]) == 0.0 and float(got[2]) == 0.0  # no positive / no negative: no pairs
    where = np.array([True, True, False, True])
    bce = np.asarray(probit_bce(jnp.asarray(scores[0], jnp.float32), jnp.asarray(y), jnp.asarray(where)))
    p = _np_probs(scores[0])
    want = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(1)
    np.testing.assert_allclose(bce, np.where(where, want, 0.0), rtol=1e-5)


def test_gaussian_kl_matches_the_closed_form_float64():
    rng = np.random.default_rng(2)
    mu_q, mu_p = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    lv_q, lv_p = 0.5 * rng.normal(size=(3, 4)), 0.5 * rng.normal(size=(3, 4))
    kl = jax.jit(gaussian_kl)
    got = kl(*(jnp.asarray(v, jnp.float32) for v in (mu_q, lv_q, mu_p, lv_p)))
    np.testing.assert_allclose(np.asarray(got), _np_kl(mu_q, lv_q, mu_p, lv_p), rtol=1e-5)
    same = kl(*(jnp.asarray(v, jnp.float32) for v in (mu_q, lv_q, mu_q, lv_q)))
    np.testing.assert_allclose(np.asarray(same), 0.0, atol=1e-6)
    check_grads(lambda a, b, c, d: kl(a, b, c, d).sum(), (mu_q, lv_q, mu_p, lv_p), order=1, modes=("rev",), eps=1e-3,
                atol=2e-2, rtol=2e-2)
    # vmap over a leading axis agrees with the batched call.
    stacked = jnp.asarray(np.stack([mu_q, mu_p]), jnp.float32)
    v = jax.vmap(lambda m: gaussian_kl(m, jnp.asarray(lv_q, jnp.float32), m * 0, jnp.asarray(lv_p, jnp.float32)))(
        stacked)
    np.testing.assert_allclose(np.asarray(v[0]), _np_kl(mu_q, lv_q, 0 * mu_q, lv_p), rtol=1e-5)


# ------------------------------------------------------------------------------------------ the network
NUM_FEATURES, NUM_LABELS = 6, 4
SAMPLES = 7


@pytest.fixture(scope="module")
def mpvae_setup():
    """A small MPVAE (one narrow layer per network: compiling dominates these tests; K = 3, R = C) without
    dropout, and a batch with one padding row."""
    net = Mpvae(num_labels=NUM_LABELS, rank=NUM_LABELS, latent=3, label_widths=(16,), feature_widths=(8,),
                decoder_widths=(8,), dropout=0.0)
    model = mpvae_model(net, NUM_FEATURES, NUM_LABELS)
    params, state = jax.jit(model.init)(jax.random.key(0))
    x = np.random.default_rng(3).normal(size=(4, NUM_FEATURES))
    y = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]], np.float32)
    where = np.array([True, True, True, False])
    return net, model, params, state, x, y, where


def _loss(net, out, batch, **kw):
    kw = {"beta": 1.1, "nll_weight": 0.1, "rank_weight": 20.0, "rank_scale": 5.0, "samples": SAMPLES, "clamp": DELTA,
          **kw}
    return mpvae_loss(out, batch, net=net, **kw)


def test_mpvae_loss_matches_its_pieces_and_padding_counts_for_nothing(mpvae_setup):
    net, model, params, state, x, y, where = mpvae_setup

    def objective(p, x, y, key):
        out = model.apply(p, state, jnp.asarray(x, jnp.float32), train=True, key=key)
        total, aux = _loss(net, out, _batch(x, y, where))
        lab = net.apply({"params": p}, jnp.asarray(x, jnp.float32), jnp.asarray(y), out.aux["eps"], train=False,
                        method=Mpvae.label_branch)
        lab["noise"] = jax.random.normal(out.aux["probit_key"], (SAMPLES, 4, NUM_LABELS))  # the loss's draws
        return total, (aux, out, lab)

    value_and_grad = jax.jit(jax.value_and_grad(objective, has_aux=True))
    (total, (aux, out, lab)), grads = value_and_grad(params, x, y, jax.random.key(1))
    # A fixed key is the same run (gradients included); another key draws other latents and probit noise.
    (total_again, _), grads_again = value_and_grad(params, x, y, jax.random.key(1))
    assert float(total_again) == float(total)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_again), strict=True))
    (total_other, (_, out_other, _)), _ = value_and_grad(params, x, y, jax.random.key(2))
    assert float(total_other) != float(total) and not np.allclose(out_other.aux["eps"], out.aux["eps"])
    # Whatever the padding row holds, nothing changes.
    x2, y2 = x.copy(), y.copy()
    x2[3], y2[3] = 7.0, [1, 0, 1, 0]
    (total2, (aux2, _, _)), _ = value_and_grad(params, x2, y2, jax.random.key(1))
    np.testing.assert_allclose(float(total2), float(total), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(aux2.per_sample), np.asarray(aux.per_sample))
    assert float(aux.per_sample[3]) == 0.0
    # The objective assembled in float64 from the branches' outputs and the same draws.
    r = np.asarray(params["r_sqrt_sigma"], np.float64)
    noise = np.asarray(lab["noise"], np.float64)[:, where]
    f64 = lambda v: np.asarray(v, np.float64)[where]  # noqa: E731
    nll = rank = 0.0
    for mean in (lab["mean"], out.aux["mean"]):
        nll += -_np_loglik(f64(mean), r, noise, y[where]).mean()
        rank += _np_ranking(_np_probs(noise @ r.T + f64(mean)[None]), y[where]).mean()
    kl = _np_kl(f64(lab["mu"]), f64(lab["logvar"]), f64(out.aux["mu"]), f64(out.aux["logvar"])).mean()
    np.testing.assert_allclose(float(total), 0.1 * nll + 20.0 * rank + 1.1 * kl, rtol=1e-4)
    # per_sample: the BCE of the feature branch's marginal probabilities, mean over labels.
    marg = f64(out.aux["mean"]) / np.sqrt(1 + (r**2).sum(1))[None]
    p = _np_probs(marg)
    np.testing.assert_allclose(np.asarray(aux.per_sample)[where],
                               -(y[where] * np.log(p) + (1 - y[where]) * np.log(1 - p)).mean(1), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out.logits[0])[where], marg, rtol=1e-5, atol=1e-6)
    # Every part of the network learns, with finite gradients.
    for name in ("label_encoder", "feature_encoder", "decoder", "label_head", "feature_head", "r_sqrt_sigma"):
        leaves = jax.tree.leaves(grads[name])
        assert all(np.isfinite(np.asarray(v)).all() for v in leaves), name
        assert sum(float(jnp.abs(v).sum()) for v in leaves) > 0, name


def test_mpvae_eval_is_deterministic_with_z_at_the_mean(mpvae_setup):
    net, model, params, state, x, y, where = mpvae_setup

    def decode_at(m, x, z):  # the feature branch's decoder and head at a given z
        return m.feature_head(m.decoder(jnp.concatenate([x, z], -1), train=False))

    @jax.jit
    def run(p):
        ev = model.apply(p, state, jnp.asarray(x, jnp.float32), train=False)
        mean = net.apply({"params": p}, jnp.asarray(x, jnp.float32), ev.aux["mu"], method=decode_at)
        return ev.logits, "eps" in ev.aux, probit_marginal(mean, p["r_sqrt_sigma"])

    logits, has_eps, want = run(params)
    np.testing.assert_array_equal(np.asarray(run(params)[0]), np.asarray(logits))
    assert logits.shape == (1, 4, NUM_LABELS) and not bool(has_eps)
    np.testing.assert_allclose(np.asarray(logits[0]), np.asarray(want), rtol=1e-6)


@pytest.mark.slow
def test_mpvae_dropout_keys_and_vmap(mpvae_setup):
    """With dropout: a fixed key repeats a run, vmap over keys agrees with a call per key, and a loss on an eval
    forward (no keys) is deterministic (slow: one large compilation)."""
    net, model, params, state, x, y, where = mpvae_setup
    dropped = net.clone(dropout=0.5)  # the same parameters: dropout has none
    with_dropout = mpvae_model(dropped, NUM_FEATURES, NUM_LABELS)
    batch = _batch(x, y, where)

    def train(p, key):
        out = with_dropout.apply(p, state, batch.x, train=True, key=key)
        return _loss(dropped, out, batch)[0], out.logits

    @jax.jit  # one compiled function for every check below (compiling dominates on small CPUs)
    def run(p, keys):
        ev = with_dropout.apply(p, state, batch.x, train=False)
        return jax.vmap(train, in_axes=(None, 0))(p, keys), train(p, keys[2]), _loss(dropped, ev, batch)[0]

    keys = jnp.stack([jax.random.key(2), jax.random.key(2), jax.random.key(3)])
    (losses, logits), single, ev_loss = run(params, keys)
    assert float(losses[0]) == float(losses[1]) and np.array_equal(np.asarray(logits[0]), np.asarray(logits[1]))
    assert float(losses[0]) != float(losses[2]) and not np.allclose(np.asarray(logits[0]), np.asarray(logits[2]))
    np.testing.assert_allclose(float(losses[2]), float(single[0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logits[2]), np.asarray(single[1]), rtol=1e-5, atol=1e-6)
    assert float(run(params, keys)[2]) == float(ev_loss) and np.isfinite(float(ev_loss))


@pytest.mark.slow
def test_mpvae_loss_gradient_against_finite_differences(mpvae_setup):
    """The whole objective's gradient in a small parameter set (the covariance factor and the feature head's
    bias), the draws fixed by the key (slow: two more compilations of the network)."""
    net, model, params, state, x, y, where = mpvae_setup
    batch = _batch(x, y, where)

    def small(r, bias):
        p = {**params, "r_sqrt_sigma": r, "feature_head": {**params["feature_head"], "bias": bias}}
        return _loss(net, model.apply(p, state, batch.x, train=True, key=jax.random.key(5)), batch)[0]

    check_grads(jax.jit(small), (params["r_sqrt_sigma"], params["feature_head"]["bias"]), order=1, modes=("rev",),
                eps=1e-2, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("bad", [{"beta": -1.0}, {"nll_weight": float("nan")}, {"rank_scale": 50.0}, {"latent": 0},
                                 {"probit_rank": 1.5}, {"mc_samples": 0}, {"dropout": 1.0}, {"probit_clamp": 0.0},
                                 {"auc_convention": "x"}], ids=lambda v: next(iter(v)))
def test_config_refuses_bad_values(bad):
    MpvaeConfig().validate()
    with pytest.raises(ValueError, match=f"bad value for {next(iter(bad))}"):
        MpvaeConfig(**bad).validate()


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def flat_data(tmp_path_factory):
    return write_mulan(str(tmp_path_factory.mktemp("mpvae") / "mpvaetoy"), "mpvaetoy", num_features=NUM_FEATURES,
                       num_labels=NUM_LABELS)


@pytest.mark.slow
@pytest.mark.parametrize("sampler, keys", [("epoch", {}), ("adaptive", {"select_warmup": 1})])
def test_mpvae_trains_end_to_end(sampler, keys, flat_data, tmp_path):
    cfg = TrainConfig(dataset="mpvaetoy", data_dir=flat_data, method="mpvae", sampler=sampler, epochs=2, lr=1e-3,
                      batch_size=32, weight_decay=1e-4, mc_samples=10, **keys)
    out = train_and_evaluate(cfg, str(tmp_path / sampler), progress=False)
    res = out["results"]
    assert res["method"] == "mpvae" and res["epochs_run"] == 2 and res["train_rows"]["rows"] == 96
    assert res["train_rows"]["probit_rank"] == NUM_LABELS and res["train_rows"]["latent"] == 50
    assert all(np.isfinite(res["test"][k]) for k in ("macro_auc", "micro_f1", "macro_f1", "ranking_loss", "map"))
    losses = [json.loads(line)["loss"] for line in open(tmp_path / sampler / "metrics.jsonl")]
    assert len(losses) == 2 and all(np.isfinite(losses))
    if sampler == "adaptive":
        st = out["state"].sampler_state
        # The warm-up epoch recorded every row's BCE; selection ran in the second epoch.
        assert int(st["epoch"]) == 1 and np.all(np.asarray(st["loss"]) > 0)
