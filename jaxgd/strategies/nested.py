"""``nested``: configs of different fixed batch sizes in one program, by nested scans.

The configs are split into groups by batch size b_g. An outer step covers L examples of
the epoch, L = lcm of the batch sizes; inside it, group g runs an inner ``scan`` of
L / b_g ordinary mini-batch steps at its own batch size. The rest of the epoch (less
than L examples, or all of it when L exceeds the epoch) is a tail in which each group
takes its remaining steps. Every group keeps its own matrix shapes (large batches stay
large matmuls), every step count is static, no update is masked or branched over, and
one compiled program does exactly the grouped strategy's arithmetic.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..configs import ResolvedConfigs
from ..core.blocks import vmap_configs
from ..core.compile import CompiledFunction
from ..core.epoch import epoch_history, epoch_orders, scan_epochs
from ..core.layout import Placement, SeedLayout, bucket_width, host_take, to_host
from ..core.state import TrainState, stop_where
from ..core.step import GradientNoise, noise_every, scan_steps, train_step, zero_metrics
from ..data import take
from ..schedules import BatchSchedule
from .base import PlanContext, Program, ProgramSpec, initial_states

__all__ = ["NestedSettings", "nested_chunk", "NestedProgram", "Nested", "NESTED"]

PyTree = Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class NestedSettings(ProgramSpec):
    """The nested program's static settings: the batch sizes and each one's config block."""

    batch_sizes: tuple[int, ...]
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


def nested_chunk(states, shuffle_keys, first_epoch, stops, train, evals, *, settings):
    """``epochs_per_chunk`` epochs of every group (tuples: one entry per batch size).

    An epoch is ``full_outer_steps`` outer steps of L examples, in each of which group g
    takes L / b_g steps, then a tail over the rest of the epoch in which group g takes
    its remaining ``tail_steps(b_g)`` steps (the last maybe partial, masked). All step
    counts are static: no step is empty, so none needs a branch or a masked update.
    """
    states = tuple(stop_where(s, stop) for s, stop in zip(states, stops))
    step = functools.partial(
        train_step,
        problem=settings.problem,
        tx=settings.placeholder_tx(),
        probes=settings.probes,
        divergence=settings.divergence,
    )
    blocks = settings.config_blocks or (None,) * len(settings.batch_sizes)
    noise = GradientNoise() in settings.probes
    every = [noise_every(size) if noise else 1 for size in settings.batch_sizes]
    outer_size, full_outer = settings.outer_size, settings.full_outer_steps
    length = max(settings.padded_epoch, full_outer * outer_size)
    groups = range(len(settings.batch_sizes))

    def group_steps(state, order, group, offset, count):
        """``count`` steps of group ``group`` from example ``offset`` of the epoch."""
        size = settings.batch_sizes[group]
        used = settings.used_examples(size)
        k = every[group]

        def one_step(state, s, measure_now):
            start = offset + s * size
            index = jax.lax.dynamic_slice_in_dim(order, start, size, axis=1)
            mask = jnp.broadcast_to(start + jnp.arange(size) < used, index.shape)
            step_all = vmap_configs(
                functools.partial(step, noise_every=k, measure_now=measure_now),
                blocks[group],
            )
            return step_all(state, take(train, index), mask)

        steps = jnp.arange(count, dtype=jnp.int32)
        # a step measures where its index in the epoch is 0 mod k, as grouped's: known
        # before tracing in the tail and where an outer step holds a multiple of k steps
        if isinstance(offset, int):
            first = offset // size
        elif (outer_size // size) % k == 0:
            first = 0
        else:  # the outer step's phase is traced: a lax.cond in each step

            def branching_step(state, s):
                return one_step(state, s, ((offset + s * size) // size) % k == 0)

            state, metrics = jax.lax.scan(branching_step, state, steps)
            return state, jax.tree.map(lambda m: m.sum(0), metrics)
        return scan_steps(one_step, state, steps, noise_every=k, first=first)

    def one_epoch(states, xs):
        epoch, _ = xs
        orders = [
            jnp.pad(
                epoch_orders(keys, epoch, settings.num_examples, settings.shuffle),
                ((0, 0), (0, length - settings.num_examples)),
            )
            for keys in shuffle_keys
        ]

        def outer_step(states, t):
            results = [
                group_steps(
                    states[g],
                    orders[g],
                    g,
                    t * outer_size,
                    outer_size // settings.batch_sizes[g],
                )
                for g in groups
            ]
            return tuple(r[0] for r in results), tuple(r[1] for r in results)

        zeros = tuple(zero_metrics(s.updates.shape, settings.probes) for s in states)
        sums = zeros
        if full_outer:
            states, outer_sums = jax.lax.scan(
                outer_step, states, jnp.arange(full_outer, dtype=jnp.int32)
            )
            sums = jax.tree.map(lambda m: m.sum(0), outer_sums)
        tail_states, tail_sums = [], []
        for g in groups:
            count = settings.tail_steps(settings.batch_sizes[g])
            if count:
                state, m = group_steps(states[g], orders[g], g, full_outer * outer_size, count)
            else:
                state, m = states[g], zeros[g]
            tail_states.append(state)
            tail_sums.append(m)
        states = tuple(tail_states)
        sums = jax.tree.map(jnp.add, sums, tuple(tail_sums))
        histories = tuple(
            epoch_history(
                state,
                group_sums,
                evals,
                problem=settings.problem,
                eval_batch_size=settings.eval_batch_size,
            )
            for state, group_sums in zip(states, sums)
        )
        return states, histories

    return scan_epochs(one_epoch, states, first_epoch, settings.epochs_per_chunk)


_CHUNK = CompiledFunction("nested_chunk", nested_chunk, donate=(0,))


class NestedProgram(Program):
    """All batch sizes of one optimizer family's configs in one program.

    Args:
        members: the configs' indices in the sweep.
        settings: the static settings (``settings.batch_sizes``: the distinct sizes).
        hyperparams: ``{name: [K_p]}``; seeds, batch_sizes: ``[K_p]``.
        widths: per batch size, the slots per seed row (default: as many as needed).
        start: per-member ``(TrainState [K_p], shuffle keys [K_p])`` to continue from.
        placement: the devices the slots are split over (default: all).
    """

    def __init__(
        self,
        members: Sequence[int],
        settings: NestedSettings,
        hyperparams: Mapping[str, np.ndarray],
        seeds: Sequence[int],
        batch_sizes: Sequence[int],
        *,
        widths: Sequence[int | None] | None = None,
        start: tuple[TrainState, jax.Array] | None = None,
        placement: Placement | None = None,
    ):
        sizes = ",".join(map(str, settings.batch_sizes))
        super().__init__(f"nested {settings.optimizer.name} batch_size={sizes}", members)
        self.settings = settings
        self.hyperparams = {name: np.asarray(v) for name, v in hyperparams.items()}
        self.seeds = np.asarray(seeds, np.int64)
        self.batch_sizes = np.asarray(batch_sizes, np.int64)
        # positions (into members) of each batch-size group, and that group's layout
        self.groups = [np.flatnonzero(self.batch_sizes == size) for size in settings.batch_sizes]
        self.placement = placement
        widths = widths or [None] * len(self.groups)
        self.layouts = [
            SeedLayout(self.seeds[group], width, placement)
            for group, width in zip(self.groups, widths)
        ]
        self.start = start

    compile_name = "nested_chunk"

    @property
    def slot_count(self) -> int:
        return sum(math.prod(layout.shape) for layout in self.layouts)

    def chunk_args(self, first_epoch: int, stop: np.ndarray) -> tuple:
        stop = np.asarray(stop, bool)
        stops = tuple(
            layout.put(layout.to_slots(stop[group]))
            for group, layout in zip(self.groups, self.layouts)
        )
        first = self.layouts[0].put_rows(np.int32(first_epoch))
        return (self.states, self.shuffle_keys, first, stops, self.train, self.evals)

    def place(self, train, evals, on_compile: Callable) -> None:
        self.train, self.evals = train, evals
        if self.start is None:
            pairs = []
            for group, layout in zip(self.groups, self.layouts):
                pair, seconds = initial_states(
                    layout,
                    {name: v[group] for name, v in self.hyperparams.items()},
                    self.settings,
                    on_compile,
                    self.label,
                )
                self.compile_seconds += seconds
                pairs.append(pair)
        else:
            states, keys = self.start
            pairs = []
            for group, layout in zip(self.groups, self.layouts):
                slots = group[layout.slots]  # positions in the member list
                pairs.append(
                    (
                        layout.put(host_take(states, slots)),
                        layout.put_rows(host_take(keys, slots[:, 0])),
                    )
                )
            self.start = None
        self.states = tuple(p[0] for p in pairs)
        self.shuffle_keys = tuple(p[1] for p in pairs)

    def chunk_programs(self):
        return [(0, _CHUNK, self.settings)]

    def _merge(self, per_group: Sequence[Any]) -> Any:
        """Per-group pytrees with leading ``[K_g]`` axes into one with ``[K_p]``, in
        member order."""
        order = np.argsort(np.concatenate(self.groups), kind="stable")
        return jax.tree.map(lambda *parts: np.concatenate(parts)[order], *per_group)

    def unpack(self, metrics) -> dict[str, np.ndarray]:
        host = self.timed(to_host, metrics)  # per group {name: [E, U, M]}
        per_group = [
            {name: layout.unpack(value, axis=1).T for name, value in group.items()}
            for layout, group in zip(self.layouts, host)
        ]
        return self._merge(per_group)

    def slot_train_states(self):
        return list(zip(self.groups, self.layouts, self.states))

    def member_states(self, positions: np.ndarray):
        group_of = np.empty(len(self.members), np.int64)
        within = np.empty(len(self.members), np.int64)
        for g, group in enumerate(self.groups):
            group_of[group], within[group] = g, np.arange(len(group))
        parts, order = [], []
        for g, layout in enumerate(self.layouts):
            mine = [i for i, p in enumerate(positions) if group_of[p] == g]
            if mine:
                q = within[np.asarray(positions)[mine]]
                rows, cols = layout.rows[q], layout.cols[q]
                parts.append(
                    (
                        host_take(self.states[g], rows, cols),
                        host_take(self.shuffle_keys[g], rows),
                    )
                )
                order += mine
        inverse = np.argsort(order, kind="stable")
        states = jax.tree.map(
            lambda *leaves: np.concatenate(leaves)[inverse], *[p[0] for p in parts]
        )
        keys = jnp.concatenate([p[1] for p in parts])[jnp.asarray(inverse)]
        return states, keys

    def subset(self, positions: np.ndarray) -> NestedProgram:
        sizes = self.batch_sizes[positions]
        distinct = tuple(sorted(set(sizes.tolist())))
        seeds = self.seeds[positions]
        widths = [bucket_width(seeds[sizes == size]) for size in distinct]
        kept = [self.settings.batch_sizes.index(size) for size in distinct]
        blocks = self.settings.config_blocks
        settings = dataclasses.replace(
            self.settings,
            batch_sizes=distinct,
            config_blocks=None if blocks is None else tuple(blocks[k] for k in kept),
        )
        return NestedProgram(
            self.members[positions],
            settings,
            {name: v[positions] for name, v in self.hyperparams.items()},
            seeds,
            sizes,
            widths=widths,
            start=self.member_states(positions),
            placement=self.placement,
        )


class Nested:
    """One program per optimizer family: an inner scan per fixed batch size."""

    name = "nested"

    def check(self, configs: ResolvedConfigs, context: PlanContext) -> None:
        if configs.adaptive.any():
            raise ValueError(
                "norm_test (adaptive batch size) needs strategy='accumulate' or 'auto': "
                "a config's batch size changes during an epoch"
            )
        if any(isinstance(b, BatchSchedule) for b in configs.used_batch_sizes()):
            raise ValueError(
                "strategy='nested' runs fixed batch sizes; batch-size schedules need "
                "'grouped' or 'accumulate'"
            )

    def plan(self, configs: ResolvedConfigs, context: PlanContext) -> list[Program]:
        programs = []
        for optimizer, _, members in configs.groups(by_batch_size=False):
            sizes = configs.fixed_batch_sizes()[members]
            distinct = tuple(sorted(set(sizes.tolist())))
            blocks = tuple(context.block_for(members[sizes == b], b) for b in distinct)
            settings = NestedSettings(
                **context.specs(optimizer).common(),
                batch_sizes=distinct,
                config_blocks=blocks,
            )
            programs.append(
                NestedProgram(
                    members,
                    settings,
                    configs.hyperparams_of(members, optimizer),
                    configs.seeds_of(members),
                    sizes,
                    placement=context.placement,
                )
            )
        return programs


NESTED = Nested()
