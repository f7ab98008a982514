"""The run loop: drive any list of programs chunk by chunk, report in config order.

Every program runs chunk c (epochs ``c·E .. c·E + E - 1``) before any runs chunk c+1, so
between chunks every config has trained the same epochs. After each chunk every callback
gets one ``ChunkReport``; the keep masks they return stop configs for good. A program
whose configs still training fall to half or less of its configs can be rebuilt with
those alone (``Program.subset``; its slot rows padded to a power of two, so a few
compiled shapes serve every rung): stopped configs then stop costing compute
(``SweepOptions.rebuild`` says when).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .._io import kill_point
from ..core.compile import mean_compile_seconds
from ..core.state import RUNNING, STATUS_NAMES, STOPPED
from ..results import names_of
from ..strategies.base import Final, Program
from .checkpoint import Checkpointer
from .report import Callback, ChunkReport

__all__ = ["LoopResult", "run_loop", "group_record", "status_names"]

PyTree = Any

# History entries that count (updates, the batch size, the status code): they stay at
# their last value after a config stops, where measured metrics turn NaN.
COUNTERS = ("updates", "batch_size", "status")

# "auto" rebuilds when the projected saving is at least this many compiles: a rebuild
# that would only break even is not worth its cost in reproducibility (the survivors then
# agree with the unrebuilt sweep to float rounding, not bitwise). Measured on the digits
# halving sweep (benchmarks/successive_halving.py): the rung-3 rebuild saved 1.2 s of
# running for a 1.15 s compile, and its rounding moved the best val_loss by 4.5%.
REBUILD_MARGIN = 2.0


@dataclasses.dataclass
class LoopResult:
    """What the loop hands back, in config order.

    Attributes:
        history: ``{metric: [K, epochs]}``, examples_seen included.
        status_codes: ``[K]`` int8 ``core.state`` codes (0 running, 1 diverged,
            2 stopped; ``status_names`` gives the names); ``stopped_epoch`` ``[K]`` (-1:
            not stopped).
        updates, diverged_at: ``[K]``; params: ``[K, ...]`` leaves, if asked for.
        programs: every program that ran, rebuilt ones included, in the order built
            (since the resume, if the sweep resumed).
        groups: per program, in the order built (before a resume too), its
            ``group_record`` without ``configs``: those are ``group_members``, arrays of
            config indices (a million Python ints are built only if a result's
            ``groups`` is read).
        report: the last report (None without callbacks or checkpoints: nobody reads it).
    """

    history: dict[str, np.ndarray]
    status_codes: np.ndarray
    stopped_epoch: np.ndarray
    updates: np.ndarray
    diverged_at: np.ndarray
    params: PyTree | None
    programs: list[Program]
    report: ChunkReport | None
    groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    group_members: list[np.ndarray] = dataclasses.field(default_factory=list)


class _Run:
    """The loop's bookkeeping: history in config order, stops, finals of retired configs."""

    def __init__(
        self,
        programs,
        *,
        epochs,
        epochs_per_chunk,
        configs,
        examples_per_epoch,
        batch_sizes,
        start,
        reports=True,
    ):
        self.count, self.epochs = len(configs), epochs
        self.configs = configs
        self.examples_per_epoch = np.asarray(examples_per_epoch, np.int64)
        # Without reports nobody reads the counters as floats (NaN for "not yet"): they
        # are kept as the result's integers, and the status history is not kept at all.
        self.reports = reports
        if reports:
            sizes = np.array(batch_sizes, np.float64)
        else:  # (a read-only view when every config has one batch size: kept, no copy)
            sizes = np.asarray(batch_sizes, np.int64)
            sizes = sizes if not sizes.flags.writeable else sizes.copy()
        self.history: dict[str, np.ndarray] = {"batch_size": sizes}
        self.stopped = np.zeros(self.count, bool)
        # -1 each, a read-only view until a config stops (``stop``)
        self.stopped_epoch = np.broadcast_to(np.int64(-1), (self.count,))
        self.finals: list[tuple[np.ndarray, Final]] = []
        self.live = list(programs)
        self.start = start
        self.epochs_done = 0
        self.epochs_per_chunk = epochs_per_chunk
        self.chunks_run: dict[Program, int] = {program: 0 for program in programs}
        # programs whose rebuild did not pay, with the running count then
        self.declined: dict[Program, int] = {}
        # each program's planned ancestor and its members' positions there: how a
        # resumed sweep rebuilds the same program (``restore``)
        # (None: all of them, in order)
        self.origin: dict[Program, tuple[int, np.ndarray | None]] = {
            program: (i, None) for i, program in enumerate(programs)
        }
        # in build order: programs, and the groups of those that ran before a resume
        # and were gone by then (``group_record``)
        self.built: list[Program | dict[str, Any]] = list(programs)
        self.whole: dict[Program, bool] = {}

    def record(self, program: Program, first: int, metrics) -> None:
        values = program.unpack(metrics)
        span = slice(first, first + next(iter(values.values())).shape[1])
        members = program.members
        whole = self.covers_all(program)
        if whole:
            members = slice(None)  # assigned without a scatter
        was_stopped = self.stopped[members] if self.stopped.any() else None
        for name, value in values.items():
            if name == "status" and not self.reports:
                continue  # (the result's status comes from the programs' final states)
            if was_stopped is not None and name not in COUNTERS:
                value = value.astype(np.float64)
                value[was_stopped] = np.nan
            integer = name in COUNTERS and not self.reports and value.dtype.kind in "iu"
            if name not in self.history and whole and span == slice(0, self.epochs):
                # every config, every epoch: the history is this chunk's (converted once)
                self.history[name] = np.array(value, np.int64 if integer else np.float64)
                continue
            if name not in self.history:
                self.history[name] = np.full((self.count, self.epochs), np.nan)
            elif self.history[name].dtype.kind == "i" and not integer:
                self.history[name] = self.history[name].astype(np.float64)
            elif not self.history[name].flags.writeable:  # a view of the plan: copied now
                self.history[name] = np.array(self.history[name])
            self.history[name][members, span] = value

    def settle(self, epochs_done: int) -> None:
        """The history complete through ``epochs_done``: the counters of configs retired
        with a rebuilt program carried on."""
        self.epochs_done = epochs_done
        done = slice(0, epochs_done)
        for name in COUNTERS:
            if name in self.history and np.isnan(self.history[name][:, done]).any():
                self.history[name][:, done] = _forward_fill(self.history[name][:, done])

    def covers_all(self, program: Program) -> bool:
        """Whether the program trains every config, in order (checked once a program)."""
        if program not in self.whole:
            self.whole[program] = _every_config(program.members, self.count)
        return self.whole[program]

    def stopped_of(self, program: Program) -> np.ndarray:
        """``[K_p]`` whether each of the program's configs has stopped (a copy: the
        device may read it after the host has stopped more)."""
        if self.covers_all(program):
            return self.stopped.copy()  # (bytes, not a gather through a million indices)
        return self.stopped[program.members]

    def positions_in_root(self, program: Program) -> tuple[int, np.ndarray]:
        """``(planned ancestor, positions of the program's members in its members)``."""
        root, positions = self.origin[program]
        return root, np.arange(program.members.size) if positions is None else positions

    def report(self, epochs_done: int) -> ChunkReport:
        self.settle(epochs_done)
        done = slice(0, epochs_done)
        codes = np.nan_to_num(self.history["status"][:, epochs_done - 1], nan=STOPPED)
        codes[self.stopped] = STOPPED
        status = status_names(codes.astype(np.int8))
        seen = _cumulative(self.examples_per_epoch[:, done])
        examples_seen = seen[:, -1]
        if self.stopped.any():
            trained = np.where(self.stopped, self.stopped_epoch, epochs_done)
            examples_seen = np.where(
                trained > 0, seen[np.arange(self.count), np.maximum(trained - 1, 0)], 0
            )
        history = {
            name: values[:, done].copy()
            for name, values in self.history.items()
            if name != "status"
        }
        return ChunkReport(
            epochs_done=epochs_done,
            epochs=self.epochs,
            history=history,
            examples_seen=examples_seen,
            status=status,
            stopped_epoch=self.stopped_epoch.copy(),
            seconds=time.perf_counter() - self.start,
            configs=self.configs,
        )

    def stop(self, keep: np.ndarray, report: ChunkReport) -> None:
        newly = (report.status == STATUS_NAMES[RUNNING]) & ~keep
        if not self.stopped_epoch.flags.writeable:
            self.stopped_epoch = np.array(self.stopped_epoch)
        self.stopped_epoch[newly] = report.epochs_done
        self.stopped |= newly

    def rebuild(self, train, evals, on_compile, return_params: bool, policy) -> None:
        """Retire programs with nothing left to train; rebuild those whose running configs
        fell to half or less (with ``policy="auto"``: only if it pays, ``_pays``)."""
        live = []
        for program in self.live:
            alive = np.flatnonzero(~self.stopped[program.members])
            if 2 * alive.size > program.members.size or self.declined.get(program) == alive.size:
                live.append(program)
                continue
            rebuilt = None
            if alive.size:
                rebuilt = program.subset(alive)
                rebuilt.place(train, evals, on_compile)
                if policy == "auto" and not self._pays(program, rebuilt):
                    self.declined[program] = alive.size
                    live.append(program)
                    continue
            final = program.final(return_params)
            dropped = np.setdiff1d(np.arange(program.members.size), alive)
            self.finals.append((program.members[dropped], _take(final, dropped)))
            if rebuilt is not None:
                rebuilt.compile(on_compile)
                root, positions = self.positions_in_root(program)
                self.origin[rebuilt] = (root, positions[alive])
                self.chunks_run[rebuilt] = 0
                live.append(rebuilt)
                self.built.append(rebuilt)
        self.live = live

    def state_dict(self, callbacks: Sequence[Callback]) -> tuple[dict[str, np.ndarray], dict]:
        """The loop's state between chunks as ``(arrays, document)``: histories, stops,
        the finals of retired configs, every live program's state and how to rebuild it,
        the callbacks' state. What a checkpoint holds (``Checkpointer.save``)."""
        arrays = {f"history/{name}": values for name, values in self.history.items()}
        arrays["stopped"] = self.stopped
        arrays["stopped_epoch"] = np.ascontiguousarray(self.stopped_epoch)
        for name in Final._fields:
            parts = [getattr(final, name) for _, final in self.finals]
            if name == "params":
                for j, part in enumerate(parts):
                    for i, leaf in enumerate(jax.tree.leaves(part)):
                        arrays[f"finals/params/{j}/{i}"] = leaf
                continue
            arrays[f"finals/{name}"] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        arrays["finals/members"] = (
            np.concatenate([m for m, _ in self.finals]) if self.finals else np.zeros(0, np.int64)
        )
        programs = []
        for p, program in enumerate(self.live):
            root, positions = self.positions_in_root(program)
            arrays[f"programs/{p}/positions"] = positions
            for name, value in program.state_dict().items():
                arrays[f"programs/{p}/state/{name}"] = value
            programs.append(
                {
                    "root": root,
                    "label": program.label,
                    "chunks_run": self.chunks_run[program],
                    "declined": self.declined.get(program, -1),
                    "run_seconds": program.run_seconds,
                    "compile_seconds": program.compile_seconds,
                }
            )
        document = {
            "epochs_done": self.epochs_done,
            "history": list(self.history),
            "programs": programs,
            "finals_sizes": [len(m) for m, _ in self.finals],
            "finals_params": [final.params is not None for _, final in self.finals],
            "built": [
                {"live": self.live.index(p)} if p in self.live else group_record(p)
                for p in self.built
            ],
            "callbacks": [callback.state_dict() for callback in callbacks],
        }
        return arrays, document

    def restore(self, saved, planned, train, evals, on_compile, callbacks) -> ChunkReport:
        """Continue from a checkpoint: rebuild its live programs from the planned ones
        (``subset`` of the same positions: the same layout, widths and compiled shapes),
        load their states, the loop's bookkeeping and the callbacks' state."""
        arrays, document = saved.arrays, saved.document
        self.history = {name: arrays[f"history/{name}"].copy() for name in document["history"]}
        self.stopped = arrays["stopped"].astype(bool)
        self.stopped_epoch = arrays["stopped_epoch"].astype(np.int64)
        self.finals = []
        members = np.split(arrays["finals/members"], np.cumsum(document["finals_sizes"])[:-1])
        fields = {
            name: np.split(arrays[f"finals/{name}"], np.cumsum(document["finals_sizes"])[:-1])
            for name in ("updates", "status", "diverged_at")
        }
        params_tree = None
        self.live, self.built, self.chunks_run, self.declined, self.origin = [], [], {}, {}, {}
        for p, record in enumerate(document["programs"]):
            root = planned[record["root"]]
            positions = arrays[f"programs/{p}/positions"].astype(np.int64)
            if positions.size == root.members.size:
                program = root
                program.prepare(train, evals, on_compile)
            else:
                root.place(train, evals, on_compile)
                program = root.subset(positions)
                program.prepare(train, evals, on_compile)
            prefix = f"programs/{p}/state/"
            program.load_state_dict(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )
            program.run_seconds = record["run_seconds"]
            program.compile_seconds += record["compile_seconds"]
            self.origin[program] = (record["root"], positions)
            self.chunks_run[program] = record["chunks_run"]
            if record["declined"] >= 0:
                self.declined[program] = record["declined"]
            self.live.append(program)
        for j, with_params in enumerate(document["finals_params"]):
            params = None
            if with_params:
                if params_tree is None:
                    holder = self.live[0] if self.live else planned[0]
                    if not self.live:
                        holder.place(train, evals, on_compile)
                    params_tree = jax.tree.structure(holder.slot_train_states()[0][2].params)
                leaves = [arrays[f"finals/params/{j}/{i}"] for i in range(params_tree.num_leaves)]
                params = jax.tree.unflatten(params_tree, leaves)
            self.finals.append(
                (
                    members[j],
                    Final(
                        fields["updates"][j], fields["status"][j], fields["diverged_at"][j], params
                    ),
                )
            )
        self.built = [
            self.live[entry["live"]] if "live" in entry else entry for entry in document["built"]
        ]
        for callback, state in zip(callbacks, document["callbacks"]):
            callback.load_state_dict(state)
        report = self.report(document["epochs_done"])
        return dataclasses.replace(
            report,
            status=np.where(self.stopped, STATUS_NAMES[STOPPED], report.status),
            stopped_epoch=self.stopped_epoch.copy(),
        )

    def _pays(self, program: Program, rebuilt: Program) -> bool:
        """Whether the run time a rebuild saves exceeds ``REBUILD_MARGIN`` times the
        compile it costs: the seconds per chunk measured so far, times the chunks left,
        times the fraction of slots dropped, against nothing when its programs are
        compiled already (by an earlier rung or sweep), else the mean compile of such a
        program in this process."""
        chunks = self.chunks_run[program]
        compile_seconds = mean_compile_seconds(program.compile_name)
        if not chunks or compile_seconds is None or not rebuilt.needs_compile():
            return True
        left = (self.epochs - self.epochs_done) / self.epochs_per_chunk
        saved = 1 - rebuilt.slot_count / program.slot_count
        return program.run_seconds / chunks * left * saved > REBUILD_MARGIN * compile_seconds


def group_record(program: Program | dict[str, Any], configs: bool = True) -> dict[str, Any]:
    """What ``SweepResult.groups`` says of a program (a record already: itself); without
    ``configs``, its ``configs`` entry is None (its members stay an array)."""
    if isinstance(program, dict):
        return program
    return {
        "program": program.label,
        "configs": program.members.tolist() if configs else None,
        "slots": program.slot_count,
        "compile_seconds": program.compile_seconds,
        "seconds": program.run_seconds,
    }


def _every_config(members: np.ndarray, count: int) -> bool:
    """Whether ``members`` is ``0, 1, ..., count - 1`` (checked without a new index
    array: strictly increasing, count of them, from 0)."""
    return bool(
        members.size == count
        and count
        and members[0] == 0
        and members[-1] == count - 1
        and (members[1:] > members[:-1]).all()
    )


def status_names(codes: np.ndarray) -> np.ndarray:
    """Status codes as names (one fill when every config has the same status)."""
    return names_of(codes, STATUS_NAMES)


def _cumulative(per_epoch: np.ndarray) -> np.ndarray:
    """``np.cumsum(per_epoch, axis=1)`` (a new array); one epoch is a copy (a cumsum
    along a row of one loops once per config)."""
    if per_epoch.shape[1] == 1:
        return per_epoch.copy()
    return np.cumsum(per_epoch, axis=1)


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """Each NaN replaced by the last number before it in its row."""
    index = np.where(np.isnan(values), 0, np.arange(values.shape[1]))
    index = np.maximum.accumulate(index, axis=1)
    return values[np.arange(values.shape[0])[:, None], index]


def _take(final: Final, positions: np.ndarray) -> Final:
    params = None
    if final.params is not None:
        params = jax.tree.map(lambda leaf: leaf[positions], final.params)
    return Final(
        final.updates[positions], final.status[positions], final.diverged_at[positions], params
    )


def _keep_mask(callback: Callback, mask: Any, count: int) -> np.ndarray:
    keep = np.asarray(mask)
    if keep.shape != (count,) or keep.dtype != bool:
        raise ValueError(
            f"{type(callback).__name__}.on_chunk returned a {keep.dtype} array of shape "
            f"{keep.shape}; it must return None or a bool mask of shape ({count},), one "
            "keep-training flag per config"
        )
    return keep


def run_loop(
    programs: Sequence[Program],
    *,
    epochs: int,
    epochs_per_chunk: int,
    configs: list[dict[str, Any]],
    examples_per_epoch: np.ndarray,
    batch_sizes: np.ndarray,
    train: PyTree,
    evals: dict[str, PyTree],
    callbacks: Sequence[Callback] = (),
    return_params: bool = False,
    rebuild: bool | str = "auto",
    start: float | None = None,
    checkpoint: Checkpointer | None = None,
) -> LoopResult:
    """Compile and run ``programs`` for ``epochs`` epochs, reporting to ``callbacks``.

    Args:
        programs: from the strategies' ``plan``; together they train each config once.
        epochs, epochs_per_chunk: the sweep's length and the epochs per compiled call.
        configs: the configs' rows, for reports.
        examples_per_epoch, batch_sizes: ``[K, epochs]`` planned per config.
        train, evals: the data on the device.
        callbacks: called as ``Callback`` documents; their masks stop configs.
            ``on_sweep_begin`` comes first, also when resuming (then ``load_state_dict``
            follows it, restoring what they had learned).
        return_params: gather the final parameters.
        rebuild: rebuild a program with its running configs alone once half have stopped:
            True, False, or "auto" (when the run time saved exceeds twice a compile).
        start: ``time.perf_counter()`` at the sweep's start (reports count from it).
        checkpoint: writes the loop's state after chunks (``Checkpointer.due``); with
            ``resume``, the loop continues from its latest good checkpoint.
    """
    start = time.perf_counter() if start is None else start
    # Reports are built for callbacks and checkpoints only (at a million configs a
    # report is a copy of every history and a name per config).
    reports = bool(callbacks) or checkpoint is not None
    run = _Run(
        programs,
        epochs=epochs,
        epochs_per_chunk=epochs_per_chunk,
        configs=configs,
        examples_per_epoch=examples_per_epoch,
        batch_sizes=batch_sizes,
        start=start,
        reports=reports,
    )

    def on_compile(label, seconds):
        for callback in callbacks:
            callback.on_compile(label, seconds)

    report = None
    try:
        # Once per sweep, resumed or not, before anything compiles or the checkpoint
        # folder is claimed: callbacks check their settings against the sweep here. A
        # resumed sweep then hands the callbacks their saved state (``load_state_dict``).
        for callback in callbacks:
            callback.on_sweep_begin(configs, epochs)
        if checkpoint is not None:
            checkpoint.open()
        saved = checkpoint.latest() if checkpoint is not None and checkpoint.resume else None
        begin = 0
        if saved is not None:
            report = run.restore(saved, programs, train, evals, on_compile, callbacks)
            begin = report.epochs_done
        else:
            for program in programs:
                program.prepare(train, evals, on_compile)
        # Without a callback that stops configs (or a checkpoint, which needs the states
        # and the history of the same epoch), a chunk's metrics are read while the next
        # chunk runs, so the device never waits for the host.
        overlap = checkpoint is None and not any(c.stops_configs for c in callbacks)
        pending: list[tuple[Program, int, Any]] = []
        for first in range(begin, epochs, epochs_per_chunk):
            dispatched = [(p, first, p.run_chunk(first, run.stopped_of(p))) for p in run.live]
            for program in run.live:
                run.chunks_run[program] += 1
            kill_point("chunk")
            if overlap and first:
                report = _read(run, pending, callbacks, first, reports)
            pending = dispatched
            if not overlap:
                report = _read(run, pending, callbacks, first + epochs_per_chunk, reports)
                pending = []
                if rebuild and first + epochs_per_chunk < epochs:
                    run.rebuild(train, evals, on_compile, return_params, rebuild)
                if checkpoint is not None and checkpoint.due(report.epochs_done, epochs):
                    checkpoint.save(report.epochs_done, *run.state_dict(callbacks))
        if pending:
            report = _read(run, pending, callbacks, epochs, reports)
        for program in run.live:
            run.finals.append((program.members, program.final(return_params)))
    except BaseException as error:
        for callback in callbacks:
            callback.on_sweep_end(report, error)
        raise
    for callback in callbacks:
        callback.on_sweep_end(report, None)
    return _assemble(run, report, epochs)


def _read(run: _Run, pending, callbacks, epochs_done: int, reports: bool) -> ChunkReport | None:
    for program, first, metrics in pending:
        run.record(program, first, metrics)
    if not reports:
        run.settle(epochs_done)
        return None
    report = run.report(epochs_done)
    keep = np.ones(run.count, bool)
    for callback in callbacks:
        mask = callback.on_chunk(report)
        if mask is not None:
            keep &= _keep_mask(callback, mask, run.count)
    if not keep.all():
        run.stop(keep, report)
        report = dataclasses.replace(
            report,
            status=np.where(run.stopped, STATUS_NAMES[STOPPED], report.status),
            stopped_epoch=run.stopped_epoch.copy(),
        )
    return report


def _assemble(run: _Run, report: ChunkReport | None, epochs: int) -> LoopResult:
    count = run.count
    params = None
    finals = run.finals
    if len(finals) == 1 and finals[0][1].params is None and _every_config(finals[0][0], count):
        final = finals[0][1]  # one program of every config: its counters, converted once
        updates, codes = np.array(final.updates, np.int64), np.array(final.status, np.int8)
        diverged_at = np.array(final.diverged_at, np.int64)
        finals = []
    else:
        updates = np.zeros(count, np.int64)
        codes = np.zeros(count, np.int8)
        diverged_at = np.full(count, -1, np.int64)
    for members, final in finals:
        if _every_config(members, count):
            members = slice(None)  # one program of every config: no scatter
        updates[members] = final.updates
        codes[members] = final.status
        diverged_at[members] = final.diverged_at
        if final.params is not None:
            if params is None:
                params = jax.tree.map(
                    lambda leaf: np.zeros((count,) + leaf.shape[1:], leaf.dtype), final.params
                )
            for out, leaf in zip(jax.tree.leaves(params), jax.tree.leaves(final.params)):
                out[members] = leaf
    # the run is over: its arrays are handed over, not copied
    history = {name: values for name, values in run.history.items() if name != "status"}
    per_epoch = run.examples_per_epoch
    if run.stopped.any():
        trained = np.where(run.stopped, run.stopped_epoch, epochs)
        per_epoch = np.where(np.arange(epochs) < trained[:, None], per_epoch, 0)
    if per_epoch.ndim == 2 and per_epoch.strides[0] == 0:  # one row for every config
        seen = np.broadcast_to(_cumulative(per_epoch[:1]), per_epoch.shape)  # a view
    else:
        seen = _cumulative(per_epoch)
    history["examples_seen"] = seen
    for name in ("updates", "batch_size"):
        values = history[name]
        if values.dtype.kind == "f" and np.isnan(values).any():
            values = np.nan_to_num(values)
        history[name] = values.astype(np.int64, copy=False)
    # A config stopped just before its program was rebuilt left before the device saw
    # the stop: the host's record is the one that holds.
    if run.stopped.any():
        codes[run.stopped] = STOPPED
    groups = [group_record(p, configs=False) for p in run.built]
    return LoopResult(
        history=history,
        status_codes=codes,
        stopped_epoch=run.stopped_epoch,
        updates=updates,
        diverged_at=diverged_at,
        params=params,
        programs=[p for p in run.built if isinstance(p, Program)],
        report=report,
        groups=[{**group, "configs": None} for group in groups],
        group_members=[
            p.members if isinstance(p, Program) else np.asarray(p["configs"], np.int64)
            for p in run.built
        ],
    )
