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

from ..columns import factorize, group_members, value_counts
from ..errors import InputError
from ..problem import param_shapes
from .blocks import footprint

__all__ = ["MemoryPlan", "compiled_bytes", "config_bytes", "default_budget", "plan_slices"]

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
    params = param_shapes(problem)
    placeholder = dict.fromkeys(optimizer.hyperparameter_names, 1.0)  # shapes only
    opt_state = jax.eval_shape(optimizer.transformation(**placeholder).init, params)
    params_bytes, state_bytes = _bytes(params), _bytes(opt_state)
    activation_floats = footprint(problem, example).activation_floats
    itemsize = np.dtype(jax.numpy.result_type(float)).itemsize
    step = 2 * params_bytes + 2 * batch_size * activation_floats * itemsize
    evaluate = min(eval_batch_size, eval_examples) * activation_floats * itemsize
    return 2 * (params_bytes + state_bytes) + step + evaluate


def compiled_bytes(executable: jax.stages.Compiled) -> int | None:
    """Bytes a compiled program holds on one device at its peak, from XLA's memory
    analysis: arguments + outputs not aliased to them + temporaries + code. None where
    the backend gives no analysis."""
    try:
        stats = executable.memory_analysis()
    except (NotImplementedError, jax.errors.JaxRuntimeError):
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
        + stats.generated_code_size_in_bytes
    )


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
    """Configs in sequential slices that fit the budget, each slice of one shape.

    Attributes:
        slices: config indices of each slice, in order.
        padding: per slice, ``[n, 2]`` rows ``(config copied, seed)``: inactive copies
            that give the slice the shape of the others (their results are dropped), so
            every slice reuses one compiled program.
        groups, seeds: ``[K]`` each config's program group and seed.
        per_config: ``[K]`` bytes per config; data_bytes: the data, on every device.
        budget: bytes per device; source: where the budget comes from.
    """

    slices: list[np.ndarray]
    padding: list[np.ndarray]
    groups: np.ndarray
    seeds: np.ndarray
    per_config: np.ndarray
    data_bytes: int
    budget: int
    source: str


def _seed_rows(members: np.ndarray, seeds: np.ndarray) -> list[np.ndarray]:
    """``members`` split by seed, in order of first appearance (``core.layout.SeedLayout``'s
    rows)."""
    unique, first, inverse = np.unique(seeds[members], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    return [members[inverse == row] for row in order]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _slot_bytes(groups: np.ndarray, seeds: np.ndarray, per_config: np.ndarray, devices: int):
    """Bytes per device of the slots all configs take at once: per group, seeds x the
    widest seed's configs (rounded up to the devices) x its bytes per config (counted,
    not sorted: a million configs cost a few array passes)."""
    if groups.size and (groups == groups[0]).all():  # one group: no gathers
        parts = [(seeds, per_config)]
    else:
        uniques, codes = factorize(groups)
        members_by = group_members(codes, uniques.size)
        parts = [(seeds[members], per_config[members]) for members in members_by]
    total = 0
    for group_seeds, group_bytes in parts:
        counts = value_counts(group_seeds)
        width = _round_up(int(counts.max()), devices)
        total += counts.size * (width // devices) * int(group_bytes.max())
    return total


def plan_slices(
    per_config: np.ndarray,
    data_bytes: int,
    budget: int,
    devices: int,
    source: str,
    *,
    groups: np.ndarray | None = None,
    seeds: np.ndarray | None = None,
) -> MemoryPlan:
    """Cut configs ``0..K-1`` into sequential slices each within ``budget`` per device.

    Configs run on ``[seeds, configs per seed]`` slots per program (``core.layout``), the
    slot axis spread over ``devices``, each of which also holds the data. ``groups`` (one
    id per program a strategy would build: optimizer family and batch size) and
    ``seeds`` give that layout; default: one group, one seed. When everything does not
    fit at once, each group is cut on its own into slices of one shape ``[U, M]``:

    - a seed's configs all fit in a row (``M`` = the most configs of a seed): ``U`` seeds
      per slice, as many as fit, balanced; the last slice is padded with rows of unused
      seeds and every slice's widest row to ``M``;
    - otherwise one row per slice: each seed cut into pieces of ``M`` configs, with ``M``
      the balanced piece size for the widest seed; short pieces are padded to ``M``.

    Padding copies a config of the slice (inactive: its results are dropped), so a split
    sweep compiles once per group, not once per slice.
    """
    per_config = np.asarray(per_config, np.int64)
    count = per_config.size
    groups = np.zeros(count, np.int64) if groups is None else np.asarray(groups)
    seeds = np.zeros(count, np.int64) if seeds is None else np.asarray(seeds, np.int64)
    room = budget - data_bytes
    if per_config.max() > room:
        raise InputError(
            f"max_memory={budget}: one config needs {per_config.max():,} bytes and the data "
            f"{data_bytes:,} more on each device, {per_config.max() + data_bytes:,} bytes in "
            f"all ({source}); raise max_memory, or lower the batch_size or "
            "SweepOptions.eval_batch_size"
        )
    if _slot_bytes(groups, seeds, per_config, devices) <= room:
        nothing = np.zeros((0, 2), np.int64)
        return MemoryPlan(
            [np.arange(count)], [nothing], groups, seeds, per_config, data_bytes, budget, source
        )
    slices, padding = [], []
    _, first = np.unique(groups, return_index=True)
    for group in groups[np.sort(first)]:
        members = np.flatnonzero(groups == group)
        rows = _seed_rows(members, seeds)
        capacity = devices * int(room // per_config[members].max())  # slots per slice
        most = max(r.size for r in rows)
        if _round_up(most, devices) <= capacity:
            width = _round_up(most, devices)
            count_slices = -(-len(rows) // (capacity // width))
            per_slice = -(-len(rows) // count_slices)
            pieces = [rows[i : i + per_slice] for i in range(0, len(rows), per_slice)]
        else:
            parts = -(-most // capacity)
            width = _round_up(-(-most // parts), devices)
            pieces = [[row[i : i + width]] for row in rows for i in range(0, row.size, width)]
            per_slice = 1
        unused = iter(sorted(set(range(len(rows) + per_slice)) - set(seeds[members].tolist())))
        for piece in pieces:
            widest = max(piece, key=np.size)
            fill = [(widest[0], seeds[widest[0]])] * (min(most, width) - widest.size)
            fill += [(piece[0][0], next(unused)) for _ in range(per_slice - len(piece))]
            slices.append(np.sort(np.concatenate(piece)))
            padding.append(np.array(fill, np.int64).reshape(-1, 2))
    return MemoryPlan(slices, padding, groups, seeds, per_config, data_bytes, budget, source)


def correct_slices(
    plan: MemoryPlan,
    pending: list[tuple[np.ndarray, np.ndarray]],
    measured: int,
    slots: int,
    devices: int,
) -> tuple[MemoryPlan, list[tuple[np.ndarray, np.ndarray]]]:
    """``pending`` slices ``(configs, padding)`` cut again after XLA measured the first
    one's compiled programs at ``measured`` bytes per device, over the budget: its
    group's configs re-planned at the measured bytes per slot (everything but the data,
    over the ``slots`` it computes; an upper bound, as it counts the fixed part too), the
    other groups' slices left as they were."""
    group = plan.groups[pending[0][0][0]]
    same = [s for s in pending if plan.groups[s[0][0]] == group]
    others = [s for s in pending if plan.groups[s[0][0]] != group]
    configs = np.concatenate([members for members, _ in same])
    per_slot = -(-(measured - plan.data_bytes) * devices // slots)
    source = f"{plan.source}; XLA's analysis of the compiled program: {per_slot:,} bytes a config"
    again = plan_slices(
        np.full(configs.size, per_slot),
        plan.data_bytes,
        plan.budget,
        devices,
        source,
        seeds=plan.seeds[configs],
    )
    per_config = plan.per_config.copy()
    per_config[configs] = per_slot
    recut = [
        (configs[members], np.column_stack([configs[fill[:, 0]], fill[:, 1]]).astype(np.int64))
        for members, fill in zip(again.slices, again.padding)
    ]
    corrected = plan._replace(per_config=per_config, source=source)
    return corrected, recut + others
