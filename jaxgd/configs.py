"""The space's configs, validated and split into what keys a program and what is data."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .data import BatchPlan
from .errors import InputError
from .optimizers import Optimizer, epochs_name, step_parameters
from .optimizers import optimizer as make_optimizer
from .schedules import BatchSchedule
from .space import Space

__all__ = ["ResolvedConfig", "resolve_configs"]


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """A config split into what keys the program (static) and what is data (values)."""

    optimizer: Optimizer
    batch_size: int | BatchSchedule
    seed: int
    hyperparams: dict[str, float]
    row: dict[str, Any]
    norm_test: float = math.inf

    @property
    def adaptive(self) -> bool:
        """Whether the norm test sets this config's batch size."""
        return math.isfinite(self.norm_test)

    def batch_sizes(self, epochs: int) -> list[int]:
        """The batch size in force at the start of each epoch."""
        if isinstance(self.batch_size, BatchSchedule):
            return self.batch_size.per_epoch(epochs)
        return [self.batch_size] * epochs


def scalar(value: Any) -> Any:
    """A NumPy or JAX scalar (or 0-d array) as a Python number; anything else unchanged."""
    if isinstance(value, np.generic) or (hasattr(value, "__array__") and np.ndim(value) == 0):
        return np.asarray(value).item()
    return value


def _check_int(name: str, value: Any, index: int) -> int:
    value = scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"config {index}: {name}={value!r} must be an integer")
    return int(value)


def _steps_from_epochs(config, opt, size, num_train, drop_last, theta, index):
    """Replace each ``<name>_epochs`` schedule parameter by ``<name>_steps``: the updates
    this config takes in that many epochs at its own batch size (with a BatchSchedule, the
    cumulative updates of its epochs; a fractional epoch counts that part of its updates),
    rounded to a whole update."""
    config = dict(config)
    for steps in step_parameters(opt.schedule):
        name = epochs_name(steps)
        if name not in config:
            continue
        epochs = config.pop(name)
        if steps in config:
            raise InputError(f"config {index}: give {steps} or {name}, not both")
        if math.isfinite(theta):
            raise InputError(
                f"config {index}: {name}={epochs!r} cannot be converted to updates when the "
                f"norm test sets the batch size; give {steps} instead"
            )
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs < 0:
            raise InputError(f"config {index}: {name}={epochs!r} must be a non-negative number")
        whole = int(epochs)
        schedule = size if isinstance(size, BatchSchedule) else None
        per_epoch = [
            BatchPlan(num_train, schedule.at(e) if schedule else size, drop_last).steps_per_epoch
            for e in range(whole + 1)
        ]
        config[steps] = round(sum(per_epoch[:whole]) + (epochs - whole) * per_epoch[whole])
    return config


def resolve_configs(
    space: Space | list[Mapping[str, Any]],
    optimizer: str | Callable | Optimizer,
    batch_size: int | None,
    num_train: int,
    drop_last: bool = False,
) -> list[ResolvedConfig]:
    """Validate every config of the space and split it; raises before anything compiles."""
    if isinstance(space, Mapping):
        raise InputError(
            "space= takes configs (a list of dicts, jaxgd.grid(...) or jaxgd.sample(...)), "
            f"not one dict; for every combination of {dict(space)} write jaxgd.grid(**space)"
        )
    configs = list(space)
    if not configs:
        raise InputError("the space has no configs: build one with jaxgd.grid(...) or sample(...)")
    resolved = []
    for index, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise InputError(
                f"space: config {index} is {config!r}, not a dict of hyperparameters; build "
                "the space with jaxgd.grid(...) or jaxgd.sample(...)"
            )
        config = {name: scalar(value) for name, value in config.items()}
        family = config.pop("optimizer", optimizer)
        size = config.pop("batch_size", batch_size)
        if size is None:
            raise InputError(
                f"config {index} has no batch_size: put batch_size=[...] in the space or pass "
                "batch_size=... to sweep()"
            )
        sizes = size.sizes if isinstance(size, BatchSchedule) else (size,)
        for value in sizes:
            value = _check_int("batch_size", value, index)
            if not 1 <= value <= num_train:
                raise InputError(
                    f"config {index}: batch_size={value} must be a positive integer no larger "
                    f"than the {num_train} training examples"
                )
        if not isinstance(size, BatchSchedule):
            size = int(size)
        size = scalar(size)
        theta = config.pop("norm_test", math.inf)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
            raise InputError(f"config {index}: norm_test={theta!r} must be a positive number (θ)")
        seed = _check_int("seed", config.pop("seed", 0), index)
        base = make_optimizer(family)
        static_names = {name for name, _ in base.static_options} | {"schedule"}
        static = {k: config.pop(k) for k in list(config) if k in static_names}
        opt = make_optimizer(base, **static) if static else base
        for name, value in config.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise InputError(
                    f"config {index}: {name}={value!r} is not a number; numeric hyperparameters "
                    f"of {opt.name!r} are {list(opt.hyperparameter_names)}, static options are "
                    f"{sorted(static_names)}"
                )
        config = _steps_from_epochs(config, opt, size, num_train, drop_last, theta, index)
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
