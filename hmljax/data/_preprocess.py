"""Feature preprocessing: C-HMCNN's pipeline and a leak-free variant.

=============  ==========================================  ===============================
step           ``"chmcnn"`` (default, reproduces the paper) ``"leakfree"``
=============  ==========================================  ===============================
imputation 1   each split with its *own* column means       --
imputation 2   means of the fit set (fills columns that     train means, every split
               were all-NaN within a split)
scaling        StandardScaler fit on the fit set            StandardScaler fit on train
fit set        train+valid (FUN/GO); train (others)         train
=============  ==========================================  ===============================

C-HMCNN's per-split imputation lets test-set statistics into the test features; the
leak-free variant uses only training statistics. Two MinMax modes serve the flat multi-label
papers: ``"minmax"`` (train means impute, columns scaled to [0, 1] on train) and ``"minmax_all"``
(the same fitted on every row of every split, as the released adaptive-batch code scales all of X
before splitting: a leak, named so a table can say which it used). Columns with no observed value in
the fit set are dropped, as sklearn's ``SimpleImputer`` does in the reference.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["preprocess", "apply_preprocessing", "PREPROCESSING_MODES"]

PREPROCESSING_MODES = ("chmcnn", "leakfree", "minmax", "minmax_all")


def _nanmean(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN, handled by callers
        return np.nanmean(x, axis=0)


def _fill(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), means[None, :], x)


def preprocess(
    splits: dict[str, np.ndarray], *, mode: str = "chmcnn", fit_on: tuple[str, ...] = ("train",)
) -> tuple[dict[str, np.ndarray], dict]:
    """Imputes and standardises raw features.

    Args:
        splits: split name -> float64 ``[n, D]`` raw features (NaN = missing).
        mode: ``"chmcnn"`` or ``"leakfree"`` (see the module docstring).
        fit_on: the splits whose rows form the fit set in ``"chmcnn"`` mode
            (``("train", "valid")`` for FUN/GO). ``"leakfree"`` always uses train.

    Returns:
        (split name -> float32 ``[n, D']`` features, info dict with the dropped columns).
    """
    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing mode must be one of {PREPROCESSING_MODES}, got {mode!r}")
    if "train" not in splits:
        raise ValueError(f"preprocessing needs a 'train' split, got {sorted(splits)}")
    if mode.startswith("minmax"):
        return _minmax(splits, fit_all=mode == "minmax_all")
    if mode == "chmcnn":
        imputed = {k: _fill(x, _nanmean(x)) for k, x in splits.items()}
        fit_X = np.concatenate([imputed[k] for k in fit_on if k in imputed], axis=0)
    else:
        imputed = dict(splits)
        fit_X = splits["train"]
    means = _nanmean(fit_X)
    keep = ~np.isnan(means)
    fit_X = _fill(fit_X, means)[:, keep]
    mu = fit_X.mean(axis=0)
    sd = fit_X.std(axis=0)
    # Like sklearn's StandardScaler: constant columns keep scale 1 instead of dividing by 0.
    sd = np.where(sd < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mu), 1.0), 1.0, sd)
    out = {}
    for k, x in imputed.items():
        filled = _fill(x, means)[:, keep]
        out[k] = ((filled - mu) / sd).astype(np.float32)
    info = {"dropped_columns": np.flatnonzero(~keep).tolist(), "mode": mode, "fit_on": list(fit_on),
            # What apply_preprocessing needs to treat new rows as the training rows were treated.
            "impute_means": means.tolist(), "center": mu.tolist(), "scale": sd.tolist()}
    return out, info


def _minmax(splits: dict[str, np.ndarray], *, fit_all: bool) -> tuple[dict[str, np.ndarray], dict]:
    fit_X = np.concatenate(list(splits.values()), axis=0) if fit_all else splits["train"]
    means = _nanmean(fit_X)
    keep = ~np.isnan(means)
    fit_X = _fill(fit_X, means)[:, keep]
    lo, hi = fit_X.min(axis=0), fit_X.max(axis=0)
    # Like sklearn's MinMaxScaler: a constant column maps to 0 (scale 1 instead of dividing by 0).
    scale = np.where(hi - lo > 0, hi - lo, 1.0)
    out = {k: ((_fill(x, means)[:, keep] - lo) / scale).astype(np.float32) for k, x in splits.items()}
    info = {"dropped_columns": np.flatnonzero(~keep).tolist(), "mode": "minmax_all" if fit_all else "minmax",
            "fit_on": sorted(splits) if fit_all else ["train"], "impute_means": means.tolist(), "center": lo.tolist(),
            "scale": scale.tolist()}
    return out, info


def apply_preprocessing(raw_X: np.ndarray, names, stats: dict, *, feature_names, path: str = "input") -> np.ndarray:
    """New rows through a fitted preprocessing: columns matched by name, imputed and standardised.

    Args:
        raw_X: float ``[n, D]`` raw features as :func:`hmljax.data.read_arff` reads them (NaN = missing).
        names: their ``D`` column names.
        stats: the ``info`` :func:`preprocess` returned when fitting (``impute_means``, ``center``, ``scale``,
            ``dropped_columns``, ``mode``).
        feature_names: the training data's column names, in the fitted order.
        path: named in error messages.

    Returns:
        float32 ``[n, D']`` features, as the training rows were given to the model. In ``chmcnn`` mode the
        rows are first imputed with their own column means, as C-HMCNN treats each split.

    Raises:
        ValueError: a training column missing from the input, or an extra column, or non-finite values.
    """
    names = list(names)
    want = list(feature_names)
    missing = [n for n in want if n not in names]
    extra = [n for n in names if n not in want]
    if missing or extra:
        raise ValueError(f"{path}: its feature columns differ from the training data's (missing: "
                         f"{missing[:5]}{'...' if len(missing) > 5 else ''}; not in training: "
                         f"{extra[:5]}{'...' if len(extra) > 5 else ''})")
    x = np.asarray(raw_X, np.float64)[:, [names.index(n) for n in want]]
    if np.isinf(x).any():
        r, c = np.argwhere(np.isinf(x))[0]
        raise ValueError(f"{path}: row {r} column {want[c]!r} is infinite")
    means = np.asarray(stats["impute_means"], np.float64)
    if stats.get("mode") == "chmcnn" and x.shape[0]:
        own = _nanmean(x)
        x = _fill(x, np.where(np.isnan(own), means, own))
    keep = np.ones(len(want), bool)
    keep[np.asarray(stats.get("dropped_columns", []), int)] = False
    x = _fill(x, means)[:, keep]
    return ((x - np.asarray(stats["center"])) / np.asarray(stats["scale"])).astype(np.float32)
