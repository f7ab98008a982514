"""``accumulate``: configs of any batch sizes in one program, by gradient accumulation.

Every config walks the same epoch permutation (that of its seed) in micro-batches of
``m`` examples, m dividing every batch size. Config i with batch size b_i = k_i·m sums
the gradients of k_i micro-batches and applies its update on the k_i-th:

    g = Σ_{micro-batches of the batch} Σ_j m_j ∇ℓ(θ, x_j) / Σ m_j,    θ, s ← update(g, s, θ)

which is exactly the mean gradient of its own batch, so each config follows its
standalone trajectory (up to float summation order). The partial last batch of an epoch
is flushed at the epoch's end; with ``drop_last`` a config ignores the examples past its
last full batch. Because k_i is an array in the state, the batch size may change during
training: per-epoch schedules (Smith et al. 2017, arXiv:1711.00489) and the adaptive
norm test (Byrd, Chin, Nocedal, Wu 2012) both move k_i.

``optax.MultiSteps`` accumulates too, but averages micro-batch means (wrong for a padded
last batch) and cannot flush at an epoch's end; the state here has its shape: the inner
``TrainState`` plus the batch being accumulated.

References:
    Byrd, Chin, Nocedal, Wu (2012), "Sample size selection in optimization methods for
    machine learning", Mathematical Programming 134.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..configs import ResolvedConfigs
from ..core.compile import CompiledFunction
from ..core.epoch import epoch_history, epoch_orders, scan_epochs
from ..core.layout import Placement, SeedLayout, bucket_width
from ..core.state import TrainState, apply_gradient, init_states, stop_where
from ..core.step import (
    GradientNoise,
    GradientSquaredNorms,
    StepMetrics,
    grouped_noise,
    half_sums,
    measured_noise,
    noise_every,
    noise_sums,
    sample_noise,
    scan_steps,
)
from ..data import BatchPlan, batch_indices, take
from ..problem import example_losses
from .base import PlanContext, Program, ProgramSpec

__all__ = [
    "AccumulateSettings",
    "AccumulateState",
    "accumulate_step",
    "norm_test_multiple",
    "micro_batch_size",
    "AccumulateProgram",
    "Accumulate",
    "ACCUMULATE",
]

PyTree = Any


class AccumulateState(NamedTuple):
    """A config's training state plus the batch being accumulated.

    Attributes:
        train: the ``TrainState``.
        grad_sum: Σ of the per-example gradients of the current batch so far.
        loss_sum, count: Σ of their losses and how many real examples.
        sq_norm_sum: Σ_h ||s_h||² / n_h over the batch's groups so far: per-example
            gradients for the norm test, else two halves per micro-batch for the noise
            scale (``core.step.grouped_noise``); ``groups``: how many groups.
        micro: micro-batches accumulated in the current batch.
        multiple: k, micro-batches per batch: the batch size in force is k·m.
        limit: examples of the epoch this config uses (fewer with drop_last).
        theta: the norm test's θ (inf: the batch size never grows).
    """

    train: TrainState
    grad_sum: PyTree
    loss_sum: jax.Array
    count: jax.Array
    sq_norm_sum: jax.Array
    groups: jax.Array
    micro: jax.Array
    multiple: jax.Array
    limit: jax.Array
    theta: jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccumulateSettings(ProgramSpec):
    """The accumulate program's static settings: the micro-batch and the norm test."""

    micro_size: int
    norm_test: bool = False
    max_multiple: int = 1

    @property
    def plan(self) -> BatchPlan:
        return BatchPlan(self.num_examples, self.micro_size)


def norm_test_multiple(grad_sum, sq_norm_sum, count, theta, micro_size, max_multiple):
    """The batch multiple the norm test asks for after a batch of ``count`` examples.

    With g the batch mean gradient and V = (Σ||g_j||² − |S| ||g||²)/(|S| − 1) the sample
    variance (``core.step.sample_noise``'s tr Σ, which ``GradientNoise`` records), the
    batch is large enough when V/|S| ≤ θ² ||g||²; otherwise the next batch has
    ⌈V / (θ² ||g||²)⌉ examples, rounded up to the micro-batch grid and capped.
    """
    mean_sq = sum(jnp.sum((leaf / count) ** 2) for leaf in jax.tree.leaves(grad_sum))
    _, variance = sample_noise(mean_sq, sq_norm_sum, count)  # the noise scale's tr Σ
    threshold = theta**2 * mean_sq
    passes = variance / count <= threshold
    wanted = jnp.ceil(variance / jnp.maximum(threshold, jnp.finfo(threshold.dtype).tiny))
    multiple = jnp.ceil(wanted / micro_size)
    multiple = jnp.clip(jnp.nan_to_num(multiple, nan=max_multiple), 1, max_multiple)
    return passes, multiple.astype(jnp.int32)


def accumulate_step(
    state: AccumulateState,
    batch: PyTree,
    mask: jax.Array,
    positions: jax.Array,
    last_in_epoch: jax.Array,
    *,
    settings: AccumulateSettings,
    noise_every: int = 1,
    measure_now: bool = True,
) -> tuple[AccumulateState, StepMetrics]:
    """Add one micro-batch to the config's batch; apply the update when the batch is
    complete (k micro-batches) or the epoch ends.

    The noise scale (``GradientNoise``): with ``noise_every`` = 1, every micro-batch's
    two halves (or the norm test's per-example gradients) are groups of the config's
    batch, measured when it is applied; with ``noise_every`` = j > 1, only a micro-step
    where ``measure_now`` (static: one in j, the same for every config) measures, from
    its own micro-batch's two halves, its sums weighted by j (``core.step.measured_noise``).
    """
    problem, tx = settings.problem, settings.placeholder_tx()
    mask = mask & (positions < state.limit)
    params = state.train.params

    noise = GradientNoise() in settings.probes
    sampled = noise and noise_every > 1
    sq_norm_sum, groups = state.sq_norm_sum, state.groups
    measured = {}
    if noise and not settings.norm_test and measure_now:  # the micro-batch's two halves
        sums = half_sums(problem, params, batch, mask)
        loss_sum, grads, count = sums.loss_sum, sums.grad_sum, sums.count
        if sampled:
            measured = measured_noise(sums, noise_every=noise_every)
        else:  # groups of the config's batch
            sq_norm_sum, groups = sq_norm_sum + sums.group_sq, groups + sums.groups
    else:

        def loss_sum_fn(params):
            losses = example_losses(problem.loss, params, batch)
            return jnp.sum(jnp.where(mask, losses, 0))

        loss_sum, grads = jax.value_and_grad(loss_sum_fn)(params)
        count = jnp.sum(mask.astype(loss_sum.dtype))
        if settings.norm_test:  # per-example groups, which the noise scale then shares
            sq_norm_sum = sq_norm_sum + GradientSquaredNorms()(problem, params, batch, mask)
            groups = groups + count
        if sampled:
            measured = dict.fromkeys(GradientNoise.names, jnp.zeros_like(loss_sum))

    grad_sum = optax.tree.add(state.grad_sum, grads)
    total_loss, total_count = state.loss_sum + loss_sum, state.count + count
    micro = state.micro + (count > 0).astype(jnp.int32)
    apply = (total_count > 0) & ((micro >= state.multiple) | last_in_epoch)
    safe_count = jnp.maximum(total_count, 1)
    mean_grads = jax.tree.map(lambda g: g / safe_count, grad_sum)
    train = apply_gradient(
        state.train,
        mean_grads,
        total_loss / safe_count,
        tx,
        apply,
        keep_optimizer_state=True,
        divergence=settings.divergence,
    )

    if noise and not sampled:
        mean_sq = sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(mean_grads))
        g2, trace = grouped_noise(sq_norm_sum, groups, mean_sq, safe_count)
        single = state.multiple * settings.micro_size < 2  # batch size 1: never two groups
        measured = noise_sums(g2, trace, total_count, jnp.where(apply, groups, 0), apply & single)

    multiple = state.multiple
    if settings.norm_test:
        passes, wanted = norm_test_multiple(
            grad_sum,
            sq_norm_sum,
            safe_count,
            state.theta,
            settings.micro_size,
            settings.max_multiple,
        )
        grow = apply & ~passes & (total_count > 1)
        multiple = jnp.where(grow, jnp.maximum(multiple, wanted), multiple)

    def reset(value):
        return jnp.where(apply, jnp.zeros_like(value), value)

    new_state = AccumulateState(
        train=train,
        grad_sum=jax.tree.map(reset, grad_sum),
        loss_sum=reset(total_loss),
        count=reset(total_count),
        sq_norm_sum=reset(sq_norm_sum),
        groups=reset(groups),
        micro=reset(micro),
        multiple=multiple,
        limit=state.limit,
        theta=state.theta,
    )
    return new_state, StepMetrics(loss_sum, count, measured)


def _start_epoch(state: AccumulateState, multiple: jax.Array, settings: AccumulateSettings):
    """At an epoch's start: take the scheduled multiple (0 keeps the current one) and
    the examples this config uses this epoch."""
    multiple = jnp.where(multiple > 0, multiple, state.multiple)
    limit = jnp.asarray(settings.num_examples, jnp.int32)
    if settings.drop_last:
        batch = multiple * settings.micro_size
        limit = (limit // batch) * batch
    return state._replace(multiple=multiple, limit=limit)


def _accumulate_init(seeds, hyperparams, multiples, thetas, *, settings: AccumulateSettings):
    states, shuffle_keys = init_states(
        seeds, hyperparams, problem=settings.problem, optimizer=settings.optimizer
    )
    zeros = jnp.zeros(multiples.shape, jnp.result_type(float))
    state = AccumulateState(
        train=states,
        grad_sum=optax.tree.zeros_like(states.params),
        loss_sum=zeros,
        count=zeros,
        sq_norm_sum=zeros,
        groups=zeros,
        micro=jnp.zeros(multiples.shape, jnp.int32),
        multiple=multiples,
        limit=jnp.full(multiples.shape, settings.num_examples, jnp.int32),
        theta=thetas,
    )
    return state, shuffle_keys


def accumulate_chunk(states, shuffle_keys, first_epoch, stop, multiples, train, evals, *, settings):
    """``epochs_per_chunk`` epochs of micro-steps for every config.

    ``multiples`` [epochs_per_chunk, U, M]: the scheduled k per epoch (0: keep).
    """
    states = states._replace(train=stop_where(states.train, stop))
    plan = settings.plan
    every = 1
    if GradientNoise() in settings.probes and not settings.norm_test and plan.batch_size > 1:
        every = noise_every(plan.batch_size)  # one micro-step in every measures
    start_all = jax.vmap(jax.vmap(functools.partial(_start_epoch, settings=settings)))
    steps = plan.steps_per_epoch

    def one_epoch(states, xs):
        epoch, epoch_multiples = xs
        states = start_all(states, epoch_multiples)
        orders = epoch_orders(shuffle_keys, epoch, plan.num_examples, settings.shuffle)
        indices, masks = jax.vmap(functools.partial(batch_indices, plan))(orders)
        positions = jnp.arange(steps * plan.batch_size, dtype=jnp.int32).reshape(steps, -1)

        def one_step(states, xs, measure_now):
            step_indices, step_mask, step_positions, index = xs
            step = functools.partial(
                accumulate_step, settings=settings, noise_every=every, measure_now=measure_now
            )
            step_all = jax.vmap(
                jax.vmap(step, in_axes=(0, None, None, None, None)),
                in_axes=(0, 0, 0, None, None),
            )
            return step_all(
                states, take(train, step_indices), step_mask, step_positions, index == steps - 1
            )

        states, sums = scan_steps(
            one_step,
            states,
            (jnp.swapaxes(indices, 0, 1), jnp.swapaxes(masks, 0, 1), positions, jnp.arange(steps)),
            noise_every=every,
        )
        history = epoch_history(
            states.train,
            sums,
            evals,
            problem=settings.problem,
            eval_batch_size=settings.eval_batch_size,
        )
        history["batch_size"] = states.multiple * settings.micro_size
        return states, history

    return scan_epochs(one_epoch, states, first_epoch, settings.epochs_per_chunk, multiples)


_INIT = CompiledFunction("accumulate_init", _accumulate_init, runs_once=True)
_CHUNK = CompiledFunction("accumulate_chunk", accumulate_chunk, donate=(0,))


class AccumulateProgram(Program):
    """The configs of one optimizer family, of any batch sizes, in one program.

    Args:
        members: the configs' indices in the sweep.
        settings: the static settings.
        hyperparams: ``{name: [K_p]}``; seeds: ``[K_p]``.
        multiples: ``[K_p, epochs]`` micro-batches per batch in force at each epoch's
            start (0 from the second epoch on for the norm test: the test decides).
        thetas: per member, the norm test's θ (inf: no growth).
        width: slots per seed row; ``start``: per-member states to continue from.
        placement: the devices the slots are split over (default: all).
    """

    def __init__(
        self,
        members: Sequence[int],
        settings: AccumulateSettings,
        hyperparams: Mapping[str, np.ndarray],
        seeds: Sequence[int],
        multiples: np.ndarray,
        thetas: Sequence[float],
        *,
        width: int | None = None,
        start: tuple[AccumulateState, jax.Array] | None = None,
        placement: Placement | None = None,
    ):
        label = f"accumulate {settings.optimizer.name} micro_batch={settings.micro_size}"
        super().__init__(label, members)
        self.settings = settings
        self.hyperparams = {name: np.asarray(v) for name, v in hyperparams.items()}
        self.seeds = np.asarray(seeds, np.int64)
        self.multiples = np.asarray(multiples, np.int64)
        self.thetas = np.asarray(thetas, np.float64)
        self.placement = placement
        self.layout = SeedLayout(self.seeds, width, placement)
        self.start = start

    compile_name = "accumulate_chunk"

    def chunk_args(self, first_epoch: int, stop: np.ndarray) -> tuple:
        span = slice(first_epoch, first_epoch + self.settings.epochs_per_chunk)
        multiples = np.moveaxis(self.layout.to_slots(self.multiples[:, span]), -1, 0)
        return (
            self.states,
            self.shuffle_keys,
            self.layout.put_rows(np.int32(first_epoch)),
            self.layout.put(self.layout.to_slots(np.asarray(stop, bool))),
            self.layout.put(multiples.astype(np.int32), axis=1),
            self.train,
            self.evals,
        )

    def place(self, train, evals, on_compile: Callable) -> None:
        self.train, self.evals = train, evals
        if self.start is None:
            args = (
                self.layout.put_rows(self.layout.unique_seeds),
                self.layout.grid(self.hyperparams),
                self.layout.put(self.layout.to_slots(self.multiples[:, 0]).astype(np.int32)),
                self.layout.put(
                    self.layout.to_slots(np.asarray(self.thetas, jnp.result_type(float)))
                ),
            )
            init, seconds = _INIT.compiled(*args, settings=self.settings)
            self.compile_seconds += seconds
            if seconds:
                on_compile(f"{self.label} init", seconds)
            states, keys = init(*args)
            self.states, self.shuffle_keys = self.layout.put(states), self.layout.put_rows(keys)
        else:
            self.states, self.shuffle_keys = self.continue_from(self.start)
            self.start = None

    def chunk_programs(self):
        return [(0, _CHUNK, self.settings)]

    def slot_train_states(self):
        return [(range(len(self.members)), self.layout, self.states.train)]  # (all, in order)

    def subset(self, positions: np.ndarray) -> AccumulateProgram:
        seeds = self.seeds[positions]
        return AccumulateProgram(
            self.members[positions],
            self.settings,
            {name: v[positions] for name, v in self.hyperparams.items()},
            seeds,
            self.multiples[positions],
            self.thetas[positions],
            width=bucket_width(seeds),
            start=self.member_states(positions),
            placement=self.placement,
        )


def micro_batch_size(batch_sizes: Sequence[int]) -> int:
    """The largest micro-batch dividing every batch size: their gcd."""
    return functools.reduce(math.gcd, (int(b) for b in batch_sizes))


class Accumulate:
    """One program per optimizer family, walking micro-batches of the gcd batch size."""

    name = "accumulate"

    def check(self, configs: ResolvedConfigs, context: PlanContext) -> None:
        if configs.adaptive.any() and context.specs(configs.optimizers[0]).drop_last:
            raise ValueError(
                "norm_test with drop_last=True is not supported: the batch size "
                "changes within an epoch, so 'the last partial batch' is undefined"
            )

    def plan(self, configs: ResolvedConfigs, context: PlanContext) -> list[Program]:
        programs = []
        every_size = configs.batch_sizes(context.epochs)
        for optimizer, _, members in configs.groups(by_batch_size=False):
            sizes = every_size[members]
            m = context.micro_batch_size or micro_batch_size(np.unique(sizes))
            norm_test = bool(configs.adaptive[members].any())
            cap = context.max_batch_size or context.num_train
            settings = AccumulateSettings(
                **context.specs(optimizer).common(),
                micro_size=m,
                norm_test=norm_test,
                max_multiple=max(1, cap // m),
            )
            multiples = sizes // m
            if norm_test:
                multiples[:, 1:] = 0
            programs.append(
                AccumulateProgram(
                    members,
                    settings,
                    configs.hyperparams_of(members, optimizer),
                    configs.seeds_of(members),
                    multiples,
                    configs.norm_test[members],
                    placement=context.placement,
                )
            )
        return programs


ACCUMULATE = Accumulate()
