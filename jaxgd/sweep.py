"""``jaxgd.sweep``: train every config of a space, one compiled program per group.

Configs are grouped by their static settings (optimizer family and static options,
batch size); each group is one ``vmap``-over-configs, ``scan``-over-steps program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from . import engine
from .data import BatchPlan, as_dataset, num_examples, split
from .optimizers import Optimizer, optimizer as make_optimizer
from .problem import Problem
from .results import SweepResult
from .space import Space

__all__ = ["sweep", "ResolvedConfig", "resolve_configs"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """A config split into what keys the program (static) and what is data (values)."""

    optimizer: Optimizer
    batch_size: int
    seed: int
    hyperparams: dict[str, float]
    row: dict[str, Any]


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
        size = _check_int("batch_size", size, index)
        if not 1 <= size <= num_train:
            raise ValueError(
                f"config {index}: batch_size={size} must be a positive integer no larger than "
                f"the {num_train} training examples"
            )
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
        row = {"optimizer": opt.name, **static, **hyperparams, "batch_size": size, "seed": seed}
        resolved.append(ResolvedConfig(opt, size, seed, hyperparams, row))
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
        on_chunk: called as ``on_chunk(epochs_done, metrics)`` after each chunk.

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
    if isinstance(epochs_per_chunk, bool) or not isinstance(epochs_per_chunk, int) or not (
        1 <= epochs_per_chunk and epochs % epochs_per_chunk == 0
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

    groups: dict[tuple, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault((config.optimizer, config.batch_size), []).append(index)

    bar = _progress_bar(progress, total=epochs * len(groups))
    count = len(configs)
    history: dict[str, np.ndarray] = {}
    updates = np.zeros(count, np.int64)
    diverged = np.zeros(count, bool)
    diverged_step = np.full(count, -1, np.int64)
    seconds = np.zeros(count)
    compile_seconds = np.zeros(count)
    params_parts: list[tuple[list[int], PyTree]] = []
    examples_seen = np.zeros(count, np.int64)
    for (opt, size), members in groups.items():
        plan = BatchPlan(num_train, size, drop_last)
        settings = engine.GroupSettings(
            problem, opt, plan, shuffle, epochs_per_chunk, eval_batch_size
        )

        def report(done, metrics, _bar=bar):
            if on_chunk is not None:
                on_chunk(done, metrics)
            if _bar is not None:
                _bar.update(epochs_per_chunk)

        run = engine.run_group(
            settings,
            [configs[i].hyperparams for i in members],
            [configs[i].seed for i in members],
            train,
            evals,
            epochs,
            return_params=return_params,
            on_chunk=report,
        )
        run.history["examples_seen"] = np.broadcast_to(
            plan.examples_per_epoch * np.arange(1, epochs + 1), (len(members), epochs)
        )
        run.history["batch_size"] = np.full((len(members), epochs), size)
        for name, values in run.history.items():
            if name not in history:
                history[name] = np.full((count, epochs), np.nan)
            history[name][members] = values
        updates[members] = run.updates
        diverged[members] = run.diverged
        diverged_step[members] = run.diverged_at
        seconds[members] = run.run_seconds
        compile_seconds[members] = run.compile_seconds
        examples_seen[members] = plan.examples_per_epoch * epochs
        if return_params:
            params_parts.append((members, run.params))
    if bar is not None:
        bar.close()

    for name in ("updates", "examples_seen", "batch_size"):
        history[name] = history[name].astype(np.int64)
    return SweepResult(
        configs=[c.row for c in configs],
        history=history,
        updates=updates,
        examples_seen=examples_seen,
        diverged=diverged,
        diverged_step=diverged_step,
        seconds=seconds,
        compile_seconds=compile_seconds,
        params=_merge_params(params_parts, count) if return_params else None,
    )


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
