"""Finished runs as values: ``load_run`` (config, model, parameters, hierarchy, preprocessing), evaluate, predict."""

from __future__ import annotations

import os
import warnings
from typing import Any, NamedTuple

import jax
import numpy as np

from hmljax.engine import Method, init_train_state, make_predict_fn
from hmljax.training._config import TrainConfig, load_config
from hmljax.training._run import _checkpointer, _restore, _without_buffers, build_method, load_run_dataset, train_split

__all__ = ["LoadedRun", "load_run", "evaluate_run", "predict_file"]


class LoadedRun(NamedTuple):
    """A run directory's trained model and everything needed to use it on new rows.

    Attributes:
        run_dir: where it was read from.
        config: its resolved :class:`TrainConfig`.
        method: the :class:`hmljax.engine.Method` rebuilt from the config (model, loss, predict, metrics).
        params, model_state: from the latest checkpoint; for an early-stopping run
            (``protocol=early_stopping``), those of its best validation epoch, which its test results used.
        epoch: the epoch those parameters ended.
        dataset: the :class:`hmljax.data.Dataset` it was trained on (from today's ``--data-dir``).
        hierarchy: the dataset's :class:`hmljax.Hierarchy` (label names in output order).
        preprocessing: the fitted preprocessing statistics (see :func:`hmljax.data.apply_preprocessing`).
    """

    run_dir: str
    config: TrainConfig
    method: Method
    params: Any
    model_state: Any
    epoch: int
    dataset: Any
    hierarchy: Any
    preprocessing: dict

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, C]`` for preprocessed features ``X [N, D]``."""
        with jax.default_matmul_precision(self.config.matmul_precision):
            return make_predict_fn(self.method)(self.params, self.model_state, X)


def load_run(run_dir: str, *, data_dir: str | None = None) -> LoadedRun:
    """Reads a run directory: its config, and its latest checkpoint into the method's model (the best
    validation epoch's parameters for an early-stopping run).

    Args:
        run_dir: a folder written by :func:`hmljax.training.train_and_evaluate`.
        data_dir: where the dataset lives on this machine (default: ``$HMLJAX_DATA``; the run's own
            recorded folder is not used, so a run copied from another machine loads here).

    Raises:
        ValueError: not a run directory, no checkpoint, or a checkpoint that does not fit the config.
    """
    cfg = load_config(run_dir).replace(data_dir=data_dir).resolved()
    ds = load_run_dataset(cfg)
    with jax.default_matmul_precision(cfg.matmul_precision):
        _, method, _ = build_method(cfg, ds)
        init_key, loop_key = jax.random.split(jax.random.key(cfg.seed))
        # Shapes only: the checkpoint's arrays are the only copy held.
        state = _without_buffers(init_train_state(method, init_key, sampler_key=jax.random.fold_in(init_key, 0x5A3D)))
        if not os.path.isdir(os.path.join(run_dir, "checkpoints")):
            raise ValueError(f"{run_dir!r} has no checkpoint to load")
        mngr = _checkpointer(run_dir)
        try:
            if mngr.latest_step() is None:
                raise ValueError(f"{run_dir!r} has no checkpoint to load")
            early = cfg.protocol == "early_stopping"
            state, _, epoch, *best = _restore(mngr, state, loop_key, best=early)
        finally:
            mngr.close()
    params, model_state = state.params, state.model_state
    if early:
        # The parameters its results.json was scored with: those of the best validation epoch.
        if best[0] is not None and best[0]["params"] is not None:
            params, model_state, epoch = best[0]["params"], best[0]["model_state"], best[0]["epoch"]
        else:
            warnings.warn(f"{run_dir}: an early-stopping run whose checkpoint predates the best-epoch record; "
                          f"these are the parameters of epoch {epoch}, not of the best validation epoch its "
                          "results.json reports", stacklevel=2)
    return LoadedRun(run_dir, cfg, method, params, model_state, epoch, ds, ds.hierarchy,
                     dict(ds.meta.get("preprocessing", {})))


def evaluate_run(run_dir: str, *, split: str = "test", data_dir: str | None = None) -> dict:
    """Scores a run's trained model (as :func:`load_run` reads it) on ``split`` with its method's metric suite.

    Warns when ``split`` is one the run trained on (``valid`` under ``protocol=chmcnn``, which trains on
    train+valid): its scores are then training scores, not a held-out estimate."""
    run = load_run(run_dir, data_dir=data_dir)
    trained = train_split(run.config, run.dataset)
    if set(split.split("+")) & set(trained.split("+")):
        warnings.warn(f"{run_dir}: the run trained on {trained}, so its scores on {split!r} are on rows it was "
                      "trained on, not a held-out estimate", stacklevel=2)
    X, Y = run.dataset.split(split)
    return run.method.metrics.evaluate(np.asarray(Y), run.predict(X))


def predict_file(run_dir: str, path: str, *, data_dir: str | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Probabilities ``[N, C]`` for the rows of an ARFF file, preprocessed as the run's training data was.

    The file's feature attributes are matched to the training data's by name (reordered if declared in
    another order; missing or extra ones refused). The labels may be absent (new rows): a flat file without
    any of the label attributes, an HMC file without its class attribute. Returns the probabilities and the
    label names.
    """
    from hmljax.data import apply_preprocessing, read_arff

    run = load_run(run_dir, data_dir=data_dir)
    stats = run.preprocessing
    if "feature_names" not in run.dataset.meta or "center" not in stats:
        raise ValueError(f"{run.config.dataset}: its cached arrays predate the saved preprocessing statistics; "
                         "clear the cache folder ($HMLJAX_CACHE) so they are rebuilt")
    spec, meta = run.dataset.spec, run.dataset.meta
    if spec.hierarchy == "flat":  # read the labels as the training files' (by name), and drop the same ids
        kw = {"label_names": tuple(run.hierarchy.names), "drop_ids": bool(meta.get("dropped_attributes"))}
        if not _declares_any(path, kw["label_names"]):  # new rows, unlabelled: features only (as an HMC file
            kw["label_names"] = ()                      # without its class attribute already was)
    else:
        kw = {"num_labels": spec.num_labels} if spec.num_labels else {}
    data = read_arff(path, **kw)
    X = apply_preprocessing(data.features, data.feature_names, stats, feature_names=meta["feature_names"], path=path)
    return run.predict(X), run.hierarchy.names


def _declares_any(path: str, names) -> bool:
    """Whether the ARFF file at ``path`` has an attribute of any of ``names`` (backslash escapes ignored, as
    the reader matches them). A file with some of the labels and not others is left to the reader to refuse."""
    from hmljax.data import read_arff_header

    plain = lambda n: n.replace("\\", "")  # noqa: E731
    have = {plain(a.name) for a in read_arff_header(path)[1]}
    return any(plain(n) in have for n in names)
