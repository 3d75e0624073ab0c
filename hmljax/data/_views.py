"""Dataset views: k-fold splits, label filters and feature selection, preprocessed afresh from the raw features.

``dataset_view(ds, folds=5, fold=k)`` pools every row of the dataset's splits, cuts it into ``folds``
iteratively stratified folds (:func:`hmljax.data.iterative_stratification`) and returns a
:class:`Dataset` whose train split is the other folds and whose test split is fold ``k`` (halved
into valid/test with ``fold_valid=True``, the adaptive-batch paper's protocol). The preprocessing
is fitted again on the view's own train split, so no statistic of the held-out fold leaks in
(unless ``preprocessing=minmax_all`` says so). Label filters and feature selection follow the
released adaptive-batch code: computed on the whole dataset before splitting.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hmljax.data._longtail import longtail_subset
from hmljax.data._preprocess import preprocess
from hmljax.data._registry import DataError, Dataset
from hmljax.data._stratify import kfold_splits

__all__ = ["dataset_view"]


def dataset_view(ds: Dataset, *, folds: int = 0, fold: int = 0, fold_valid: bool = False, fold_seed: int = 42,
                 fold_order: int = 1, min_label_count: int = 0, feature_fraction: float = 1.0,
                 preprocessing: str | None = None, longtail: dict | None = None) -> Dataset:
    """The dataset re-split and re-filtered as asked (``ds`` itself when nothing is asked).

    Args:
        ds: a loaded dataset (its cache must hold the raw features, as every cache since v3 does).
        folds: 0 keeps the dataset's own splits; k >= 2 makes k stratified folds over all its rows.
        fold: which fold is held out (0 .. folds - 1).
        fold_valid: halve the held-out fold into valid and test (stratified), else it is all test.
        fold_seed, fold_order: the stratification's seed and order (1: labels, 2: label pairs).
        min_label_count: drop labels with at most this many positives in the whole dataset (flat only).
        feature_fraction: keep this fraction of the feature columns, those with the largest column sums
            over the whole dataset (the released adaptive-batch code's selection).
        preprocessing: the mode to fit on the view's train split (default: the dataset's own).
        longtail: keywords of :func:`hmljax.data.longtail_subset` (``max_count``, ``min_count``, ``alpha``,
            ``seed``): the train split is cut to that long-tailed subset (valid and test are kept whole),
            before the features are scaled, so the scaler sees only the rows trained on.

    Raises:
        DataError: a bad fold index, a label filter on a hierarchy, or a filter that leaves nothing.
    """
    if folds == 0 and min_label_count == 0 and feature_fraction == 1.0 and not longtail:
        return ds
    if not ds.raw:
        raise DataError(f"{ds.spec.name}: its cache has no raw features (made before cache v3); delete "
                        f"{ds.cache_path} so it is rebuilt")
    if folds and not (folds >= 2 and 0 <= fold < folds):
        raise DataError(f"fold={fold} is not one of the {folds} folds (0 .. {folds - 1})")
    names = ds.splits
    R = np.concatenate([np.asarray(ds.raw[k], np.float64) for k in names])
    Y = np.concatenate([np.asarray(ds.Y[k]) for k in names])
    h, meta = ds.hierarchy, dict(ds.meta)
    feature_names = list(meta.get("feature_names") or [f"x{j}" for j in range(R.shape[1])])
    if min_label_count:
        if h.edges.shape[0]:
            raise DataError(f"{ds.spec.name}: min_label_count drops labels, which a hierarchy cannot lose")
        keep = Y.sum(0) > min_label_count
        if not keep.any():
            raise DataError(f"{ds.spec.name}: no label has more than {min_label_count} positives")
        from hmljax.hierarchy import Hierarchy

        h, Y = Hierarchy.flat([n for n, k in zip(h.names, keep, strict=True) if k]), Y[:, keep]
    if feature_fraction < 1.0:
        if not 0 < feature_fraction <= 1:
            raise DataError(f"feature_fraction must be in (0, 1], got {feature_fraction}")
        k = max(1, int(np.ceil(feature_fraction * R.shape[1])))
        cols = np.sort(np.argsort(-np.nansum(R, axis=0), kind="stable")[:k])
        R, feature_names = R[:, cols], [feature_names[j] for j in cols]
    if folds:
        rows = list(kfold_splits(Y, folds, seed=fold_seed, order=fold_order, valid_from_heldout=fold_valid))[fold]
    else:
        sizes = np.cumsum([0] + [ds.X[k].shape[0] for k in names])
        rows = {k: np.arange(sizes[i], sizes[i + 1]) for i, k in enumerate(names)}
    if longtail:
        train = rows["train"]
        rows["train"] = train[longtail_subset(Y[train], **longtail)]
    mode = preprocessing or ds.meta.get("preprocessing", {}).get("mode", "chmcnn")
    fit_on = tuple(ds.spec.fit_on) if not folds else ("train",)
    X, info = preprocess({k: R[idx] for k, idx in rows.items()}, mode=mode, fit_on=fit_on)
    meta.update(preprocessing=info, feature_names=feature_names, hierarchy=h.to_json(),
                view={"folds": folds, "fold": fold, "fold_valid": fold_valid, "fold_seed": fold_seed,
                      "fold_order": fold_order, "min_label_count": min_label_count,
                      "feature_fraction": feature_fraction, "longtail": longtail,
                      "rows": {k: len(v) for k, v in rows.items()}})
    return dataclasses.replace(ds, hierarchy=h, X=X, Y={k: Y[idx] for k, idx in rows.items()}, meta=meta,
                               raw={k: R[idx].astype(np.float32) for k, idx in rows.items()})
