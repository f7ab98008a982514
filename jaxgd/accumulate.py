"""One program for configs of different batch sizes, by gradient accumulation.

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

References:
    Byrd, Chin, Nocedal, Wu (2012), "Sample size selection in optimization methods for
    machine learning", Mathematical Programming 134.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import engine
from .data import BatchPlan, batch_indices, epoch_order, take
from .engine import GroupRunner, TrainState, apply_gradient, evaluate_configs
from .optimizers import Optimizer
from .problem import Problem, example_losses

__all__ = [
    "AccumulateSettings",
    "AccumulateState",
    "accumulate_step",
    "AccumulateRunner",
    "micro_batch_size",
    "norm_test_multiple",
]

PyTree = Any


class AccumulateState(NamedTuple):
    """A config's training state plus the batch being accumulated.

    Attributes:
        train: the ``TrainState``.
        grad_sum: Σ of the per-example gradients of the current batch so far.
        loss_sum, count: Σ of their losses and how many real examples.
        sq_norm_sum: Σ ||g_j||² of the per-example gradients (norm test only).
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
    micro: jax.Array
    multiple: jax.Array
    limit: jax.Array
    theta: jax.Array


@dataclasses.dataclass(frozen=True)
class AccumulateSettings:
    """Static settings of the accumulate program (they key the compilation)."""

    problem: Problem
    optimizer: Optimizer
    num_examples: int
    micro_size: int
    shuffle: bool = True
    drop_last: bool = False
    epochs_per_chunk: int = 1
    eval_batch_size: int = 1024
    norm_test: bool = False
    max_multiple: int = 1

    @property
    def plan(self) -> BatchPlan:
        return BatchPlan(self.num_examples, self.micro_size)

    def placeholder_tx(self):
        return self.optimizer.transformation(learning_rate=0.0)


def norm_test_multiple(grad_sum, sq_norm_sum, count, theta, micro_size, max_multiple):
    """The batch multiple the norm test asks for after a batch of ``count`` examples.

    With g the batch mean gradient and V = (Σ||g_j||² − |S| ||g||²)/(|S| − 1) the sample
    variance, the batch is large enough when V/|S| ≤ θ² ||g||²; otherwise the next batch
    has ⌈V / (θ² ||g||²)⌉ examples, rounded up to the micro-batch grid and capped.
    """
    mean_sq = sum(jnp.sum((leaf / count) ** 2) for leaf in jax.tree.leaves(grad_sum))
    variance = (sq_norm_sum - count * mean_sq) / jnp.maximum(count - 1, 1)
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
) -> tuple[AccumulateState, engine.StepMetrics]:
    """Add one micro-batch to the config's batch; apply the update when the batch is
    complete (k micro-batches) or the epoch ends."""
    problem, tx = settings.problem, settings.placeholder_tx()
    mask = mask & (positions < state.limit)
    params = state.train.params

    def loss_sum_fn(params):
        losses = example_losses(problem.loss, params, batch)
        return jnp.sum(jnp.where(mask, losses, 0))

    loss_sum, grads = jax.value_and_grad(loss_sum_fn)(params)
    count = jnp.sum(mask.astype(loss_sum.dtype))
    sq_norm_sum = state.sq_norm_sum
    if settings.norm_test:
        per_example = jax.vmap(jax.grad(problem.loss), in_axes=(None, 0))(params, batch)
        norms = sum(
            jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1)
            for leaf in jax.tree.leaves(per_example)
        )
        sq_norm_sum = sq_norm_sum + jnp.sum(jnp.where(mask, norms, 0))

    grad_sum = jax.tree.map(jnp.add, state.grad_sum, grads)
    total_loss, total_count = state.loss_sum + loss_sum, state.count + count
    micro = state.micro + (count > 0).astype(jnp.int32)
    apply = (total_count > 0) & ((micro >= state.multiple) | last_in_epoch)
    safe_count = jnp.maximum(total_count, 1)
    mean_grads = jax.tree.map(lambda g: g / safe_count, grad_sum)
    train = apply_gradient(state.train, mean_grads, total_loss / safe_count, tx, apply)

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
        micro=reset(micro),
        multiple=multiple,
        limit=state.limit,
        theta=state.theta,
    )
    return new_state, engine.StepMetrics(loss_sum, count)


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
    states, shuffle_keys = engine._group_init(seeds, hyperparams, settings=settings)
    zeros = jnp.zeros(multiples.shape, jnp.result_type(float))
    state = AccumulateState(
        train=states,
        grad_sum=jax.tree.map(jnp.zeros_like, states.params),
        loss_sum=zeros,
        count=zeros,
        sq_norm_sum=zeros,
        micro=jnp.zeros(multiples.shape, jnp.int32),
        multiple=multiples,
        limit=jnp.full(multiples.shape, settings.num_examples, jnp.int32),
        theta=thetas,
    )
    return state, shuffle_keys


def _accumulate_chunk(
    states, shuffle_keys, first_epoch, multiples, train, evals, *, settings: AccumulateSettings
):
    """``epochs_per_chunk`` epochs of micro-steps for every config.

    ``multiples`` [epochs_per_chunk, U, M]: the scheduled k per epoch (0: keep).
    """
    plan = settings.plan
    step = functools.partial(accumulate_step, settings=settings)
    step_all = jax.vmap(
        jax.vmap(step, in_axes=(0, None, None, None, None)), in_axes=(0, 0, 0, None, None)
    )
    start_all = jax.vmap(jax.vmap(functools.partial(_start_epoch, settings=settings)))
    steps = plan.steps_per_epoch

    def one_epoch(states, xs):
        epoch, epoch_multiples = xs
        states = start_all(states, epoch_multiples)
        epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(shuffle_keys, epoch)
        orders = jax.vmap(lambda k: epoch_order(k, plan.num_examples, settings.shuffle))(epoch_keys)
        indices, masks = jax.vmap(functools.partial(batch_indices, plan))(orders)
        positions = jnp.arange(steps * plan.batch_size, dtype=jnp.int32).reshape(steps, -1)

        def one_step(states, xs):
            step_indices, step_mask, step_positions, index = xs
            return step_all(
                states, take(train, step_indices), step_mask, step_positions, index == steps - 1
            )

        states, metrics = jax.lax.scan(
            one_step,
            states,
            (jnp.swapaxes(indices, 0, 1), jnp.swapaxes(masks, 0, 1), positions, jnp.arange(steps)),
        )
        history = {"train_loss": metrics.loss_sum.sum(0) / metrics.count.sum(0)}
        for name, data in evals.items():
            means = evaluate_configs(
                settings.problem, states.train.params, data, settings.eval_batch_size, config_dims=2
            )
            history.update({f"{name}_{metric}": value for metric, value in means.items()})
        history["updates"] = states.train.updates
        history["batch_size"] = states.multiple * settings.micro_size
        return states, history

    epochs = first_epoch + jnp.arange(settings.epochs_per_chunk, dtype=jnp.int32)
    return jax.lax.scan(one_epoch, states, (epochs, multiples))


_accumulate_init_program = engine._Program("accumulate_init", _accumulate_init)
_accumulate_chunk_program = engine._Program("accumulate_chunk", _accumulate_chunk, donate=(0,))
engine._PROGRAMS["accumulate_init"] = _accumulate_init_program
engine._PROGRAMS["accumulate_chunk"] = _accumulate_chunk_program


class AccumulateRunner(GroupRunner):
    """A ``GroupRunner`` whose one program serves configs of any batch sizes.

    Args:
        settings: the static settings.
        batch_sizes_by_epoch: ``[config][epoch]`` batch size in force at each epoch's
            start (a fixed size repeats; a schedule changes; for the norm test only the
            first epoch's is used and the rest follow the test).
        thetas: per config, the norm test's θ (inf: no growth).
    """

    program = _accumulate_chunk_program

    def __init__(
        self,
        settings: AccumulateSettings,
        hyperparams,
        seeds,
        train,
        evals,
        batch_sizes_by_epoch: Sequence[Sequence[int]],
        thetas: Sequence[float],
    ):
        epochs = len(batch_sizes_by_epoch[0])
        super().__init__([settings] * epochs, hyperparams, seeds, train, evals)
        multiples = np.asarray(batch_sizes_by_epoch, np.int64) // settings.micro_size
        if settings.norm_test:
            multiples[:, 1:] = 0
        self.multiples = multiples  # [config, epoch]
        self.thetas = list(thetas)

    def _init_args(self):
        seeds, grid = super()._init_args()
        multiples = jnp.asarray(self.multiples[self.slots, 0], jnp.int32)
        thetas = jnp.asarray(np.asarray(self.thetas)[self.slots], jnp.result_type(float))
        return seeds, grid, multiples, thetas

    def prepare(self) -> None:
        init_args = self._init_args()
        init, seconds = _accumulate_init_program.compiled(*init_args, settings=self.settings)
        self.compile_seconds += seconds
        self.states, self.shuffle_keys = init(*init_args)
        executable, seconds = self.program.compiled(*self._chunk_args(0), settings=self.settings)
        self.executables = {self.settings: executable}
        self.compile_seconds += seconds
        jax.block_until_ready(self.states)

    def _chunk_args(self, first_epoch: int) -> tuple:
        span = slice(first_epoch, first_epoch + self.settings.epochs_per_chunk)
        multiples = np.moveaxis(self.multiples[:, span][self.slots], -1, 0)  # [E, U, M]
        return (
            self.states,
            self.shuffle_keys,
            jnp.asarray(first_epoch, jnp.int32),
            jnp.asarray(multiples, jnp.int32),
            self.train,
            self.evals,
        )


def micro_batch_size(batch_sizes: Sequence[int]) -> int:
    """The largest micro-batch dividing every batch size: their gcd."""
    return functools.reduce(math.gcd, (int(b) for b in batch_sizes))
