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
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax

from .core.blocks import Footprint, default_config_block, footprint, vmap_configs  # noqa: F401
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
    state: TrainState,
    grads: PyTree,
    loss: jax.Array,
    tx: optax.GradientTransformation,
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
    config_block: int | None = None

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

    zeros = jax.tree.map(
        jnp.zeros_like, jax.eval_shape(for_configs, params, take(data, indices[0]), mask[0])
    )
    totals, _ = jax.lax.scan(add_batch, zeros, (indices, mask))
    return {name: total / totals["count"] for name, total in totals["sums"].items()}


def _group_init(seeds, hyperparams, *, settings: GroupSettings):
    """States ``[U, M]`` and shuffle keys ``[U]`` from seeds ``[U]`` and hyperparameters
    ``{name: [U, M]}``: configs of one seed share the initial parameters. Only
    ``settings.problem`` and ``settings.optimizer`` are read, so every strategy's
    settings serve."""
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
    step_all = vmap_configs(step, settings.config_block)

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


class GroupRunner:
    """Runs one group chunk by chunk, so that several groups can be interleaved.

    ``prepare()`` compiles (timed apart) and initialises; ``run_chunk(first_epoch)``
    dispatches one chunk and returns its metrics as device arrays; ``finish()`` lays the
    results out in the order of the configs given. Subclasses change the program.

    Args:
        settings_by_epoch: the group's static settings for each epoch; they differ only
            when a batch-size schedule switches the batch plan at a chunk boundary.
        hyperparams: per config, the optimizer's numeric hyperparameters (complete).
        seeds: per config, the seed of its initial parameters and data order.
        train: the training set on the device; ``evals``: named evaluation sets.
    """

    program = _chunk_program

    def __init__(
        self,
        settings_by_epoch: Sequence[GroupSettings],
        hyperparams: Sequence[dict[str, float]],
        seeds: Sequence[int],
        train: PyTree,
        evals: dict[str, PyTree],
    ):
        self.settings_by_epoch = list(settings_by_epoch)
        self.settings = self.settings_by_epoch[0]
        self.count = len(hyperparams)
        self.unique_seeds, self.slots = seed_layout(seeds)
        self.hyperparams = hyperparams
        self.train, self.evals = train, evals
        self.chunks: list[dict[str, np.ndarray]] = []
        self.compile_seconds = 0.0
        self.run_seconds = 0.0

    def _grid(self, values: Sequence[dict[str, float]], dtype=None) -> dict[str, jax.Array]:
        dtype = dtype or jnp.result_type(float)
        return {
            name: jnp.asarray(
                np.array([[values[i][name] for i in row] for row in self.slots]), dtype
            )
            for name in values[0]
        }

    def _init_args(self):
        return (jnp.asarray(self.unique_seeds), self._grid(self.hyperparams))

    def _chunk_args(self, first_epoch: int) -> tuple:
        return (
            self.states,
            self.shuffle_keys,
            jnp.asarray(first_epoch, jnp.int32),
            self.train,
            self.evals,
        )

    def _settings_at(self, first_epoch: int):
        return self.settings_by_epoch[first_epoch]

    def prepare(self) -> None:
        """Compile the group's programs and initialise its state."""
        init_args = self._init_args()
        init, seconds = _init_program.compiled(*init_args, settings=self.settings)
        self.compile_seconds += seconds
        self.states, self.shuffle_keys = init(*init_args)
        self.executables = {}
        step = self.settings.epochs_per_chunk
        for first in range(0, len(self.settings_by_epoch), step):
            settings = self._settings_at(first)
            if settings not in self.executables:
                executable, seconds = self.program.compiled(
                    *self._chunk_args(first), settings=settings
                )
                self.executables[settings] = executable
                self.compile_seconds += seconds
        jax.block_until_ready(self.states)

    def run_chunk(self, first_epoch: int) -> dict[str, jax.Array]:
        start = time.perf_counter()
        executable = self.executables[self._settings_at(first_epoch)]
        self.states, metrics = executable(*self._chunk_args(first_epoch))
        self.run_seconds += time.perf_counter() - start
        return metrics

    def record(self, metrics: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        """Bring a chunk's metrics to the host (waits for that chunk)."""
        start = time.perf_counter()
        values = {name: np.asarray(value) for name, value in metrics.items()}
        self.run_seconds += time.perf_counter() - start
        self.chunks.append(values)
        return values

    def finish(self, return_params: bool = False) -> GroupRun:
        start = time.perf_counter()
        jax.block_until_ready(self.states)
        self.run_seconds += time.perf_counter() - start
        rows, cols = _first_slots(self.slots, self.count)
        history = {
            name: np.concatenate([c[name] for c in self.chunks], axis=0)[:, rows, cols].T
            for name in self.chunks[0]
        }
        train = self.states if isinstance(self.states, TrainState) else self.states.train
        params = None
        if return_params:
            params = jax.tree.map(lambda leaf: np.asarray(leaf)[rows, cols], train.params)
        return GroupRun(
            history=history,
            updates=np.asarray(train.updates)[rows, cols],
            diverged=np.asarray(train.diverged)[rows, cols],
            diverged_at=np.asarray(train.diverged_at)[rows, cols],
            params=params,
            compile_seconds=self.compile_seconds,
            run_seconds=self.run_seconds,
        )


def run_interleaved(
    runners: Sequence[GroupRunner],
    epochs: int,
    epochs_per_chunk: int,
    on_chunk: Callable[[int, int, dict[str, np.ndarray]], None] | None = None,
) -> None:
    """Run every runner chunk by chunk, all groups through epoch e before any starts e+1,
    so that between chunks every config has seen the same number of examples.

    A chunk's metrics are read only after the next chunk is dispatched, so the device
    does not wait for the host. ``on_chunk(group, epochs_done, metrics)`` is called for
    each chunk read.
    """
    pending: list[tuple[int, int, dict]] = []

    def drain():
        for group, done, metrics in pending:
            values = runners[group].record(metrics)
            if on_chunk is not None:
                on_chunk(group, done, values)
        pending.clear()

    for first in range(0, epochs, epochs_per_chunk):
        dispatched = [
            (g, first + epochs_per_chunk, r.run_chunk(first)) for g, r in enumerate(runners)
        ]
        drain()
        pending.extend(dispatched)
    drain()


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
    """Train every config of one group for ``epochs`` epochs (see ``GroupRunner``)."""
    if epochs % settings.epochs_per_chunk:
        raise ValueError(
            f"epochs={epochs} is not a multiple of epochs_per_chunk={settings.epochs_per_chunk}"
        )
    runner = GroupRunner([settings] * epochs, hyperparams, seeds, train, evals)
    runner.prepare()
    run_interleaved(
        [runner],
        epochs,
        settings.epochs_per_chunk,
        None if on_chunk is None else (lambda _, done, values: on_chunk(done, values)),
    )
    return runner.finish(return_params)
