"""``streamed``: the grouped programs, their batches streamed from host memory.

For a training set larger than the device's memory (``jaxgd.HostData``) the device holds
the states, the evaluation sets and two windows of batches, never the training set.
Each epoch:

1. a small program computes every seed's order, ``permutation(fold_in(shuffle_key_u,
   e))`` (``core.epoch.epoch_orders``: the keys and the permutation of device data),
   dispatched an epoch ahead so that it is ready when needed;
2. the host cuts the orders into batches (``data.host_batch_indices``, the rule of
   ``data.batch_indices``), gathers a window of steps' examples ``[S·U·B, ...]`` from
   the arrays with NumPy and puts them on the device (``jax.device_put``) while the
   previous window trains: dispatch is asynchronous, so the next window is gathered and
   put before anything waits for the current one;
3. the window program scans the grouped step (``grouped.grouped_step``) over the window,
   each step gathering its batch from the window's examples by position (``data.take``,
   positions ``[S, U, B]`` int32), as the grouped chunk gathers it from the training set;
4. the epoch-end program sums the epoch's per-step metrics and evaluates, as the grouped
   chunk does at its epoch's end (``core.epoch.epoch_history``).

The same step on the same batches in the same order, each batch gathered the same way:
results equal those of the grouped strategy on device data, bitwise on the CPU in the
tests (tests/test_streaming.py, and test_devices.py on four devices). The gather, and
windows of two steps or more (``HostData.windows``), are what make them bitwise (README
"Data larger than memory"): XLA:CPU marks the adds of a reduction as reassociable, and
LLVM vectorized the batch sums of the grouped step (``llvm.vector.reduce.fadd`` over 8
lanes at B = 16) but summed one lane at a time when the step read its batch as a slice
of a window argument ``[S, U, B, ...]``, or in a window of one step, whose loop XLA
removes, 1 ulp apart.
A window is at most an epoch and windows never span two, so a program compiles at most
two window lengths (the full one and the epoch's remainder), one epoch-end program and
one orders program per batch plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .._io import kill_point
from ..configs import ResolvedConfigs
from ..core.compile import CompiledFunction
from ..core.epoch import epoch_history, epoch_orders
from ..core.layout import device_bytes, to_host
from ..core.memory import compiled_bytes
from ..core.state import stop_where
from ..core.step import noise_every, scan_steps, sum_steps
from ..data import BatchPlan, HostData, host_batch_indices, take
from ..errors import InputError
from ..schedules import BatchSchedule
from .base import PlanContext
from .grouped import Grouped, GroupedProgram, GroupedSettings, grouped_step

__all__ = [
    "stream_orders",
    "stream_window",
    "stream_epoch_end",
    "stream_bytes",
    "StreamedProgram",
    "Streamed",
    "STREAMED",
]

PyTree = Any


def stream_orders(shuffle_keys, epoch, *, settings):
    """``[U, N]``: each seed's example order in ``epoch`` (``settings``: N, shuffle)."""
    num_examples, shuffle = settings
    return epoch_orders(shuffle_keys, epoch, num_examples, shuffle)


def stream_window(states, stop, rows, positions, masks, *, settings):
    """The steps of one window: its examples ``rows`` ``[S·U·B, ...]``, each step's
    ``positions`` in them ``[S, U, B]`` and ``masks`` ``[S, U, B]``.
    A window starts at a multiple of the steps between noise measurements
    (``StreamedProgram.windows``), so its steps measure where the grouped chunk's do.
    Returns the states and the per-step metrics ``[S, U, M]``."""
    states = stop_where(states, stop)
    step_all = grouped_step(settings)

    def one_step(states, xs, measure_now):
        step_positions, mask = xs
        # gathered, not sliced, so that XLA fuses and vectorizes the step's sums over the
        # batch as in the grouped chunk (the module docstring): bitwise its results
        return step_all(states, take(rows, step_positions), mask, measure_now)

    every = settings.measure_every
    return scan_steps(one_step, states, (positions, masks), noise_every=every, stacked=True)


def stream_epoch_end(states, windows, evals, *, settings):
    """The epoch's history row ``[U, M]`` from its windows' per-step metrics, in order."""
    metrics = jax.tree.map(lambda *parts: jnp.concatenate(parts), *windows)
    # summed as the grouped chunk sums its steps (core.step.sum_steps): a reduction fused
    # with the concatenation would add the windows' partial sums, rounding differently
    metrics = jax.lax.optimization_barrier(metrics)
    sums = sum_steps(metrics, noise_every=settings.measure_every)
    return epoch_history(
        states, sums, evals, problem=settings.problem, eval_batch_size=settings.eval_batch_size
    )


_ORDERS = CompiledFunction("stream_orders", stream_orders)
_WINDOW = CompiledFunction("stream_window", stream_window, donate=(0,))
_EPOCH_END = CompiledFunction("stream_epoch_end", stream_epoch_end)


class StreamedProgram(GroupedProgram):
    """A grouped program whose training data is ``HostData`` (see the module docstring).

    ``run_chunk`` returns the chunk's history rows, one ``{metric: [U, M]}`` per epoch.
    """

    compile_name = "stream_window"

    def place(self, train: HostData, evals, on_compile: Callable) -> None:
        super().place(train, evals, on_compile)
        self.orders: dict[int, Any] = {}  # epoch -> [U, N] orders, dispatched ahead
        # (epoch, its orders on the host): read back once an epoch, not once a window
        # (several processes: an all-gather each)
        self.host_orders: tuple[int, np.ndarray] | None = None
        self.prefetched: tuple[tuple[int, int], tuple] | None = None
        self.positions: dict[tuple[int, ...], jax.Array] = {}  # [S, U, B] -> arange

    def windows(self, settings: GroupedSettings) -> list[tuple[int, int]]:
        """``(first step, steps)`` of each window of an epoch."""
        seeds = len(self.layout.unique_seeds)  # windows of whole measurement groups
        return self.train.windows(settings.plan, seeds, settings.measure_every)

    def host_window(self, epoch: int, window: int) -> tuple:
        """Window ``window`` of ``epoch``: its batches and masks, gathered on the host
        and put on every device of the program (asynchronously), or with an
        ``"examples"`` mesh axis, each batch padded to the program's width and the
        window's rows split over that axis."""
        settings = self.settings_by_epoch[epoch]
        first, steps = self.windows(settings)[window]
        if self.host_orders is None or self.host_orders[0] != epoch:
            self.host_orders = (epoch, to_host(self.orders_of(epoch)))
        orders = self.host_orders[1]
        indices, masks = host_batch_indices(settings.plan, orders, first, steps)
        if settings.examples is not None:  # padded to the program's batch width
            indices, masks = settings.examples.pad(indices, masks, settings.batch_width)
        if indices.shape not in self.positions:  # the same for every window of a length
            positions = np.arange(indices.size, dtype=np.int32).reshape(indices.shape)
            self.positions[indices.shape] = self.layout.put_rows(positions)
        rows = self.train.gather(indices.reshape(-1))
        if settings.examples is None:
            rows, masks = self.layout.put_rows((rows, masks))
        else:  # each device receives 1/n of the window's examples, never the whole window
            rows, masks = settings.examples.put(rows), self.layout.put_rows(masks)
        return rows, self.positions[indices.shape], masks

    def orders_of(self, epoch: int) -> jax.Array:
        """The orders of ``epoch`` (dispatched now if not ahead); the next epoch's are
        dispatched too, and older epochs' dropped."""
        for e in (epoch, epoch + 1):
            if e < len(self.settings_by_epoch) and e not in self.orders:
                settings = self.orders_settings(self.settings_by_epoch[e])
                self.orders[e] = self.orders_executable(settings)(
                    self.shuffle_keys, self.layout.put_rows(np.int32(e))
                )
        for e in [e for e in self.orders if e < epoch]:
            del self.orders[e]
        return self.orders[epoch]

    @staticmethod
    def orders_settings(settings: GroupedSettings) -> tuple[int, bool]:
        return settings.plan.num_examples, settings.shuffle

    def next_window(self, epoch: int, window: int) -> tuple[int, int] | None:
        """The window after ``(epoch, window)``, or None at the end of the sweep."""
        if window + 1 < len(self.windows(self.settings_by_epoch[epoch])):
            return epoch, window + 1
        if epoch + 1 < len(self.settings_by_epoch):
            return epoch + 1, 0
        return None

    def take_window(self, epoch: int, window: int) -> tuple:
        """The device batches of ``(epoch, window)``: the prefetched ones, else now."""
        if self.prefetched is not None and self.prefetched[0] == (epoch, window):
            batches = self.prefetched[1]
        else:
            batches = self.host_window(epoch, window)
        self.prefetched = None
        return batches

    # -- compiling ------------------------------------------------------------------------

    def visit_programs(self, visit: Callable) -> None:
        """``visit(function, args, settings)`` for every program it runs, with abstract
        batches (``jax.ShapeDtypeStruct``: nothing allocated) shaped and placed like the
        real ones; ``visit`` returns the executable, or None to stop."""
        stop = self.layout.put(self.layout.to_slots(np.zeros(len(self.members), bool)))
        replicated = NamedSharding(self.layout.placement.mesh, PartitionSpec())
        seeds = len(self.layout.unique_seeds)

        def abstract(shape, dtype, examples=None):
            if examples is None:
                return jax.ShapeDtypeStruct(shape, dtype, sharding=replicated)
            sharding = examples.sharding(len(shape), axis=0)  # a window's rows, split
            return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

        for settings in dict.fromkeys(self.settings_by_epoch):
            orders_args = (self.shuffle_keys, abstract((), np.int32))
            if visit(_ORDERS, orders_args, self.orders_settings(settings)) is None:
                return
            windows = self.windows(settings)
            window_metrics = {}
            for steps in dict.fromkeys(steps for _, steps in windows):
                shape = (steps, seeds, settings.batch_width)
                count = math.prod(shape)
                rows = jax.tree.map(
                    lambda s, n=count, split=settings.examples: abstract(
                        (n, *s.shape), s.dtype, split
                    ),
                    self.train.example,
                )
                positions = abstract(shape, np.int32)
                args = (self.states, stop, rows, positions, abstract(shape, bool))
                executable = visit(_WINDOW, args, settings)
                if executable is None:
                    return
                window_metrics[steps] = executable.out_info[1]  # the metrics, as they come
            windows_args = tuple(window_metrics[steps] for _, steps in windows)
            if visit(_EPOCH_END, (self.states, windows_args, self.evals), settings) is None:
                return

    def compile(self, on_compile: Callable) -> None:
        self.executables_by_key = {}
        states = device_bytes(self.states)
        # (executable, bytes of its analysis counted elsewhere: the memory plan's data, or
        # less the states it does not take, which stay on the device while it runs)
        self.streamed_bytes = []

        def visit(function, args, settings):
            executable, seconds = function.compiled(*args, settings=settings)
            self.executables_by_key[(function.name, settings, _shape_key(args))] = executable
            self.add_compiled(executable, seconds, on_compile, function.name)
            if function is _WINDOW:  # the window: examples, positions, masks
                data = args[2:]
            elif function is _EPOCH_END:  # the evaluation sets
                data = args[2]
            else:  # the orders it returns, and the states meanwhile on the device
                data = executable.out_info
            counted = device_bytes(data) - (0 if function in (_WINDOW, _EPOCH_END) else states)
            self.streamed_bytes.append((executable, counted))
            return executable

        self.visit_programs(visit)
        jax.block_until_ready(self.states)

    def compiled_bytes(self, data_bytes: int) -> int | None:
        """Bytes per device beyond the data the memory plan counts (``stream_bytes`` and
        the evaluation sets): the most any of its programs holds at once with the states,
        by XLA's analysis, less its windows, evaluation sets or orders; they run one at a
        time. The orders program's sort holds temporaries the plan does not estimate (on
        the CPU 4·U·N int32, four epochs' orders). ``data_bytes``: the plan's, not needed."""
        most = 0
        for executable, data in self.streamed_bytes:
            measured = compiled_bytes(executable)
            if measured is None:
                return None
            most = max(most, measured - data)
        return most

    def needs_compile(self) -> bool:
        missing = []

        def visit(function, args, settings):
            if not function.is_cached(*args, settings=settings):
                missing.append(function.name)
                return None
            return function.compiled(*args, settings=settings)[0]  # cached: no compile

        self.visit_programs(visit)
        return bool(missing)

    def chunk_programs(self):
        return []  # compile() above compiles the window, epoch-end and orders programs

    def orders_executable(self, settings):
        return self.executables_by_key[("stream_orders", settings, ())]

    def executable(self, function: CompiledFunction, settings, args) -> jax.stages.Compiled:
        return self.executables_by_key[(function.name, settings, _shape_key(args))]

    # -- running --------------------------------------------------------------------------

    def run_chunk(self, first_epoch: int, stop: np.ndarray) -> Any:
        return self.timed(self._run_chunk, first_epoch, stop)

    def _run_chunk(self, first_epoch: int, stop: np.ndarray) -> list[dict[str, jax.Array]]:
        stop = self.layout.put(self.layout.to_slots(np.asarray(stop, bool)))
        count = self.settings_by_epoch[first_epoch].epochs_per_chunk
        rows = []
        for epoch in range(first_epoch, first_epoch + count):
            settings = self.settings_by_epoch[epoch]
            self.orders_of(epoch)  # dispatches the next epoch's orders ahead
            metrics = []
            for window in range(len(self.windows(settings))):
                batches = self.take_window(epoch, window)
                args = (self.states, stop, *batches)
                self.states, step_metrics = self.executable(_WINDOW, settings, args)(*args)
                metrics.append(step_metrics)
                kill_point("window")
                following = self.next_window(epoch, window)
                if following is not None:  # gathered while this window trains
                    self.prefetched = (following, self.host_window(*following))
            end = self.executable(_EPOCH_END, settings, (self.states, tuple(metrics), self.evals))
            rows.append(end(self.states, tuple(metrics), self.evals))
        return rows

    def unpack(self, metrics: list[dict[str, jax.Array]]) -> dict[str, np.ndarray]:
        """History rows (``[U, M]`` per epoch) to ``{metric: [K_p, E]}`` on the host."""
        host = self.timed(to_host, metrics)
        return {
            name: self.layout.unpack(np.stack([row[name] for row in host]), axis=1).T
            for name in host[0]
        }


def stream_bytes(
    train: HostData, configs: ResolvedConfigs, epochs: int, noise_measured: bool, split: int = 1
) -> int:
    """Bytes of streamed data on each device (every device holds every seed's batches,
    or 1/``split`` of each over a mesh axis "examples"): between chunks each program
    keeps the next window it prefetched and two epochs' orders ``[U, N]`` int32 (the
    current and the next, dispatched ahead); while one trains, its window is on the
    device too. Windows counted at their widest epoch."""
    total = widest = 0
    for _, size, members in configs.groups():
        seeds = np.unique(configs.seed[members]).size
        sizes = size.per_epoch(epochs) if isinstance(size, BatchSchedule) else [size]
        window = (
            max(
                train.window_nbytes(
                    BatchPlan(train.num_examples, b), seeds, noise_every(b) if noise_measured else 1
                )
                for b in set(sizes)
            )
            // split
        )
        total += window + 2 * seeds * train.num_examples * 4
        widest = max(widest, window)
    return total + widest


def _shape_key(args: tuple) -> tuple:
    """What tells apart one program's executables beyond its settings: the window
    length (the leading axis of the masks), or nothing."""
    if len(args) == 5:  # the window program: (states, stop, rows, positions, masks)
        return (int(np.shape(args[4])[0]),)
    return ()


class Streamed(Grouped):
    """The grouped plan (one program per optimizer family and batch size or schedule),
    each program streaming its batches from ``HostData``."""

    name = "streamed"
    program = StreamedProgram

    def check(self, configs: ResolvedConfigs, context: PlanContext) -> None:
        if configs.adaptive.any():
            raise InputError(
                "norm_test (adaptive batch size) cannot stream host data: it needs "
                "strategy='accumulate', which reads device data; pass the data as arrays "
                "(not jaxgd.HostData)"
            )
        super().check(configs, context)


STREAMED = Streamed()
