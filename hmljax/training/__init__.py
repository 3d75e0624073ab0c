"""Training: jit-compiled steps, scan-fused epochs, checkpointed runs."""

from hmljax.training._run import (
    TrainConfig,
    config_diff,
    evaluate_run,
    load_config,
    source_commit,
    train_and_evaluate,
)
from hmljax.training._sharding import SHARDINGS, make_mesh, replicate, shard_epoch_batches, shard_members
from hmljax.training._train import (
    LossConfig,
    TrainState,
    init_state,
    jit_train,
    make_optimizer,
    make_predict,
    make_train_epoch,
    make_train_step,
    train_compiler_options,
)

__all__ = [
    "SHARDINGS",
    "make_mesh",
    "replicate",
    "shard_epoch_batches",
    "shard_members",
    "LossConfig",
    "TrainConfig",
    "TrainState",
    "evaluate_run",
    "init_state",
    "load_config",
    "config_diff",
    "make_optimizer",
    "make_predict",
    "make_train_epoch",
    "make_train_step",
    "jit_train",
    "train_compiler_options",
    "train_and_evaluate",
    "source_commit",
]
