"""``grouped``: one program per batch size (or batch-size schedule) and optimizer family.

A program is ``scan`` over steps of ``vmap`` over configs, the configs on a
``[seeds, configs_per_seed]`` grid (``core.layout``): a step gathers its batch once per
seed and every config of that seed reads it. Programs of different batch sizes run
interleaved, chunk by chunk. A schedule that changes the batch size at a chunk boundary
switches to the program compiled for the new size.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..configs import ResolvedConfigs
from ..core.blocks import vmap_configs
from ..core.compile import CompiledFunction
from ..core.epoch import epoch_history, epoch_orders, scan_epochs
from ..core.layout import Placement, SeedLayout, bucket_width
from ..core.state import TrainState, stop_where
from ..core.step import GradientNoise, noise_every, scan_steps, train_step
from ..data import BatchPlan, batch_indices, take
from ..schedules import BatchSchedule
from .base import PlanContext, Program, ProgramSpec, initial_states

__all__ = [
    "GroupedSettings",
    "grouped_step",
    "grouped_chunk",
    "GroupedProgram",
    "Grouped",
    "GROUPED",
]

PyTree = Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupedSettings(ProgramSpec):
    """A grouped program's static settings: the common ones, the batch plan, the block."""

    plan: BatchPlan
    config_block: int | None = None

    @property
    def measure_every(self) -> int:
        """Steps between gradient-noise measurements (``core.step.noise_every``; 1 when
        the noise is not measured)."""
        return noise_every(self.plan.batch_size) if GradientNoise() in self.probes else 1

    @property
    def batch_width(self) -> int:
        """A step's batch as the program holds it: the batch size, or on a mesh with an
        ``"examples"`` axis padded with masked examples to a multiple of its devices
        (``core.layout.ExampleSplit.width``; of twice as many when the noise is
        measured, so that the batch's halves split as the batch does)."""
        if self.examples is None:
            return self.plan.batch_size
        return self.examples.width(self.plan.batch_size, pairs=GradientNoise() in self.probes)


def grouped_step(settings: GroupedSettings) -> Callable:
    """``step(states, batch, mask, measure_now)`` for states ``[U, M]``, each seed's batch
    ``[U, B, ...]`` and mask ``[U, B]`` read by its row; ``core.step.scan_steps`` passes
    the static ``measure_now`` every ``settings.measure_every`` steps. With
    ``settings.examples`` the batch is padded to a multiple of the devices it is split
    over (``core.layout.ExampleSplit``) and split along its example axis."""
    step = functools.partial(
        train_step,
        problem=settings.problem,
        tx=settings.placeholder_tx(),
        probes=settings.probes,
        divergence=settings.divergence,
        noise_every=settings.measure_every,
        batch_size=settings.plan.batch_size,
    )

    def step_all(states, batch, mask, measure_now):
        if settings.examples is not None:
            batch, mask = settings.examples.constrain((batch, mask), axis=1)
        configs = vmap_configs(
            functools.partial(step, measure_now=measure_now), settings.config_block
        )
        return configs(states, batch, mask)

    return step_all


def grouped_chunk(states, shuffle_keys, first_epoch, stop, train, evals, *, settings):
    """``epochs_per_chunk`` epochs of every config: states ``[U, M]``, keys ``[U]``."""
    states = stop_where(states, stop)
    plan = settings.plan
    step_all = grouped_step(settings)

    def one_epoch(states, xs):
        epoch, _ = xs
        orders = epoch_orders(shuffle_keys, epoch, plan.num_examples, settings.shuffle)
        indices, masks = jax.vmap(functools.partial(batch_indices, plan))(orders)
        if settings.examples is not None:
            indices, masks = settings.examples.pad(indices, masks, settings.batch_width)

        def one_step(states, xs, measure_now):
            step_indices, step_mask = xs
            return step_all(states, take(train, step_indices), step_mask, measure_now)

        states, sums = scan_steps(
            one_step,
            states,
            (jnp.swapaxes(indices, 0, 1), jnp.swapaxes(masks, 0, 1)),
            noise_every=settings.measure_every,
        )
        history = epoch_history(
            states,
            sums,
            evals,
            problem=settings.problem,
            eval_batch_size=settings.eval_batch_size,
        )
        return states, history

    return scan_epochs(one_epoch, states, first_epoch, settings.epochs_per_chunk)


_CHUNK = CompiledFunction("grouped_chunk", grouped_chunk, donate=(0,))


class GroupedProgram(Program):
    """The configs of one optimizer family and one batch size (or schedule).

    Args:
        members: the configs' indices in the sweep.
        settings_by_epoch: the static settings in force at each epoch (they differ only
            where a schedule switches the batch plan, at a chunk boundary).
        hyperparams: ``{name: [K_p]}``; seeds: ``[K_p]``.
        width: slots per seed row (default: the most configs of a seed).
        start: per-member ``(TrainState [K_p], shuffle keys [K_p])`` to continue from.
        placement: the devices the slots are split over (default: all).
    """

    def __init__(
        self,
        members: Sequence[int],
        settings_by_epoch: Sequence[GroupedSettings],
        hyperparams: Mapping[str, np.ndarray],
        seeds: Sequence[int],
        *,
        width: int | None = None,
        start: tuple[TrainState, jax.Array] | None = None,
        placement: Placement | None = None,
    ):
        self.settings_by_epoch = list(settings_by_epoch)
        sizes = sorted({s.plan.batch_size for s in self.settings_by_epoch})
        label = "batch_size=" + ",".join(map(str, sizes))
        super().__init__(f"grouped {self.settings_by_epoch[0].optimizer.name} {label}", members)
        self.hyperparams = {name: np.asarray(v) for name, v in hyperparams.items()}
        self.seeds = np.asarray(seeds, np.int64)
        self.placement = placement
        self.layout = SeedLayout(self.seeds, width, placement)
        self.start = start

    compile_name = "grouped_chunk"

    def chunk_args(self, first_epoch: int, stop: np.ndarray) -> tuple:
        stop = self.layout.put(self.layout.to_slots(np.asarray(stop, bool)))
        first = self.layout.put_rows(np.int32(first_epoch))
        return (self.states, self.shuffle_keys, first, stop, self.train, self.evals)

    def place(self, train, evals, on_compile: Callable) -> None:
        self.train, self.evals = train, evals
        if self.start is None:
            (self.states, self.shuffle_keys), seconds = initial_states(
                self.layout,
                self.hyperparams,
                self.settings_by_epoch[0],
                on_compile,
                self.label,
            )
            self.compile_seconds += seconds
        else:
            self.states, self.shuffle_keys = self.continue_from(self.start)
            self.start = None

    def chunk_programs(self):
        chunk = self.settings_by_epoch[0].epochs_per_chunk
        firsts = {}
        for first in range(0, len(self.settings_by_epoch), chunk):
            firsts.setdefault(self.settings_by_epoch[first], first)
        return [(first, _CHUNK, settings) for settings, first in firsts.items()]

    def settings_at(self, first_epoch: int) -> GroupedSettings:
        return self.settings_by_epoch[first_epoch]

    def slot_train_states(self):
        return [(range(len(self.members)), self.layout, self.states)]  # (all, in order)

    def subset(self, positions: np.ndarray) -> GroupedProgram:
        seeds = self.seeds[positions]
        return type(self)(
            self.members[positions],
            self.settings_by_epoch,
            {name: v[positions] for name, v in self.hyperparams.items()},
            seeds,
            width=bucket_width(seeds),
            start=self.member_states(positions),
            placement=self.placement,
        )


class Grouped:
    """One program per (optimizer family, batch size or schedule)."""

    name = "grouped"
    program = GroupedProgram

    def check(self, configs: ResolvedConfigs, context: PlanContext) -> None:
        if configs.adaptive.any():
            raise ValueError(
                "norm_test (adaptive batch size) needs strategy='accumulate' or 'auto': "
                "a config's batch size changes during an epoch"
            )
        chunk = context.specs(configs.optimizers[0]).epochs_per_chunk
        for size in configs.used_batch_sizes():
            if isinstance(size, BatchSchedule):
                bad = [e for e in size.boundaries if e % chunk]
                if bad:
                    raise ValueError(
                        f"batch-size schedule {size} changes at epochs {bad}, "
                        f"not at chunk boundaries (epochs_per_chunk={chunk})"
                    )

    def plan(self, configs: ResolvedConfigs, context: PlanContext) -> list[Program]:
        programs = []
        for optimizer, size, members in configs.groups():
            spec = context.specs(optimizer)
            settings_by_epoch = [
                GroupedSettings(
                    **spec.common(),
                    plan=BatchPlan(context.num_train, b, spec.drop_last),
                    config_block=context.block_for(members, b),
                )
                for b in (
                    size.per_epoch(context.epochs)
                    if isinstance(size, BatchSchedule)
                    else [size] * context.epochs
                )
            ]
            programs.append(
                self.program(
                    members,
                    settings_by_epoch,
                    configs.hyperparams_of(members, optimizer),
                    configs.seeds_of(members),
                    placement=context.placement,
                )
            )
        return programs


GROUPED = Grouped()
