"""``train_and_evaluate``: a whole C-HMCNN run with checkpoints, metrics files and resume."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

from hmljax.constraints import constraint_graph
from hmljax.data import (
    LPROS_ROUNDINGS,
    EpochSampler,
    atomic_write_text,
    get_spec,
    hros_pd,
    load_dataset,
    lpros,
    resolve_data_dir,
)
from hmljax.losses import SCHEDULES, UNCERTAINTIES, WEIGHT_PRESETS, imbalance_weights, node_counts
from hmljax.metrics import evaluate_predictions
from hmljax.models import ChmcnnMLP, single_forward, stacked_forward
from hmljax.training._sharding import SHARDINGS, make_mesh, replicate, shard_epoch_batches, shard_members
from hmljax.training._train import (
    LossConfig,
    init_state,
    jit_train,
    make_optimizer,
    make_predict,
    make_train_epoch,
    make_train_step,
    train_compiler_options,
)

__all__ = ["TrainConfig", "train_and_evaluate", "evaluate_run", "load_config", "source_commit"]


# TrainConfig fields that do not change a run's results (see TrainConfig.identity).
_BOOKKEEPING = ("data_dir", "checkpoint_every")


def _is_matmul_precision(name: str) -> bool:
    """Whether jax.default_matmul_precision takes ``name`` (asked of jax, whose list grows by version)."""
    try:
        with jax.default_matmul_precision(name):
            return True
    except ValueError:
        return False


@dataclasses.dataclass
class TrainConfig:
    """One run. ``None`` fields take the dataset's published value from the registry."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    seed: int = 0
    epochs: int | None = None
    hidden: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    dropout: float | None = None
    init: str = "torch"  # 'torch' (nn.Linear's uniform) or 'flax'
    constraint: str = "sparse"  # 'sparse' (level-wise segment max) or 'dense' ([B, C, C] masked max)
    preprocessing: str = "chmcnn"  # or 'leakfree'
    protocol: str = "chmcnn"  # train on train+valid for `epochs`; or 'early_stopping' on valid AUPRC
    patience: int = 20
    drop_remainder: bool = False  # C-HMCNN's DataLoader keeps the last partial batch: pad and mask it
    checkpoint_every: int = 10
    threshold: float = 0.5
    threshold_inclusive: bool = False  # RARE's text: >= 0.5; the released code: > 0.5
    # --- RARE (all off by default: plain C-HMCNN) ---
    resample: str = "none"  # 'none', 'lpros' or 'hros_pd' (trees only)
    lpros_p: float = 0.25
    lpros_rounding: str = "real"  # see hmljax.data.lpros
    hros_s: float = 0.1
    weights: str = "none"  # 'none', 'paper' (eq. 7-9) or 'code' (the released code's conventions)
    w0: float = 0.25
    weight_counts: str | None = None  # None: the preset's ('closed' / 'supercount_inplace')
    weight_rescale: str | None = None  # 'paper' / 'code'
    weight_apply_to: str | None = None  # 'positive' / 'negative'
    weight_num_classes: str = "nodes"  # N_classes: 'nodes' (all hierarchy nodes) or 'two'
    weight_fit: str | None = None  # counts from the labels 'used' (after resampling) or the 'train' split only
    ensemble: int = 0  # 0: one network; E >= 1: a vmapped stack of E networks
    mc_passes: int = 0  # MC dropout: E gradient-free stochastic passes of one network for the focal U
    focal: str = "none"  # 'none', 'bbma', 'gmu', 'kl', 'js'
    u0: float = 0.25
    focal_k: float = 1.0
    focal_probs: str = "raw"  # 'raw' (train-mode sigmoids, as the code) or 'constrained'
    reduction: str = "mean"  # or 'sum' (RARE's focal code path)
    schedule: str = "none"  # 'linear', 'exponential', 'alternating' (App. D, batch-based)
    omega: float = 0.25
    schedule_k: float = 3.0
    mix_lambda: float = 1.0
    # --- placement ---
    shard: str = "none"  # 'members' (split the ensemble axis) or 'data' (split batch rows) over devices
    devices: int = 0  # how many devices to shard over (0: all)
    # --- numerics ---
    # Float32 matmuls as true float32, like PyTorch's default and XLA on CPU. JAX's own default lets GPUs
    # use TF32 (10-bit mantissa) and TPUs bf16 passes: faster, but another run than the papers' code made.
    # 'default', 'high' or any name jax.default_matmul_precision takes trades accuracy for speed.
    matmul_precision: str = "highest"

    def resolved(self) -> TrainConfig:
        spec = get_spec(self.dataset, resolve_data_dir(self.data_dir))
        out = dataclasses.replace(self)
        for f in ("epochs", "hidden", "lr", "batch_size", "weight_decay", "dropout"):
            if getattr(out, f) is None:
                setattr(out, f, getattr(spec, f))
        if out.weights in WEIGHT_PRESETS:
            preset = WEIGHT_PRESETS[out.weights]
            for f, key in (("weight_counts", "counts"), ("weight_rescale", "rescale"), ("weight_apply_to", "apply_to")):
                if getattr(out, f) is None:
                    setattr(out, f, preset[key])
            if out.weight_fit is None:
                out.weight_fit = "used" if out.weights == "paper" else "train"
        out.validate()
        return out

    def validate(self) -> None:
        checks = [
            ("epochs", self.epochs is not None and self.epochs >= 1),
            ("hidden", self.hidden is not None and self.hidden >= 1),
            ("lr", self.lr is not None and self.lr > 0),
            ("batch_size", self.batch_size is not None and self.batch_size >= 1),
            ("weight_decay", self.weight_decay is not None and self.weight_decay >= 0),
            ("dropout", self.dropout is not None and 0 <= self.dropout < 1),
            ("init", self.init in ("torch", "flax")),
            ("constraint", self.constraint in ("sparse", "dense")),
            ("preprocessing", self.preprocessing in ("chmcnn", "leakfree")),
            ("protocol", self.protocol in ("chmcnn", "early_stopping")),
            ("checkpoint_every", self.checkpoint_every >= 1),
            ("patience", self.patience >= 1),
            ("resample", self.resample in ("none", "lpros", "hros_pd")),
            ("lpros_p", self.lpros_p >= 0),
            ("lpros_rounding", self.lpros_rounding in LPROS_ROUNDINGS),
            ("hros_s", self.hros_s >= 0),
            ("weights", self.weights in ("none", *WEIGHT_PRESETS)),
            ("w0", self.w0 >= 0),
            ("weight_counts", self.weight_counts in (None, "closed", "supercount", "supercount_inplace")),
            ("weight_rescale", self.weight_rescale in (None, "paper", "code")),
            ("weight_apply_to", self.weight_apply_to in (None, "positive", "negative")),
            ("weight_num_classes", self.weight_num_classes in ("nodes", "two")),
            ("weight_fit", self.weight_fit in (None, "used", "train")),
            ("ensemble", self.ensemble >= 0),
            ("mc_passes", self.mc_passes >= 0 and not (self.mc_passes and self.ensemble)),
            ("focal", self.focal in ("none", *UNCERTAINTIES)),
            ("focal", self.focal == "none" or self.ensemble >= 1 or self.mc_passes >= 1),
            ("u0", self.u0 >= 0),
            ("focal_probs", self.focal_probs in ("raw", "constrained")),
            ("reduction", self.reduction in ("mean", "sum")),
            ("schedule", self.schedule in SCHEDULES),
            ("schedule", self.schedule == "none" or self.weights != "none"),
            ("mix_lambda", 0 <= self.mix_lambda <= 1),
            ("shard", self.shard in SHARDINGS),
            ("shard", self.shard != "members" or self.ensemble >= 1),
            ("devices", self.devices >= 0),
            ("matmul_precision", _is_matmul_precision(self.matmul_precision)),
        ]
        hints = {
            "focal": "a focal term needs ensemble >= 1 or mc_passes >= 1",
            "mc_passes": "mc_passes (MC dropout) replaces the ensemble: use one of them",
            "schedule": "a weight scheduler needs weights='paper' or 'code'",
            "shard": "shard must be 'none', 'members' (needs ensemble >= 1) or 'data'",
            "matmul_precision": "a name jax.default_matmul_precision takes: highest, high, default, float32, "
                                "tensorfloat32, bfloat16 or a dot-algorithm preset",
        }
        for name, ok in checks:
            if not ok:
                hint = f" ({hints[name]})" if name in hints else ""
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r}{hint}")

    def override(self, items: list[str]) -> TrainConfig:
        """Applies ``key=value`` strings, converting to each field's type."""
        out = dataclasses.replace(self)
        fields = {f.name: f for f in dataclasses.fields(self)}
        for item in items:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not key=value")
            k, v = item.split("=", 1)
            if k not in fields:
                raise ValueError(f"unknown config key {k!r}; known: {', '.join(sorted(fields))}")
            cur = getattr(self, k)
            typ = type(cur) if cur is not None else {"epochs": int, "hidden": int, "batch_size": int}.get(k, float)
            if k in ("data_dir",) or k.startswith("weight_"):
                typ = str
            try:
                if typ is bool:
                    val = {"true": True, "false": False, "1": True, "0": False}[v.lower()]
                else:
                    val = typ(v)
            except (ValueError, KeyError):
                raise ValueError(f"bad value for {k}: {v!r} is not a {typ.__name__}") from None
            setattr(out, k, val)
        return out

    def identity(self) -> dict:
        """What makes two configs the same run: the resolved settings, less the bookkeeping that does
        not change its results (where the data lives; how often it checkpoints, as a resumed run ends
        with the parameters of an uninterrupted one)."""
        full = dataclasses.asdict(self.resolved())
        return {k: v for k, v in full.items() if k not in _BOOKKEEPING}

    @classmethod
    def from_saved(cls, saved: dict) -> TrainConfig:
        """The config a run directory's ``config.json`` saved: keys added since the run take their
        defaults, keys since removed are dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})


def load_config(run_dir: str) -> TrainConfig:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"{run_dir!r} is not a run directory (no config.json)")
    with open(path) as fh:
        return TrainConfig.from_saved(json.load(fh)["config"])


def config_diff(run_dir: str, cfg: TrainConfig) -> dict[str, tuple]:
    """``{setting: (saved, wanted)}`` where ``run_dir``'s saved config differs from ``cfg``.

    Compares :meth:`TrainConfig.identity`: both sides resolved against the
    registry (keys added since the run take their defaults), bookkeeping
    (``data_dir``, ``checkpoint_every``) left out. Empty when they agree or
    ``run_dir`` holds no config.
    """
    if not os.path.exists(os.path.join(run_dir, "config.json")):
        return {}
    a = dataclasses.replace(load_config(run_dir), data_dir=cfg.data_dir).identity()
    b = cfg.identity()
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def _setup(cfg: TrainConfig):
    ds = load_dataset(cfg.dataset, data_dir=cfg.data_dir, preprocessing=cfg.preprocessing)
    h = ds.hierarchy
    ancestry = constraint_graph(h) if cfg.constraint == "sparse" else jnp.asarray(h.ancestry)
    model = ChmcnnMLP(hidden=cfg.hidden, num_outputs=h.num_nodes, dropout=cfg.dropout, init_scheme=cfg.init)
    forward = stacked_forward(model, cfg.ensemble) if cfg.ensemble else single_forward(model)
    return ds, h, ancestry, model, forward


def training_data(cfg: TrainConfig, ds, split: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """The rows actually trained on: the split, resampled as configured. Returns X, Y and a summary."""
    X, Y = ds.split(split)
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.uint8)
    info = {"rows": int(X.shape[0]), "added": 0}
    if cfg.resample == "lpros":
        r = lpros(Y, p=cfg.lpros_p, seed=cfg.seed, rounding=cfg.lpros_rounding)
    elif cfg.resample == "hros_pd":
        r = hros_pd(Y, ds.hierarchy, s=cfg.hros_s, seed=cfg.seed)
    else:
        return X, Y, info
    info["added"] = r.num_added
    return X[r.indices], r.labels, info


def node_weights_for(cfg: TrainConfig, ds, Y_used: np.ndarray) -> np.ndarray | None:
    """RARE's w̃ ``[C]`` as configured, from the labels used (after resampling) or the train split."""
    if cfg.weights == "none":
        return None
    Y = Y_used if cfg.weight_fit == "used" else np.asarray(ds.split("train")[1])
    h = ds.hierarchy
    n = node_counts(Y, h.ancestry, counts=cfg.weight_counts)
    num_classes = h.num_nodes if cfg.weight_num_classes == "nodes" else 2
    return imbalance_weights(n, num_obs=Y.shape[0], num_classes=num_classes, w0=cfg.w0, rescale=cfg.weight_rescale)


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
    return ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")), options=options)


def _peak_memory() -> dict:
    """Peak memory so far: the process's max RSS (host) and, where the backend reports it, the device's."""
    import resource

    out = {"host_max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats_fn = getattr(jax.devices()[0], "memory_stats", None)
    stats = (stats_fn() if stats_fn else None) or {}  # None on backends without allocator stats (CPU)
    if "peak_bytes_in_use" in stats:
        out["device_peak"] = int(stats["peak_bytes_in_use"])
    return out


def source_commit(*, dirty: bool = False) -> str:
    """The git commit of the hmljax source tree (short hash; ``-dirty`` appended with ``dirty=True`` when tracked
    files are modified), or ``"unknown"`` outside a git checkout."""
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


def _machine() -> dict:
    # The commit and compiler options say which code made a run's numbers: epoch times taken before
    # jit_train (70ad98c) are 8-22% slower on CPU with bitwise-equal parameters.
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,  # the model ('NVIDIA H100 80GB HBM3'); 'cpu' on CPU
        "hmljax_commit": source_commit(dirty=True),
        "compiler_options": train_compiler_options(),
    }


def train_and_evaluate(cfg: TrainConfig, run_dir: str, *, resume: bool = False, progress: bool = True) -> dict:
    """Trains C-HMCNN as configured, evaluates the test split once, writes the run directory.

    Every step and the evaluation are traced under ``cfg.matmul_precision``
    (true float32 by default, on every backend).

    Writes ``config.json``, ``metrics.jsonl`` (one line per epoch), ``results.json``
    and orbax checkpoints (every ``checkpoint_every`` epochs and at the end, with
    the optimiser state, the PRNG key and the epoch, which fixes the sampler's
    position). With ``resume=True`` it continues from the latest checkpoint and
    ends with the same parameters as an uninterrupted run.
    """
    cfg = cfg.resolved()
    with jax.default_matmul_precision(cfg.matmul_precision):
        return _train_and_evaluate(cfg, run_dir, resume=resume, progress=progress)


def _train_and_evaluate(cfg: TrainConfig, run_dir: str, *, resume: bool, progress: bool) -> dict:
    # cfg is resolved; the caller set the matmul precision every trace below runs under.
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    os.makedirs(run_dir, exist_ok=True)
    if not resume and os.path.exists(os.path.join(run_dir, "checkpoints")) and os.listdir(
        os.path.join(run_dir, "checkpoints")
    ):
        raise ValueError(f"{run_dir!r} already holds checkpoints: pass --resume or choose another --out")
    if resume and (diff := config_diff(run_dir, cfg)):
        # Resuming another config's checkpoint would silently train a mix of the two.
        what = ", ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{run_dir!r} holds a run of another config ({what}): resume it with its own "
                         "config or choose another --out")
    atomic_write_text(
        os.path.join(run_dir, "config.json"),
        json.dumps({"config": dataclasses.asdict(cfg), "machine": _machine()}, indent=2),
    )
    ds, h, ancestry, model, forward = _setup(cfg)
    train_split = "train+valid" if (cfg.protocol == "chmcnn" and "valid" in ds.X) else "train"
    X_np, Y_np, data_info = training_data(cfg, ds, train_split)
    node_w = node_weights_for(cfg, ds, Y_np)
    # Explicit transfer: the (small) training set lives on the device for the whole run.
    X, Y = jax.device_put(X_np), jax.device_put(Y_np)
    sampler = EpochSampler(X.shape[0], cfg.batch_size, seed=cfg.seed, drop_remainder=cfg.drop_remainder)
    optimizer = make_optimizer(lr=cfg.lr, weight_decay=cfg.weight_decay)
    init_key, loop_key = jax.random.split(jax.random.key(cfg.seed))
    state = init_state(model, optimizer, ds.num_features, key=init_key, members=cfg.ensemble)
    loss_cfg = LossConfig(
        node_weights=node_w, apply_to=cfg.weight_apply_to or "positive", focal=cfg.focal, u0=cfg.u0,
        focal_k=cfg.focal_k, focal_probs=cfg.focal_probs, mc_passes=cfg.mc_passes, reduction=cfg.reduction,
        schedule=cfg.schedule, omega=cfg.omega, schedule_k=cfg.schedule_k, steps_per_epoch=sampler.steps_per_epoch,
        mix_lambda=cfg.mix_lambda)
    step = make_train_step(model, optimizer, ancestry=ancestry, evaluated=h.evaluated, loss_cfg=loss_cfg,
                           forward=forward)
    train_epoch = jit_train(make_train_epoch(step), donate_argnums=(0,))
    predict = make_predict(model, ancestry=ancestry, forward=forward)
    place_batches = _placement(cfg)
    if cfg.shard != "none":
        mesh = place_batches.mesh
        X, Y = replicate(X, mesh), replicate(Y, mesh)
        state = shard_members(state, mesh, cfg.ensemble) if cfg.shard == "members" else replicate(state, mesh)

    mngr = _checkpointer(run_dir)
    start_epoch, history = 0, []
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if resume and mngr.latest_step() is not None:
        last = mngr.latest_step()
        template = {"state": state, "key": jax.random.key_data(loop_key), "epoch": 0}
        restored = mngr.restore(last, args=ocp.args.StandardRestore(template))
        state = jax.tree.map(jnp.asarray, restored["state"])
        state = type(state)(*state) if not hasattr(state, "_fields") else state
        loop_key = jax.random.wrap_key_data(jnp.asarray(restored["key"]))
        start_epoch = int(restored["epoch"])
        if os.path.exists(metrics_path):
            with open(metrics_path) as fh:
                history = [json.loads(line) for line in fh if line.strip()]
            history = [m for m in history if m["epoch"] <= start_epoch]
    atomic_write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in history))

    best = {"auprc": -1.0, "epoch": 0, "params": None}
    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"{cfg.dataset} seed {cfg.seed}", disable=not progress,
               initial=start_epoch, total=cfg.epochs, unit="epoch")
    t_train = 0.0
    compile_s = None
    for epoch in bar:
        eb = sampler.epoch(epoch)
        t0 = time.perf_counter()
        state, losses = train_epoch(state, X, Y, *place_batches(eb.indices, eb.where), loop_key)
        mean_loss = float(jnp.mean(losses))  # the one host sync per epoch
        dt = time.perf_counter() - t0
        if compile_s is None:
            compile_s = dt
        t_train += dt
        record = {"epoch": epoch + 1, "loss": mean_loss, "epoch_s": dt,
                  "samples_per_s": float(eb.where.sum() / dt)}
        if cfg.protocol == "early_stopping":
            Xv, Yv = ds.split("valid") if "valid" in ds.X else ds.split("test")
            record["valid_auprc"] = evaluate_predictions(
                np.asarray(Yv), predict(state.params, Xv), evaluated=h.evaluated)["auprc"]
            if record["valid_auprc"] > best["auprc"]:
                best = {"auprc": record["valid_auprc"], "epoch": epoch + 1,
                        "params": jax.tree.map(lambda a: np.array(a), state.params)}
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
                f"results (last checkpoint: epoch {last}). Resuming repeats it: the run is "
                "deterministic. Look for an overflow in the loss terms (e.g. a weight or focal factor).")
        bar.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{record['samples_per_s']:.0f}")
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            mngr.save(epoch + 1, args=ocp.args.StandardSave(
                {"state": state, "key": jax.random.key_data(loop_key), "epoch": epoch + 1}))
        if cfg.protocol == "early_stopping" and epoch + 1 - best["epoch"] >= cfg.patience:
            break
    mngr.wait_until_finished()
    mngr.close()

    params = best["params"] if (cfg.protocol == "early_stopping" and best["params"] is not None) else state.params
    t0 = time.perf_counter()
    Xt, Yt = ds.split("test")
    probs = predict(params, Xt)
    eval_s = time.perf_counter() - t0
    metrics = evaluate_predictions(np.asarray(Yt), probs, evaluated=h.evaluated, depth=h.depth_min,
                                   threshold=cfg.threshold, inclusive=cfg.threshold_inclusive)
    steady = [m["epoch_s"] for m in history[1:]] or [m["epoch_s"] for m in history]
    results = {
        "dataset": cfg.dataset,
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
        "train_rows": data_info,
        "peak_memory_bytes": _peak_memory(),
    }
    atomic_write_text(os.path.join(run_dir, "results.json"), json.dumps(results, indent=2))
    return {"results": results, "params": params, "state": state}


def evaluate_run(run_dir: str, *, split: str = "test") -> dict:
    """Re-evaluates a finished run from its latest checkpoint (under the run's matmul precision)."""
    cfg = load_config(run_dir)
    with jax.default_matmul_precision(cfg.matmul_precision):
        return _evaluate_run(run_dir, cfg, split)


def _evaluate_run(run_dir: str, cfg: TrainConfig, split: str) -> dict:
    import orbax.checkpoint as ocp

    ds, h, ancestry, model, forward = _setup(cfg)
    optimizer = make_optimizer(lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = init_state(model, optimizer, ds.num_features, key=jax.random.key(0), members=cfg.ensemble)
    mngr = _checkpointer(run_dir)
    if mngr.latest_step() is None:
        raise ValueError(f"{run_dir!r} has no checkpoint to evaluate")
    template = {"state": state, "key": jax.random.key_data(jax.random.key(0)), "epoch": 0}
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(template))
    mngr.close()
    params = restored["state"].params if hasattr(restored["state"], "params") else restored["state"][0]
    X, Y = ds.split(split)
    probs = make_predict(model, ancestry=ancestry, forward=forward)(params, X)
    return evaluate_predictions(np.asarray(Y), probs, evaluated=h.evaluated, depth=h.depth_min,
                                threshold=cfg.threshold, inclusive=cfg.threshold_inclusive)
