"""``train_and_evaluate``: a whole run of any method, with checkpoints, metrics files, resume and evaluation."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.data import atomic_write_text, dataset_view, load_dataset
from hmljax.engine import (
    get_method,
    init_train_state,
    is_device_sampler,
    jit_train,
    make_epoch,
    make_predict_fn,
    train_compiler_options,
)
from hmljax.training._config import TrainConfig, config_diff
from hmljax.training._sharding import make_mesh, replicate, shard_epoch_batches, shard_members

__all__ = ["train_and_evaluate", "build_method", "load_run_dataset", "source_commit", "run_lock", "RunInUseError",
           "cpu_model"]


def load_run_dataset(cfg: TrainConfig):
    """The dataset a resolved config trains on: loaded (cached), then re-split into its fold and filtered as the
    config's ``folds``, ``min_label_count``, ``feature_fraction`` and ``longtail_*`` say
    (:func:`hmljax.data.dataset_view`).

    An image dataset (``dataset=tfds:voc/2007`` ...) loads through :func:`hmljax.data.load_image_dataset` from the
    tensorflow-datasets folder ``data_dir`` (else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``), its train
    split cut by the ``longtail_*`` keys; folds and label or feature filters do not apply to images."""
    from hmljax.data import is_image_dataset, load_image_dataset

    longtail = None if not cfg.longtail_max else dict(max_count=cfg.longtail_max, min_count=cfg.longtail_min,
                                                      alpha=cfg.longtail_alpha, seed=cfg.longtail_seed)
    if is_image_dataset(cfg.dataset):
        for key, used in (("folds", cfg.folds), ("min_label_count", cfg.min_label_count),
                          ("feature_fraction", cfg.feature_fraction != 1.0)):
            if used:
                raise ValueError(f"config key {key}={getattr(cfg, key)!r} does not apply to the image dataset "
                                 f"{cfg.dataset!r} (its train and test splits are fixed; longtail_* keys apply)")
        return load_image_dataset(cfg.dataset, data_dir=cfg.data_dir, longtail=longtail)
    ds = load_dataset(cfg.dataset, data_dir=cfg.data_dir, preprocessing=cfg.preprocessing, drop_ids=cfg.drop_ids)
    return dataset_view(ds, folds=cfg.folds, fold=cfg.fold or 0, fold_valid=bool(cfg.fold_valid),
                        fold_seed=42 if cfg.fold_seed is None else cfg.fold_seed, fold_order=cfg.fold_order or 1,
                        min_label_count=cfg.min_label_count, feature_fraction=cfg.feature_fraction,
                        longtail=longtail)


def build_method(cfg: TrainConfig, ds=None, *, split: str | None = None):
    """``(dataset, method, split)`` for a resolved config: the dataset loaded (:func:`load_run_dataset`) unless
    given, and the method built on it.

    ``split`` defaults to the protocol's: train+valid for ``protocol=chmcnn`` where a valid split exists
    (C-HMCNN trains on both for the fixed epoch count), else train.
    """
    if ds is None:
        ds = load_run_dataset(cfg)
    if split is None:
        split = train_split(cfg, ds)
    return ds, get_method(cfg.method).build(ds, cfg, split=split), split


def train_split(cfg: TrainConfig, ds) -> str:
    """The split a run trains on: train+valid for ``protocol=chmcnn`` where a valid split exists (C-HMCNN trains
    on both for the fixed epoch count), else train."""
    return "train+valid" if (cfg.protocol == "chmcnn" and "valid" in ds.X) else "train"


class RunInUseError(ValueError):
    """Another process holds the run directory's lock (it is training there now)."""


class TrainingPaused(Exception):  # noqa: N818 - not an error: the run stopped where it can resume
    """A run stopped with a checkpoint at ``epoch``, before its deadline (``stop_by``) or on SIGTERM
    (``why``); resuming continues it.

    Nothing is evaluated and no ``results.json`` is written: the run is not finished."""

    def __init__(self, run_dir: str, epoch: int, epochs: int, why: str = "before its deadline"):
        super().__init__(f"{run_dir}: paused at epoch {epoch} of {epochs} {why}; its checkpoint is written: "
                         "resume with the same command")
        self.run_dir, self.epoch, self.epochs, self.why = run_dir, epoch, epochs, why


# A deadline for every run a process trains (Unix seconds): a scheduler's time limit, or a GPU sitting's
# job limit. A run that could not train one more epoch and write a checkpoint before it stops at a
# checkpoint instead of being killed mid-epoch, and the next sitting resumes it from there.
STOP_BY_ENV = "HMLJAX_STOP_BY"
# Before a run has saved once, a checkpoint's time is priced at this rate: seq_GO's HLSTM state (10.8 GB)
# then costs ~22 s; the H200 machine wrote CHMC-LSTM's 4.6 GB in ~6 s. Once saved, the measured time counts.
_SAVE_BYTES_PER_S = 0.5e9


def stop_by_from_env() -> float | None:
    """``$HMLJAX_STOP_BY`` as Unix seconds (None when unset or empty)."""
    raw = os.environ.get(STOP_BY_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{STOP_BY_ENV}={raw!r}: expected a deadline in Unix seconds, e.g. "
                         f"$(( $(date +%s) + 3600 )) for an hour from now")
    return value


def _pause_due(stop_by: float | None, *, now: float, epoch_s: float, save_s: float) -> bool:
    """Whether one more epoch and a checkpoint after it would end past ``stop_by``."""
    return stop_by is not None and now + epoch_s + save_s > stop_by


@contextlib.contextmanager
def _sigterm_pauses():
    """Within: SIGTERM (a scheduler's or a GPU sitting's stop, before its kill) sets ``flag[0]``, and the run
    pauses at a checkpoint after the epoch in flight instead of dying in it; SIGINT (^C) and SIGKILL still stop
    it at once. Only the main thread can take a signal; elsewhere, and on exit, the previous handler stays or
    comes back."""
    import signal
    import sys
    import threading

    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_term(signum, frame):
        if not flag[0]:
            print("SIGTERM: the run stops at a checkpoint after the epoch in flight (^C stops it now)",
                  file=sys.stderr, flush=True)
        flag[0] = True
        if callable(previous):  # a caller's own note of it (a runner starting no further run), not the default
            previous(signum, frame)

    previous = None
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def run_lock(run_dir: str):
    """An exclusive lock on ``run_dir`` for one training at a time: a second one into the same folder
    fails at once with a clear message instead of interleaving its files."""
    import fcntl

    path = os.path.join(run_dir, ".lock")
    try:
        fh = open(path, "a+")
    except OSError as err:
        raise ValueError(f"cannot write to the run directory {run_dir!r}: {err.strerror}") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise RunInUseError(f"{run_dir!r} is in use by another training (its .lock is held): wait for it or "
                            "choose another --out") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _placement(cfg: TrainConfig):
    """``place(indices, where)``: moves an epoch's batch arrays to the device(s) as ``cfg.shard`` says."""
    if cfg.shard == "none":
        place = lambda i, w: (jax.device_put(i), jax.device_put(w))  # noqa: E731
        place.mesh = None
        return place
    mesh = make_mesh(cfg.devices or None, axis=cfg.shard)
    if cfg.shard == "data":
        place = lambda i, w: shard_epoch_batches(i, w, mesh)  # noqa: E731
    else:
        place = lambda i, w: (replicate(i, mesh), replicate(w, mesh))  # noqa: E731
    place.mesh = mesh
    return place


def _checkpointer(run_dir: str):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, create=True)
    # Saved without zstd: compressing buffered up to twice the state on orbax's threads while a checkpoint
    # was written (a 2 GiB tree of trained-looking floats: 1.8-3.8 GiB more at peak, none without it) and
    # saves little on float weights. The layout is the same zarr, so checkpoints of either kind restore
    # through StandardRestore, whose tree-structure check the three-field and early-stopping fallbacks use.
    handlers = ocp.handlers.DefaultCheckpointHandlerRegistry()
    handlers.add("default", ocp.args.PyTreeSave, ocp.PyTreeCheckpointHandler(use_compression=False))
    handlers.add("default", ocp.args.StandardRestore, ocp.StandardCheckpointHandler())
    return ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")), options=options,
                                 handler_registry=handlers)


def _peak_memory() -> dict:
    """Peak memory so far: the process's max RSS (host) and, where the backend reports it, the device's."""
    import resource

    out = {"host_max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats_fn = getattr(jax.devices()[0], "memory_stats", None)
    stats = (stats_fn() if stats_fn else None) or {}  # None on backends without allocator stats (CPU)
    if "peak_bytes_in_use" in stats:
        out["device_peak"] = int(stats["peak_bytes_in_use"])
    return out


_SOURCE_COMMIT: dict[bool, str] = {}


def source_commit(*, dirty: bool = False) -> str:
    """The git commit of the hmljax source tree (short hash; ``-dirty`` appended with ``dirty=True`` when tracked
    files are modified); for a copy pip installed from a git URL (``pip install git+https://...``), the commit pip
    recorded (PEP 610's ``direct_url.json``; it cannot say whether the copy was edited since); else ``"unknown"``.

    Asked once per process and kept: the code a process runs is what it imported, and a long experiment
    process whose checkout moved on under it (new commits while it trains) stamped its tables and runs with
    commits whose code it was not running. The experiment scripts ask at import, when the two agree."""
    if dirty not in _SOURCE_COMMIT:
        got = _git_describe(dirty)
        _SOURCE_COMMIT[dirty] = _installed_commit() if got == "unknown" else got
    return _SOURCE_COMMIT[dirty]


def _installed_commit() -> str:
    """The commit pip recorded for an install from a VCS URL (its ``direct_url.json``), else ``"unknown"``."""
    import importlib.metadata

    try:
        text = importlib.metadata.distribution("hmljax").read_text("direct_url.json")
        commit = json.loads(text or "{}").get("vcs_info", {}).get("commit_id", "")
    except (importlib.metadata.PackageNotFoundError, ValueError, AttributeError):
        return "unknown"
    return commit[:7] if isinstance(commit, str) and len(commit) >= 7 else "unknown"


def _git_describe(dirty: bool) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = ["git", "describe", "--always", "--abbrev=7"] + (["--dirty"] if dirty else [])
    try:
        # Only if git tracks this very file: an installed copy inside some other repository (a .venv in a
        # user's project) would otherwise report that project's commit.
        subprocess.check_call(["git", "ls-files", "--error-unmatch", os.path.basename(__file__)], cwd=here,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return subprocess.check_output(cmd, cwd=here, text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The host CPU's model name (``/proc/cpuinfo``'s first ``model name``; elsewhere ``platform.processor()``).

    Two "2-CPU" machines of this project's pool ran the same epochs 2x apart (an AMD EPYC and an Intel Xeon
    with 2.6x its matmul rate), so epoch-time estimates prefer runs from the same model."""
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    except OSError:  # not Linux
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def pin_cpus(cpus) -> list[int]:
    """Pins this process, every thread it has already started included, to ``cpus``; returns them sorted.

    Call it before jax's first computation: XLA's CPU client sizes its thread pool by the CPUs the process may
    use and runs a jitted program's independent ops and large loops on it, whatever ``XLA_FLAGS`` say, so an
    unpinned run spreads over every core (measured on 2 cores: a FUN-sized C-HMCNN epoch 0.85 s against
    0.46 s pinned to one, and two unpinned runs side by side oversubscribe the cores). Threads started later
    inherit the mask. Linux only (``os.sched_setaffinity``)."""
    cpus = sorted(set(cpus))
    if not cpus:
        raise ValueError("pin_cpus: no CPUs given")
    for tid in os.listdir("/proc/self/task"):  # threads already started (by imports) keep their own mask
        with contextlib.suppress(OSError):  # a thread that ended since the listing
            os.sched_setaffinity(int(tid), cpus)
    os.sched_setaffinity(0, cpus)
    return cpus


def _machine() -> dict:
    # The commit and compiler options say which code made a run's numbers: epoch times taken before
    # jit_train (70ad98c) are 8-22% slower on CPU with bitwise-equal parameters.
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        # The CPUs this process may run on: fewer than ``cpus`` when pinned (experiments' --workers N, taskset),
        # and XLA sizes its thread pool by them, so an epoch time means little without it.
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,  # the model ('NVIDIA H100 80GB HBM3'); 'cpu' on CPU
        "hmljax_commit": source_commit(dirty=True),
        "compiler_options": train_compiler_options(),
        "packages": _package_versions(),
    }


_PACKAGES = ("jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


@functools.cache
def _package_versions() -> dict[str, str]:
    """The versions of the packages a run's numbers depend on besides jax: flax's initialisers, optax's update
    and numpy's preprocessing all changed results across releases, so ``jax 0.10.2`` alone does not pin a run."""
    import importlib.metadata

    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out



def train_and_evaluate(cfg: TrainConfig, run_dir: str, *, resume: bool = False, progress: bool = True,
                       extend: bool = False, stop_by: float | None = None) -> dict:
    """Trains the configured method, evaluates the test split once, writes the run directory.

    Every step and the evaluation are traced under ``cfg.matmul_precision`` (true float32 by
    default, on every backend).

    Writes ``config.json``, ``metrics.jsonl`` (one line per epoch), ``results.json`` and orbax
    checkpoints (every ``checkpoint_every`` epochs, after any epoch that ends ``checkpoint_minutes`` after
    the last one, and at the end; none with ``checkpoint_every=0``), with the optimiser, model and
    sampler state, the PRNG key and the epoch, which fixes a host sampler's position; under
    ``protocol=early_stopping`` also the best validation epoch so far, its score and parameters). With
    ``resume=True`` it continues from the latest checkpoint and ends with the same parameters (and the same
    chosen epoch) as an uninterrupted run; a saved config that differs is refused, except a larger ``epochs`` with
    ``extend=True`` (training a finished run further).

    ``stop_by`` (Unix seconds; default ``$HMLJAX_STOP_BY``) is a deadline: after an epoch that leaves too little
    time for one more epoch and a checkpoint, the run writes a checkpoint (even with ``checkpoint_every=0``:
    resuming is what a deadline is for) and raises :class:`TrainingPaused`. Resumed, it ends as an
    uninterrupted run would. SIGTERM (in the main thread) does the same after the epoch in flight.
    """
    if stop_by is None:
        stop_by = stop_by_from_env()
    cfg = cfg.resolved()
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the run directory {run_dir!r}: {err.strerror}") from None
    with run_lock(run_dir), jax.default_matmul_precision(cfg.matmul_precision), _sigterm_pauses() as terminated:
        return _train_and_evaluate(cfg, run_dir, resume=resume, progress=progress, extend=extend, stop_by=stop_by,
                                   terminated=terminated)


def _check_resume(cfg: TrainConfig, run_dir: str, *, resume: bool, extend: bool) -> None:
    ckpt = os.path.join(run_dir, "checkpoints")
    if not resume and os.path.isdir(ckpt) and os.listdir(ckpt):
        raise ValueError(f"{run_dir!r} already holds checkpoints: pass --resume or choose another --out")
    if not resume:
        return
    diff = config_diff(run_dir, cfg)
    if extend and set(diff) == {"epochs"}:
        saved, wanted = diff["epochs"]
        if wanted < saved:
            raise ValueError(f"{run_dir!r}: cannot extend a run of {saved} epochs to fewer ({wanted})")
        return
    if diff:
        # Resuming another config's checkpoint would silently train a mix of the two.
        what = ", ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in diff.items())
        hint = " (to train a finished run further, pass --extend with the new --epochs)" if "epochs" in diff else ""
        raise ValueError(f"{run_dir!r} holds a run of another config ({what}): resume it with its own "
                         f"config or choose another --out{hint}")


def _train_and_evaluate(cfg: TrainConfig, run_dir: str, *, resume: bool, progress: bool, extend: bool,
                        stop_by: float | None, terminated: list) -> dict:
    # cfg is resolved; the caller holds the run lock and set the matmul precision every trace below runs under.
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    _check_resume(cfg, run_dir, resume=resume, extend=extend)
    ds, method, _ = build_method(cfg)
    if cfg.protocol == "early_stopping" and "valid" not in ds.X:
        # It used to fall back to the test split: the epoch chosen on the very rows it is then scored on.
        raise ValueError(f"protocol=early_stopping chooses the epoch on a validation split and {cfg.dataset} has none "
                         f"(its splits: {', '.join(ds.X)}): add folds=K fold_valid=true to hold one out of each "
                         "fold, or use protocol=chmcnn (a fixed number of epochs)")
    atomic_write_text(os.path.join(run_dir, "config.json"),
                      json.dumps({"config": cfg.to_dict(), "machine": _machine()}, indent=2))
    suite = method.metrics
    device_sampler = is_device_sampler(method.sampler)
    # Explicit transfer: the (small) training set lives on the device for the whole run.
    X, Y = jax.device_put(method.train_x), jax.device_put(method.train_y)
    init_key, loop_key = jax.random.split(jax.random.key(cfg.seed))
    train_epoch = jit_train(make_epoch(method), donate_argnums=(0,))
    predict = make_predict_fn(method)
    place_batches = _placement(cfg)
    if cfg.shard != "none":
        mesh = place_batches.mesh
        X, Y = replicate(X, mesh), replicate(Y, mesh)

    def initial_state():
        state = init_train_state(method, init_key, sampler_key=jax.random.fold_in(init_key, 0x5A3D))
        if cfg.shard != "none":
            state = shard_members(state, mesh, cfg.ensemble) if cfg.shard == "members" else replicate(state, mesh)
        return state

    state = initial_state()

    mngr = _checkpointer(run_dir)
    start_epoch, history = 0, []
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    early = cfg.protocol == "early_stopping"
    best = _no_best()
    if resume and mngr.latest_step() is not None:
        # Only the shapes: the fresh state's buffers are freed before the checkpoint's are read, so a
        # resumed run never holds two copies of its parameters and optimiser state.
        shapes = _without_buffers(state)
        del state
        state, loop_key, start_epoch, *saved_best = _restore(mngr, shapes, loop_key, best=early)
        if os.path.exists(metrics_path):
            with open(metrics_path) as fh:
                history = [json.loads(line) for line in fh if line.strip()]
            history = [m for m in history if m["epoch"] <= start_epoch]
        if early:
            # The best epoch so far and its parameters resume with the run: without them a resumed run
            # would choose only among the epochs after the checkpoint, and restart its patience.
            best = saved_best[0] or _best_from_legacy(mngr, state, loop_key, history, start_epoch, suite.headline)
            if best is None:
                print(f"{run_dir}: its checkpoint predates the early-stopping record and the best epoch's "
                      "parameters are not kept; training again from epoch 0 (the run is deterministic)")
                _drop_checkpoints(mngr)
                state, start_epoch, history = initial_state(), 0, []
                best = _no_best()
    atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in history))

    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"{cfg.method} {cfg.dataset} seed {cfg.seed}",
               disable=not progress, initial=start_epoch, total=cfg.epochs, unit="epoch")
    t_train, compile_s, last_save = 0.0, None, time.monotonic()
    save_s = None if stop_by is None else 2.0 + sum(
        leaf.nbytes for leaf in jax.tree.leaves(state) if hasattr(leaf, "nbytes")) / _SAVE_BYTES_PER_S
    rows_per_epoch = min(method.sampler.steps_per_epoch * method.sampler.batch_size, X.shape[0])
    for epoch in bar:
        t0 = time.perf_counter()
        if device_sampler:
            state, losses = train_epoch(state, X, Y, jnp.int32(epoch), loop_key)
            seen = rows_per_epoch
        else:
            eb = method.sampler.epoch(epoch)
            state, losses = train_epoch(state, X, Y, *place_batches(eb.indices, eb.where), loop_key)
            seen = int(eb.where.sum())
        mean_loss = float(jnp.mean(losses))  # the one host sync per epoch
        dt = time.perf_counter() - t0
        if compile_s is None:
            compile_s = dt
        t_train += dt
        record = {"epoch": epoch + 1, "loss": mean_loss, "epoch_s": dt, "samples_per_s": float(seen / dt)}
        if early and np.isfinite(mean_loss):
            Xv, Yv = ds.split("valid")
            score = suite.evaluate(np.asarray(Yv), predict(state.params, state.model_state, Xv))[suite.headline]
            record[f"valid_{suite.headline}"] = score
            if score > best["score"]:
                # A real copy: the state's buffers are donated to the next epoch.
                best = {"score": score, "epoch": epoch + 1, "params": jax.tree.map(np.array, state.params),
                        "model_state": jax.tree.map(np.array, state.model_state)}
        if cfg.test_curve_every and (epoch + 1) % cfg.test_curve_every == 0 and np.isfinite(mean_loss):
            # A learning curve on the test split, for figures only: nothing is chosen by it.
            Xc, Yc = ds.split("test")
            record[f"test_{suite.headline}"] = suite.evaluate(
                np.asarray(Yc), predict(state.params, state.model_state, Xc))[suite.headline]
        history.append(record)
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if not np.isfinite(mean_loss):
            # Stop before a checkpoint or results.json holds NaN parameters: a finished-looking run with
            # F1 = 0 would otherwise enter the tables. The last checkpoint stays as it was.
            last = mngr.latest_step()
            mngr.close()
            raise FloatingPointError(
                f"{run_dir}: the training loss is {mean_loss} at epoch {epoch + 1}; stopped without writing "
                f"results (last checkpoint: epoch {last}). Resuming repeats it: the run is deterministic. "
                f"Look for a learning rate too large (lr={cfg.lr:g}) or an overflow in the loss terms "
                "(e.g. a weight or focal factor).")
        bar.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{record['samples_per_s']:.0f}")
        stop = early and epoch + 1 - best["epoch"] >= cfg.patience
        overdue = cfg.checkpoint_minutes and time.monotonic() - last_save >= 60 * cfg.checkpoint_minutes
        # The epoch just timed prices the next (the first one's compile makes it err on the early side).
        pause = not stop and epoch + 1 < cfg.epochs and (
            terminated[0] or _pause_due(stop_by, now=time.time(), epoch_s=dt, save_s=save_s))
        if pause or cfg.checkpoint_every and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs
                                              or stop or overdue):
            t_save = time.monotonic()
            mngr.save(epoch + 1, args=ocp.args.PyTreeSave(
                _checkpoint_item(state, loop_key, epoch + 1, best if early else None)))
            mngr.wait_until_finished()
            _record_checksums(mngr)
            _trim_heap()
            last_save = time.monotonic()
            save_s = last_save - t_save
        if pause:
            mngr.close()
            bar.close()
            raise TrainingPaused(run_dir, epoch + 1, cfg.epochs, *(["on SIGTERM"] if terminated[0] else []))
        if stop:
            break
    mngr.wait_until_finished()
    mngr.close()

    use_best = early and best["params"] is not None
    params = best["params"] if use_best else state.params
    model_state = best["model_state"] if use_best else state.model_state
    t0 = time.perf_counter()
    Xt, Yt = ds.split("test")
    probs = predict(params, model_state, Xt)
    eval_s = time.perf_counter() - t0
    metrics = suite.evaluate(np.asarray(Yt), probs)
    steady = [m["epoch_s"] for m in history[1:]] or [m["epoch_s"] for m in history]
    results = {
        "dataset": cfg.dataset,
        "method": cfg.method,
        "seed": cfg.seed,
        "test": metrics,
        "published_auprc": ds.spec.published_auprc,
        "rerun_auprc": list(ds.spec.rerun_auprc) if ds.spec.rerun_auprc else None,
        "epochs_run": len(history) and history[-1]["epoch"],
        "best_epoch": best["epoch"] if cfg.protocol == "early_stopping" else None,
        "train_seconds_this_session": t_train,
        "first_epoch_seconds_incl_compile": compile_s,
        "median_epoch_seconds": float(np.median(steady)) if steady else None,
        "eval_seconds": eval_s,
        "train_rows": dict(method.info),
        "peak_memory_bytes": _peak_memory(),
    }
    atomic_write_text(os.path.join(run_dir, "results.json"), json.dumps(results, indent=2))
    return {"results": results, "params": params, "model_state": model_state, "state": state}


def _no_best() -> dict:
    """The early-stopping record before any finite validation score."""
    return {"score": -np.inf, "epoch": 0, "params": None, "model_state": None}


def _best_from_legacy(mngr, state, loop_key, history: list[dict], start_epoch: int, headline: str) -> dict | None:
    """The early-stopping record of a checkpoint written before checkpoints carried it, rebuilt from the
    logged validation scores; the parameters come from the checkpoint of the best epoch if one is kept,
    else None (the run must start again)."""
    key = f"valid_{headline}"
    scored = [m for m in history if np.isfinite(m.get(key, np.nan))]
    if not scored:
        return _no_best()
    top = max(m[key] for m in scored)
    b_epoch = min(m["epoch"] for m in scored if m[key] == top)  # the loop keeps the first of equal scores
    if b_epoch == start_epoch:
        src = state
    elif b_epoch in mngr.all_steps():
        src = _restore(mngr, state, loop_key, b_epoch)[0]
    else:
        return None
    return {"score": float(top), "epoch": b_epoch, "params": jax.tree.map(np.array, src.params),
            "model_state": jax.tree.map(np.array, src.model_state)}


def _drop_checkpoints(mngr) -> None:
    for step in mngr.all_steps():
        mngr.delete(step)
    with contextlib.suppress(FileNotFoundError):
        os.remove(_checksum_file(mngr))


def _checksum_file(mngr) -> str:
    return os.path.join(os.path.dirname(os.fspath(mngr.directory)), "checkpoints.sha256.json")


def _step_files(mngr, step: int) -> dict[str, str]:
    import hashlib

    folder = os.path.join(os.fspath(mngr.directory), str(step))
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out


def _record_checksums(mngr) -> None:
    """SHA-256 of every file of the checkpoints kept, written atomically beside them: a flipped byte in a
    checkpoint is found when it is read, not trained on."""
    path = _checksum_file(mngr)
    old = {}
    if os.path.exists(path):
        with contextlib.suppress(OSError, ValueError), open(path) as fh:
            old = json.load(fh)
    sums = {str(s): old.get(str(s)) or _step_files(mngr, s) for s in mngr.all_steps()}
    atomic_write_text(path, json.dumps(sums, indent=1))


def _verify_checksums(mngr, step: int) -> None:
    path = _checksum_file(mngr)
    if not os.path.exists(path):
        return  # a run from before checksums were written
    try:
        with open(path) as fh:
            want = json.load(fh).get(str(step))
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{path}: the checkpoints' checksum record is unreadable ({err}); delete it to resume "
                         "without checking them") from None
    if want is None:
        return
    got = _step_files(mngr, step)
    bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    if bad:
        older = [s for s in mngr.all_steps() if s < step]
        hint = (f"delete {os.path.join(os.fspath(mngr.directory), str(step))} to resume from checkpoint {max(older)}"
                if older else "start the run again")
        raise ValueError(f"checkpoint {step} in {mngr.directory} is damaged ({bad[0]} differs from the checksum "
                         f"written with it): {hint}")


def _best_template(state) -> dict:
    """The early-stopping record a checkpoint carries: the best validation score so far, its epoch and a
    copy of that epoch's parameters and model state (epoch 0 and the current ones before any)."""
    return {"score": np.asarray(-np.inf, np.float64), "epoch": np.asarray(0, np.int64),
            "params": state.params, "model_state": state.model_state}


def _checkpoint_item(state, loop_key, epoch: int, best: dict | None) -> dict:
    item = {"state": state, "key": jax.random.key_data(loop_key), "epoch": epoch}
    if best is not None:
        if best["params"] is None:  # no finite validation score yet
            best = _best_template(state)
        item["best"] = {"score": np.asarray(best["score"], np.float64), "epoch": np.asarray(best["epoch"], np.int64),
                        "params": best["params"], "model_state": best["model_state"]}
    return item


def _restore(mngr, state, loop_key, step: int | None = None, *, best: bool = False):
    """``(state, loop_key, epoch)`` from a checkpoint, into the structure of ``state``; with ``best=True``
    ``(state, loop_key, epoch, best)``, where ``best`` is the early-stopping record (score, epoch, params,
    model_state; params None before any finite score) or None for a checkpoint written without one.

    Checkpoints written before the engine carried model and sampler state hold a three-field state;
    they restore into the same parameters and optimiser state with empty model and sampler state.
    """
    import orbax.checkpoint as ocp

    step = mngr.latest_step() if step is None else step
    _verify_checksums(mngr, step)
    state = _without_buffers(state)  # orbax allocates each restored array once, from its shape and sharding
    template = {"state": state, "key": jax.random.key_data(loop_key), "epoch": 0}
    three_field = {"state": tuple(state[:3]), "key": template["key"], "epoch": 0}
    templates = [{**template, "best": _best_template(state)}] if best else []
    templates += [template, three_field]
    errors = []
    for tmpl in templates:
        try:
            restored = mngr.restore(step, args=ocp.args.StandardRestore(tmpl))
            break
        except Exception as err:  # noqa: BLE001 - orbax raises assorted types for a tree that does not fit
            errors.append(err)
    else:
        # Report the plain template's error: the others only add or drop fields around it.
        raise ValueError(f"checkpoint {step} of {mngr.directory} does not fit this run's state ({errors[-2]}); "
                         "it was written by another config or is damaged") from None
    if tmpl is three_field:
        restored["state"] = type(state)(*restored["state"], state.model_state, state.sampler_state)
    new_state = jax.tree.map(jnp.asarray, restored["state"])
    new_state = type(state)(*new_state) if not hasattr(new_state, "_fields") else new_state
    # From host memory: an uncommitted key, usable beside a state sharded over any devices.
    key, epoch = jax.random.wrap_key_data(np.asarray(restored["key"])), int(restored["epoch"])
    saved = restored.get("best")
    del restored
    if saved is not None:
        b_epoch = int(saved["epoch"])
        saved = {"score": float(saved["score"]), "epoch": b_epoch,
                 "params": jax.tree.map(np.array, saved["params"]) if b_epoch else None,
                 "model_state": jax.tree.map(np.array, saved["model_state"]) if b_epoch else None}
    _trim_heap()
    return (new_state, key, epoch, saved) if best else (new_state, key, epoch)


def _without_buffers(state):
    """``state`` with its parameters, optimiser state and step as ``jax.ShapeDtypeStruct`` (shape, dtype,
    sharding): a restore template that holds no memory. The model and sampler state stay concrete (they
    are small, and a three-field checkpoint takes them from the template)."""
    def shape(a):
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding) if isinstance(a, jax.Array) else a

    return state._replace(params=jax.tree.map(shape, state.params), opt_state=jax.tree.map(shape, state.opt_state),
                          step=shape(state.step))


@functools.cache
def _malloc_trim():
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


def _trim_heap() -> None:
    """Hands the heap's free pages back to the OS (glibc's ``malloc_trim``); a no-op elsewhere.

    Orbax and tensorstore read and write checkpoints on their own threads, and glibc keeps what each
    thread's arena freed. With zstd on (as checkpoints were written before 2026-12-03, and as a restore of
    one still decompresses), resident memory grew with every save, 1.6 to 3.7 GiB over 11 saves of a
    0.84 GiB state, and seq_GO's C-HMCNN run reached 5.7 GB for a 2 GB state; trimmed after each, the same
    11 saves stayed at 1.4 GiB between saves."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
