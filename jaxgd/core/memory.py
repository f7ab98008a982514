"""Memory planned before compiling: bytes per config, a budget, sequential slices.

A config costs, on the device that holds it (4-byte floats; shapes from ``jax.eval_shape``
and the loss's jaxpr, ``core.blocks.footprint``, nothing compiled):

    state     = 2 · (params + optimizer state)       the chunk's input and output states
    step      = 2 · params + 2 · B · a               gradients, new parameters, activations
                                                      kept for the backward pass
    evaluate  = min(E, N_eval) · a                   the forward pass of an eval batch

with ``a`` the floats one example's loss computes (activations), B the batch size and E
the eval batch size; the data is copied to every device once. A sweep whose configs do
not fit the budget runs in sequential slices of configs that do (``plan_slices``); one
config that does not fit is refused, with the numbers, before anything compiles.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from ..errors import InputError
from .blocks import footprint

__all__ = ["MemoryPlan", "config_bytes", "default_budget", "plan_slices"]

PyTree = Any

# Of a CPU host's memory, the share a sweep plans to use (the rest: Python, the OS, other
# processes); of an accelerator's, the share left after XLA's own reservations.
HOST_SHARE = 0.5
DEVICE_SHARE = 0.9


def _bytes(tree: PyTree) -> int:
    return sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def config_bytes(
    problem, optimizer, example: PyTree, batch_size: int, eval_batch_size: int, eval_examples: int
) -> int:
    """Bytes one config needs on its device (module docstring's formula)."""
    params = jax.eval_shape(problem.init, jax.random.key(0))
    placeholder = dict.fromkeys(optimizer.hyperparameter_names, 1.0)  # shapes only
    opt_state = jax.eval_shape(optimizer.transformation(**placeholder).init, params)
    params_bytes, state_bytes = _bytes(params), _bytes(opt_state)
    activation_floats = footprint(problem, example).activation_floats
    itemsize = np.dtype(jax.numpy.result_type(float)).itemsize
    step = 2 * params_bytes + 2 * batch_size * activation_floats * itemsize
    evaluate = min(eval_batch_size, eval_examples) * activation_floats * itemsize
    return 2 * (params_bytes + state_bytes) + step + evaluate


def default_budget(devices: Sequence[jax.Device]) -> tuple[int, str]:
    """Bytes per device a sweep plans to use, and where the figure comes from: the
    device's reported limit, else a share of the host's memory split among its devices."""
    local = [d for d in devices if d.process_index == jax.process_index()] or list(devices)
    stats = local[0].memory_stats() if hasattr(local[0], "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(DEVICE_SHARE * stats["bytes_limit"]), f"{DEVICE_SHARE:.0%} of device memory"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (
        int(HOST_SHARE * total / len(local)),
        f"{HOST_SHARE:.0%} of host memory / {len(local)} devices",
    )


class MemoryPlan(NamedTuple):
    """Configs in sequential slices that fit the budget.

    Attributes:
        slices: config indices of each slice, in order.
        per_config: ``[K]`` bytes per config; data_bytes: the data, on every device.
        budget: bytes per device; source: where the budget comes from.
    """

    slices: list[np.ndarray]
    per_config: np.ndarray
    data_bytes: int
    budget: int
    source: str


def plan_slices(
    per_config: np.ndarray, data_bytes: int, budget: int, devices: int, source: str
) -> MemoryPlan:
    """Cut configs ``0..K-1`` (in order) into slices each within ``budget`` per device.

    A slice's configs are spread evenly over ``devices``, each of which also holds the
    data: a slice fits when ``ceil(sum(bytes) / devices) + data <= budget``, up to the
    rounding of configs to devices (the largest config is counted once more).
    """
    per_config = np.asarray(per_config, np.int64)
    room = budget - data_bytes
    if per_config.max() > room:
        raise InputError(
            f"max_memory={budget}: one config needs {per_config.max():,} bytes and the data "
            f"{data_bytes:,} more on each device, {per_config.max() + data_bytes:,} bytes in "
            f"all ({source}); raise max_memory, or lower the batch_size or "
            "SweepOptions.eval_batch_size"
        )
    capacity = room * devices - per_config.max() * (devices - 1)
    if capacity < per_config.max():
        capacity = per_config.max()
    cumulative = np.cumsum(per_config)
    slices, start = [], 0
    while start < per_config.size:
        base = cumulative[start - 1] if start else 0
        stop = int(np.searchsorted(cumulative, base + capacity, side="right"))
        stop = max(stop, start + 1)
        slices.append(np.arange(start, stop))
        start = stop
    return MemoryPlan(slices, per_config, data_bytes, budget, source)
