"""Adaptive batch selection for multi-label learning (Zhou, Liu, Wang & Tsoumakas): four device samplers.

``sampler=random``: a fresh permutation per epoch (the paper's "Random", ``shuffle=True``).
``sampler=hard``: rank-based selection by the loss (Loshchilov & Hutter; eq. 3): no weights, no quantisation.
``sampler=adaptive``: the paper's method. Each row's selection loss is its loss times an imbalance weight
  ``w_i = 1 + eps_i`` (eqs. 1, 2, 4, 5: IRLbl, MeanIR, minority labels, k-NN local imbalance) and is mapped
  to a probability through a quantisation index (eqs. 6, 7), ``p_i ∝ s_e^(Q_i / n)``.
``sampler=adac``: the chain variant (§3.5, App. 6): after a seed drawn from P, each next row is drawn from P
  restricted to the rows that carry a label correlated with the seed's rarest label.

All three loss-driven samplers share one training loop (REFERENCE.md §5.3): ``select_warmup`` (γ) epochs
over all rows in index order while the losses are recorded, then ``ceil(n / B)`` batches per epoch, each
drawn independently and without replacement within the batch (repeats across batches are allowed).
After every step the batch's pre-update losses go into the loss table and P is refreshed:
``update_probs=all`` recomputes every row's p (the paper), ``update_probs=batch`` only the batch's
(the released code; the others keep stale p computed with an older ``ℓ_max``). p is kept unnormalised
(``s_e^(Q/n)``, as the released code's table) and normalised at each draw, so a stale row and a fresh
one weigh what they do in the released code. ``draw_from=current`` draws each batch from p as it is
(the paper), ``draw_from=epoch_start`` every batch of an epoch from p as it was when the epoch began
(the released code's loader builds its probability array once per epoch).

The imbalance statistics are computed once, on the host, in float64 numpy (small pure functions below);
everything per step runs on the device in float32 inside the epoch's ``lax.scan``. The engine hands
the sampler the method's per-sample loss (``method=mlp``: the BCE summed over labels); the quantised
and rank forms are invariant to scaling it, so its sum-or-mean convention does not matter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.engine import DeviceSampler, device_shuffle, register_sampler

__all__ = [
    "RandomConfig", "HardConfig", "AdaptiveConfig", "AdacConfig",
    "irlbl", "mean_ir", "minority_labels", "nearest_neighbours", "local_imbalance", "normalised_imbalance",
    "instance_weights", "imbalance_weights",
    "label_affinity", "label_cardinality", "chain_labels", "top_labels", "chain_candidates",
    "rank_logits", "rank_log_probs", "quantisation_index", "quantised_logits", "quantised_log_probs",
    "chain_tables", "hard_sampler", "adaptive_sampler", "adac_sampler", "register_batch_samplers",
]

UPDATE_PROBS = ("all", "batch")
DRAW_FROM = ("current", "epoch_start")
SELECTION_LOSSES = ("weighted", "unweighted")


# ---------------------------------------------------------------------------------------------- configs
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _raise_first(config, checks) -> None:
    for name, ok, want in checks:
        if not ok:
            raise ValueError(f"bad value for {name}: {getattr(config, name)!r} ({want})")


@dataclasses.dataclass
class RandomConfig:
    """``sampler=random`` has no keys of its own."""


@dataclasses.dataclass
class HardConfig:
    """``sampler=hard``: rank-based selection (eq. 3)."""

    selection_pressure: float = 2.0  # s_e: the max/min selection-probability ratio (the released script's 2)
    select_warmup: int = 3  # γ: epochs over all rows in index order before selection starts (the paper's 3)
    update_probs: str = "all"  # after each batch: 'all' rows' p (paper) or only the 'batch' rows' p (code)
    draw_from: str = "current"  # each batch from the 'current' p (paper) or the 'epoch_start' p (code's loader)

    def validate(self) -> None:
        _raise_first(self, [
            ("selection_pressure", _is_real(self.selection_pressure) and self.selection_pressure >= 1,
             "a finite number >= 1; 1 is uniform"),
            ("select_warmup", _is_int(self.select_warmup) and self.select_warmup >= 0, "an integer >= 0"),
            ("update_probs", self.update_probs in UPDATE_PROBS, "all (the paper) or batch (the released code)"),
            ("draw_from", self.draw_from in DRAW_FROM, "current (the paper) or epoch_start (the released code)"),
        ])


@dataclasses.dataclass
class AdaptiveConfig(HardConfig):
    """``sampler=adaptive``: imbalance-weighted, quantised selection (eqs. 1-7)."""

    selection_loss: str = "weighted"  # 'weighted' (paper: w_i · ℓ_i, eq. 5) or 'unweighted' (the code's ℓ_i)
    knn_k: int = 5  # k of the local imbalance's k-NN (eq. 2; the paper does not say, the code uses 5)

    def validate(self) -> None:
        super().validate()
        _raise_first(self, [
            ("selection_loss", self.selection_loss in SELECTION_LOSSES,
             "weighted (the paper) or unweighted (the released code)"),
            ("knn_k", _is_int(self.knn_k) and self.knn_k >= 1, "an integer >= 1"),
        ])


@dataclasses.dataclass
class AdacConfig(AdaptiveConfig):
    """``sampler=adac``: the chain variant of ``adaptive`` (§3.5); the same keys."""


# ------------------------------------------------------------------------- host statistics (float64)
def irlbl(y_NxC) -> np.ndarray:
    """IRLbl_j = max_k C_k / C_j (eq. 1), float64 ``[C]``; ``inf`` for a label with no positive.

    (The paper leaves C_j = 0 undefined; the released code's ``+1e-6`` would give such a label an
    IRLbl of ~1e6·C_max and blow MeanIR up. Infinite here, and left out of MeanIR and of L_m.)
    """
    counts_C = np.asarray(y_NxC, bool).sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts_C > 0, counts_C.max(initial=0.0) / counts_C, np.inf)


def mean_ir(irlbl_C) -> float:
    """MeanIR = the mean IRLbl (§3.1), over the labels with a positive (``nan`` when none has one)."""
    irlbl_C = np.asarray(irlbl_C, np.float64)
    finite = np.isfinite(irlbl_C)
    return float(irlbl_C[finite].mean()) if finite.any() else math.nan


def minority_labels(irlbl_C) -> np.ndarray:
    """L_m as a bool mask ``[C]``: the labels with IRLbl_j > MeanIR (§3.1)."""
    irlbl_C = np.asarray(irlbl_C, np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(irlbl_C) & (irlbl_C > mean_ir(irlbl_C))


def nearest_neighbours(x_NxD, *, k: int, chunk_bytes: int = 1 << 25) -> np.ndarray:
    """The ``k`` nearest rows of every row by Euclidean distance, itself excluded: int ``[N, k]``.

    Plain numpy, ``chunk_bytes`` of distances at a time (about 2k rows per chunk at N = 16k). Ties at
    the k-th distance go to the lower row index, so the result does not depend on the chunking.
    Each row's neighbours come in index order (the local imbalance only needs the set).
    """
    x = np.asarray(x_NxD, np.float64)
    n = x.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"nearest_neighbours needs 1 <= k <= N - 1, got k={k} with N={n}")
    sq_N = (x * x).sum(1)
    rows = max(1, chunk_bytes // (8 * n))
    out = np.empty((n, k), np.int64)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        d = sq_N[s:e, None] + sq_N[None, :] - 2.0 * (x[s:e] @ x.T)  # squared distances [rows, N]
        d[np.arange(e - s), np.arange(s, e)] = np.inf  # self is no neighbour
        kth = np.partition(d, k - 1, axis=1)[:, k - 1:k]
        closer, tied = d < kth, d == kth
        take = closer | (tied & (np.cumsum(tied, 1) <= k - closer.sum(1, keepdims=True)))
        out[s:e] = np.nonzero(take)[1].reshape(e - s, k)  # row-major: each row's k columns, ascending
    return out


def local_imbalance(x_NxD, y_NxC, *, k: int = 5, labels=None) -> np.ndarray:
    """B (eq. 2), float64 ``[N, C]``: for a positive y_ij the fraction of x_i's k nearest neighbours
    (Euclidean, self excluded) with y_mj = 0; 0 for a negative y_ij and for labels outside ``labels``.

    ``labels`` (bool ``[C]``, default all): the labels to compute, as the code computes only L_m's.
    With fewer than k + 1 rows, all the other rows are the neighbours.
    """
    y = np.asarray(y_NxC, bool)
    n, c = y.shape
    labels_C = np.ones(c, bool) if labels is None else np.asarray(labels, bool)
    B_NxC = np.zeros((n, c), np.float64)
    k_eff = min(k, n - 1)
    if k_eff < 1 or not labels_C.any():
        return B_NxC
    nbr_NxK = nearest_neighbours(x_NxD, k=k_eff)
    y_NxL = y[:, labels_C]
    disagree_NxL = (y_NxL[nbr_NxK] != y_NxL[:, None, :]).sum(1)  # [N, k, L] summed over the neighbours
    B_NxC[:, labels_C] = np.where(y_NxL, disagree_NxL / k_eff, 0.0)  # count == k gives exactly 1.0
    return B_NxC


def normalised_imbalance(B_NxC) -> np.ndarray:
    """S (eq. 4), float64 ``[N, C]``: B_ij / Σ_i' B_i'j [B_i'j < 1] where B_ij < 1, and -1 (an outlier:
    every neighbour disagrees) where B_ij = 1. A label whose B is all 0 or 1 has no denominator: S = 0."""
    B = np.asarray(B_NxC, np.float64)
    inlier = B < 1
    denom_C = np.where(inlier, B, 0.0).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = np.where(denom_C > 0, B / np.where(denom_C > 0, denom_C, 1.0), 0.0)
    return np.where(inlier, S, -1.0)


def instance_weights(S_NxC, minority_C) -> np.ndarray:
    """w = 1 + ε, ε_i = Σ_{j ∈ L_m, S_ij ≠ -1} S_ij (§3.3), float64 ``[N]``."""
    S = np.asarray(S_NxC, np.float64)
    keep = np.asarray(minority_C, bool)[None, :] & (S != -1)
    return 1.0 + np.where(keep, S, 0.0).sum(1)


def imbalance_weights(x_NxD, y_NxC, *, k: int = 5) -> np.ndarray:
    """The paper's instance weights ``w`` ``[N]`` from the training rows (eqs. 1, 2, 4; §3.3), with B
    computed for the minority labels only (as the code: the others do not enter ε)."""
    minority_C = minority_labels(irlbl(y_NxC))
    S = normalised_imbalance(local_imbalance(x_NxD, y_NxC, k=k, labels=minority_C))
    return instance_weights(S, minority_C)


# ---------------------------------------------------------------- host statistics of the chain variant
def label_affinity(y_NxC) -> np.ndarray:
    """A_ij = ½ [P(l_j | l_i) + P(l_i | l_j)] on the rows (App. 6), float64 ``[C, C]``, diag 0.
    P(l_j | l_i) = C_ij / C_i, 0 for a label i with no positive."""
    y = np.asarray(y_NxC, bool).astype(np.float64)
    co_CxC = y.T @ y
    counts_C = np.diag(co_CxC).copy()
    cond = np.where(counts_C[:, None] > 0, co_CxC / np.where(counts_C > 0, counts_C, 1.0)[:, None], 0.0)
    A = 0.5 * (cond + cond.T)
    np.fill_diagonal(A, 0.0)
    return A


def label_cardinality(y_NxC) -> float:
    """Card: the mean number of labels per row (Table 1)."""
    return float(np.asarray(y_NxC, bool).sum(1).mean())


def chain_labels(A_CxC, *, size: int) -> np.ndarray:
    """L_c of every label as a bool ``[C, C]`` (row j: L_c when the seed's label is l_j, §3.5): the
    ``size`` labels with the largest A_jl, l ≠ j, ties to the lower index; only labels that co-occur
    with l_j (A_jl > 0): a label never seen with l_j is no correlation to exploit."""
    A = np.asarray(A_CxC, np.float64)
    c = A.shape[0]
    order_CxC = np.argsort(-A, axis=1, kind="stable")  # descending, ties by index
    rank_CxC = np.empty_like(order_CxC)
    np.put_along_axis(rank_CxC, order_CxC, np.arange(c)[None, :].repeat(c, 0), axis=1)
    return (rank_CxC < size) & (A > 0) & ~np.eye(c, dtype=bool)


def top_labels(y_NxC, irlbl_C) -> np.ndarray:
    """Each row's positive label with the largest IRLbl (ties: the lower index), int ``[N]``; -1 for a
    row with no label."""
    y = np.asarray(y_NxC, bool)
    score = np.where(y, np.asarray(irlbl_C, np.float64)[None, :], -np.inf)
    return np.where(y.any(1), score.argmax(1), -1)


def chain_candidates(y_NxC, L_CxC) -> np.ndarray:
    """D_c of every label, bool ``[C, N]``: row j marks the rows having any label in L_c(j) (§3.5)."""
    y = np.asarray(y_NxC, bool).astype(np.float64)
    return (np.asarray(L_CxC, bool).astype(np.float64) @ y.T) > 0


# ---------------------------------------------------------------------- device probabilities (float32)
def rank_logits(loss_N, *, pressure: float):
    """Unnormalised log p (eq. 3) ``[N]``: ``r_i log(s_e) / n``, r_i = 1..n the ascending rank of ℓ_i (ties
    by index), so the largest loss is the likeliest and p_max / p_min = s_e^{(n-1)/n}."""
    n = loss_N.shape[0]
    order = jnp.argsort(loss_N)
    rank_N = jnp.zeros(n, jnp.float32).at[order].set(jnp.arange(1, n + 1, dtype=jnp.float32))
    return rank_N * jnp.float32(math.log(pressure) / n)


def rank_log_probs(loss_N, *, pressure: float):
    """log p (eq. 3) ``[N]``, normalised: :func:`rank_logits` minus their logsumexp."""
    logits = rank_logits(loss_N, pressure=pressure)
    return logits - jax.nn.logsumexp(logits)


def quantisation_index(loss_N):
    """Q (eq. 6), float32 ``[N]``: Δ = ℓ_max / n, Q_i = ceil(ℓ_i / Δ) ∈ {0..n}.

    Clipped to [0, n] against rounding at ℓ_i = ℓ_max; an all-zero loss table (before any loss is
    recorded) gives Q = 0 everywhere.
    """
    n = loss_N.shape[0]
    loss_N = loss_N.astype(jnp.float32)
    l_max = jnp.max(loss_N)
    delta = jnp.where(l_max > 0, l_max / n, 1.0)
    return jnp.where(l_max > 0, jnp.clip(jnp.ceil(loss_N / delta), 0, n), 0.0)


def quantised_logits(loss_N, *, pressure: float):
    """Unnormalised log p (eq. 7) ``[N]``: ``Q_i log(s_e) / n``, the log of the released code's ``s_e^(Q/n)``.

    In log space: the exponent is at most log s_e, so nothing overflows for any n or s_e.
    """
    n = loss_N.shape[0]
    return quantisation_index(loss_N) * jnp.float32(math.log(pressure) / n)


def quantised_log_probs(loss_N, *, pressure: float):
    """log p (eq. 7) ``[N]``: p_i = s_e^{Q_i / n} / Σ_j s_e^{Q_j / n}, Q of eq. 6."""
    logits = quantised_logits(loss_N, pressure=pressure)
    return logits - jax.nn.logsumexp(logits)


# ------------------------------------------------------------------------------------ device draws
def _gumbel_top_k(logits_N, key, batch_size: int):
    """``batch_size`` rows without replacement, each draw ∝ p = exp(logits) among the rows not yet drawn
    (Gumbel top-k is exactly sequential sampling without replacement, and needs no normalised p). With
    N < B the last B - N slots are masked."""
    n = logits_N.shape[0]
    m = min(batch_size, n)
    g_N = logits_N + jax.random.gumbel(key, (n,), jnp.float32)
    index = jax.lax.top_k(g_N, m)[1].astype(jnp.int32)
    if m < batch_size:
        index = jnp.concatenate([index, jnp.zeros(batch_size - m, jnp.int32)])
    return index, jnp.arange(batch_size) < m


def _chain_draw(logits_N, key, batch_size: int, *, slot_N, dc_UxN):
    """The chain batch (§3.5): a seed ∝ P; then repeatedly the next row ∝ P restricted to D_c of the
    current seed's top label (renormalised) and not yet in the batch; it becomes the seed. A seed
    without labels, or a D_c with no row left, falls back to P over the rows not yet drawn.

    ``slot_N``: each row's top label as a row of ``dc_UxN`` (the last row, all False, for "no label").
    """
    n = logits_N.shape[0]
    m = min(batch_size, n)
    p_N = jnp.exp(logits_N - jnp.max(logits_N))  # unnormalised p; each draw renormalises over its allowed rows
    index_N = jnp.arange(n, dtype=jnp.int32)

    def draw(allowed_N, k):
        # Inverse CDF over the allowed rows: one uniform and a cumulative sum per draw. (A Gumbel per row per
        # draw is as exact but generates n random numbers for each of the B sequential draws: 30x slower.)
        c_N = jnp.cumsum(jnp.where(allowed_N, p_N, 0.0))
        u = jax.random.uniform(jax.random.fold_in(key, k), (), jnp.float32) * c_N[-1]
        i = jnp.searchsorted(c_N, u, side="right").astype(jnp.int32)  # zero-weight rows are never the answer
        return jnp.minimum(i, jnp.max(jnp.where(allowed_N, index_N, 0)))  # u rounding up to the total

    first = draw(jnp.ones(n, bool), 0)
    index = jnp.zeros(batch_size, jnp.int32).at[0].set(first)
    taken = jnp.zeros(n, bool).at[first].set(True)

    def body(k, carry):
        index, taken, seed = carry
        free_N = ~taken
        chain_N = dc_UxN[slot_N[seed]] & free_N
        nxt = draw(jnp.where(chain_N.any(), chain_N, free_N), k)
        return index.at[k].set(nxt), taken.at[nxt].set(True), nxt

    index, _, _ = jax.lax.fori_loop(1, m, body, (index, taken, first))
    return index, jnp.arange(batch_size) < m


# ---------------------------------------------------------------------------- the shared training loop
def _steps(num_rows: int, batch_size: int, drop_remainder: bool, name: str) -> int:
    if num_rows < 1 or batch_size < 1:
        raise ValueError(f"sampler={name} needs num_rows >= 1 and batch_size >= 1, got {num_rows}, {batch_size}")
    steps = num_rows // batch_size if drop_remainder else -(-num_rows // batch_size)
    if steps < 1:
        raise ValueError(f"sampler={name}: batch_size={batch_size} exceeds the {num_rows} rows with "
                         "drop_remainder=True")
    return steps


def _loss_driven_sampler(num_rows: int, batch_size: int, *, warmup: int, update_probs: str, drop_remainder: bool,
                         logits: Callable, draw: Callable, name: str, draw_from: str = "current") -> DeviceSampler:
    """The loop of REFERENCE.md §5.3 around ``logits(loss_N) -> [N]`` (unnormalised log p) and
    ``draw(logits_N, key, B) -> (index [B], where [B])``.

    State: ``loss`` ``[N]`` (each row's last recorded per-sample loss, 0 before any), ``logits`` ``[N]``
    (the stored unnormalised log p, stale in places with ``update_probs=batch``), ``draw_logits``
    (what batches are drawn from: ``logits`` itself, or with ``draw_from=epoch_start`` its copy taken
    when the epoch began) and ``epoch`` (the epochs done).
    """
    if update_probs not in UPDATE_PROBS:
        raise ValueError(f"bad value for update_probs: {update_probs!r} (all or batch)")
    if draw_from not in DRAW_FROM:
        raise ValueError(f"bad value for draw_from: {draw_from!r} (current or epoch_start)")
    n, B = num_rows, batch_size
    steps = _steps(n, B, drop_remainder, name)
    wrap = (steps * B) % n  # drop_remainder: where the next warm-up epoch starts, relative to this one

    def init(key):
        flat = jnp.zeros(n, jnp.float32)
        return {"loss": jnp.zeros(n, jnp.float32), "logits": flat, "draw_logits": flat,
                "epoch": jnp.zeros((), jnp.int32)}

    def begin_epoch(state, key, epoch):
        epoch = jnp.asarray(epoch, jnp.int32)
        # The first selecting epoch starts from p of the whole loss table the warm-up recorded (with
        # update_probs=batch the warm-up's per-batch refreshes would otherwise leave the early rows'
        # p computed before the later rows had a loss).
        lg = jnp.where(epoch == warmup, logits(state["loss"]), state["logits"])
        return {**state, "logits": lg, "draw_logits": lg, "epoch": epoch}

    def warm_rows(epoch, t):
        pos_B = t * B + jnp.arange(B, dtype=jnp.int32)
        if not drop_remainder:  # every row once, in index order; the last batch padded and masked
            where_B = pos_B < n
            return jnp.where(where_B, pos_B, 0), where_B
        # drop_remainder: full batches only, so the index-order stream runs on across the warm-up epochs
        # (epoch e starts where e - 1 stopped) and every row is recorded once γ·S·B >= N.
        offset = (jnp.minimum(epoch, warmup) * wrap) % n
        return (offset + pos_B) % n, jnp.ones(B, bool)

    def select(state, key, t):
        source = state["logits"] if draw_from == "current" else state["draw_logits"]
        index, where = jax.lax.cond(state["epoch"] < warmup, lambda: warm_rows(state["epoch"], t),
                                    lambda: draw(source, key, B))
        return index, where, state

    def update(state, index, where, per_sample):
        # Masked slots go out of range and are dropped: a padded slot's index 0 must not overwrite row 0.
        target_B = jnp.where(where, index, n)
        loss = state["loss"].at[target_B].set(per_sample.astype(jnp.float32), mode="drop")
        fresh = logits(loss)
        if update_probs == "all":  # the paper: recalculate every sample's p after each batch
            lg = fresh
        else:  # the released code: only the batch's rows get a fresh (unnormalised) p
            lg = state["logits"].at[target_B].set(fresh[jnp.minimum(index, n - 1)], mode="drop")
        return {**state, "loss": loss, "logits": lg}

    return DeviceSampler(init, begin_epoch, select, update, steps, B)


# --------------------------------------------------------------------------------------------- samplers
def hard_sampler(num_rows: int, batch_size: int, *, selection_pressure: float = 2.0, warmup: int = 3,
                 update_probs: str = "all", drop_remainder: bool = False, draw_from: str = "current") -> DeviceSampler:
    """``sampler=hard``: p by the rank of the unweighted loss (eq. 3), the paper's "Hard" ablation (§4.3)."""
    return _loss_driven_sampler(num_rows, batch_size, warmup=warmup, update_probs=update_probs,
                                drop_remainder=drop_remainder, draw_from=draw_from,
                                logits=lambda loss: rank_logits(loss, pressure=selection_pressure),
                                draw=_gumbel_top_k, name="hard")


def adaptive_sampler(weights_N, batch_size: int, *, selection_pressure: float = 2.0, warmup: int = 3,
                     update_probs: str = "all", drop_remainder: bool = False,
                     draw_from: str = "current") -> DeviceSampler:
    """``sampler=adaptive``: p from the quantised weighted loss w ⊙ ℓ (eqs. 5-7); ``weights_N`` all ones
    is the released code's unweighted selection."""
    w_N = jnp.asarray(np.asarray(weights_N, np.float32))
    return _loss_driven_sampler(len(w_N), batch_size, warmup=warmup, update_probs=update_probs,
                                drop_remainder=drop_remainder, draw_from=draw_from,
                                logits=lambda loss: quantised_logits(w_N * loss, pressure=selection_pressure),
                                draw=_gumbel_top_k, name="adaptive")


def chain_tables(y_NxC) -> tuple[np.ndarray, np.ndarray]:
    """The chain variant's host tables: ``slot_N`` int32 (each row's top label as a row of ``dc_UxN``)
    and ``dc_UxN`` bool (D_c of the U labels that are some row's top label, then an all-False row for
    "no label"). Only those U rows of D_c are kept: a seed's D_c is always its top label's."""
    y = np.asarray(y_NxC, bool)
    ir_C = irlbl(y)
    top_N = top_labels(y, ir_C)
    used = np.unique(top_N[top_N >= 0])
    L = chain_labels(label_affinity(y), size=math.ceil(label_cardinality(y)))
    dc_UxN = np.concatenate([chain_candidates(y, L[used]), np.zeros((1, y.shape[0]), bool)])
    slot_N = np.where(top_N >= 0, np.searchsorted(used, top_N), len(used)).astype(np.int32)
    return slot_N, dc_UxN


def adac_sampler(weights_N, y_NxC, batch_size: int, *, selection_pressure: float = 2.0, warmup: int = 3,
                 update_probs: str = "all", drop_remainder: bool = False, draw_from: str = "current") -> DeviceSampler:
    """``sampler=adac``: ``adaptive``'s P, batches built as label-correlation chains (§3.5, App. 6)."""
    w_N = jnp.asarray(np.asarray(weights_N, np.float32))
    slot, dc = chain_tables(y_NxC)
    slot_N, dc_UxN = jnp.asarray(slot), jnp.asarray(dc)
    return _loss_driven_sampler(len(w_N), batch_size, warmup=warmup, update_probs=update_probs,
                                drop_remainder=drop_remainder, draw_from=draw_from,
                                logits=lambda loss: quantised_logits(w_N * loss, pressure=selection_pressure),
                                draw=lambda lg, key, b: _chain_draw(lg, key, b, slot_N=slot_N, dc_UxN=dc_UxN),
                                name="adac")


# ------------------------------------------------------------------------------------------- builders
def _build_random(config, *, num_rows, batch_size, seed, drop_remainder):
    """A fresh permutation per epoch (the adaptive-batch paper's "Random", shuffle=True)."""
    return device_shuffle(num_rows, batch_size, drop_remainder=drop_remainder)


def _build_hard(config, *, num_rows, batch_size, seed, drop_remainder):
    """Rank-based selection by the loss (Loshchilov & Hutter; the adaptive-batch paper's eq. 3)."""
    config.validate()
    return hard_sampler(num_rows, batch_size, selection_pressure=config.selection_pressure,
                        warmup=config.select_warmup, update_probs=config.update_probs, drop_remainder=drop_remainder,
                        draw_from=config.draw_from)


def _weights(config, x, y) -> np.ndarray:
    if config.selection_loss == "unweighted":
        return np.ones(len(y))
    return imbalance_weights(x, y, k=config.knn_k)


def _build_adaptive(config, *, num_rows, batch_size, seed, drop_remainder, x, y):
    """The adaptive-batch paper's selection: imbalance-weighted loss, quantised probabilities (eqs. 1-7)."""
    config.validate()
    return adaptive_sampler(_weights(config, x, y), batch_size, selection_pressure=config.selection_pressure,
                            warmup=config.select_warmup, update_probs=config.update_probs,
                            drop_remainder=drop_remainder, draw_from=config.draw_from)


def _build_adac(config, *, num_rows, batch_size, seed, drop_remainder, x, y):
    """The adaptive-batch paper's chain variant AdaC: batches follow label correlations (§3.5)."""
    config.validate()
    return adac_sampler(_weights(config, x, y), y, batch_size, selection_pressure=config.selection_pressure,
                        warmup=config.select_warmup, update_probs=config.update_probs, drop_remainder=drop_remainder,
                        draw_from=config.draw_from)


def register_batch_samplers() -> None:
    """Registers ``sampler=random|hard|adaptive|adac`` (re-registering is harmless)."""
    register_sampler("random", RandomConfig, _build_random, replace=True, needs_data=False,
                     doc="a fresh permutation per epoch on the device (adaptive batch selection's Random)")
    # hard ranks the loss alone: like random it needs no training rows, so any method can use it.
    register_sampler("hard", HardConfig, _build_hard, replace=True, needs_data=False,
                     doc="rank-based selection by the loss (Loshchilov & Hutter; adaptive batch selection's Hard)")
    register_sampler("adaptive", AdaptiveConfig, _build_adaptive, replace=True, needs_data=True,
                     doc="adaptive batch selection: imbalance-weighted loss, quantised probabilities")
    register_sampler("adac", AdacConfig, _build_adac, replace=True, needs_data=True,
                     doc="adaptive batch selection's chain variant: batches follow label correlations")
