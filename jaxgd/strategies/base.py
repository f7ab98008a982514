"""The protocol every strategy follows: plan configs into programs; run a program chunk by
chunk; unpack what it measured into config order.

A *program* is one compiled function over some of the sweep's configs (its members). The
run loop (``jaxgd.run.loop``) drives any list of programs and never looks inside one; a
strategy never looks inside another. Adding a strategy is one module and one line in
``jaxgd.strategies.STRATEGIES``.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..configs import ResolvedConfigs
from ..core.compile import CompiledFunction
from ..core.layout import ExampleSplit, Placement, host_take, put_like, to_host
from ..core.memory import compiled_bytes
from ..core.state import DEFAULT_DIVERGENCE, TrainState, init_states
from ..core.step import Probe
from ..optimizers import Optimizer
from ..problem import Problem

__all__ = [
    "ProgramSpec",
    "PlanContext",
    "Program",
    "Final",
    "Strategy",
    "by_optimizer",
    "initial_states",
]

PyTree = Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProgramSpec:
    """The static settings every program has; a strategy's settings extend it. Being
    frozen and hashable, settings key the compiled program. ``examples``: the split of
    each batch's example axis over the mesh (``core.layout.ExampleSplit``), or None."""

    problem: Problem
    optimizer: Optimizer
    num_examples: int
    shuffle: bool = True
    drop_last: bool = False
    epochs_per_chunk: int = 1
    eval_batch_size: int = 1024
    probes: tuple[Probe, ...] = ()
    divergence: float = DEFAULT_DIVERGENCE
    examples: ExampleSplit | None = None

    def placeholder_tx(self) -> optax.GradientTransformation:
        """A transformation for ``update`` calls: inject_hyperparams reads every
        hyperparameter from the state, so the values given here are never used."""
        names = self.optimizer.hyperparameter_names
        return self.optimizer.transformation(**dict.fromkeys(names, 1.0))

    def common(self) -> dict[str, Any]:
        """These fields as keywords, to build a strategy's settings from them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ProgramSpec)}


@dataclasses.dataclass(frozen=True)
class PlanContext:
    """What a strategy plans from, besides the configs.

    Attributes:
        epochs: epochs of the sweep.
        num_train: training examples.
        specs: per optimizer, the common settings of its programs.
        micro_batch_size, max_batch_size: the accumulate strategy's knobs (None: default).
        block_for: ``block_for(members, batch_size)``, the config block of a program.
        placement: the devices the programs' slots are split over (default: all).
    """

    epochs: int
    num_train: int
    specs: Callable[[Optimizer], ProgramSpec]
    micro_batch_size: int | None
    max_batch_size: int | None
    block_for: Callable[[Sequence[int], int], int | None]
    placement: Placement | None = None


class Final(NamedTuple):
    """A program's final counters (and parameters), ``[K_p]`` in its member order."""

    updates: np.ndarray
    status: np.ndarray
    diverged_at: np.ndarray
    params: PyTree | None


def _init(seeds, hyperparams, *, settings):
    problem, optimizer = settings
    return init_states(seeds, hyperparams, problem=problem, optimizer=optimizer)


_INIT = CompiledFunction("init", _init, runs_once=True)


def initial_states(layout, hyperparams, spec: ProgramSpec, on_compile, label: str):
    """Fresh ``TrainState [U, M]`` and shuffle keys ``[U]`` for a program's layout (one
    compile per problem, optimizer family and layout shape)."""
    args = (layout.put_rows(layout.unique_seeds), layout.grid(hyperparams))
    init, seconds = _INIT.compiled(*args, settings=(spec.problem, spec.optimizer))
    if seconds:
        on_compile(f"{label} init", seconds)
    states, keys = init(*args)
    # the chunk programs are compiled for (and keep) this placement
    return (layout.put(states), layout.put_rows(keys)), seconds


class Program(abc.ABC):
    """One compiled program over the configs ``members`` (indices into the sweep).

    Life cycle: ``prepare`` compiles and initialises (from scratch, or from the states a
    ``subset`` handed over); ``run_chunk`` dispatches ``epochs_per_chunk`` epochs and
    returns device metrics; ``unpack`` brings them to the host as ``{metric: [K_p, E]}``
    in member order; ``final`` gives the counters and parameters.
    """

    def __init__(self, label: str, members: Sequence[int]):
        self.label = label
        self.members = np.asarray(members, np.int64)
        self.compile_seconds = 0.0
        self.run_seconds = 0.0
        self.executables: list[jax.stages.Compiled] = []
        self.prepared = False

    @property
    def slot_count(self) -> int:
        """Configs' slots the program computes (members plus padding)."""
        return math.prod(self.layout.shape)

    def prepare(self, train: PyTree, evals: dict[str, PyTree], on_compile: Callable) -> None:
        """Initialise and compile (``on_compile(label, seconds)`` for each new executable);
        once: the sweep's memory check may have prepared it before the run loop."""
        if self.prepared:
            return
        self.place(train, evals, on_compile)
        self.compile(on_compile)
        self.prepared = True

    @abc.abstractmethod
    def place(self, train: PyTree, evals: dict[str, PyTree], on_compile: Callable) -> None:
        """Put the states on the device: fresh (compiling the init program if needed), or
        laid out from the states a ``subset`` handed over."""

    @abc.abstractmethod
    def chunk_programs(self) -> list[tuple[int, CompiledFunction, ProgramSpec]]:
        """``(first_epoch, function, settings)`` for each distinct chunk program it runs."""

    def settings_at(self, first_epoch: int) -> ProgramSpec:
        """The static settings of the chunk that starts at ``first_epoch``."""
        return self.settings

    def compile(self, on_compile: Callable) -> None:
        """Compile (or take from the cache) every chunk program, after ``place``."""
        no_stop = np.zeros(len(self.members), bool)
        self.executables_by_settings = {}
        for first, function, settings in self.chunk_programs():
            args = self.chunk_args(first, no_stop)
            executable, seconds = function.compiled(*args, settings=settings)
            self.executables_by_settings[settings] = executable
            self.add_compiled(executable, seconds, on_compile, "chunk")
        jax.block_until_ready(self.states)

    def compiled_bytes(self, data_bytes: int) -> int | None:
        """Bytes per device its compiled programs hold beyond the sweep's data, from
        XLA's memory analysis (``core.memory.compiled_bytes``, after ``prepare``): each
        chunk program's, less ``data_bytes`` (the training and evaluation sets, arguments
        of each), summed; None where the backend gives no analysis."""
        total = 0
        for executable in self.executables:
            measured = compiled_bytes(executable)
            if measured is None:
                return None
            total += measured - data_bytes
        return total

    def needs_compile(self) -> bool:
        """Whether ``compile`` would compile anything (after ``place``)."""
        no_stop = np.zeros(len(self.members), bool)
        return not all(
            function.is_cached(*self.chunk_args(first, no_stop), settings=settings)
            for first, function, settings in self.chunk_programs()
        )

    @abc.abstractmethod
    def chunk_args(self, first_epoch: int, stop: np.ndarray) -> tuple:
        """The compiled chunk's arguments; ``self.states`` comes first."""

    def executable_at(self, first_epoch: int) -> jax.stages.Compiled:
        """The compiled chunk that runs from ``first_epoch``."""
        return self.executables_by_settings[self.settings_at(first_epoch)]

    def run_chunk(self, first_epoch: int, stop: np.ndarray) -> Any:
        """Dispatch the chunk starting at ``first_epoch``; ``stop`` ``[K_p]`` marks the
        members to stop before it (they freeze). Returns device metrics."""

        def run():
            executable = self.executable_at(first_epoch)
            self.states, metrics = executable(*self.chunk_args(first_epoch, stop))
            return metrics

        return self.timed(run)

    def unpack(self, metrics: Any) -> dict[str, np.ndarray]:
        """Chunk metrics (``[E, U, M]`` each) to ``{metric: [K_p, E]}`` on the host."""
        host = self.timed(to_host, metrics)
        return {name: self.layout.unpack(value, axis=1).T for name, value in host.items()}

    def continue_from(self, start: tuple[Any, jax.Array]) -> tuple[Any, jax.Array]:
        """Per-member ``(states [K_p], shuffle keys [K_p])`` (from ``member_states``) laid
        out on the slots and put on the device."""
        states, keys = start
        states = self.layout.put(host_take(states, self.layout.slots))
        return states, self.layout.put_rows(host_take(keys, self.layout.slots[:, 0]))

    def member_states(self, positions: np.ndarray) -> tuple[Any, jax.Array]:
        """``(states, shuffle keys)`` of ``members[positions]``, ``[len(positions)]``, on the
        host: what ``subset`` hands to the program it builds."""
        rows, cols = self.layout.rows[positions], self.layout.cols[positions]
        return host_take(self.states, rows, cols), host_take(self.shuffle_keys, rows)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything the program's future depends on, on the host: every leaf of its
        states and shuffle keys (as key data), named by position. What a checkpoint saves."""
        leaves = jax.tree.leaves((self.states, self.shuffle_keys))
        return {str(i): to_host(leaf) for i, leaf in enumerate(leaves)}

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Continue from a ``state_dict`` (after ``prepare``, which gives the structure);
        refuses arrays that do not fit."""
        leaves, treedef = jax.tree.flatten((self.states, self.shuffle_keys))
        if len(arrays) != len(leaves):
            raise ValueError(f"{self.label}: state has {len(leaves)} arrays, got {len(arrays)}")
        restored = []
        for i, leaf in enumerate(leaves):
            value = np.asarray(arrays[str(i)])
            is_key = jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
            expected = jax.eval_shape(jax.random.key_data, leaf) if is_key else leaf
            if value.shape != expected.shape or value.dtype != expected.dtype:
                raise ValueError(
                    f"{self.label}: state array {i} is {value.dtype}{list(value.shape)}, "
                    f"expected {expected.dtype}{list(expected.shape)}"
                )
            if is_key:
                value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
            restored.append(put_like(value, leaf))
        self.states, self.shuffle_keys = jax.tree.unflatten(treedef, restored)

    @abc.abstractmethod
    def subset(self, positions: np.ndarray) -> Program:
        """A program of the same kind over ``members[positions]``, continuing from their
        current states, its slot rows padded to a power of two (``core.layout.bucket``)."""

    @property
    @abc.abstractmethod
    def compile_name(self) -> str:
        """The ``CompiledFunction`` name of its chunk program (for compile estimates)."""

    def timed(self, fn: Callable, *args) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.run_seconds += time.perf_counter() - start

    def add_compiled(self, executable, seconds: float, on_compile: Callable, what: str) -> None:
        if executable not in self.executables:
            self.executables.append(executable)
        self.compile_seconds += seconds
        if seconds:
            on_compile(f"{self.label} {what}", seconds)

    @abc.abstractmethod
    def slot_train_states(self) -> list[tuple[np.ndarray | range, Any, TrainState]]:
        """``(member positions, SeedLayout, TrainState [U, M])`` for each grid of slots
        (positions an array, or a range)."""

    def final(self, return_params: bool = False) -> Final:
        """Counters (and parameters, if asked) ``[K_p]`` in member order, on the host:
        only what is asked for leaves the device."""
        grids = self.slot_train_states()
        self.timed(jax.block_until_ready, [state for _, _, state in grids])

        def gather(field: Callable[[TrainState], PyTree]) -> PyTree:
            parts = [(pos, layout.unpack(field(s))) for pos, layout, s in grids]
            if len(parts) == 1:
                return parts[0][1]
            order = np.argsort(np.concatenate([np.asarray(pos) for pos, _ in parts]), kind="stable")
            return jax.tree.map(
                lambda *leaves: np.concatenate(leaves)[order], *[p for _, p in parts]
            )

        return Final(
            updates=gather(lambda s: s.updates),
            status=gather(lambda s: s.status),
            diverged_at=gather(lambda s: s.diverged_at),
            params=gather(lambda s: s.params) if return_params else None,
        )


def by_optimizer(configs: ResolvedConfigs) -> dict[Optimizer, np.ndarray]:
    """Config indices grouped by optimizer family (with its static options), in order."""
    return {optimizer: members for optimizer, _, members in configs.groups(by_batch_size=False)}


class Strategy(Protocol):
    """How a sweep's configs become programs."""

    name: str

    def check(self, configs: ResolvedConfigs, context: PlanContext) -> None:
        """Raise ``ValueError`` (what, why, what to do) if these configs cannot run so."""

    def plan(self, configs: ResolvedConfigs, context: PlanContext) -> list[Program]:
        """The programs that train ``configs`` (each config in exactly one)."""
