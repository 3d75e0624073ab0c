"""Statistical comparison of methods over datasets (Demsar 2006): Wilcoxon, Friedman, Nemenyi CD.

Host-side numpy; scipy (a scikit-learn dependency) and matplotlib are imported
lazily inside the functions that need them.

References:
    J. Demsar, "Statistical comparisons of classifiers over multiple data sets",
    JMLR 7:1-30, 2006.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "WilcoxonResult",
    "FriedmanResult",
    "wilcoxon_signed_rank",
    "friedman_test",
    "nemenyi_cd",
    "cd_diagram",
]

# Demsar (2006), Table 5(a): critical values q_alpha of the two-tailed Nemenyi test, i.e. the
# studentized range statistic (infinite degrees of freedom) divided by sqrt(2), for k = 2..10.
_NEMENYI_Q = {
    0.05: (1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164),
    0.10: (1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920),
}


class WilcoxonResult(NamedTuple):
    statistic: float  # min(R+, R-), the smaller signed-rank sum
    pvalue: float  # two-sided


class FriedmanResult(NamedTuple):
    chi2: float  # Friedman's chi-square statistic, M - 1 degrees of freedom
    pvalue_chi2: float  # its p-value
    f: float  # Iman-Davenport F = (K - 1) chi2 / (K (M - 1) - chi2)
    pvalue: float  # p-value of F on (M - 1, (M - 1)(K - 1)) degrees of freedom (Demsar's choice)
    avg_ranks: np.ndarray  # [M] average rank of each method, 1 = best


def wilcoxon_signed_rank(a: ArrayLike, b: ArrayLike, *, zero_method: str = "wilcox") -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of two methods' paired per-dataset scores.

    A thin wrapper over ``scipy.stats.wilcoxon(a, b, zero_method=...)``.

    Args:
        a: ``[K]`` scores of method A on K datasets.
        b: ``[K]`` scores of method B on the same datasets, in the same order.
        zero_method: how datasets with a zero difference (a tie) are handled,
            as in scipy: ``"wilcox"`` (default, scipy's default) drops them
            before ranking; ``"pratt"`` ranks them and then drops their ranks;
            ``"zsplit"`` splits their ranks evenly between R+ and R-, close to
            what Demsar (2006, Sec. 3.1.3) recommends (he also drops one zero
            when their number is odd).

    Returns:
        ``WilcoxonResult(statistic, pvalue)``: the smaller of the signed-rank
        sums and the two-sided p-value. If every difference is zero the test is
        undefined and the result is ``(0.0, 1.0)`` (no evidence of a difference).
    """
    a_K = np.asarray(a, dtype=np.float64)
    b_K = np.asarray(b, dtype=np.float64)
    if a_K.ndim != 1 or a_K.shape != b_K.shape:
        raise ValueError(f"a and b must be 1-D of equal length, got shapes {a_K.shape} and {b_K.shape}")
    if not (np.all(np.isfinite(a_K)) and np.all(np.isfinite(b_K))):
        raise ValueError("a and b must be finite")
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise ValueError(f"zero_method must be 'wilcox', 'pratt' or 'zsplit', got {zero_method!r}")
    if np.all(a_K == b_K):
        return WilcoxonResult(0.0, 1.0)
    from scipy import stats

    res = stats.wilcoxon(a_K, b_K, zero_method=zero_method, alternative="two-sided")
    return WilcoxonResult(float(res.statistic), float(res.pvalue))


def _avg_ranks(scores_KxM: np.ndarray) -> np.ndarray:
    """Per-row ranks, 1 = highest score, ties get the mean of their ranks."""
    from scipy import stats

    return stats.rankdata(-scores_KxM, axis=1)


def friedman_test(scores_KxM: ArrayLike, *, tie_correction: bool = False) -> FriedmanResult:
    """Friedman test of M methods over K datasets, with the Iman-Davenport F statistic.

    Ranks the methods on each dataset (1 = best = highest score; ties share the
    mean rank) and tests whether the average ranks differ:
    chi2 = 12 K / (M (M + 1)) [sum_j R_j^2 - M (M + 1)^2 / 4], and
    F = (K - 1) chi2 / (K (M - 1) - chi2) (Demsar 2006, Sec. 3.2.2).

    Args:
        scores_KxM: ``[K, M]`` scores, one row per dataset, one column per
            method; higher is better (negate losses first).
        tie_correction: divide chi2 by 1 - sum(t^3 - t) / (K M (M^2 - 1)) over
            tied groups, as ``scipy.stats.friedmanchisquare`` does. Off by
            default, as in Demsar's formulas.

    Returns:
        ``FriedmanResult(chi2, pvalue_chi2, f, pvalue, avg_ranks)``; ``pvalue``
        is the Iman-Davenport one Demsar recommends. When every dataset ranks
        the methods identically, F is infinite and its p-value 0.
    """
    from scipy import stats

    scores = np.asarray(scores_KxM, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 2 or scores.shape[1] < 2:
        raise ValueError(f"scores_KxM must be [K datasets, M methods] with K, M >= 2, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores_KxM must be finite")
    num_datasets, num_methods = scores.shape
    ranks_KxM = _avg_ranks(scores)
    avg_ranks = ranks_KxM.mean(axis=0)
    chi2 = 12 * num_datasets / (num_methods * (num_methods + 1)) * (
        np.sum(avg_ranks**2) - num_methods * (num_methods + 1) ** 2 / 4
    )
    if tie_correction:
        ties = sum(np.sum(t**3 - t) for t in (np.unique(row, return_counts=True)[1] for row in ranks_KxM))
        denom = 1 - ties / (num_datasets * num_methods * (num_methods**2 - 1))
        chi2 = chi2 / denom if denom > 0 else 0.0  # every row fully tied: no evidence at all
    chi2 = max(float(chi2), 0.0)  # clip -0.0 / rounding below zero
    dof1 = num_methods - 1
    dof2 = dof1 * (num_datasets - 1)
    gap = num_datasets * dof1 - chi2
    f = (num_datasets - 1) * chi2 / gap if gap > 1e-12 else float("inf")
    return FriedmanResult(
        chi2=chi2,
        pvalue_chi2=float(stats.chi2.sf(chi2, dof1)),
        f=float(f),
        pvalue=float(stats.f.sf(f, dof1, dof2)) if np.isfinite(f) else 0.0,
        avg_ranks=avg_ranks,
    )


def nemenyi_cd(num_methods: int, num_datasets: int, *, alpha: float = 0.05) -> float:
    """Critical difference of the Nemenyi post-hoc test: CD = q_alpha sqrt(M (M + 1) / (6 K)).

    Two methods whose average ranks differ by at least CD are significantly
    different. q_alpha (the studentized range statistic with infinite degrees
    of freedom, divided by sqrt(2)) comes from Demsar (2006), Table 5(a), for
    alpha 0.05 and 0.10 and 2..10 methods; other cases compute it with
    ``scipy.stats.studentized_range`` (which matches the table to 1e-3).

    Args:
        num_methods: M >= 2, the number of methods compared.
        num_datasets: K >= 1, the number of datasets.
        alpha: significance level, in (0, 1).

    Returns:
        The critical difference in average rank.

    Example (Demsar 2006, Sec. 3.2.2: 4 methods, 14 datasets):
        >>> round(nemenyi_cd(4, 14), 2)
        1.25
    """
    if int(num_methods) != num_methods or num_methods < 2:
        raise ValueError(f"num_methods must be an integer >= 2, got {num_methods!r}")
    if int(num_datasets) != num_datasets or num_datasets < 1:
        raise ValueError(f"num_datasets must be an integer >= 1, got {num_datasets!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    table = _NEMENYI_Q.get(round(alpha, 10))
    if table is not None and num_methods <= 10:
        q = table[num_methods - 2]
    else:
        from scipy import stats

        q = float(stats.studentized_range.ppf(1 - alpha, num_methods, np.inf)) / np.sqrt(2)
    return float(q * np.sqrt(num_methods * (num_methods + 1) / (6 * num_datasets)))


def _cliques(avg_ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs [i, j] of rank-sorted methods whose rank spread is below cd (not significant)."""
    order = np.sort(avg_ranks)
    runs = []
    for i in range(order.size):
        j = int(np.searchsorted(order, order[i] + cd, side="left")) - 1
        if j > i and not (runs and runs[-1][1] >= j):
            runs.append((i, j))
    return runs


def cd_diagram(
    avg_ranks: ArrayLike,
    names: Sequence[str],
    cd: float,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> str:
    """Draws a critical-difference diagram (Demsar 2006, Fig. 1) and writes it as a PNG.

    The axis runs from rank 1 (best, left) to M; each method hangs from its
    average rank; a thick bar joins methods whose average ranks differ by less
    than ``cd`` (not significantly different), and the CD is drawn to scale
    above the axis. The file is written atomically: to a temporary file in the
    same folder, then ``os.replace``.

    Args:
        avg_ranks: ``[M]`` average ranks, e.g. ``friedman_test(...).avg_ranks``.
        names: M method names, in the same order.
        cd: the critical difference, e.g. ``nemenyi_cd(M, K)``.
        path: where to write the PNG (its folder is made if missing).
        title: optional title above the diagram.

    Returns:
        ``path`` as a string.
    """
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    ranks_M = np.asarray(avg_ranks, dtype=np.float64)
    names = list(names)
    if ranks_M.ndim != 1 or ranks_M.size != len(names) or ranks_M.size < 2:
        raise ValueError(f"avg_ranks and names must have the same length >= 2, got {ranks_M.shape} and {len(names)}")
    if not (np.all(np.isfinite(ranks_M)) and np.isfinite(cd) and cd >= 0):
        raise ValueError("avg_ranks must be finite and cd a finite non-negative number")
    num_methods = ranks_M.size
    order = np.argsort(ranks_M, kind="stable")
    sorted_ranks = ranks_M[order]
    lo, hi = 1, max(num_methods, int(np.ceil(sorted_ranks.max())))
    num_left = (num_methods + 1) // 2  # best half labelled on the left, the rest on the right
    rows = max(num_left, num_methods - num_left)
    cliques = _cliques(ranks_M, cd)

    height = 1.0 + 0.25 * (2.6 + 0.6 * rows + 0.3 * len(cliques))
    fig = Figure(figsize=(7.0, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(lo - 0.45 * (hi - lo + 1), hi + 0.45 * (hi - lo + 1))
    ax.set_ylim(-(0.6 * rows + 0.3 * len(cliques) + 0.6), 2.0)
    ax.axis("off")

    axis_y = 0.0
    ax.plot([lo, hi], [axis_y, axis_y], color="black", lw=1)
    for tick in range(lo, hi + 1):
        ax.plot([tick, tick], [axis_y, axis_y + 0.15], color="black", lw=1)
        ax.text(tick, axis_y + 0.25, str(tick), ha="center", va="bottom", fontsize=9)
    for tick in np.arange(lo + 0.5, hi, 1.0):
        ax.plot([tick, tick], [axis_y, axis_y + 0.08], color="black", lw=0.7)
    # CD bar to scale, above the axis at the left end.
    ax.plot([lo, lo + cd], [1.3, 1.3], color="black", lw=1.5)
    for x in (lo, lo + cd):
        ax.plot([x, x], [1.2, 1.4], color="black", lw=1.5)
    ax.text(lo + cd / 2, 1.45, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)

    for k, m in enumerate(order):
        rank = ranks_M[m]
        if k < num_left:
            y, x_end, ha = -(k + 1) * 0.6 - 0.3 * len(cliques), lo - 0.2, "right"
        else:
            k_right = num_methods - 1 - k
            y, x_end, ha = -(k_right + 1) * 0.6 - 0.3 * len(cliques), hi + 0.2, "left"
        ax.plot([rank, rank, x_end], [axis_y, y, y], color="black", lw=0.8)
        x_text = x_end - 0.05 if ha == "right" else x_end + 0.05
        ax.text(x_text, y, f"{names[m]} ({rank:.2f})", ha=ha, va="center", fontsize=9)
    for c, (i, j) in enumerate(cliques):
        y = -0.25 - 0.3 * c
        ax.plot([sorted_ranks[i] - 0.03, sorted_ranks[j] + 0.03], [y, y], color="black", lw=3, solid_capstyle="round")
    if title:
        ax.set_title(title, fontsize=10, y=0.98)

    from hmljax.data._cache import atomic_write_bytes  # the one atomic writer (data does not import metrics)

    path = os.fspath(path)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    atomic_write_bytes(path, png.getvalue())
    return path
