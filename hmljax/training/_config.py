"""A run's configuration: the engine's keys, the method's keys and the sampler's keys, in one flat namespace.

``TrainConfig(dataset="cellcycle_FUN", method="chmcnn", weights="code", ensemble=10)`` routes each key
to its section: :class:`RunConfig` (dataset, optimiser, protocol, ...), the method's config dataclass
(registered with the method) or the sampler's. Keys are strict: an unknown key, a key of another
method, or a key that does not apply to the other settings (``w0`` without ``weights``, ``momentum``
with Adam) is an error that says why. ``None`` means "not set": :meth:`TrainConfig.resolved` fills it
from the dataset's published settings or the key's default, where the key applies.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import jax

from hmljax._suggest import did_you_mean
from hmljax.data import PREPROCESSING_MODES, get_spec, resolve_data_dir
from hmljax.engine import ADAM_KERNELS, OPTIMIZERS, get_method, get_sampler, list_methods

__all__ = ["RunConfig", "TrainConfig", "load_config", "config_diff", "BOOKKEEPING"]

# Keys that do not change a run's results (see TrainConfig.identity).
BOOKKEEPING = ("data_dir", "checkpoint_every", "checkpoint_minutes")

SHARDINGS = ("none", "members", "data")


def _is_matmul_precision(name: str) -> bool:
    """Whether jax.default_matmul_precision takes ``name`` (asked of jax, whose list grows by version)."""
    try:
        with jax.default_matmul_precision(name):
            return True
    except ValueError:
        return False


def _milestones_ok(text) -> bool:
    try:
        epochs = [int(e) for e in str(text).split(",") if e.strip()]
    except ValueError:
        return False
    return all(e >= 1 for e in epochs) and epochs == sorted(set(epochs))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass
class RunConfig:
    """The engine's keys. ``None`` fields take the dataset's published value or the key's default."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    seed: int = 0
    method: str = "chmcnn"
    sampler: str = "epoch"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    optimizer: str = "adam"  # 'adam' (coupled weight decay, C-HMCNN's) or 'sgd' (momentum, warm-up, step decay)
    momentum: float | None = None  # sgd: 0.9
    warmup_epochs: int | None = None  # sgd: 0
    lr_decay_every: int | None = None  # sgd: epochs between decays (0: none)
    lr_decay_factor: float | None = None  # sgd: 0.1
    lr_milestones: str | None = None  # sgd: decay at these epochs, e.g. "55,70" (DB / HMT-Net); or lr_decay_every
    warmup_from: float | None = None  # sgd: the warm-up's first lr as a fraction of lr (0; DB: 1/3)
    grad_clip: float = 0.0  # clip the gradient's global norm (0: off; DB: 35)
    adam_kernel: str | None = None  # adam: 'xla' (optax's update) or 'fused' (one C++ pass on CPU; equal to rounding)
    preprocessing: str = "chmcnn"  # 'leakfree', 'minmax' (fit on train) or 'minmax_all' (all rows: the adaptive code's)
    folds: int = 0  # 0: the dataset's own splits; k >= 2: k iteratively stratified folds over all its rows
    fold: int | None = None  # with folds: the held-out fold (0)
    fold_valid: bool | None = None  # with folds: halve the held-out fold into valid/test (False)
    fold_seed: int | None = None  # with folds: the stratification's seed (42, the adaptive-batch code's)
    fold_order: int | None = None  # with folds: 1 (labels) or 2 (label pairs)
    min_label_count: int = 0  # drop labels with at most this many positives in the whole dataset (flat data)
    feature_fraction: float = 1.0  # keep this fraction of features, largest column sums first (adaptive code)
    longtail_max: int = 0  # k > 0: train on a long-tailed subset of the train split, class counts from k down
    longtail_min: int | None = None  # with longtail_max: the profile's smallest count (1)
    longtail_alpha: float | None = None  # with longtail_max: the Pareto profile's alpha (6, DB's)
    longtail_seed: int | None = None  # with longtail_max: the subset's seed (0)
    drop_ids: bool = False  # drop identifier attributes (genbase's protein id) with a warning, instead of refusing
    protocol: str = "chmcnn"  # train on train+valid for `epochs`; or 'early_stopping' on the valid headline metric
    patience: int | None = None  # early_stopping: 20
    drop_remainder: bool = False  # C-HMCNN's DataLoader keeps the last partial batch: pad and mask it
    # 0: no checkpoint at all, not even the last (a GPU sitting's run, whose checkpoints never come back and
    # would cost its budget: seq_GO's HLSTM writes 10.8 GB each); such a run cannot resume or be loaded.
    checkpoint_every: int = 10
    # Also checkpoint at the end of an epoch once this many minutes passed since the last one (0: off), so
    # a run with minutes-long epochs that is killed loses minutes, not checkpoint_every epochs.
    checkpoint_minutes: float = 10.0
    test_curve_every: int = 0  # k > 0: log the test split's headline metric every k epochs (learning curves only)
    threshold: float = 0.5
    threshold_inclusive: bool = False  # RARE's text: >= 0.5; the released code: > 0.5
    shard: str = "none"  # 'members' (split the ensemble axis) or 'data' (split batch rows) over devices
    devices: int | None = None  # with shard: how many devices (None or 0: all)
    # Float32 matmuls as true float32, like PyTorch's default and XLA on CPU. JAX's own default lets GPUs
    # use TF32 (10-bit mantissa) and TPUs bf16 passes: faster, but another run than the papers' code made.
    matmul_precision: str = "highest"

    def _conditional(self):
        sgd, es = self.optimizer == "sgd", self.protocol == "early_stopping"
        return {
            "adam_kernel": (self.optimizer == "adam", "optimizer=adam", "xla"),
            "momentum": (sgd, "optimizer=sgd", 0.9),
            "warmup_epochs": (sgd, "optimizer=sgd", 0),
            "lr_decay_every": (sgd, "optimizer=sgd", 0),
            "lr_decay_factor": (sgd, "optimizer=sgd", 0.1),
            "lr_milestones": (sgd, "optimizer=sgd", ""),
            "warmup_from": (sgd, "optimizer=sgd", 0.0),
            "patience": (es, "protocol=early_stopping", 20),
            "fold": (self.folds > 0, "folds=k (k >= 2)", 0),
            "fold_valid": (self.folds > 0, "folds=k (k >= 2)", False),
            "fold_seed": (self.folds > 0, "folds=k (k >= 2)", 42),
            "longtail_min": (self.longtail_max > 0, "longtail_max=k (k >= 1)", 1),
            "longtail_alpha": (self.longtail_max > 0, "longtail_max=k (k >= 1)", 6.0),
            "longtail_seed": (self.longtail_max > 0, "longtail_max=k (k >= 1)", 0),
            "fold_order": (self.folds > 0, "folds=k (k >= 2)", 1),
            "devices": (self.shard != "none", "shard=members or shard=data", 0),
        }

    def inapplicable(self) -> dict[str, str]:
        return {k: f"it applies only with {need}" for k, (ok, need, _) in self._conditional().items()
                if not ok and getattr(self, k) is not None}

    def resolve(self, spec) -> RunConfig:
        out = dataclasses.replace(self)
        for f in ("epochs", "lr", "batch_size", "weight_decay"):
            if getattr(out, f) is None:
                setattr(out, f, getattr(spec, f))
        for k, (ok, _, default) in self._conditional().items():
            if ok and getattr(out, k) is None:
                setattr(out, k, default)
        return out

    def validate(self) -> None:
        pos_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
        nonneg_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
        checks = [
            # numpy's seeding refuses negatives deep in a run ("expected non-negative integer"), unnamed.
            ("seed", nonneg_int(self.seed), "an integer >= 0"),
            ("fold_seed", self.fold_seed is None or nonneg_int(self.fold_seed), "an integer >= 0"),
            ("epochs", pos_int(self.epochs), "an integer >= 1"),
            ("lr", _finite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("batch_size", pos_int(self.batch_size), "an integer >= 1"),
            ("weight_decay", _finite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
            ("adam_kernel", self.adam_kernel is None or self.adam_kernel in ADAM_KERNELS,
             f"one of {', '.join(ADAM_KERNELS)}"),
            ("adam_kernel", not (self.adam_kernel == "fused" and self.grad_clip),
             "'xla' with grad_clip (the fused kernel takes no clipping)"),
            ("momentum", self.momentum is None or (_finite(self.momentum) and 0 <= self.momentum < 1), "in [0, 1)"),
            ("warmup_epochs", self.warmup_epochs is None or self.warmup_epochs >= 0, "an integer >= 0"),
            ("lr_decay_every", self.lr_decay_every is None or self.lr_decay_every >= 0, "an integer >= 0"),
            ("lr_decay_factor", self.lr_decay_factor is None or (_finite(self.lr_decay_factor)
                                                                and 0 < self.lr_decay_factor <= 1), "in (0, 1]"),
            ("lr_milestones", self.lr_milestones is None or _milestones_ok(self.lr_milestones),
             "comma-separated increasing epochs >= 1, e.g. 55,70"),
            ("lr_milestones", not (self.lr_milestones and self.lr_decay_every),
             "give lr_milestones or lr_decay_every, not both"),
            ("warmup_from", self.warmup_from is None or (_finite(self.warmup_from) and 0 <= self.warmup_from <= 1),
             "in [0, 1]"),
            ("grad_clip", _finite(self.grad_clip) and self.grad_clip >= 0, "a number >= 0 (0: off)"),
            ("preprocessing", self.preprocessing in PREPROCESSING_MODES, f"one of {', '.join(PREPROCESSING_MODES)}"),
            ("folds", isinstance(self.folds, int) and (self.folds == 0 or self.folds >= 2), "0 or an integer >= 2"),
            ("fold", self.fold is None or (isinstance(self.fold, int) and 0 <= self.fold < self.folds),
             f"an integer in 0 .. folds - 1 = {self.folds - 1}"),
            ("fold_order", self.fold_order in (None, 1, 2), "1 or 2"),
            ("min_label_count", isinstance(self.min_label_count, int) and self.min_label_count >= 0,
             "an integer >= 0"),
            ("feature_fraction", _finite(self.feature_fraction) and 0 < self.feature_fraction <= 1, "in (0, 1]"),
            ("longtail_max", isinstance(self.longtail_max, int) and self.longtail_max >= 0,
             "an integer >= 0 (0: off)"),
            ("longtail_min", self.longtail_min is None or (isinstance(self.longtail_min, int)
                                                           and 1 <= self.longtail_min <= max(self.longtail_max, 1)),
             "an integer in 1 .. longtail_max"),
            ("longtail_alpha", self.longtail_alpha is None or (_finite(self.longtail_alpha)
                                                               and self.longtail_alpha > 0), "a number > 0"),
            ("longtail_seed", self.longtail_seed is None or (isinstance(self.longtail_seed, int)
                                                             and self.longtail_seed >= 0), "an integer >= 0"),
            ("protocol", self.protocol in ("chmcnn", "early_stopping"), "chmcnn or early_stopping"),
            ("patience", self.patience is None or pos_int(self.patience), "an integer >= 1"),
            ("checkpoint_every", isinstance(self.checkpoint_every, int) and not isinstance(self.checkpoint_every, bool)
             and self.checkpoint_every >= 0, "an integer >= 0 (0: no checkpoints)"),
            ("checkpoint_minutes", _finite(self.checkpoint_minutes) and self.checkpoint_minutes >= 0,
             "a number of minutes >= 0 (0: off)"),
            ("test_curve_every", isinstance(self.test_curve_every, int) and self.test_curve_every >= 0,
             "an integer >= 0 (0: off)"),
            ("threshold", _finite(self.threshold) and 0 <= self.threshold <= 1, "a probability in [0, 1]"),
            ("shard", self.shard in SHARDINGS, f"one of {', '.join(SHARDINGS)}"),
            ("devices", self.devices is None or (isinstance(self.devices, int) and self.devices >= 0),
             "an integer >= 0 (0: all)"),
            ("matmul_precision", _is_matmul_precision(self.matmul_precision),
             "a name jax.default_matmul_precision takes: highest, high, default, float32, tensorfloat32, "
             "bfloat16 or a dot-algorithm preset"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"bad value for {name}: {getattr(self, name)!r} ({want})")


_RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _fields(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


def _convert(key: str, field: dataclasses.Field, text: str):
    """``key=text`` as the field's type (read from its annotation)."""
    ann = str(field.type)
    if "None" in ann and text.lower() in ("none", "null") and "str" not in ann:
        return None
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if name in ann.replace("None", ""):
            try:
                if typ is bool:
                    return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
                if typ is int and "float" not in ann:
                    return int(text)
                return float(text)
            except (ValueError, KeyError):
                raise ValueError(f"bad value for {key}: {text!r} is not {'an' if name == 'int' else 'a'} "
                                 f"{name}") from None
    return text


class TrainConfig:
    """One run: engine, method and sampler keys (see the module docstring).

    Attribute access reads any key (``cfg.epochs``, ``cfg.w0``); the sections are ``cfg.run``,
    ``cfg.method_config`` and ``cfg.sampler_config``.
    """

    def __init__(self, **keys):
        run = {k: keys.pop(k) for k in list(keys) if k in _RUN_FIELDS}
        self.run = RunConfig(**run)
        mspec, sspec = get_method(self.run.method), get_sampler(self.run.sampler)
        mf, sf = _fields(mspec.config), _fields(sspec.config)
        for owner, fields in ((f"method {mspec.name!r}", mf), (f"sampler {sspec.name!r}", sf)):
            if clash := sorted(set(fields) & set(_RUN_FIELDS)):
                raise ValueError(f"{owner} defines keys the engine owns ({', '.join(clash)}): rename them")
        if clash := sorted(set(mf) & set(sf)):
            raise ValueError(f"method {mspec.name!r} and sampler {sspec.name!r} both define {', '.join(clash)}")
        unknown = [k for k in keys if k not in mf and k not in sf]
        if unknown:
            raise ValueError(self._unknown_message(unknown[0], mf, sf))
        self.method_config = mspec.config(**{k: v for k, v in keys.items() if k in mf})
        self.sampler_config = sspec.config(**{k: v for k, v in keys.items() if k in sf and k not in mf})

    def _unknown_message(self, key, mf, sf) -> str:
        owners = [n for n, s in list_methods().items() if key in _fields(s.config)]
        where = f"method={self.run.method}, sampler={self.run.sampler}"
        if owners:
            return f"config key {key!r} belongs to method {' / '.join(owners)}, not to {where}"
        known = sorted({*_RUN_FIELDS, *mf, *sf})
        return f"unknown config key {key!r} for {where}{did_you_mean(key, known)}; known keys: {', '.join(known)}"

    # ------------------------------------------------------------------ access
    def __getattr__(self, name):
        if name in ("run", "method_config", "sampler_config"):
            raise AttributeError(name)
        for section in (self.run, self.method_config, self.sampler_config):
            if name in section.__dataclass_fields__:
                return getattr(section, name)
        raise AttributeError(f"TrainConfig has no key {name!r}")

    def to_dict(self) -> dict:
        """Every key, flat (``None`` where unset or not applicable): what ``config.json`` saves."""
        return {**dataclasses.asdict(self.run), **dataclasses.asdict(self.method_config),
                **dataclasses.asdict(self.sampler_config)}

    def __eq__(self, other) -> bool:
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        set_keys = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if v is not None)
        return f"TrainConfig({set_keys})"

    def replace(self, **keys) -> TrainConfig:
        """A copy with ``keys`` changed (``method=`` starts that method's keys afresh)."""
        base = self.to_dict()
        if "method" in keys and keys["method"] != self.run.method:
            base = {k: v for k, v in base.items() if k in _RUN_FIELDS}
        if "sampler" in keys and keys["sampler"] != self.run.sampler:
            drop = _fields(get_sampler(self.run.sampler).config)
            base = {k: v for k, v in base.items() if k not in drop}
        return TrainConfig(**{**base, **keys})

    def override(self, items: list[str]) -> TrainConfig:
        """Applies ``key=value`` strings (the CLI's), converting each to its key's type."""
        pairs = []
        for item in items:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not key=value")
            pairs.append(item.split("=", 1))
        out = self
        # method= and sampler= first: they decide which other keys exist.
        for k, v in [p for p in pairs if p[0] in ("method", "sampler")]:
            out = out.replace(**{k: v})
        mf, sf = _fields(type(out.method_config)), _fields(type(out.sampler_config))
        changes = {}
        for k, v in pairs:
            if k in ("method", "sampler"):
                continue
            field = _RUN_FIELDS.get(k) or mf.get(k) or sf.get(k)
            if field is None:
                raise ValueError(out._unknown_message(k, mf, sf))
            changes[k] = _convert(k, field, v)
        return out.replace(**changes) if changes else out

    # -------------------------------------------------------------- resolution
    def resolved(self) -> TrainConfig:
        """Every applicable key filled (dataset's published settings, then the keys' defaults) and checked.

        Raises:
            ValueError: a key set that does not apply (saying which setting it needs), or a bad value.
        """
        spec = get_spec(self.run.dataset, resolve_data_dir(self.run.data_dir))
        out = object.__new__(TrainConfig)
        out.run = self.run.resolve(spec)
        m, s = self.method_config, self.sampler_config
        out.method_config = m.resolve(spec) if hasattr(m, "resolve") else dataclasses.replace(m)
        out.sampler_config = s.resolve(spec) if hasattr(s, "resolve") else dataclasses.replace(s)
        for section in (out.run, out.method_config, out.sampler_config):
            bad = section.inapplicable() if hasattr(section, "inapplicable") else {}
            if bad:
                k, why = next(iter(bad.items()))
                raise ValueError(f"config key {k}={getattr(section, k)!r} does not apply here: {why}")
        for section in (out.run, out.method_config, out.sampler_config):
            if hasattr(section, "validate"):
                section.validate()
        return out

    def identity(self) -> dict:
        """What makes two configs the same run: the resolved keys that apply, less the bookkeeping that
        does not change results (where the data lives; how often it checkpoints: a resumed run ends with
        the parameters of an uninterrupted one)."""
        return {k: v for k, v in self.resolved().to_dict().items() if k not in BOOKKEEPING and v is not None}

    @classmethod
    def from_saved(cls, saved: dict) -> TrainConfig:
        """The config a run directory's ``config.json`` saved, read leniently: keys added since the run take
        their defaults (or, where today's default is not what older runs did, the value in the section's
        ``SAVED_BEFORE``), keys since removed are dropped, and so are keys saved with a value where they
        did not apply (runs saved before keys became strict recorded every key)."""
        saved = {k: v for k, v in saved.items() if v is not None}
        saved.setdefault("method", "chmcnn")
        saved.setdefault("sampler", "epoch")
        if saved.get("devices") == 0:
            saved.pop("devices")
        mf = _fields(get_method(saved["method"]).config)
        sf = _fields(get_sampler(saved["sampler"]).config)
        for section in (get_method(saved["method"]).config, get_sampler(saved["sampler"]).config):
            for k, v in getattr(section, "SAVED_BEFORE", {}).items():
                saved.setdefault(k, v)  # dropped below where it does not apply
        cfg = cls(**{k: v for k, v in saved.items() if k in _RUN_FIELDS or k in mf or k in sf})
        for section in (cfg.run, cfg.method_config, cfg.sampler_config):
            for k in (section.inapplicable() if hasattr(section, "inapplicable") else {}):
                setattr(section, k, None)
        return cfg


def load_config(run_dir: str) -> TrainConfig:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"{run_dir!r} is not a run directory (no config.json)")
    try:
        with open(path) as fh:
            return TrainConfig.from_saved(json.load(fh)["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable hmljax config ({err}); the run directory is damaged") from None


def config_diff(run_dir: str, cfg: TrainConfig) -> dict[str, tuple]:
    """``{key: (saved, wanted)}`` where ``run_dir``'s saved config differs from ``cfg``.

    Compares :meth:`TrainConfig.identity` (both resolved, bookkeeping left out). Empty when they
    agree or ``run_dir`` holds no config.
    """
    if not os.path.exists(os.path.join(run_dir, "config.json")):
        return {}
    a = load_config(run_dir).replace(data_dir=cfg.data_dir).identity()
    b = cfg.identity()
    return {k: (a.get(k), b.get(k)) for k in sorted({*a, *b}) if a.get(k) != b.get(k)}
