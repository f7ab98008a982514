"""One program for configs of different fixed batch sizes, by nested scans.

The configs are split into groups by batch size b_g. An outer step covers L examples of
the epoch, L = lcm of the batch sizes; inside it, group g runs an inner ``scan`` of
L / b_g ordinary mini-batch steps at its own batch size. The rest of the epoch (less
than L examples, or all of it when L exceeds the epoch) is a tail in which each group
takes its remaining steps. Every group keeps its own matrix shapes (large batches stay
large matmuls), every step count is static, no update is masked or branched over, and
the whole sweep is ONE compiled program doing exactly the grouped arithmetic.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import engine
from .data import epoch_order, take
from .engine import (
    GroupRun,
    StepMetrics,
    evaluate_configs,
    seed_layout,
    train_step,
)
from .optimizers import Optimizer
from .problem import Problem

__all__ = ["NestedSettings", "NestedRunner"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class NestedSettings:
    """Static settings of the nested program (they key the compilation)."""

    problem: Problem
    optimizer: Optimizer
    num_examples: int
    batch_sizes: tuple[int, ...]
    shuffle: bool = True
    drop_last: bool = False
    epochs_per_chunk: int = 1
    eval_batch_size: int = 1024
    config_blocks: tuple[int | None, ...] | None = None

    @property
    def outer_size(self) -> int:
        """L: examples per outer step, the lcm of the batch sizes. (Multiples of it, up to
        the whole epoch, measured no faster on the CPU.)"""
        return functools.reduce(math.lcm, self.batch_sizes)

    @property
    def full_outer_steps(self) -> int:
        """Outer steps that lie wholly inside the epoch (0 when L exceeds it)."""
        return self.num_examples // self.outer_size

    @property
    def padded_epoch(self) -> int:
        return max(math.ceil(self.num_examples / b) * b for b in self.batch_sizes)

    def tail_steps(self, batch_size: int) -> int:
        """Steps of that group after the full outer steps (the last may be partial)."""
        rest = self.used_examples(batch_size) - self.full_outer_steps * self.outer_size
        return math.ceil(rest / batch_size)

    def used_examples(self, batch_size: int) -> int:
        if self.drop_last:
            return self.num_examples // batch_size * batch_size
        return self.num_examples


def _nested_init(seeds, hyperparams, *, settings: NestedSettings):
    """Per group: states ``[U_g, M_g]`` and shuffle keys ``[U_g]``."""
    pairs = [engine._group_init(s, h, settings=settings) for s, h in zip(seeds, hyperparams)]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


def _nested_chunk(states, shuffle_keys, first_epoch, train, evals, *, settings: NestedSettings):
    """``epochs_per_chunk`` epochs of every group.

    An epoch is ``full_outer_steps`` outer steps of L examples, in each of which group g
    takes L / b_g steps, then a tail over the rest of the epoch in which group g takes
    its remaining ``tail_steps(b_g)`` steps (the last maybe partial, masked). All step
    counts are static: no step is empty, so none needs a branch or a masked update.
    """
    tx = settings.optimizer.transformation(learning_rate=0.0)
    step = functools.partial(train_step, problem=settings.problem, tx=tx)
    blocks = settings.config_blocks or (None,) * len(settings.batch_sizes)
    steps_all = [engine.vmap_configs(step, block) for block in blocks]
    outer_size, full_outer = settings.outer_size, settings.full_outer_steps
    length = max(settings.padded_epoch, full_outer * outer_size)

    def group_steps(state, order, group, offset, count):
        """``count`` steps of group ``group`` from example ``offset`` of the epoch."""
        size, used = (
            settings.batch_sizes[group],
            settings.used_examples(settings.batch_sizes[group]),
        )

        def one_step(state, s):
            start = offset + s * size
            index = jax.lax.dynamic_slice_in_dim(order, start, size, axis=1)
            mask = jnp.broadcast_to(start + jnp.arange(size) < used, index.shape)
            return steps_all[group](state, take(train, index), mask)

        state, metrics = jax.lax.scan(one_step, state, jnp.arange(count, dtype=jnp.int32))
        return state, jax.tree.map(lambda m: m.sum(0), metrics)

    def one_epoch(states, epoch):
        orders = []
        for keys in shuffle_keys:
            epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, epoch)
            order = jax.vmap(lambda k: epoch_order(k, settings.num_examples, settings.shuffle))(
                epoch_keys
            )
            orders.append(jnp.pad(order, ((0, 0), (0, length - settings.num_examples))))
        groups = range(len(settings.batch_sizes))

        def outer_step(states, t):
            results = [
                group_steps(
                    states[g], orders[g], g, t * outer_size, outer_size // settings.batch_sizes[g]
                )
                for g in groups
            ]
            return tuple(r[0] for r in results), tuple(r[1] for r in results)

        zeros = tuple(
            StepMetrics(*(2 * (jnp.zeros(s.updates.shape, jnp.result_type(float)),)))
            for s in states
        )
        metrics = zeros
        if full_outer:
            states, outer_metrics = jax.lax.scan(
                outer_step, states, jnp.arange(full_outer, dtype=jnp.int32)
            )
            metrics = jax.tree.map(lambda m: m.sum(0), outer_metrics)
        tail_states, tail_metrics = [], []
        for g in groups:
            count = settings.tail_steps(settings.batch_sizes[g])
            if count:
                state, m = group_steps(states[g], orders[g], g, full_outer * outer_size, count)
            else:
                state, m = states[g], zeros[g]
            tail_states.append(state)
            tail_metrics.append(m)
        states = tuple(tail_states)
        metrics = jax.tree.map(jnp.add, metrics, tuple(tail_metrics))

        histories = []
        for state, m in zip(states, metrics):
            history = {"train_loss": m.loss_sum / m.count}
            for name, data in evals.items():
                means = evaluate_configs(
                    settings.problem, state.params, data, settings.eval_batch_size, config_dims=2
                )
                history.update({f"{name}_{metric}": value for metric, value in means.items()})
            history["updates"] = state.updates
            histories.append(history)
        return states, tuple(histories)

    epochs = first_epoch + jnp.arange(settings.epochs_per_chunk, dtype=jnp.int32)
    return jax.lax.scan(one_epoch, states, epochs)


_nested_init_program = engine._Program("nested_init", _nested_init)
_nested_chunk_program = engine._Program("nested_chunk", _nested_chunk, donate=(0,))
engine._PROGRAMS["nested_init"] = _nested_init_program
engine._PROGRAMS["nested_chunk"] = _nested_chunk_program


class NestedRunner:
    """Runs all batch-size groups of one optimizer family as one program.

    Same interface as ``engine.GroupRunner`` (prepare, run_chunk, record, finish); the
    results of ``finish`` are in the order of the configs given.
    """

    def __init__(
        self,
        settings: NestedSettings,
        hyperparams: Sequence[dict[str, float]],
        seeds: Sequence[int],
        batch_sizes: Sequence[int],
        train: PyTree,
        evals: dict[str, PyTree],
    ):
        self.settings, self.train, self.evals = settings, train, evals
        self.count = len(hyperparams)
        self.members = [
            [i for i, b in enumerate(batch_sizes) if b == size] for size in settings.batch_sizes
        ]
        self.layouts = [seed_layout([seeds[i] for i in m]) for m in self.members]
        dtype = jnp.result_type(float)
        self.init_args = (
            tuple(jnp.asarray(unique) for unique, _ in self.layouts),
            tuple(
                {
                    name: jnp.asarray(
                        np.array([[hyperparams[m[i]][name] for i in row] for row in slots]), dtype
                    )
                    for name in hyperparams[0]
                }
                for m, (_, slots) in zip(self.members, self.layouts)
            ),
        )
        self.chunks: list[tuple] = []
        self.compile_seconds = 0.0
        self.run_seconds = 0.0

    _chunk_args = engine.GroupRunner._chunk_args

    def prepare(self) -> None:
        init, seconds = _nested_init_program.compiled(*self.init_args, settings=self.settings)
        self.compile_seconds += seconds
        self.states, self.shuffle_keys = init(*self.init_args)
        self.executable, seconds = _nested_chunk_program.compiled(
            *self._chunk_args(0), settings=self.settings
        )
        self.compile_seconds += seconds
        jax.block_until_ready(self.states)

    def run_chunk(self, first_epoch: int):
        start = time.perf_counter()
        self.states, metrics = self.executable(*self._chunk_args(first_epoch))
        self.run_seconds += time.perf_counter() - start
        return metrics

    def record(self, metrics) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        values = jax.tree.map(np.asarray, metrics)
        self.run_seconds += time.perf_counter() - start
        self.chunks.append(values)
        return self._merge([{k: v.T for k, v in g.items()} for g in values])  # [K, E]

    def _merge(self, per_group: Sequence[dict[str, np.ndarray]], axis_last=True):
        """Per-group arrays into ``[K, ...]`` in the order of the configs given: indexed
        ``[U, M, ...]`` (``axis_last=False``) or ``[M, U, ...]`` (chunk metrics
        transposed from ``[E, U, M]``)."""
        merged: dict[str, np.ndarray] = {}
        for members, (_, slots), values in zip(self.members, self.layouts, per_group):
            rows, cols = engine._first_slots(slots, len(members))
            for name, value in values.items():
                picked = value[cols, rows] if axis_last else value[rows, cols]
                if name not in merged:
                    merged[name] = np.zeros((self.count,) + picked.shape[1:], picked.dtype)
                merged[name][members] = picked
        return merged

    def finish(self, return_params: bool = False) -> GroupRun:
        start = time.perf_counter()
        jax.block_until_ready(self.states)
        self.run_seconds += time.perf_counter() - start
        per_group = [  # [U, M, E] per group
            {
                name: np.moveaxis(np.concatenate([c[g][name] for c in self.chunks], axis=0), 0, -1)
                for name in self.chunks[0][g]
            }
            for g in range(len(self.members))
        ]
        history = self._merge(per_group, axis_last=False)
        counters = self._merge(
            [
                {
                    "updates": np.asarray(s.updates),
                    "diverged": np.asarray(s.diverged),
                    "diverged_at": np.asarray(s.diverged_at),
                }
                for s in self.states
            ],
            axis_last=False,
        )
        params = None
        if return_params:
            per_group_leaves = [jax.tree.leaves(s.params) for s in self.states]
            merged = [
                self._merge(
                    [{"leaf": np.asarray(leaves[j])} for leaves in per_group_leaves],
                    axis_last=False,
                )["leaf"]
                for j in range(len(per_group_leaves[0]))
            ]
            params = jax.tree.unflatten(jax.tree.structure(self.states[0].params), merged)
        return GroupRun(
            history=history,
            updates=counters["updates"],
            diverged=counters["diverged"],
            diverged_at=counters["diverged_at"],
            params=params,
            compile_seconds=self.compile_seconds,
            run_seconds=self.run_seconds,
        )
