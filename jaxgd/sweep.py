"""``jaxgd.sweep``: train every config of a space, one compiled program per group.

Configs are grouped by their static settings (optimizer family and static options,
batch size); each group is one ``vmap``-over-configs, ``scan``-over-steps program.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from . import accumulate, engine, nested
from .data import BatchPlan, as_dataset, num_examples, split
from .optimizers import Optimizer
from .optimizers import optimizer as make_optimizer
from .problem import Problem
from .results import SweepResult
from .schedules import BatchSchedule
from .space import Space

__all__ = ["sweep", "ResolvedConfig", "resolve_configs", "choose_strategy", "STRATEGIES"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """A config split into what keys the program (static) and what is data (values)."""

    optimizer: Optimizer
    batch_size: int | BatchSchedule
    seed: int
    hyperparams: dict[str, float]
    row: dict[str, Any]
    norm_test: float = math.inf

    def batch_sizes(self, epochs: int) -> list[int]:
        """The batch size in force at the start of each epoch."""
        if isinstance(self.batch_size, BatchSchedule):
            return self.batch_size.per_epoch(epochs)
        return [self.batch_size] * epochs


def _check_int(name: str, value: Any, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"config {index}: {name}={value!r} must be an integer")
    return int(value)


def resolve_configs(
    space: Space | list[Mapping[str, Any]],
    optimizer: str | Callable | Optimizer,
    batch_size: int | None,
    num_train: int,
) -> list[ResolvedConfig]:
    """Validate every config of the space and split it; raises before anything compiles."""
    if isinstance(space, Mapping):
        raise TypeError(
            "space= takes configs (a list of dicts, jaxgd.grid(...) or jaxgd.sample(...)), "
            f"not one dict; for every combination of {dict(space)} write jaxgd.grid(**space)"
        )
    configs = list(space)
    if not configs:
        raise ValueError("the space has no configs: build one with jaxgd.grid(...) or sample(...)")
    resolved = []
    for index, config in enumerate(configs):
        config = dict(config)
        family = config.pop("optimizer", optimizer)
        size = config.pop("batch_size", batch_size)
        if size is None:
            raise ValueError(
                f"config {index} has no batch_size: put batch_size=[...] in the space or pass "
                "batch_size=... to sweep()"
            )
        sizes = size.sizes if isinstance(size, BatchSchedule) else (size,)
        for value in sizes:
            value = _check_int("batch_size", value, index)
            if not 1 <= value <= num_train:
                raise ValueError(
                    f"config {index}: batch_size={value} must be a positive integer no larger "
                    f"than the {num_train} training examples"
                )
        if not isinstance(size, BatchSchedule):
            size = int(size)
        theta = config.pop("norm_test", math.inf)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
            raise ValueError(f"config {index}: norm_test={theta!r} must be a positive number (θ)")
        seed = _check_int("seed", config.pop("seed", 0), index)
        base = make_optimizer(family)
        static_names = {name for name, _ in base.static_options}
        static = {k: config.pop(k) for k in list(config) if k in static_names}
        opt = make_optimizer(base, **static) if static else base
        for name, value in config.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(
                    f"config {index}: {name}={value!r} is not a number; numeric hyperparameters "
                    f"of {opt.name!r} are {list(opt.hyperparameter_names)}, static options are "
                    f"{sorted(static_names)}"
                )
        hyperparams = {k: float(v) for k, v in opt.resolve(config).items()}
        row = {
            "optimizer": opt.name,
            **static,
            **hyperparams,
            "batch_size": str(size) if isinstance(size, BatchSchedule) else size,
            "seed": seed,
        }
        if math.isfinite(theta):
            row["norm_test"] = float(theta)
        resolved.append(ResolvedConfig(opt, size, seed, hyperparams, row, float(theta)))
    return resolved


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
    epochs_per_chunk: int = 1,
    eval_batch_size: int = 1024,
    return_params: bool = False,
    progress: bool = False,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    strategy: str = "auto",
    micro_batch_size: int | None = None,
    max_batch_size: int | None = None,
    config_block: int | str | None = "auto",
) -> SweepResult:
    """Train every config of ``space`` on ``data`` for ``epochs`` epochs.

    Args:
        problem: the model and its per-example loss (``jaxgd.Problem``).
        data: the dataset, a pytree of arrays with a leading example axis.
        space: the configs, e.g. ``jaxgd.grid(learning_rate=[...], momentum=[...])``.
        epochs: passes over the training set.
        optimizer: the default optimizer family for configs that do not name one.
        batch_size: the default for configs that do not set one.
        validation: a fraction of ``data`` held out (split with ``split_seed``), a
            separate validation set, or None.
        eval_data: an optional further set, reported as ``eval_*``.
        shuffle: a new permutation every epoch (from the config's seed), else in order.
        drop_last: drop the partial last batch instead of masking it.
        epochs_per_chunk: epochs per compiled call; the host records between calls.
        return_params: keep the final parameters (leading config axis) in the result.
        progress: show a tqdm progress bar (needs ``jaxgd[progress]``).
        on_chunk: called as ``on_chunk(epochs_done, metrics)`` after each chunk of each
            group (``metrics["group"]`` says which).
        strategy: how configs of different batch sizes run: ``"grouped"`` (one program
            per batch size, interleaved chunk by chunk), ``"accumulate"`` (one program,
            gradient accumulation over micro-batches) or ``"auto"``.
        micro_batch_size: the accumulate strategy's micro-batch (default: the gcd of all
            batch sizes).
        max_batch_size: the cap of the adaptive norm test (default: the training set).
        config_block: run the configs sharing a seed in blocks of this many (``lax.map``)
            rather than all in one vmap; ``"auto"`` blocks on the CPU when a config's
            activations per step are large (``engine.default_config_block``), None never.
            Results are the same to rounding.

    A config's ``batch_size`` may be a ``BatchSchedule``; a config's ``norm_test`` key
    (θ) turns on the adaptive batch size of Byrd et al. 2012 for it.

    Returns:
        A ``SweepResult`` in the order of the space's configs.

    Example:
        >>> import jaxgd
        >>> problem, data = jaxgd.problems.linear_regression()
        >>> result = jaxgd.sweep(problem, data, space=jaxgd.grid(learning_rate=[0.1, 0.01]),
        ...                      batch_size=10, epochs=5, validation=None)
        >>> result.history["train_loss"].shape
        (2, 5)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}: must be a positive integer")
    if (
        isinstance(epochs_per_chunk, bool)
        or not isinstance(epochs_per_chunk, int)
        or not (1 <= epochs_per_chunk and epochs % epochs_per_chunk == 0)
    ):
        raise ValueError(
            f"epochs_per_chunk={epochs_per_chunk!r}: must be a positive divisor of epochs={epochs}"
        )
    num_examples(data)
    train, evals = _evaluation_sets(data, validation, split_seed, eval_data)
    num_train = num_examples(train)
    configs = resolve_configs(space, optimizer, batch_size, num_train)
    train = as_dataset(train)
    evals = {name: as_dataset(value) for name, value in evals.items()}

    if not (
        config_block in (None, "auto")
        or (
            isinstance(config_block, int)
            and not isinstance(config_block, bool)
            and config_block >= 1
        )
    ):
        raise ValueError(f"config_block={config_block!r}: a positive integer, 'auto' or None")
    strategy = choose_strategy(
        configs, strategy, num_train, epochs, micro_batch_size, drop_last, epochs_per_chunk
    )
    groups = _plan_groups(
        configs,
        _block_rule(config_block, configs, problem, train),
        strategy,
        problem,
        num_train,
        epochs,
        shuffle,
        drop_last,
        epochs_per_chunk,
        eval_batch_size,
        micro_batch_size,
        max_batch_size,
    )
    runners = [make_runner(train, evals) for make_runner, _ in groups]
    # Compiled one after another: on a 2-core CPU, compiling in threads side by side
    # measured no faster (benchmarks/mixed_batch.py), and blurred each one's timing.
    for runner in runners:
        runner.prepare()

    bar = _progress_bar(progress, total=epochs)
    done_groups: dict[int, int] = {}

    def report(group, done, metrics):
        if on_chunk is not None:
            on_chunk(done, {"group": group, **metrics})
        done_groups[done] = done_groups.get(done, 0) + 1
        if bar is not None and done_groups[done] == len(runners):
            bar.update(epochs_per_chunk)

    engine.run_interleaved(runners, epochs, epochs_per_chunk, report)
    if bar is not None:
        bar.close()

    count = len(configs)
    history: dict[str, np.ndarray] = {}
    updates = np.zeros(count, np.int64)
    diverged = np.zeros(count, bool)
    diverged_step = np.full(count, -1, np.int64)
    seconds = np.zeros(count)
    compile_seconds = np.zeros(count)
    params_parts: list[tuple[list[int], PyTree]] = []
    group_rows = []
    for runner, (_, members) in zip(runners, groups):
        run = runner.finish(return_params)
        group_rows.append(
            {
                "configs": list(members),
                "compile_seconds": run.compile_seconds,
                "seconds": run.run_seconds,
            }
        )
        sizes = np.array([configs[i].batch_sizes(epochs) for i in members])
        run.history.setdefault("batch_size", sizes)
        for name, values in run.history.items():
            if name not in history:
                history[name] = np.full((count, epochs), np.nan)
            history[name][members] = values
        updates[members] = run.updates
        diverged[members] = run.diverged
        diverged_step[members] = run.diverged_at
        seconds[members] = run.run_seconds
        compile_seconds[members] = run.compile_seconds
        if return_params:
            params_parts.append((members, run.params))

    per_epoch = np.array([_examples_per_epoch(c, num_train, epochs, drop_last) for c in configs])
    history["examples_seen"] = np.cumsum(per_epoch, axis=1)
    for name in ("updates", "batch_size"):
        history[name] = history[name].astype(np.int64)
    return SweepResult(
        configs=[c.row for c in configs],
        history=history,
        updates=updates,
        examples_seen=history["examples_seen"][:, -1].copy(),
        diverged=diverged,
        diverged_step=diverged_step,
        seconds=seconds,
        compile_seconds=compile_seconds,
        params=_merge_params(params_parts, count) if return_params else None,
        strategy=strategy,
        groups=group_rows,
        compiled=[
            e
            for r in runners
            for e in (r.executables.values() if hasattr(r, "executables") else [r.executable])
        ],
    )


def _examples_per_epoch(config: ResolvedConfig, num_train: int, epochs: int, drop_last: bool):
    if not drop_last:
        return [num_train] * epochs
    return [BatchPlan(num_train, b, True).examples_per_epoch for b in config.batch_sizes(epochs)]


STRATEGIES = ("auto", "grouped", "nested", "accumulate")


def choose_strategy(
    configs, strategy, num_train, epochs, micro_size, drop_last, epochs_per_chunk
) -> str:
    """Resolve ``strategy="auto"`` and refuse combinations that cannot run.

    ``grouped`` compiles one program per distinct batch size (or schedule) and runs each
    at its own batch size; ``nested`` compiles one program holding an inner scan per
    batch size (the grouped arithmetic, one compilation); ``accumulate`` compiles one
    program that walks every config in micro-batches of m = gcd of all batch sizes.
    ``auto``: one batch size → grouped; several fixed sizes → nested; the norm test →
    accumulate; schedules → accumulate unless ``accumulate_overhead`` exceeds
    ``AUTO_MAX_OVERHEAD``, then grouped.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: choose one of {STRATEGIES}")
    adaptive = any(math.isfinite(c.norm_test) for c in configs)
    if adaptive and strategy == "grouped":
        raise ValueError(
            "norm_test (adaptive batch size) needs strategy='accumulate' or 'auto': "
            "a config's batch size changes during an epoch"
        )
    if adaptive and drop_last:
        raise ValueError(
            "norm_test with drop_last=True is not supported: the batch size "
            "changes within an epoch, so 'the last partial batch' is undefined"
        )
    all_sizes = {b for c in configs for b in c.batch_sizes(epochs)}
    if micro_size is not None and any(b % micro_size for b in all_sizes):
        raise ValueError(
            f"micro_batch_size={micro_size} must divide every batch size; "
            f"got batch sizes {sorted(all_sizes)}"
        )
    if strategy == "nested" and any(isinstance(c.batch_size, BatchSchedule) for c in configs):
        raise ValueError(
            "strategy='nested' runs fixed batch sizes; batch-size schedules need "
            "'grouped' or 'accumulate'"
        )
    if strategy == "grouped":
        for c in configs:
            if isinstance(c.batch_size, BatchSchedule):
                bad = [e for e in c.batch_size.boundaries if e % epochs_per_chunk]
                if bad:
                    raise ValueError(
                        f"batch-size schedule {c.batch_size} changes at epochs {bad}, "
                        f"not at chunk boundaries (epochs_per_chunk={epochs_per_chunk})"
                    )
    if strategy != "auto":
        return strategy
    if adaptive:
        return "accumulate"
    schedules = {c.batch_size for c in configs}
    has_schedule = any(isinstance(b, BatchSchedule) for b in schedules)
    if not has_schedule:
        return "grouped" if len(schedules) == 1 else "nested"
    m = micro_size or accumulate.micro_batch_size(all_sizes)
    overhead = accumulate_overhead(configs, m, num_train, epochs)
    return "accumulate" if overhead <= AUTO_MAX_OVERHEAD else "grouped"


# With schedules, auto takes accumulate (one program whatever the sizes) unless it would
# compute more than this many optimizer updates per update needed: every micro-step runs
# (and masks) an update for every config. Fixed mixed sizes go to nested, which runs the
# grouped arithmetic, update for update, in one program (benchmarks/README.md).
AUTO_MAX_OVERHEAD = 2.0


def accumulate_overhead(configs, micro_size, num_train, epochs) -> float:
    """Optimizer updates the accumulate program computes (one per config per micro-step)
    relative to those the configs need (one per config per batch)."""
    micro_steps = len(configs) * epochs * math.ceil(num_train / micro_size)
    needed = sum(math.ceil(num_train / b) for c in configs for b in c.batch_sizes(epochs))
    return micro_steps / needed


def _block_rule(config_block, configs, problem, train):
    """``block_for(members, batch_size)``: the config block of a group (see ``sweep``)."""
    if config_block != "auto":
        return lambda members, batch_size: config_block
    backend = jax.default_backend()
    example = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), train)
    footprint = engine.footprint(problem, example) if backend == "cpu" else None

    def block_for(members, batch_size):
        per_seed = max(collections.Counter(configs[i].seed for i in members).values())
        return engine.default_config_block(batch_size, per_seed, backend, footprint)

    return block_for


def _plan_groups(
    configs,
    block_for,
    strategy,
    problem,
    num_train,
    epochs,
    shuffle,
    drop_last,
    epochs_per_chunk,
    eval_batch_size,
    micro_size,
    max_batch_size,
):
    """``[(make_runner(train, evals), member indices)]`` for the chosen strategy."""
    hyper_groups: dict[Optimizer, list[int]] = {}
    for index, config in enumerate(configs):
        hyper_groups.setdefault(config.optimizer, []).append(index)
    groups = []
    if strategy == "accumulate":
        for opt, members in hyper_groups.items():
            sizes = [configs[i].batch_sizes(epochs) for i in members]
            m = micro_size or accumulate.micro_batch_size({b for row in sizes for b in row})
            norm_test = any(math.isfinite(configs[i].norm_test) for i in members)
            cap = max_batch_size or num_train
            settings = accumulate.AccumulateSettings(
                problem,
                opt,
                num_train,
                m,
                shuffle,
                drop_last,
                epochs_per_chunk,
                eval_batch_size,
                norm_test,
                max(1, cap // m),
            )
            groups.append(
                (
                    functools.partial(
                        accumulate.AccumulateRunner,
                        settings,
                        [configs[i].hyperparams for i in members],
                        [configs[i].seed for i in members],
                        batch_sizes_by_epoch=sizes,
                        thetas=[configs[i].norm_test for i in members],
                    ),
                    members,
                )
            )
        return groups
    if strategy == "nested":
        for opt, members in hyper_groups.items():
            sizes = [configs[i].batch_size for i in members]
            distinct = tuple(sorted(set(sizes)))
            blocks = tuple(
                block_for([i for i in members if configs[i].batch_size == b], b) for b in distinct
            )
            settings = nested.NestedSettings(
                problem,
                opt,
                num_train,
                distinct,
                shuffle,
                drop_last,
                epochs_per_chunk,
                eval_batch_size,
                blocks,
            )
            runner = functools.partial(
                nested.NestedRunner,
                settings,
                [configs[i].hyperparams for i in members],
                [configs[i].seed for i in members],
                sizes,
            )
            groups.append((runner, members))
        return groups
    by_key: dict[tuple, list[int]] = {}
    for index, config in enumerate(configs):
        by_key.setdefault((config.optimizer, config.batch_size), []).append(index)
    for (opt, _), members in by_key.items():
        per_epoch = configs[members[0]].batch_sizes(epochs)
        settings_by_epoch = [
            engine.GroupSettings(
                problem,
                opt,
                BatchPlan(num_train, b, drop_last),
                shuffle,
                epochs_per_chunk,
                eval_batch_size,
                block_for(members, b),
            )
            for b in per_epoch
        ]
        groups.append(
            (
                functools.partial(
                    engine.GroupRunner,
                    settings_by_epoch,
                    [configs[i].hyperparams for i in members],
                    [configs[i].seed for i in members],
                ),
                members,
            )
        )
    return groups


def _merge_params(parts: list[tuple[list[int], PyTree]], count: int) -> PyTree:
    """Stack per-group parameters back into the order of the configs."""
    order = np.concatenate([np.asarray(members) for members, _ in parts])
    inverse = np.empty(count, np.int64)
    inverse[order] = np.arange(count)
    stacked = jax.tree.map(lambda *leaves: np.concatenate(leaves, axis=0), *[p for _, p in parts])
    return jax.tree.map(lambda leaf: leaf[inverse], stacked)


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as error:
        raise ImportError("progress=True needs tqdm: pip install 'jaxgd[progress]'") from error
    return tqdm(total=total, unit="epoch", desc="sweep")
