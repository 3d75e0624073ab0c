"""Training: configs, the run loop (checkpoints, resume, evaluation), finished runs, the CLI.

The compiled pieces every method shares live in :mod:`hmljax.engine`; the methods in
:mod:`hmljax.methods`. ``make_train_step`` / ``make_train_epoch`` / ``LossConfig`` are C-HMCNN's step
as functions, kept for code written against them.
"""

from hmljax.engine import TrainState, jit_train, train_compiler_options
from hmljax.training._config import BOOKKEEPING, RunConfig, TrainConfig, config_diff, load_config
from hmljax.training._load import LoadedRun, evaluate_run, load_run, predict_file
from hmljax.training._run import (
    STOP_BY_ENV,
    RunInUseError,
    TrainingPaused,
    build_method,
    cpu_model,
    load_run_dataset,
    pin_cpus,
    run_lock,
    source_commit,
    stop_by_from_env,
    train_and_evaluate,
)
from hmljax.training._sharding import SHARDINGS, make_mesh, replicate, shard_epoch_batches, shard_members
from hmljax.training._train import (
    LossConfig,
    init_state,
    make_optimizer,
    make_predict,
    make_train_epoch,
    make_train_step,
)

__all__ = [
    "BOOKKEEPING",
    "SHARDINGS",
    "make_mesh",
    "replicate",
    "shard_epoch_batches",
    "shard_members",
    "LoadedRun",
    "LossConfig",
    "RunConfig",
    "TrainConfig",
    "TrainState",
    "build_method",
    "cpu_model",
    "load_run_dataset",
    "evaluate_run",
    "init_state",
    "load_config",
    "load_run",
    "config_diff",
    "make_optimizer",
    "make_predict",
    "make_train_epoch",
    "make_train_step",
    "pin_cpus",
    "jit_train",
    "predict_file",
    "RunInUseError",
    "STOP_BY_ENV",
    "TrainingPaused",
    "run_lock",
    "stop_by_from_env",
    "train_compiler_options",
    "train_and_evaluate",
    "source_commit",
]
