"""Adaptive batch selection (Zhou et al.): the imbalance statistics by hand, the samplers' draws, the engine.

The hand-made example (8 rows, 4 labels, 1-D features) is worked through below from the paper's
equations; the tests compare the code with those hand values, never with a second run of the code.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from hmljax.engine import get_sampler
from hmljax.methods import batch_selection as bs
from hmljax.training import TrainConfig, train_and_evaluate

bs.register_batch_samplers()

# ------------------------------------------------------------------------------------- the hand example
# Features on a line, gaps 1, 2, 4, ..., 64, so no two distances from a row tie:
X8 = np.array([[0.0], [1.0], [3.0], [7.0], [15.0], [31.0], [63.0], [127.0]])
# The 2 nearest neighbours (self excluded), by |x_i - x_m|:
#   row 0 (x=0):   1 (d 1), 2 (d 3)            | row 4 (x=15):  3 (d 8), 2 (d 12)
#   row 1 (x=1):   0 (d 1), 2 (d 2)            | row 5 (x=31):  4 (d 16), 3 (d 24)
#   row 2 (x=3):   1 (d 2), 0 (d 3)            | row 6 (x=63):  5 (d 32), 4 (d 48)
#   row 3 (x=7):   2 (d 4), 1 (d 6)            | row 7 (x=127): 6 (d 64), 5 (d 96)
NBRS = [{1, 2}, {0, 2}, {0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}]
Y8 = np.array([
    [1, 0, 0, 1],  # row 0
    [0, 1, 0, 1],  # row 1
    [1, 0, 0, 0],  # row 2
    [1, 0, 1, 0],  # row 3
    [1, 0, 1, 0],  # row 4
    [1, 1, 0, 0],  # row 5
    [1, 1, 0, 0],  # row 6
    [0, 1, 0, 1],  # row 7
], np.uint8)
# Label counts C_j: label 0 rows {0,2,3,4,5,6} = 6; label 1 rows {1,5,6,7} = 4; label 2 rows {3,4} = 2;
# label 3 rows {0,1,7} = 3.  Eq. 1: IRLbl = 6 / C_j = [1, 1.5, 3, 2].
IRLBL = [1.0, 1.5, 3.0, 2.0]
# MeanIR = (1 + 1.5 + 3 + 2) / 4 = 7.5 / 4 = 1.875; L_m = {j : IRLbl_j > 1.875} = {2, 3}.
MEAN_IR = 1.875
MINORITY = [False, False, True, True]
# Eq. 2 with k = 2: for each positive y_ij, the fraction of the 2 neighbours with y_mj = 0.
#   label 0: row 0 nbrs 1 (0), 2 (1) -> 1/2; row 2 nbrs 0 (1), 1 (0) -> 1/2; row 3 nbrs 1 (0), 2 (1) -> 1/2;
#            row 4 nbrs 2, 3 both 1 -> 0; row 5 nbrs 3, 4 -> 0; row 6 nbrs 4, 5 -> 0.
#   label 1: row 1 nbrs 0, 2 both 0 -> 1; row 5 nbrs 3, 4 both 0 -> 1; row 6 nbrs 4 (0), 5 (1) -> 1/2;
#            row 7 nbrs 5, 6 both 1 -> 0.
#   label 2: row 3 nbrs 1, 2 both 0 -> 1; row 4 nbrs 2 (0), 3 (1) -> 1/2.
#   label 3: row 0 nbrs 1 (1), 2 (0) -> 1/2; row 1 nbrs 0 (1), 2 (0) -> 1/2; row 7 nbrs 5, 6 both 0 -> 1.
B_ALL = np.array([
    [0.5, 0.0, 0.0, 0.5],
    [0.0, 1.0, 0.0, 0.5],
    [0.5, 0.0, 0.0, 0.0],
    [0.5, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.5, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.5, 0.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
])
# Eq. 4 on B_ALL: denominators over the entries < 1: label 0: 3 · 1/2 = 1.5; label 1: 1/2 (row 6; rows 1 and 5
# are outliers); label 2: 1/2 (row 4; row 3 an outlier); label 3: 1/2 + 1/2 = 1 (row 7 an outlier).
S_ALL = np.array([
    [1 / 3, 0.0, 0.0, 0.5],
    [0.0, -1.0, 0.0, 0.5],
    [1 / 3, 0.0, 0.0, 0.0],
    [1 / 3, 0.0, -1.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, -1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, -1.0],
])
# eps_i = sum over L_m = {2, 3} of S_ij, outliers (-1) left out:
#   row 0: 0 + 1/2; row 1: 0 + 1/2; row 3: (-1 skipped) + 0; row 4: 1 + 0; row 7: 0 + (-1 skipped); others 0.
# w = 1 + eps:
W8 = [1.5, 1.5, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0]
# Per-sample losses recorded in the warm-up, and the weighted selection losses w ⊙ ℓ (eq. 5):
LOSS8 = np.array([0.2, 0.9, 0.5, 0.35, 1.1, 0.05, 0.7, 0.3], np.float32)
#   w ⊙ ℓ = [0.3, 1.35, 0.5, 0.35, 2.2, 0.05, 0.7, 0.3]; ℓ_max = 2.2, n = 8, Δ = 2.2 / 8 = 0.275;
#   ℓ / Δ = [1.09, 4.91, 1.82, 1.27, 8, 0.18, 2.55, 1.09]  -> eq. 6, Q = ceil:
Q_WEIGHTED = [2, 5, 2, 2, 8, 1, 3, 2]
#   unweighted: ℓ_max = 1.1, Δ = 0.1375; ℓ / Δ = [1.45, 6.55, 3.64, 2.55, 8, 0.36, 5.09, 2.18]:
Q_UNWEIGHTED = [2, 7, 4, 3, 8, 1, 6, 3]
# Eq. 7 with s_e = 2, n = 8: p_i = 2^(Q_i/8) / Σ; for Q_WEIGHTED the sum is
#   4 · 2^(2/8) + 2^(5/8) + 2^(8/8) + 2^(1/8) + 2^(3/8) = 4.756828 + 1.542211 + 2 + 1.090508 + 1.296840 = 10.686387,
# so p_4 = 2 / 10.686387 = 0.187154 (the largest) and p_5 = 1.090508 / 10.686387 = 0.102046 (the smallest).
P_WEIGHTED = [1.189207 / 10.686387, 1.542211 / 10.686387, 1.189207 / 10.686387, 1.189207 / 10.686387,
              2 / 10.686387, 1.090508 / 10.686387, 1.296840 / 10.686387, 1.189207 / 10.686387]
# Eq. 3 (hard): the ascending ranks of LOSS8: 0.05 (row 5) -> 1, 0.2 (0) -> 2, 0.3 (7) -> 3, 0.35 (3) -> 4,
# 0.5 (2) -> 5, 0.7 (6) -> 6, 0.9 (1) -> 7, 1.1 (4) -> 8; p ∝ 2^(r/8).
RANKS = [2, 7, 5, 4, 8, 1, 6, 3]
# Chain variant (App. 6). Co-occurrences: C_01 = 2 (rows 5, 6), C_02 = 2 (3, 4), C_03 = 1 (0), C_12 = 0,
# C_13 = 2 (1, 7), C_23 = 0. A_ij = ½ (C_ij / C_i + C_ij / C_j):
#   A_01 = ½ (2/6 + 2/4) = 5/12; A_02 = ½ (2/6 + 2/2) = 2/3; A_03 = ½ (1/6 + 1/3) = 1/4;
#   A_13 = ½ (2/4 + 2/3) = 7/12; A_12 = A_23 = 0.
A8 = np.array([[0, 5 / 12, 2 / 3, 1 / 4], [5 / 12, 0, 0, 7 / 12], [2 / 3, 0, 0, 0], [1 / 4, 7 / 12, 0, 0]])
# Card = (6 + 4 + 2 + 3) / 8 = 1.875, ceil = 2. L_c = the 2 largest A in the row that are > 0:
#   L_c(0) = {2, 1}; L_c(1) = {3, 0}; L_c(2) = {0} (the only co-occurring label); L_c(3) = {1, 0}.
L8 = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 0], [1, 1, 0, 0]], bool)
# Top label (largest IRLbl among the row's positives, IRLbl = [1, 1.5, 3, 2]):
TOP8 = [3, 3, 0, 2, 2, 1, 1, 3]
# D_c(j) = rows with any label in L_c(j): D_c(0) = rows with label 1 or 2 = {1, 3, 4, 5, 6, 7};
# D_c(1) = label 3 or 0 = all rows; D_c(2) = label 0 = {0, 2, 3, 4, 5, 6}; D_c(3) = label 0 or 1 = all rows.
DC8 = np.array([[0, 1, 0, 1, 1, 1, 1, 1], [1] * 8, [1, 0, 1, 1, 1, 1, 1, 0], [1] * 8], bool)


def test_imbalance_statistics_match_the_hand_example():
    ir = bs.irlbl(Y8)
    np.testing.assert_allclose(ir, IRLBL, rtol=1e-12)
    assert bs.mean_ir(ir) == pytest.approx(MEAN_IR, rel=1e-12)
    np.testing.assert_array_equal(bs.minority_labels(ir), MINORITY)
    assert [set(r) for r in bs.nearest_neighbours(X8, k=2)] == NBRS
    np.testing.assert_allclose(bs.local_imbalance(X8, Y8, k=2), B_ALL, atol=1e-12)
    # Only the minority labels' columns when asked (as the released code computes them).
    B_min = bs.local_imbalance(X8, Y8, k=2, labels=MINORITY)
    np.testing.assert_allclose(B_min, np.where(MINORITY, B_ALL, 0.0), atol=1e-12)
    np.testing.assert_allclose(bs.normalised_imbalance(B_ALL), S_ALL, atol=1e-12)
    np.testing.assert_allclose(bs.instance_weights(bs.normalised_imbalance(B_ALL), MINORITY), W8, atol=1e-12)
    np.testing.assert_allclose(bs.imbalance_weights(X8, Y8, k=2), W8, atol=1e-12)


def test_statistics_edge_cases():
    # A label without positives has IRLbl inf and stays out of MeanIR and L_m (its 1e-6 would blow MeanIR up).
    y = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0]], np.uint8)
    ir = bs.irlbl(y)  # counts [3, 1, 0]: [1, 3, inf]
    assert ir[0] == 1 and ir[1] == 3 and np.isinf(ir[2])
    assert bs.mean_ir(ir) == 2 and list(bs.minority_labels(ir)) == [False, True, False]
    # Ties at the k-th distance go to the lower index whatever the chunking; k > N - 1 uses every other row.
    x = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0]])
    assert list(bs.nearest_neighbours(x, k=2)[0]) == [1, 2]
    assert list(bs.nearest_neighbours(x, k=1, chunk_bytes=1)[0]) == [1]
    np.testing.assert_array_equal(bs.local_imbalance(x[:3], y, k=5), bs.local_imbalance(x[:3], y, k=2))
    assert bs.local_imbalance(x[:1], y[:1], k=5).sum() == 0  # one row: no neighbours
    # A label whose B is all 0 or 1 has no denominator: S = 0 (and -1 at the outliers).
    np.testing.assert_array_equal(bs.normalised_imbalance(np.array([[0.0], [1.0]])), [[0.0], [-1.0]])


def test_quantised_and_rank_probabilities_match_the_hand_example():
    # Jitted: one compile each instead of one per operation.
    quantise = jax.jit(bs.quantisation_index)
    quantised_p = jax.jit(lambda loss, s: jnp.exp(bs.quantised_log_probs(loss, pressure=s)), static_argnums=1)
    rank_p = jax.jit(lambda loss: jnp.exp(bs.rank_log_probs(loss, pressure=2.0)))
    w = jnp.asarray(W8, jnp.float32)
    np.testing.assert_array_equal(quantise(w * LOSS8), Q_WEIGHTED)
    np.testing.assert_array_equal(quantise(jnp.asarray(LOSS8)), Q_UNWEIGHTED)
    p = np.asarray(quantised_p(w * LOSS8, 2.0))
    np.testing.assert_allclose(p, P_WEIGHTED, rtol=1e-5)
    assert p[4] == pytest.approx(0.187154, rel=1e-5) and p[5] == pytest.approx(0.102046, rel=1e-5)
    p_hard = np.asarray(rank_p(jnp.asarray(LOSS8)))
    expect = 2.0 ** (np.array(RANKS) / 8)
    np.testing.assert_allclose(p_hard, expect / expect.sum(), rtol=1e-5)
    assert p_hard.max() / p_hard.min() == pytest.approx(2 ** (7 / 8), rel=1e-5)  # ≈ s_e
    # Before any loss is recorded: Q = 0, uniform.
    np.testing.assert_allclose(quantised_p(jnp.zeros(8), 64.0), 1 / 8, rtol=1e-6)


def test_chain_tables_match_the_hand_example():
    np.testing.assert_allclose(bs.label_affinity(Y8), A8, atol=1e-12)
    assert bs.label_cardinality(Y8) == 1.875
    np.testing.assert_array_equal(bs.chain_labels(A8, size=2), L8)
    np.testing.assert_array_equal(bs.top_labels(Y8, IRLBL), TOP8)
    np.testing.assert_array_equal(bs.chain_candidates(Y8, L8), DC8)
    slot, dc = bs.chain_tables(Y8)
    np.testing.assert_array_equal(dc[slot], DC8[TOP8])  # each row's D_c, through the compact table
    assert bs.top_labels(np.zeros((1, 4)), IRLBL)[0] == -1


# ------------------------------------------------------------------------------------- the samplers
def _selecting_state(sampler, loss_N, *, warmup):
    """The sampler's state right after ``warmup`` epochs that recorded ``loss_N``."""
    state = sampler.init(jax.random.key(0))
    state = {**state, "loss": jnp.asarray(loss_N, jnp.float32)}
    return jax.jit(sampler.begin_epoch)(state, jax.random.key(1), jnp.int32(warmup))  # one compile, not op by op


@pytest.mark.parametrize("name", ["adaptive", "hard", "adac"])
def test_draw_frequencies_follow_p(name):
    """Chi-square goodness of fit of 40k draws against the hand p (fixed keys). With B = 1 a draw is one
    categorical draw from p; for adac the batch's first row (the seed) is drawn from p."""
    if name == "hard":
        sampler, expect = bs.hard_sampler(8, 1, warmup=1), 2.0 ** (np.array(RANKS) / 8)
    elif name == "adac":
        sampler, expect = bs.adac_sampler(W8, Y8, 3, warmup=1), np.array(P_WEIGHTED)
    else:
        sampler, expect = bs.adaptive_sampler(W8, 1, warmup=1), np.array(P_WEIGHTED)
    state = _selecting_state(sampler, LOSS8, warmup=1)
    draws = 40_000
    keys = jax.random.split(jax.random.key(20240611), draws)
    index, where, _ = jax.jit(jax.vmap(lambda k: sampler.select(state, k, jnp.int32(0))))(keys)
    assert np.asarray(where).all()
    counts = np.bincount(np.asarray(index[:, 0]), minlength=8)
    chi2, pvalue = stats.chisquare(counts, draws * expect / expect.sum())
    assert pvalue > 1e-3, (counts, chi2)
    if name == "adac":  # no replacement within a batch
        assert all(len(set(r)) == 3 for r in np.asarray(index).tolist())


def test_chain_draws_only_from_the_seeds_candidates():
    """Every consecutive pair (seed, next) in many batches: next ∈ D_c(top label of seed), unless the
    seed has no label or its D_c holds no row left, when the draw falls back to P."""
    rng = np.random.default_rng(7)
    n, c, b = 60, 10, 12
    # Two label blocks that never co-occur, so D_c is a real restriction, and a few rows without labels.
    y = np.zeros((n, c), np.uint8)
    block = rng.random(n) < 0.5
    y[:, :5] = (rng.random((n, 5)) < 0.35) & block[:, None]
    y[:, 5:] = (rng.random((n, 5)) < 0.35) & ~block[:, None]
    x = rng.normal(size=(n, 3))
    w = bs.imbalance_weights(x, y, k=3)
    sampler = bs.adac_sampler(w, y, b, warmup=0)
    state = _selecting_state(sampler, rng.random(n), warmup=0)
    ir = bs.irlbl(y)
    top = bs.top_labels(y, ir)
    dc = bs.chain_candidates(y, bs.chain_labels(bs.label_affinity(y), size=math.ceil(bs.label_cardinality(y))))
    keys = jax.random.split(jax.random.key(3), 300)
    index, where, _ = jax.jit(jax.vmap(lambda k: sampler.select(state, k, jnp.int32(0))))(keys)
    assert np.asarray(where).all()
    restricted = fallbacks = 0
    for batch in np.asarray(index):
        assert len(set(batch)) == b  # without replacement
        for k in range(1, b):
            seed, nxt = batch[k - 1], batch[k]
            left = dc[top[seed]] & ~np.isin(np.arange(n), batch[:k]) if top[seed] >= 0 else np.zeros(n, bool)
            if left.any():
                assert left[nxt], (seed, nxt)
                restricted += 1
            else:
                fallbacks += 1
    assert restricted > 1000 and fallbacks > 0  # both paths were exercised


def _run_epochs(sampler, epochs: int):
    """``epochs`` epochs of the sampler as the engine runs them (begin_epoch, then select / update per step)
    in one compiled scan, with the per-sample loss 1 + row + epoch. Returns the final state, the
    batches' ``index`` and ``where`` ``[epochs, S, B]`` and each epoch's ``logits`` right after begin_epoch."""
    key = jax.random.key(0)

    @jax.jit
    def run(state):
        def epoch_body(state, e):
            state = sampler.begin_epoch(state, jax.random.fold_in(key, e), e)
            start_logp = state["logits"]

            def step(state, t):
                index, where, state = sampler.select(state, jax.random.fold_in(key, 1000 * e + t), t)
                loss = 1.0 + index.astype(jnp.float32) + e.astype(jnp.float32)
                return sampler.update(state, index, where, loss), (index, where)

            state, (index, where) = jax.lax.scan(step, state, jnp.arange(sampler.steps_per_epoch, dtype=jnp.int32))
            return state, (index, where, start_logp)

        return jax.lax.scan(epoch_body, state, jnp.arange(epochs, dtype=jnp.int32))

    state, (index, where, start_logp) = run(sampler.init(key))
    return state, np.asarray(index), np.asarray(where), np.asarray(start_logp)


def test_warm_up_visits_rows_in_index_order_and_records_losses():
    n, b, warmup = 10, 4, 2
    sampler = bs.adaptive_sampler(np.ones(n), b, warmup=warmup, update_probs="batch")
    assert sampler.steps_per_epoch == 3
    state, index, where, start_logp = _run_epochs(sampler, warmup + 1)
    for epoch in range(warmup):  # every row once, in order; the last batch's 2 padded slots masked
        assert index[epoch][where[epoch]].tolist() == list(range(n))
        assert where[epoch].sum() == n
    # The first selecting epoch starts from p of the whole table the warm-up recorded (1 + row + 1), even
    # with update_probs=batch; its batches are drawn (full, no repeats within a batch), not in order.
    np.testing.assert_allclose(start_logp[warmup], bs.quantised_logits(2.0 + jnp.arange(n), pressure=2.0),
                               rtol=1e-6)
    assert where[warmup].all() and all(len(set(r)) == b for r in index[warmup].tolist())
    assert index[warmup].ravel().tolist() != list(range(n)) + [0, 0]
    # Every row's loss is its last recorded one; a padded slot (index 0, masked) never overwrote row 0.
    drawn = set(index[warmup].ravel().tolist())
    np.testing.assert_array_equal(np.asarray(state["loss"]),
                                  [3.0 + i if i in drawn else 2.0 + i for i in range(n)])
    # drop_remainder: full batches only; the index-order stream runs on across the warm-up epochs.
    sampler = bs.hard_sampler(n, b, warmup=warmup, drop_remainder=True)
    assert sampler.steps_per_epoch == 2
    _, index, where, _ = _run_epochs(sampler, warmup)
    assert where.all() and index.reshape(-1, b).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]
    # N < B: the rows that exist, the rest masked, in warm-up and in selection.
    sampler = bs.adaptive_sampler(np.ones(3), 5, warmup=1)
    _, index, where, _ = _run_epochs(sampler, 2)
    assert where.reshape(2, 5).tolist() == [[True] * 3 + [False] * 2] * 2
    assert sorted(index[1, 0, :3].tolist()) == [0, 1, 2]


def test_draw_from_epoch_start_draws_the_whole_epoch_from_its_first_p():
    """The released code's loader builds its probability array once per epoch: later refreshes change
    ``logits`` but the epoch's batches keep coming from ``draw_logits``."""
    for draw_from in ("current", "epoch_start"):
        sampler = bs.adaptive_sampler(W8, 2, warmup=1, draw_from=draw_from)
        state = _selecting_state(sampler, LOSS8, warmup=1)
        start = np.asarray(state["draw_logits"])
        np.testing.assert_array_equal(start, np.asarray(state["logits"]))
        new = jax.jit(sampler.update)(state, jnp.array([4, 1], jnp.int32), jnp.array([True, True]),
                                      jnp.array([0.1, 1.3], jnp.float32))
        assert not np.allclose(new["logits"], start)  # refreshed ...
        np.testing.assert_array_equal(new["draw_logits"], start)  # ... but not what this epoch draws from
        keys = jax.random.split(jax.random.key(3), 64)
        select = jax.jit(jax.vmap(lambda st, k: sampler.select(st, k, jnp.int32(1))[0], in_axes=(None, 0)))
        from_new = np.asarray(select(new, keys))
        from_start = np.asarray(select({**new, "logits": new["draw_logits"]}, keys))
        assert (from_new == from_start).all() == (draw_from == "epoch_start")


@pytest.mark.parametrize("update_probs", ["all", "batch"])
def test_update_probs(update_probs):
    """``batch`` (the code): only the batch's rows get a fresh p, the others keep theirs bit for bit;
    ``all`` (the paper): every p is recomputed from the whole loss table."""
    sampler = bs.adaptive_sampler(W8, 2, warmup=1, update_probs=update_probs)
    state = _selecting_state(sampler, LOSS8, warmup=1)
    old = np.asarray(state["logits"])
    index, where = jnp.array([4, 1], jnp.int32), jnp.array([True, True])
    # Row 4's loss drops, so ℓ_max (and every Q) changes.
    new = jax.jit(sampler.update)(state, index, where, jnp.array([0.1, 1.3], jnp.float32))
    loss = LOSS8.copy()
    loss[[4, 1]] = [0.1, 1.3]
    np.testing.assert_array_equal(new["loss"], loss)
    # Stored unnormalised (s_e^(Q/n), as the released code's table): a refreshed row and a stale one
    # weigh what they do there once a draw normalises them together.
    fresh = np.asarray(bs.quantised_logits(jnp.asarray(W8, jnp.float32) * loss, pressure=2.0))
    others = np.isin(np.arange(8), [4, 1], invert=True)
    np.testing.assert_allclose(np.asarray(new["logits"])[[4, 1]], fresh[[4, 1]], rtol=1e-6)
    if update_probs == "batch":
        np.testing.assert_array_equal(np.asarray(new["logits"])[others], old[others])
    else:
        np.testing.assert_allclose(new["logits"], fresh, rtol=1e-6)
        assert not np.allclose(fresh[others], old[others])
    # A masked slot changes nothing.
    same = sampler.update(state, index, jnp.array([False, False]), jnp.array([5.0, 5.0], jnp.float32))
    np.testing.assert_array_equal(same["loss"], state["loss"])


# ------------------------------------------------------------------------------------------ the engine
# The default run trains the two data-driven samplers; random and hard (no host statistics) with -m slow.
@pytest.mark.parametrize("sampler", [pytest.param("random", marks=pytest.mark.slow),
                                     pytest.param("hard", marks=pytest.mark.slow), "adaptive", "adac"])
def test_each_sampler_trains_mlp_in_the_engine(sampler, tmp_path):
    keys = {} if sampler == "random" else {"select_warmup": 1}
    if sampler == "adaptive":  # the released code's three departures from the paper
        keys.update(update_probs="batch", selection_loss="unweighted", draw_from="epoch_start")
    # A one-layer "MLP" compiles fastest: the test is about the sampler in the scan, not the network.
    cfg = TrainConfig(dataset="synthetic", method="mlp", sampler=sampler, epochs=2, hidden=8, layers=1, dropout=0.0,
                      batch_size=128, lr=3e-3, auc_convention="sklearn", **keys)
    out = train_and_evaluate(cfg, str(tmp_path / sampler), progress=False)
    assert np.isfinite(out["results"]["test"]["macro_auc"])
    history = [json.loads(line) for line in (tmp_path / sampler / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    if sampler != "random":
        st = out["state"].sampler_state
        # The warm-up epoch recorded every training row's loss; selection ran in the second epoch.
        assert int(st["epoch"]) == 1 and np.all(np.asarray(st["loss"]) > 0)
        logits = np.asarray(st["logits"], np.float64)
        # Unnormalised log p: in [0, log s_e] (Q / n or rank / n times log s_e), as the code's s_e^(Q/n) table.
        assert np.all(logits >= 0) and np.all(logits <= np.log(2.0) + 1e-6) and logits.max() > 0


# ------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("key, value", [
    ("selection_pressure", 0.5), ("selection_pressure", float("inf")), ("selection_pressure", True),
    ("select_warmup", -1), ("select_warmup", 1.5), ("update_probs", "some"), ("draw_from", "epoch"),
    ("selection_loss", "focal"), ("knn_k", 0), ("knn_k", 2.0)])
def test_bad_config_values_are_refused(key, value):
    sampler = "hard" if key in ("selection_pressure", "select_warmup", "update_probs") else "adaptive"
    with pytest.raises(ValueError, match=f"bad value for {key}: "):
        TrainConfig(dataset="synthetic", method="mlp", sampler=sampler, **{key: value}).resolved()
    with pytest.raises(ValueError, match=f"bad value for {key}: "):
        bs.AdacConfig(**{key: value}).validate()


def test_configs_defaults_and_registration():
    assert bs.AdaptiveConfig() == bs.AdaptiveConfig(selection_pressure=2.0, select_warmup=3, update_probs="all",
                                                    selection_loss="weighted", knn_k=5)
    assert get_sampler("adaptive").needs_data and get_sampler("adac").needs_data
    assert not get_sampler("random").needs_data and not get_sampler("hard").needs_data
    cfg = TrainConfig(dataset="synthetic", method="mlp", sampler="adac").override(["selection_pressure=8",
                                                                                   "select_warmup=2"])
    assert cfg.selection_pressure == 8.0 and cfg.select_warmup == 2 and cfg.knn_k == 5
    with pytest.raises(ValueError, match="exceeds the 3 rows"):
        bs.hard_sampler(3, 4, drop_remainder=True)


@pytest.mark.parametrize("method", ["chmcnn", pytest.param("hlstm", marks=pytest.mark.slow)])
def test_hierarchical_methods_hand_the_sampler_the_evaluated_nodes_only(method, monkeypatch):
    """On a hierarchy the always-positive roots would set every node's IRLbl; the sampler sees the rest."""
    from hmljax.data import load_dataset
    from hmljax.methods import _batch_selection
    from hmljax.training import build_method

    seen = []
    real = _batch_selection.imbalance_weights
    monkeypatch.setattr(_batch_selection, "imbalance_weights",
                        lambda x, y, **kw: seen.append(np.asarray(y).shape) or real(x, y, **kw))
    ds = load_dataset("synthetic")
    evaluated = int(np.asarray(ds.hierarchy.evaluated, bool).sum())
    assert evaluated < ds.hierarchy.num_nodes
    cfg = TrainConfig(dataset="synthetic", method=method, sampler="adaptive", hidden=8).resolved()
    _, m, _ = build_method(cfg, ds, split="train")
    assert seen[-1] == (m.train_x.shape[0], evaluated)
