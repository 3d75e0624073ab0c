"""Placing training across devices with ``jax.sharding``: ensemble members or batch rows.

The train step and the scan-fused epoch are unchanged: jit's SPMD partitioner
follows the shardings of their inputs. Two layouts:

- ``members``: an ensemble's parameter stack (and Adam's moments) split along
  the member axis E; every device trains E / n members on the whole batch, and
  only the scalar loss crosses devices. E must be a multiple of the device count.
- ``data``: one model replicated, each batch's rows split over the devices;
  gradients are all-reduced by the partitioner. The batch size must be a
  multiple of the device count.

On one host with n accelerators pass ``jax.devices()``; on CPU, simulate n
devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=n``. Across
hosts, call ``jax.distributed.initialize()`` first: ``jax.devices()`` then
lists every host's devices and the same mesh spans them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["make_mesh", "shard_members", "replicate", "shard_epoch_batches", "SHARDINGS"]

SHARDINGS = ("none", "members", "data")


def make_mesh(devices: Sequence | int | None = None, *, axis: str) -> Mesh:
    """A 1-D mesh named ``axis`` over ``devices`` (default: all; an int n takes the first n)."""
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int):
        avail = jax.devices()
        if devices > len(avail):
            raise ValueError(f"asked for {devices} devices, only {len(avail)} available "
                             "(on CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax)")
        devices = avail[:devices]
    return Mesh(np.asarray(devices), (axis,))


def replicate(tree, mesh: Mesh):
    """Every leaf copied to every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_members(state, mesh: Mesh, members: int):
    """Splits every leaf whose leading axis is the ensemble axis E over ``mesh``; replicates the rest.

    Args:
        state: a :class:`TrainState` (or any pytree) of a stacked ensemble.
        members: E; leaves with a leading axis of this size are split.
    """
    n = mesh.devices.size
    if members % n:
        raise ValueError(f"ensemble of {members} members cannot be split evenly over {n} devices")
    axis = mesh.axis_names[0]
    split = NamedSharding(mesh, PartitionSpec(axis))
    full = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        is_stacked = getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == members
        return jax.device_put(leaf, split if is_stacked else full)

    return jax.tree.map(place, state)


def shard_epoch_batches(indices_SxB, where_SxB, mesh: Mesh):
    """Splits an epoch's ``[S, B]`` index and mask arrays along B (data parallelism)."""
    n = mesh.devices.size
    if indices_SxB.shape[1] % n:
        raise ValueError(f"batch size {indices_SxB.shape[1]} cannot be split evenly over {n} devices")
    s = NamedSharding(mesh, PartitionSpec(None, mesh.axis_names[0]))
    return jax.device_put(indices_SxB, s), jax.device_put(where_SxB, s)
