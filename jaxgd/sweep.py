"""``jaxgd.sweep``: validate, plan, loop, assemble.

The configs are resolved and checked before anything compiles; a strategy plans them
into programs (``jaxgd.strategies``); the run loop drives the programs chunk by chunk and
reports to callbacks (``jaxgd.run``); the result comes back in the order of the space.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from . import validate
from .columns import most_repeated
from .configs import ResolvedConfigs, resolve_configs
from .core.blocks import default_config_block, footprint
from .core.disk_cache import use_disk_cache
from .core.layout import Placement, device_bytes, to_host
from .core.memory import (
    MemoryPlan,
    config_bytes,
    correct_slices,
    default_budget,
    plan_slices,
)
from .core.state import DEFAULT_DIVERGENCE, DIVERGED, STATUS_NAMES
from .core.step import GradientNoise, measurement_probes
from .data import HostData, as_dataset, example_of, num_examples, split
from .errors import InputError
from .optimizers import Optimizer
from .options import SweepOptions
from .persist import encode, run_meta, strict_json
from .problem import Problem
from .results import GroupRecords, StatusNames, SweepResult
from .run.checkpoint import Checkpointer
from .run.loop import LoopResult, run_loop
from .run.report import Callback
from .schedules import BatchSchedule
from .space import Space
from .strategies import STRATEGIES, PlanContext, ProgramSpec, choose_strategy
from .strategies.streamed import stream_bytes

__all__ = ["sweep"]

PyTree = Any


def _evaluation_sets(data, validation, split_seed, eval_data):
    if isinstance(validation, float):
        train, val = split(data, validation, split_seed)
        evals = {"val": val}
    elif validation is None:
        train, evals = data, {}
    else:
        train, evals = data, {"val": validation}
    if eval_data is not None:
        evals["eval"] = eval_data
    return train, evals


def sweep(
    problem: Problem,
    data: PyTree,
    *,
    space: Space | list[Mapping[str, Any]],
    epochs: int,
    optimizer: str | Callable | Optimizer = "sgd",
    batch_size: int | None = None,
    validation: float | PyTree | None = 0.2,
    split_seed: int = 0,
    eval_data: PyTree | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    return_params: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    divergence: float = DEFAULT_DIVERGENCE,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    options: SweepOptions | None = None,
    measure: Sequence[str] = (),
) -> SweepResult:
    """Train every config of ``space`` on ``data`` for ``epochs`` epochs.

    Args:
        problem: the model and its per-example loss (``jaxgd.Problem``).
        data: the dataset, a pytree of arrays with a leading example axis, or
            ``jaxgd.HostData`` to keep it in host memory (memory-mapped ``.npy`` files
            included) and stream its batches to the device (README, "Data larger than
            memory").
        space: the configs, e.g. ``jaxgd.grid(learning_rate=[...], momentum=[...])``.
        epochs: passes over the training set.
        optimizer: the default optimizer family for configs that do not name one.
        batch_size: the default for configs that do not set one.
        validation: a fraction of ``data`` held out (split with ``split_seed``), a
            separate validation set, or None.
        eval_data: an optional further set, reported as ``eval_*``.
        shuffle: a new permutation every epoch (from the config's seed), else in order.
        drop_last: drop the partial last batch instead of masking it.
        return_params: keep the final parameters (leading config axis) in the result.
        callbacks: ``jaxgd.Callback`` objects; after each chunk each gets a
            ``jaxgd.ChunkReport`` in config order and may stop configs
            (``jaxgd.EarlyStopping``, ``jaxgd.SuccessiveHalving``).
        progress: shorthand for adding ``jaxgd.Progress()`` (needs ``jaxgd[progress]``
            on a terminal).
        divergence: a config whose loss exceeds this many times the absolute value of
            its first loss is marked diverged and frozen, as one whose loss is not finite
            (``float("inf")``: only non-finite losses).
        checkpoint_dir: a folder for checkpoints of the whole sweep state, written at
            chunk boundaries (``SweepOptions.checkpoint_every``); a folder holding another
            run is refused unless ``resume`` or ``overwrite``.
        resume: continue from the last good checkpoint in ``checkpoint_dir`` (from the
            start if it has none); refused if it was written by a different sweep.
        overwrite: remove the earlier run's files from ``checkpoint_dir`` first.
        options: engine settings (``jaxgd.SweepOptions``): strategy, chunking, blocks,
            checkpoint frequency and format.
        measure: per-step measurements added to the history; ``["noise_scale"]`` adds
            ``grad_sq_norm``, ``grad_trace`` and ``b_simple`` per epoch (``jaxgd.science``).

    A config's ``batch_size`` may be a ``BatchSchedule``; a config's ``norm_test`` key
    (θ) turns on the adaptive batch size of Byrd et al. 2012 for it.

    Returns:
        A ``SweepResult`` in the order of the space's configs.

    Raises:
        jaxgd.InputError: bad input, before anything compiles or is written (the
            README's "Errors" section lists every case).

    Example:
        >>> import jaxgd
        >>> problem, data = jaxgd.problems.linear_regression()
        >>> result = jaxgd.sweep(problem, data, space=jaxgd.grid(learning_rate=[0.1, 0.01]),
        ...                      batch_size=10, epochs=5, validation=None)
        >>> result.history["train_loss"].shape
        (2, 5)
    """
    start = time.perf_counter()
    problem = validate.check_problem(problem)
    options = SweepOptions() if options is None else options
    if not isinstance(options, SweepOptions):
        raise InputError(f"options={options!r}: pass jaxgd.SweepOptions(...)")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise InputError(f"epochs={epochs!r}: must be a positive integer, e.g. epochs=10")
    epochs = int(epochs)
    if epochs % options.epochs_per_chunk:
        raise InputError(
            f"epochs_per_chunk={options.epochs_per_chunk!r}: must be a positive divisor of "
            f"epochs={epochs}"
        )
    probes = measurement_probes(measure)
    if (
        isinstance(divergence, bool)
        or not isinstance(divergence, (int, float, np.number))
        or not divergence > 1
    ):
        raise InputError(
            f"divergence={divergence!r}: must be a number > 1, the factor over a config's "
            "first loss at which it counts as diverged (default 1e3; float('inf') for "
            "non-finite losses only)"
        )
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise InputError(
                f"callbacks: {callback!r} is not a jaxgd.Callback; subclass jaxgd.Callback "
                "and override on_chunk(report)"
            )
    if progress:
        from .run.callbacks import Progress

        callbacks.append(Progress())
    streamed = isinstance(data, HostData) or options.strategy == "streamed"
    if streamed and options.strategy not in ("auto", "grouped", "streamed"):
        raise InputError(
            f"strategy={options.strategy!r} cannot stream jaxgd.HostData (its programs read "
            "the training set on the device); use strategy='auto' or 'streamed', or pass "
            "the data as arrays"
        )
    validation = validate.check_validation(validation)
    if not isinstance(data, HostData):
        data = validate.as_arrays("training", data)
    validate.check_dataset("training", data, problem)
    if streamed and not isinstance(data, HostData):
        data = HostData(jax.tree.map(np.asarray, data))
    if validation is not None and not isinstance(validation, float):
        validation = validate.as_arrays("validation", validation)
        validate.check_dataset("validation", validation, problem)
    if eval_data is not None:
        eval_data = validate.as_arrays("eval", eval_data)
        validate.check_dataset("eval", eval_data, problem)
    train, evals = _evaluation_sets(data, validation, split_seed, eval_data)
    num_train = num_examples(train)
    configs = resolve_configs(space, optimizer, batch_size, num_train, drop_last)
    validate.check_hyperparameters(configs)
    names = {"val": "validation"}
    validate.check_contract(
        problem, {"training": train, **{names.get(k, k): v for k, v in evals.items()}}
    )
    use_disk_cache(options.cache_dir)
    placement = Placement(options.mesh, options.devices)
    if placement.examples is not None:
        _check_example_split(options.strategy, configs)
    if not streamed:  # HostData stays on the host; its programs stream it
        train = placement.training_data(as_dataset(train))
    evals = {name: placement.replicated(as_dataset(value)) for name, value in evals.items()}

    def specs(family: Optimizer) -> ProgramSpec:
        return ProgramSpec(
            problem=problem,
            optimizer=family,
            num_examples=num_train,
            shuffle=shuffle,
            drop_last=drop_last,
            epochs_per_chunk=options.epochs_per_chunk,
            eval_batch_size=options.eval_batch_size,
            probes=probes,
            divergence=float(divergence),
            examples=placement.examples,
        )

    def context_for(part: ResolvedConfigs) -> PlanContext:
        return PlanContext(
            epochs=epochs,
            num_train=num_train,
            specs=specs,
            micro_batch_size=options.micro_batch_size,
            max_batch_size=options.max_batch_size,
            block_for=_block_rule(options.config_block, part, problem, train),
            placement=placement,
        )

    strategy = choose_strategy(
        configs, "streamed" if streamed else options.strategy, context_for(configs), STRATEGIES
    )
    memory = _memory_plan(configs, problem, train, evals, epochs, options, placement, probes)
    if len(memory.slices) > 1 and (callbacks or checkpoint_dir is not None):
        names = ", ".join(type(c).__name__ for c in callbacks)  # (their repr is an address)
        what = f"callbacks=[{names}]" if callbacks else f"checkpoint_dir={checkpoint_dir!r}"
        raise InputError(
            f"{what}: the sweep runs in {len(memory.slices)} sequential slices to fit "
            f"max_memory={memory.budget:,} bytes per device ({memory.source}), and callbacks "
            "and checkpoints follow the whole sweep at once; raise SweepOptions.max_memory "
            "or run fewer configs"
        )
    parts = []
    pending = list(zip(memory.slices, memory.padding))
    # Slices of one shape share their programs: XLA's memory analysis is read once a shape
    # (not with checkpoint arguments: their checks come first, before any compile).
    checked = set()
    check_compiled = (
        not callbacks and checkpoint_dir is None and resume is False and overwrite is False
    )
    while pending:
        members, padding = pending[0]
        part = _slice_configs(configs, members, padding)
        programs = STRATEGIES[strategy].plan(part, context_for(part))
        shape = tuple((p.label, p.slot_count) for p in programs)
        if shape not in checked and check_compiled:
            checked.add(shape)
            measured = _compiled_bytes(programs, train, evals, memory.data_bytes)
            if measured is not None and measured > memory.budget:
                slots = sum(p.slot_count for p in programs)
                memory, pending = correct_slices(memory, pending, measured, slots, placement.count)
                continue
        pending.pop(0)
        sizes = part.batch_sizes(epochs)
        # The last check, once every other input is known good: only then is the folder
        # claimed.
        checkpoint = _checkpointer(checkpoint_dir, resume, overwrite, options)
        if checkpoint is not None:
            checkpoint.fingerprint = _fingerprint(
                configs=configs.rows,
                problem=problem.name,
                data=_data_digest(train, evals),
                strategy=strategy,
                programs=[[p.label, p.members.tolist()] for p in programs],
                callbacks=[type(c).__qualname__ for c in callbacks],
                settings=[epochs, float(divergence), shuffle, drop_last, return_params]
                + ([list(measure)] if measure else []),  # measuring changes the history
                options={
                    k: v
                    for k, v in _options_record(options).items()
                    if "checkpoint" not in k and k not in ("cache_dir", "max_memory")
                },
                versions=[jax.__version__, jax.default_backend()],
            )
        loop = run_loop(
            programs,
            epochs=epochs,
            epochs_per_chunk=options.epochs_per_chunk,
            configs=part.rows,
            examples_per_epoch=_examples_per_epoch(sizes, num_train, drop_last),
            batch_sizes=sizes,
            train=train,
            evals=evals,
            callbacks=callbacks,
            return_params=return_params,
            rebuild=options.rebuild,
            start=start,
            checkpoint=checkpoint,
        )
        if checkpoint is not None:
            checkpoint.close()
        parts.append((members, loop))
    loop = parts[0][1] if len(parts) == 1 else _merge(parts, len(configs))
    if len(loop.groups) == 1:  # one program of every config: one time each, as views
        seconds = np.broadcast_to(float(loop.groups[0]["seconds"]), (len(configs),))
        compile_seconds = np.broadcast_to(float(loop.groups[0]["compile_seconds"]), (len(configs),))
    else:
        seconds = np.zeros(len(configs))
        compile_seconds = np.zeros(len(configs))
        for group, members in zip(loop.groups, loop.group_members):
            seconds[members] += group["seconds"]
            compile_seconds[members] += group["compile_seconds"]
    meta = run_meta(
        {
            "epochs": epochs,
            "validation": validation
            if isinstance(validation, float) or validation is None
            else "dataset",
            "split_seed": split_seed,
            "eval_data": eval_data is not None,
            "shuffle": shuffle,
            "drop_last": drop_last,
            "divergence": float(divergence),
            "problem": problem.name,
            "options": _options_record(options),
        }
    )
    return SweepResult(
        meta=meta,
        configs=configs.rows.with_cache(),
        history=loop.history,
        updates=loop.updates,
        examples_seen=_last_epoch(loop.history["examples_seen"]),
        diverged=loop.status_codes == DIVERGED,
        diverged_step=loop.diverged_at,
        status=StatusNames(loop.status_codes, STATUS_NAMES),
        stopped_epoch=loop.stopped_epoch,
        seconds=seconds,
        compile_seconds=compile_seconds,
        params=loop.params,
        strategy=strategy,
        groups=GroupRecords(loop.groups, loop.group_members),
        compiled=[e for program in loop.programs for e in program.executables],
    )


def _check_example_split(strategy: str, configs: ResolvedConfigs) -> None:
    """Refuse what a mesh with an ``"examples"`` axis cannot run: only the grouped
    programs (and streamed, their batches from the host) split a batch over devices."""
    if strategy in ("nested", "accumulate"):
        raise InputError(
            f"strategy={strategy!r} with a mesh axis 'examples': only the grouped "
            "programs split each batch over devices; use strategy='grouped' or 'auto', "
            "or a mesh without an 'examples' axis"
        )
    if configs.adaptive.any():
        raise InputError(
            "norm_test (adaptive batch size) with a mesh axis 'examples': it needs "
            "strategy='accumulate', which does not split batches over devices; use a mesh "
            "without an 'examples' axis"
        )


def _last_epoch(values: np.ndarray) -> np.ndarray:
    """``values[:, -1]``: a copy, or a read-only view of a read-only view (one value for
    every config)."""
    return values[:, -1] if not values.flags.writeable else values[:, -1].copy()


def _checkpointer(checkpoint_dir, resume, overwrite, options) -> Checkpointer | None:
    """The sweep's checkpointer, its folder claimed."""
    for name, flag in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(flag, bool):
            raise InputError(f"{name}={flag!r}: must be True or False")
        if flag and checkpoint_dir is None:
            raise InputError(
                f"{name}=True needs checkpoint_dir=: the folder of the run to "
                f"{'continue' if name == 'resume' else 'replace'}"
            )
    if checkpoint_dir is None:
        return None
    if not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise InputError(
            f"checkpoint_dir={checkpoint_dir!r}: expected a folder path (str or pathlib.Path)"
        )
    return Checkpointer(
        checkpoint_dir,
        every=options.checkpoint_every,
        seconds=options.checkpoint_seconds,
        backend=options.checkpoint_format,
        resume=resume,
        overwrite=overwrite,
    )


def _fingerprint(**parts: Any) -> dict[str, str]:
    """Each part of what determines a sweep's results, as a short digest."""
    return {
        name: hashlib.sha256(strict_json(encode(value), indent=None).encode()).hexdigest()[:16]
        for name, value in parts.items()
    }


def _data_digest(train: PyTree, evals: dict[str, PyTree]) -> str:
    """A digest of the data's structure, dtypes, shapes and bytes (read to the host)."""
    digest = hashlib.sha256()
    if isinstance(train, HostData):  # sampled when large: it may exceed the memory
        digest.update(train.digest().encode())
        train = None
    for path, leaf in jax.tree_util.tree_leaves_with_path((train, evals)):
        value = np.ascontiguousarray(to_host(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _examples_per_epoch(sizes: np.ndarray, num_train: int, drop_last: bool) -> np.ndarray:
    """``[K, epochs]`` examples each config trains on in each epoch."""
    if not drop_last:
        return np.broadcast_to(np.int64(num_train), sizes.shape)  # read-only, no copy
    return num_train // sizes * sizes


def _block_rule(config_block, configs, problem, train):
    """``block_for(members, batch_size)``: the config block of a program (see
    ``SweepOptions.config_block``)."""
    if config_block != "auto":
        return lambda members, batch_size: config_block
    backend = jax.default_backend()
    example = example_of(train)
    measured = footprint(problem, example) if backend == "cpu" else None

    def block_for(members, batch_size):
        per_seed = most_repeated(configs.seeds_of(members))
        return default_config_block(batch_size, per_seed, backend, measured)

    return block_for


def _memory_plan(configs, problem, train, evals, epochs, options, placement, probes) -> MemoryPlan:
    """The configs in sequential slices within ``options.max_memory`` per device
    (``jaxgd.core.memory``); one slice when they all fit."""
    if options.max_memory is None:
        budget, source = default_budget(placement.mesh.devices.flat)
    else:
        budget, source = options.max_memory, "SweepOptions.max_memory"
    example = example_of(train)
    eval_examples = max((num_examples(e) for e in evals.values()), default=0)
    programs = configs.groups()  # (optimizer, batch size or schedule, members)
    needs = []  # bytes per config of each program
    for optimizer, size, _ in programs:
        largest = max(size.per_epoch(epochs)) if isinstance(size, BatchSchedule) else size
        if placement.examples is not None:  # a device computes its share of each batch
            largest = -(-largest // placement.examples.count)
        needs.append(
            config_bytes(
                problem, optimizer, example, largest, options.eval_batch_size, eval_examples
            )
        )
    if len(programs) == 1:  # one value each: read-only views, no memory per config
        groups = np.broadcast_to(np.int64(0), (len(configs),))
        per_config = np.broadcast_to(np.int64(needs[0]), (len(configs),))
    else:
        groups = np.empty(len(configs), np.int64)  # each config's program
        per_config = np.empty(len(configs), np.int64)
        for index, (_, _, members) in enumerate(programs):
            groups[members], per_config[members] = index, needs[index]
    split = 1 if placement.examples is None else placement.examples.count
    data_bytes = _device_data_bytes(train, evals, configs, epochs, GradientNoise() in probes, split)
    return plan_slices(
        per_config, data_bytes, budget, placement.count, source, groups=groups, seeds=configs.seed
    )


def _compiled_bytes(programs, train, evals, data_bytes: int) -> int | None:
    """Bytes per device the programs of a slice hold at once, from XLA's analysis of
    their compiled programs (``Program.compiled_bytes``) plus the data the memory plan
    counts (``data_bytes``: the sets on the device, or for ``HostData`` the evaluation
    sets, windows and orders), counted once; None where the backend gives no analysis.
    Prepares (compiles) the programs, which the run loop then runs without compiling
    again."""
    total = data_bytes
    for program in programs:
        program.prepare(train, evals, lambda label, seconds: None)
        measured = program.compiled_bytes(data_bytes)
        if measured is None:
            return None
        total += measured
    return total


def _slice_configs(configs: ResolvedConfigs, members: np.ndarray, padding: np.ndarray):
    """The configs of a memory slice: those at ``members``, then inactive copies that pad
    it to the shape of the others (``padding`` rows ``(config copied, seed)``,
    ``jaxgd.core.memory.plan_slices``), whose results are dropped."""
    if not len(padding):
        return configs if members.size == len(configs) else configs.take(members)
    part = configs.take(np.concatenate([members, padding[:, 0]]))
    part.seed[members.size :] = padding[:, 1]  # take copied the column
    return part


def _device_data_bytes(train, evals, configs, epochs, noise_measured, split) -> int:
    """Bytes of data on each device: every set (the training set split ``split`` ways
    over a mesh axis "examples"), or for ``HostData`` the evaluation sets and the
    streamed windows and orders (``strategies.streamed.stream_bytes``)."""
    evals_bytes = device_bytes(evals)
    if not isinstance(train, HostData):
        return evals_bytes + device_bytes(train)  # split over an "examples" axis: a share
    return evals_bytes + stream_bytes(train, configs, epochs, noise_measured, split)


def _merge(parts, count: int) -> LoopResult:
    """The loop results of sequential slices (config indices, result) in config order."""

    def gather(field):
        first = field(parts[0][1])
        if first is None:
            return None

        def one(*leaves):
            out = np.empty((count,) + leaves[0].shape[1:], leaves[0].dtype)
            for (members, _), leaf in zip(parts, leaves):
                out[members] = leaf[: members.size]  # after them: inactive padding
            return out

        return jax.tree.map(one, *[field(part) for _, part in parts])

    return LoopResult(
        history={name: gather(lambda p, n=name: p.history[n]) for name in parts[0][1].history},
        status_codes=gather(lambda p: p.status_codes),
        stopped_epoch=gather(lambda p: p.stopped_epoch),
        updates=gather(lambda p: p.updates),
        diverged_at=gather(lambda p: p.diverged_at),
        params=gather(lambda p: p.params),
        programs=[program for _, part in parts for program in part.programs],
        report=parts[-1][1].report,
        groups=[group for _, part in parts for group in part.groups],
        group_members=[
            _active(members, indices) for members, part in parts for indices in part.group_members
        ],
    )


def _active(members: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The sweep's indices of a slice's configs at ``positions``, inactive padding (the
    positions after ``members``) left out."""
    positions = np.asarray(positions, np.int64)
    return members[positions[positions < members.size]]


def _options_record(options: SweepOptions) -> dict[str, Any]:
    """The options as plain values, for a result's record and a checkpoint's fingerprint:
    devices by name, a mesh by its axes and devices."""
    record = dataclasses.asdict(
        dataclasses.replace(options, devices=None, mesh=None, cache_dir=None)
    )
    if options.devices is not None:
        record["devices"] = [str(d) for d in options.devices]
    if options.mesh is not None:
        record["mesh"] = {
            "axes": dict(options.mesh.shape),
            "devices": [str(d) for d in options.mesh.devices.flat],
        }
    if options.cache_dir is not None:
        record["cache_dir"] = str(options.cache_dir)
    return record
