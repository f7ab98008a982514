"""The epoch skeleton every strategy shares: data orders from keys, evaluation, history.

Epoch e of seed u visits ``permutation(fold_in(shuffle_key_u, e))``: the data order
depends on the seed and the epoch only, not on the chunk size, the strategy or the other
configs. That is what makes results independent of how a sweep is run, and resumable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..data import BatchPlan, batch_indices, epoch_order, num_examples, take
from ..problem import Problem, evaluate
from .state import TrainState
from .step import StepMetrics

__all__ = ["epoch_orders", "evaluate_configs", "epoch_history", "scan_epochs"]

PyTree = Any


def epoch_orders(shuffle_keys: jax.Array, epoch: jax.Array, count: int, shuffle: bool):
    """``[U, count]``: the example order of epoch ``epoch`` for each seed's shuffle key."""
    epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(shuffle_keys, epoch)
    return jax.vmap(lambda key: epoch_order(key, count, shuffle))(epoch_keys)


def evaluate_configs(
    problem: Problem, params: PyTree, data: PyTree, batch_size: int, config_dims: int
) -> dict[str, jax.Array]:
    """Mean loss and metrics of every config on ``data``, in batches of ``batch_size``.

    ``params`` has ``config_dims`` leading config axes; the data is shared by all.
    """
    n = num_examples(data)
    plan = BatchPlan(n, min(batch_size, n))
    indices, mask = batch_indices(plan, jnp.arange(n, dtype=jnp.int32))

    def for_configs(params, batch, batch_mask):
        fn = functools.partial(evaluate, problem)
        for _ in range(config_dims):
            fn = jax.vmap(fn, in_axes=(0, None, None))
        return fn(params, batch, batch_mask)

    def add_batch(totals, xs):
        batch_idx, batch_mask = xs
        result = for_configs(params, take(data, batch_idx), batch_mask)
        return optax.tree.add(totals, result), None

    zeros = jax.tree.map(
        jnp.zeros_like, jax.eval_shape(for_configs, params, take(data, indices[0]), mask[0])
    )
    totals, _ = jax.lax.scan(add_batch, zeros, (indices, mask))
    return {name: total / totals["count"] for name, total in totals["sums"].items()}


def epoch_history(
    state: TrainState,
    sums: StepMetrics,
    evals: dict[str, PyTree],
    *,
    problem: Problem,
    eval_batch_size: int,
) -> dict[str, jax.Array]:
    """One epoch's row of history for states with two leading config axes ``[U, M]``.

    ``train_loss`` = Σ loss / Σ examples over the epoch's steps (so the mean over the
    epoch's examples, each counted once); each probe likewise (and ``b_simple``, the
    noise scale, with ``GradientNoise``); ``<set>_<metric>`` for each
    evaluation set at the epoch's end; ``updates`` and ``status`` at the epoch's end.
    """
    history = {"train_loss": sums.loss_sum / sums.count}
    history.update({name: total / sums.count for name, total in sums.probes.items()})
    if "grad_trace" in sums.probes:  # GradientNoise: the ratio of the epoch's averages
        history["b_simple"] = sums.probes["grad_trace"] / sums.probes["grad_sq_norm"]
    for name, data in evals.items():
        means = evaluate_configs(problem, state.params, data, eval_batch_size, config_dims=2)
        history.update({f"{name}_{metric}": value for metric, value in means.items()})
    history["updates"] = state.updates
    history["status"] = state.status
    return history


def scan_epochs(
    one_epoch: Callable, states: PyTree, first_epoch: jax.Array, count: int, per_epoch=None
):
    """``count`` epochs from ``first_epoch``: ``one_epoch(states, (epoch, per_epoch[i]))``
    under one ``lax.scan``; histories stack on a leading epoch axis."""
    epochs = first_epoch + jnp.arange(count, dtype=jnp.int32)
    return jax.lax.scan(one_epoch, states, (epochs, per_epoch))
