"""Ahead-of-time compiled programs: cached, counted and timed apart from running.

Each ``CompiledFunction`` compiles ``fn`` once per (static settings, argument structure,
shapes, dtypes, shardings) and keeps the executable; tests assert on ``compile_count``,
never on seconds. The key includes each array's sharding, so an argument placed on other
devices is never handed an executable compiled for another placement. With a disk cache
in use, a program another process compiled is loaded by the key of its traced jaxpr,
skipping lowering and XLA (``disk_cache.program_key``).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp

from .disk_cache import compile_and_store, load_program, program_key

__all__ = ["CompiledFunction", "compile_count", "loaded_count", "mean_compile_seconds"]

_compilations: collections.Counter[str] = collections.Counter()
_loaded: collections.Counter[str] = collections.Counter()
_compile_seconds: collections.Counter[str] = collections.Counter()


def compile_count(name: str | None = None) -> int:
    """How many programs have been compiled: all of them, or those of function ``name``
    (e.g. "grouped_chunk", "nested_chunk", "accumulate_chunk", "init")."""
    if name is None:
        return sum(_compilations.values())
    return _compilations[name]


def loaded_count(name: str | None = None) -> int:
    """How many of those programs were loaded from the disk cache instead of compiled."""
    if name is None:
        return sum(_loaded.values())
    return _loaded[name]


def mean_compile_seconds(name: str) -> float | None:
    """The mean seconds a compile of function ``name`` has taken in this process."""
    count = _compilations[name]
    return _compile_seconds[name] / count if count else None


def _signature(leaf: Any) -> tuple:
    return (jnp.shape(leaf), jnp.result_type(leaf), getattr(leaf, "sharding", None))


class CompiledFunction:
    """``fn(*args, settings=...)`` compiled ahead of time, once per static ``settings``
    and argument signature.

    Args:
        name: what ``compile_count`` counts it under.
        fn: a pure function; ``settings`` is its one static (hashable) keyword.
        donate: positions of arguments whose buffers the call may reuse.
        runs_once: the program runs once per sweep (initialisation): on the CPU it is
            compiled without LLVM's optimisations, which cost more than they save there
            (measured: the MLP sweep's init compiled in 1.3 s instead of 4.6 s; the
            threefry and erf-inverse code of ``jax.random.normal`` is most of it).
    """

    def __init__(
        self, name: str, fn: Callable, *, donate: tuple[int, ...] = (), runs_once: bool = False
    ):
        self.name = name
        self._jitted = jax.jit(fn, static_argnames=("settings",), donate_argnums=donate)
        self._cache: dict[Hashable, jax.stages.Compiled] = {}
        self._runs_once = runs_once

    def _key(self, args: tuple, settings: Hashable) -> Hashable:
        leaves, treedef = jax.tree.flatten(args)
        return (settings, treedef, tuple(_signature(leaf) for leaf in leaves))

    def is_cached(self, *args: Any, settings: Hashable) -> bool:
        """Whether ``compiled`` would find these arguments' executable without compiling."""
        return self._key(args, settings) in self._cache

    def compiled(self, *args: Any, settings: Hashable) -> tuple[jax.stages.Compiled, float]:
        """The executable for these arguments and the seconds spent compiling (or loading)
        it now (0.0 when it was cached in this process)."""
        key = self._key(args, settings)
        if key in self._cache:
            return self._cache[key], 0.0
        start = time.perf_counter()
        options = None
        if self._runs_once and jax.default_backend() == "cpu":
            options = {"xla_backend_optimization_level": 0}
        traced = self._jitted.trace(*args, settings=settings)
        disk_key = program_key(traced, args, options)
        executable = None if disk_key is None else load_program(traced, disk_key)
        if executable is not None:
            _loaded[self.name] += 1
        else:
            executable = compile_and_store(traced, options, disk_key)
        seconds = time.perf_counter() - start
        _compilations[self.name] += 1
        _compile_seconds[self.name] += seconds
        self._cache[key] = executable
        return executable, seconds
