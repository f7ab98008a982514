"""``jaxgd.sweep``: validate, plan, loop, assemble.

The configs are resolved and checked before anything compiles; a strategy plans them
into programs (``jaxgd.strategies``); the run loop drives the programs chunk by chunk and
reports to callbacks (``jaxgd.run``); the result comes back in the order of the space.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from .configs import ResolvedConfig, resolve_configs
from .core.blocks import default_config_block, footprint
from .core.step import measurement_probes
from .data import BatchPlan, as_dataset, num_examples, split
from .optimizers import Optimizer
from .options import SweepOptions
from .problem import Problem
from .results import SweepResult
from .run.loop import run_loop
from .run.report import Callback
from .space import Space
from .strategies import STRATEGIES, PlanContext, ProgramSpec, choose_strategy

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
    options: SweepOptions | None = None,
    measure: Sequence[str] = (),
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
        return_params: keep the final parameters (leading config axis) in the result.
        callbacks: ``jaxgd.Callback`` objects; after each chunk each gets a
            ``jaxgd.ChunkReport`` in config order and may stop configs
            (``jaxgd.EarlyStopping``, ``jaxgd.SuccessiveHalving``).
        progress: shorthand for adding ``jaxgd.Progress()`` (needs ``jaxgd[progress]``
            on a terminal).
        options: engine settings (``jaxgd.SweepOptions``): strategy, chunking, blocks.
        measure: per-step measurements added to the history; ``["noise_scale"]`` adds
            ``grad_sq_norm``, ``grad_trace`` and ``b_simple`` per epoch (``jaxgd.science``).

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
    start = time.perf_counter()
    options = SweepOptions() if options is None else options
    if not isinstance(options, SweepOptions):
        raise TypeError(f"options={options!r}: pass jaxgd.SweepOptions(...)")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}: must be a positive integer")
    if epochs % options.epochs_per_chunk:
        raise ValueError(
            f"epochs_per_chunk={options.epochs_per_chunk!r}: must be a positive divisor of "
            f"epochs={epochs}"
        )
    probes = measurement_probes(measure)
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks: {callback!r} is not a jaxgd.Callback; subclass jaxgd.Callback "
                "and override on_chunk(report)"
            )
    if progress:
        from .run.callbacks import Progress

        callbacks.append(Progress())
    num_examples(data)
    train, evals = _evaluation_sets(data, validation, split_seed, eval_data)
    num_train = num_examples(train)
    configs = resolve_configs(space, optimizer, batch_size, num_train)
    train = as_dataset(train)
    evals = {name: as_dataset(value) for name, value in evals.items()}

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
        )

    context = PlanContext(
        epochs=epochs,
        num_train=num_train,
        specs=specs,
        micro_batch_size=options.micro_batch_size,
        max_batch_size=options.max_batch_size,
        block_for=_block_rule(options.config_block, configs, problem, train),
    )
    strategy = choose_strategy(configs, options.strategy, context, STRATEGIES)
    programs = STRATEGIES[strategy].plan(configs, context)
    loop = run_loop(
        programs,
        epochs=epochs,
        epochs_per_chunk=options.epochs_per_chunk,
        configs=[c.row for c in configs],
        examples_per_epoch=np.array(
            [_examples_per_epoch(c, num_train, epochs, drop_last) for c in configs]
        ),
        batch_sizes=np.array([c.batch_sizes(epochs) for c in configs]),
        train=train,
        evals=evals,
        callbacks=callbacks,
        return_params=return_params,
        rebuild=options.rebuild,
        start=start,
    )
    seconds = np.zeros(len(configs))
    compile_seconds = np.zeros(len(configs))
    groups = []
    for program in loop.programs:
        groups.append(
            {
                "program": program.label,
                "configs": program.members.tolist(),
                "slots": program.slot_count,
                "compile_seconds": program.compile_seconds,
                "seconds": program.run_seconds,
            }
        )
        seconds[program.members] += program.run_seconds
        compile_seconds[program.members] += program.compile_seconds
    return SweepResult(
        configs=[c.row for c in configs],
        history=loop.history,
        updates=loop.updates,
        examples_seen=loop.history["examples_seen"][:, -1].copy(),
        diverged=loop.status == "diverged",
        diverged_step=loop.diverged_at,
        status=loop.status,
        stopped_epoch=loop.stopped_epoch,
        seconds=seconds,
        compile_seconds=compile_seconds,
        params=loop.params,
        strategy=strategy,
        groups=groups,
        compiled=[e for program in loop.programs for e in program.executables],
    )


def _examples_per_epoch(config: ResolvedConfig, num_train: int, epochs: int, drop_last: bool):
    if not drop_last:
        return [num_train] * epochs
    return [BatchPlan(num_train, b, True).examples_per_epoch for b in config.batch_sizes(epochs)]


def _block_rule(config_block, configs, problem, train):
    """``block_for(members, batch_size)``: the config block of a program (see
    ``SweepOptions.config_block``)."""
    if config_block != "auto":
        return lambda members, batch_size: config_block
    backend = jax.default_backend()
    example = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), train)
    measured = footprint(problem, example) if backend == "cpu" else None

    def block_for(members, batch_size):
        per_seed = max(collections.Counter(configs[i].seed for i in members).values())
        return default_config_block(batch_size, per_seed, backend, measured)

    return block_for
