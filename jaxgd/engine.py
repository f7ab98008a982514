"""The engine: one compiled program per group of configs that share static settings.

A group's program is ``scan`` over steps of ``vmap`` over configs. Configs are laid out
on a ``[seeds, configs_per_seed]`` grid: configs that share a seed share the data order,
so each step gathers its batch once per seed and every config of that seed reads it.
The program runs one chunk (``epochs_per_chunk`` epochs) per call, so the host can record
metrics and show progress between chunks; the state buffers are donated; hyperparameter
values are arrays in the optimizer state, so new values never recompile.

A config whose loss or update turns non-finite is frozen at its last finite parameters
and flagged (``diverged``, with the update index); the other configs are untouched.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .data import BatchPlan, batch_indices, epoch_order, num_examples, take
from .optimizers import Optimizer
from .problem import Problem, evaluate, example_losses, masked_mean

__all__ = [
    "TrainState",
    "StepMetrics",
    "GroupSettings",
    "train_step",
    "init_train_state",
    "run_group",
    "GroupRun",
    "compile_count",
    "compiled_programs",
]

PyTree = Any

# Compilations of the engine's programs, by program name; tests assert on these.
_compilations: collections.Counter[str] = collections.Counter()


def compiled_programs(program: str = "chunk") -> list[Any]:
    """The compiled executables the engine holds for ``program`` ("init" or "chunk"),
    oldest first; ``.cost_analysis()`` on one gives XLA's FLOP count for a chunk."""
    return list(_PROGRAMS[program].cache.values())


def compile_count(program: str | None = None) -> int:
    """How many programs the engine has compiled (all, or those named ``program``)."""
    if program is None:
        return sum(_compilations.values())
    return _compilations[program]


class TrainState(NamedTuple):
    """One config's training state (a leading config axis when stacked).

    Attributes:
        params: the model parameters.
        opt_state: the optax state, hyperparameters included.
        updates: how many updates have been applied.
        diverged: True once a loss or update was non-finite; the config is then frozen.
        diverged_at: the update index at which that happened, -1 if never.
    """

    params: PyTree
    opt_state: PyTree
    updates: jax.Array
    diverged: jax.Array
    diverged_at: jax.Array


class StepMetrics(NamedTuple):
    """Per-step sums from which epoch means are taken exactly."""

    loss_sum: jax.Array
    count: jax.Array


def _tree_where(condition: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves, jnp.asarray(True))


def init_train_state(params: PyTree, tx: optax.GradientTransformation) -> TrainState:
    """A fresh state: no updates taken, not diverged."""
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        updates=jnp.zeros([], jnp.int32),
        diverged=jnp.zeros([], bool),
        diverged_at=jnp.full([], -1, jnp.int32),
    )


def apply_gradient(
    state: TrainState, grads: PyTree, loss: jax.Array, tx: optax.GradientTransformation,
    apply: jax.Array | bool = True,
) -> TrainState:
    """θ ← θ + u with ``u, s ← tx.update(g, s, θ)``, unless ``apply`` is False or the
    config has diverged; a non-finite loss or update freezes the config and flags it."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & _all_finite(updates)
    active = jnp.asarray(apply) & ~state.diverged
    take_update = active & finite
    newly_diverged = active & ~finite
    return TrainState(
        params=_tree_where(take_update, params, state.params),
        opt_state=_tree_where(take_update, opt_state, state.opt_state),
        updates=state.updates + take_update.astype(jnp.int32),
        diverged=state.diverged | newly_diverged,
        diverged_at=jnp.where(newly_diverged, state.updates, state.diverged_at),
    )


def train_step(
    state: TrainState,
    batch: PyTree,
    mask: jax.Array,
    *,
    problem: Problem,
    tx: optax.GradientTransformation,
) -> tuple[TrainState, StepMetrics]:
    """One mini-batch update: g = ∇ [Σ m_i ℓ(θ, x_i) / Σ m_i], then the optimizer's update.

    Returns the new state and the batch's loss sum and count *before* the update, from
    which the epoch's mean training loss is the usual running average.
    """

    def loss_and_sum(params):
        losses = example_losses(problem.loss, params, batch)
        return masked_mean(losses, mask), jnp.sum(jnp.where(mask, losses, 0))

    (loss, loss_sum), grads = jax.value_and_grad(loss_and_sum, has_aux=True)(state.params)
    count = jnp.sum(mask.astype(loss.dtype))
    return apply_gradient(state, grads, loss, tx), StepMetrics(loss_sum, count)


@dataclasses.dataclass(frozen=True)
class GroupSettings:
    """Everything static about a group: it keys the compiled program."""

    problem: Problem
    optimizer: Optimizer
    plan: BatchPlan
    shuffle: bool = True
    epochs_per_chunk: int = 1
    eval_batch_size: int = 1024

    def placeholder_tx(self) -> optax.GradientTransformation:
        """A transformation for ``update`` calls: inject_hyperparams reads every
        hyperparameter from the state, so the values given here are never used."""
        return self.optimizer.transformation(learning_rate=0.0)


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
        return jax.tree.map(jnp.add, totals, result), None

    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(for_configs, params, take(data, indices[0]), mask[0]))
    totals, _ = jax.lax.scan(add_batch, zeros, (indices, mask))
    return {name: total / totals["count"] for name, total in totals["sums"].items()}


def _group_init(seeds, hyperparams, *, settings: GroupSettings):
    """States ``[U, M]`` and shuffle keys ``[U]`` from seeds ``[U]`` and hyperparameters
    ``{name: [U, M]}``: configs of one seed share the initial parameters."""
    keys = jax.vmap(jax.random.key)(seeds)
    init_keys, shuffle_keys = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
    params = jax.vmap(settings.problem.init)(init_keys)

    def init_one(params, hp):
        return init_train_state(params, settings.optimizer.transformation(**hp))

    states = jax.vmap(jax.vmap(init_one, in_axes=(None, 0)), in_axes=(0, 0))(params, hyperparams)
    return states, shuffle_keys


def _group_chunk(states, shuffle_keys, first_epoch, train, evals, *, settings: GroupSettings):
    """``epochs_per_chunk`` epochs of every config in the group.

    Epoch e of seed u visits ``permutation(fold_in(shuffle_key_u, e))``, so the data order
    depends on the seed and epoch only: not on the chunk size or on the other configs.
    """
    plan, tx = settings.plan, settings.placeholder_tx()
    step = functools.partial(train_step, problem=settings.problem, tx=tx)
    # Outer vmap over seeds (each its own batch), inner over the configs sharing it.
    step_all = jax.vmap(jax.vmap(step, in_axes=(0, None, None)), in_axes=(0, 0, 0))

    def one_epoch(states, epoch):
        epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(shuffle_keys, epoch)
        orders = jax.vmap(lambda k: epoch_order(k, plan.num_examples, settings.shuffle))(epoch_keys)
        indices, masks = jax.vmap(functools.partial(batch_indices, plan))(orders)

        def one_step(states, xs):
            step_indices, step_mask = xs
            return step_all(states, take(train, step_indices), step_mask)

        states, metrics = jax.lax.scan(
            one_step, states, (jnp.swapaxes(indices, 0, 1), jnp.swapaxes(masks, 0, 1))
        )
        history = {"train_loss": metrics.loss_sum.sum(0) / metrics.count.sum(0)}
        for name, data in evals.items():
            means = evaluate_configs(
                settings.problem, states.params, data, settings.eval_batch_size, config_dims=2
            )
            history.update({f"{name}_{metric}": value for metric, value in means.items()})
        history["updates"] = states.updates
        return states, history

    epochs = first_epoch + jnp.arange(settings.epochs_per_chunk, dtype=jnp.int32)
    return jax.lax.scan(one_epoch, states, epochs)


class _Program:
    """Ahead-of-time compiled programs, cached by static settings and argument shapes,
    so that compile time is measured apart from run time and compilations are counted."""

    def __init__(self, name: str, fn: Callable, donate: tuple[int, ...] = ()):
        self.name = name
        self.jitted = jax.jit(fn, static_argnames=("settings",), donate_argnums=donate)
        self.cache: dict[Any, Any] = {}

    def compiled(self, *args, settings) -> tuple[Any, float]:
        shapes = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), args)
        key = (settings, jax.tree.structure(args), tuple(jax.tree.leaves(shapes)))
        if key in self.cache:
            return self.cache[key], 0.0
        start = time.perf_counter()
        executable = self.jitted.lower(*args, settings=settings).compile()
        seconds = time.perf_counter() - start
        _compilations[self.name] += 1
        self.cache[key] = executable
        return executable, seconds


_init_program = _Program("init", _group_init)
_chunk_program = _Program("chunk", _group_chunk, donate=(0,))
_PROGRAMS = {"init": _init_program, "chunk": _chunk_program}


@dataclasses.dataclass
class GroupRun:
    """What ``run_group`` returns, laid out in the order of the configs given.

    Attributes:
        history: ``{name: [K, epochs]}`` per-epoch metrics.
        updates, diverged, diverged_at: ``[K]`` final counters.
        params: final parameters with a leading ``[K]`` axis, when asked for.
        compile_seconds, run_seconds: wall time of compiling and of running the group.
    """

    history: dict[str, np.ndarray]
    updates: np.ndarray
    diverged: np.ndarray
    diverged_at: np.ndarray
    params: PyTree | None
    compile_seconds: float
    run_seconds: float


def seed_layout(seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Place configs on a ``[U, M]`` grid by seed.

    Returns ``unique_seeds [U]`` and ``slots [U, M]`` holding config indices; a seed with
    fewer than M configs repeats its first config in the spare slots, whose results are
    discarded (a grid over seeds needs no padding).
    """
    unique = list(dict.fromkeys(int(s) for s in seeds))
    members = {s: [i for i, seed in enumerate(seeds) if int(seed) == s] for s in unique}
    width = max(len(m) for m in members.values())
    slots = np.array([m + [m[0]] * (width - len(m)) for m in (members[s] for s in unique)])
    return np.array(unique, dtype=np.int32), slots


def _first_slots(slots: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """For each config index, the ``(u, m)`` slot that holds it (the first one)."""
    where = {}
    for (u, m), index in np.ndenumerate(slots):
        where.setdefault(int(index), (u, m))
    rows = np.array([where[i][0] for i in range(count)])
    cols = np.array([where[i][1] for i in range(count)])
    return rows, cols


def run_group(
    settings: GroupSettings,
    hyperparams: Sequence[dict[str, float]],
    seeds: Sequence[int],
    train: PyTree,
    evals: dict[str, PyTree],
    epochs: int,
    *,
    return_params: bool = False,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> GroupRun:
    """Train every config of one group for ``epochs`` epochs.

    Args:
        settings: the static settings shared by the group.
        hyperparams: per config, the optimizer's numeric hyperparameters (complete).
        seeds: per config, the seed of its initial parameters and data order.
        train: the training set on the device; ``evals``: named evaluation sets.
        epochs: a multiple of ``settings.epochs_per_chunk``.
        on_chunk: called after each chunk with the epoch count and that chunk's metrics.
    """
    if epochs % settings.epochs_per_chunk:
        raise ValueError(
            f"epochs={epochs} is not a multiple of epochs_per_chunk={settings.epochs_per_chunk}"
        )
    count = len(hyperparams)
    unique_seeds, slots = seed_layout(seeds)
    dtype = jnp.result_type(float)
    names = list(hyperparams[0])
    grid = {name: jnp.asarray(np.array([[hyperparams[i][name] for i in row] for row in slots]), dtype)
            for name in names}
    init_args = (jnp.asarray(unique_seeds), grid)
    init, compile_seconds = _init_program.compiled(*init_args, settings=settings)
    states, shuffle_keys = init(*init_args)
    chunk_args = (states, shuffle_keys, jnp.zeros([], jnp.int32), train, evals)
    chunk, seconds = _chunk_program.compiled(*chunk_args, settings=settings)
    compile_seconds += seconds

    start = time.perf_counter()

    chunks: list[dict[str, np.ndarray]] = []
    pending = None
    for first in range(0, epochs, settings.epochs_per_chunk):
        states, metrics = chunk(states, shuffle_keys, jnp.asarray(first, jnp.int32), train, evals)
        # Read the previous chunk's metrics only after dispatching this one, so the
        # device never waits for the host.
        if pending is not None:
            _record(pending, chunks, on_chunk, first)
        pending = metrics
    _record(pending, chunks, on_chunk, epochs)
    jax.block_until_ready(states)
    run_seconds = time.perf_counter() - start

    rows, cols = _first_slots(slots, count)
    history = {
        name: np.concatenate([c[name] for c in chunks], axis=0)[:, rows, cols].T
        for name in chunks[0]
    }
    params = None
    if return_params:
        params = jax.tree.map(lambda leaf: np.asarray(leaf)[rows, cols], states.params)
    return GroupRun(
        history=history,
        updates=np.asarray(states.updates)[rows, cols],
        diverged=np.asarray(states.diverged)[rows, cols],
        diverged_at=np.asarray(states.diverged_at)[rows, cols],
        params=params,
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
    )


def _record(metrics, chunks, on_chunk, epochs_done):
    values = {name: np.asarray(value) for name, value in metrics.items()}
    chunks.append(values)
    if on_chunk is not None:
        on_chunk(epochs_done, values)
