"""Everything ``jaxgd.sweep`` checks before anything compiles or is written.

Each check raises ``jaxgd.InputError`` with a message that names the argument, what was
given, what was expected and how to fix it. The problem contract is checked by tracing
the user's functions once on one example with ``jax.eval_shape`` (no compile, no FLOP),
the data on the host, the hyperparameters against each optimizer family's ranges
(``jaxgd.optimizers.RANGES``). The README's "Errors" section lists every case.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .configs import ResolvedConfigs, scalar
from .data import HostData
from .errors import InputError
from .optimizers import in_interval
from .problem import Problem, param_shapes

__all__ = [
    "MAX_SEED",
    "check_problem",
    "check_validation",
    "as_arrays",
    "check_dataset",
    "check_contract",
    "check_hyperparameters",
]

PyTree = Any

# Seeds are int32 on the device (``jax.random.key`` and the slot layout).
MAX_SEED = 2**31 - 1


def check_problem(problem: Any) -> Problem:
    """``problem=`` must be a ``jaxgd.Problem``."""
    if not isinstance(problem, Problem):
        raise InputError(
            f"problem={_short(problem)}: expected a jaxgd.Problem(init=..., loss=...), e.g. "
            "jaxgd.Problem(init=lambda key: params, loss=lambda params, example: scalar) or "
            "one of jaxgd.problems"
        )
    return problem


def check_validation(validation: Any) -> Any:
    """``validation=`` is a fraction in (0, 1), a dataset (a pytree of arrays) or None;
    returns it with a NumPy or JAX scalar fraction as a Python float."""
    validation = scalar(validation)
    if validation is None:
        return None
    if isinstance(validation, (bool, np.bool_)) or (
        isinstance(validation, numbers.Number) and not isinstance(validation, float)
    ):
        raise InputError(
            f"validation={validation!r}: expected a fraction strictly between 0 and 1 (e.g. "
            "0.2), a validation dataset, or None for no validation set"
        )
    if isinstance(validation, float):
        if not 0.0 < validation < 1.0:
            raise InputError(
                f"validation={validation!r}: a fraction must lie strictly between 0 and 1 "
                "(e.g. 0.2); pass None for no validation set"
            )
        return validation
    if isinstance(validation, (str, bytes)) or not jax.tree.leaves(validation):
        raise InputError(
            f"validation={_short(validation)}: expected a fraction strictly between 0 and 1, "
            "a validation dataset (a pytree of arrays like the training data), or None"
        )
    return validation


def _is_number_list(value: Any) -> bool:
    """A (nested) Python list of numbers: one leaf of data written as a list."""
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    return isinstance(first, (numbers.Number, np.generic)) or _is_number_list(first)


def as_arrays(dataset: str, data: PyTree) -> PyTree:
    """Every leaf of ``data`` as an array: a nested list of numbers becomes a NumPy array;
    anything else that is not an array is refused, naming the leaf."""

    def convert(path, leaf):
        where = f"{dataset} data leaf {_path(path)}"
        if isinstance(leaf, list):
            array = np.asarray(leaf) if _ragged_ok(leaf) else None
            if array is None or array.dtype == object:
                raise InputError(
                    f"{where} is a list that does not form an array (ragged or mixed types); "
                    "pass a NumPy or JAX array with a leading example axis"
                )
            return array
        if isinstance(leaf, (np.ndarray, jax.Array)):
            return leaf
        raise InputError(
            f"{where} is a {type(leaf).__name__} ({_short(leaf)}); every leaf must be an "
            "array with a leading example axis, e.g. np.asarray(values)"
        )

    if data is None:
        raise InputError(f"{dataset} data=None: expected a pytree of arrays")
    return jax.tree_util.tree_map_with_path(convert, data, is_leaf=_is_number_list)


def _ragged_ok(leaf: list) -> bool:
    try:
        np.asarray(leaf)
    except ValueError:
        return False
    return True


def check_dataset(dataset: str, data: PyTree, problem: Problem, first: int = 0) -> int:
    """Matching example counts, finite floating values and labels in range; returns the
    example count. ``HostData`` is read block by block (``first``: the block's first
    example, for the messages)."""
    if isinstance(data, HostData):
        for start, block in data.blocks():
            check_dataset(dataset, block, problem, first=start)
        return data.num_examples
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise InputError(f"{dataset} data has no arrays: expected a pytree of arrays")
    counts = {_path(path): (np.shape(leaf)[0] if np.ndim(leaf) else None) for path, leaf in leaves}
    if None in counts.values() or len(set(counts.values())) != 1:
        shapes = {_path(path): tuple(np.shape(leaf)) for path, leaf in leaves}
        raise InputError(
            f"{dataset} data: every leaf needs the same leading example axis; got shapes "
            f"{shapes}; give each leaf one row per example"
        )
    for path, leaf in leaves:
        values = np.asarray(leaf)
        where = f"{dataset} data leaf {_path(path)}"
        if np.issubdtype(values.dtype, np.floating) or np.issubdtype(
            values.dtype, np.complexfloating
        ):
            bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
            if bad.any():
                index = int(np.argmax(bad))
                raise InputError(
                    f"{where}: example {first + index} holds a non-finite value "
                    f"({_short(values[index].tolist())}); {int(bad.sum())} of {values.shape[0]} "
                    "examples do; remove or impute them (a NaN in one example would mark "
                    "every config as diverged)"
                )
        elif problem.num_classes is not None and np.issubdtype(values.dtype, np.integer):
            outside = (values < 0) | (values >= problem.num_classes)
            if outside.any():
                index = int(np.argmax(outside.reshape(values.shape[0], -1).any(axis=1)))
                label = _short(values[index].tolist())
                raise InputError(
                    f"{where}: example {first + index} has label {label}, outside "
                    f"[0, {problem.num_classes}) for {problem.name!r} (num_classes="
                    f"{problem.num_classes}); JAX indexing would clamp it to a wrong class: "
                    "relabel the data 0..num_classes-1 or declare the right num_classes"
                )
    return next(iter(counts.values()))


def _example(data: PyTree) -> PyTree:
    """The shape and dtype of one example (after ``data.as_dataset``'s casts)."""
    if isinstance(data, HostData):
        return data.example

    def one(leaf):
        dtype = np.dtype(leaf.dtype)
        if np.issubdtype(dtype, np.floating):
            dtype = jnp.result_type(float)
        elif np.issubdtype(dtype, np.integer) and dtype.itemsize == 8:
            dtype = jnp.int32
        return jax.ShapeDtypeStruct(np.shape(leaf)[1:], dtype)

    return jax.tree.map(one, data)


def check_contract(problem: Problem, datasets: Mapping[str, PyTree]) -> None:
    """Trace ``init`` and ``loss`` / ``metrics`` on one example of each dataset with
    ``jax.eval_shape``: parameters floating, the loss one scalar, metrics scalars."""
    try:
        params = param_shapes(problem)
    except Exception as error:
        raise InputError(
            f"problem.init(key) failed when traced: {_first_line(error)}; init must take a "
            "jax.random.key and return the parameters (a pytree of float arrays)"
        ) from error
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if not jnp.issubdtype(getattr(leaf, "dtype", np.dtype(object)), jnp.floating):
            raise InputError(
                f"problem.init returned parameter {_path(path)} of dtype "
                f"{getattr(leaf, 'dtype', type(leaf).__name__)}; gradient descent needs "
                "floating-point parameters: cast it, e.g. jnp.zeros(n, jnp.float32)"
            )
    for dataset, data in datasets.items():
        example = _example(data)
        shapes = jax.tree.map(lambda s: tuple(s.shape), example)
        try:
            loss = jax.eval_shape(problem.loss, params, example)
        except Exception as error:
            raise InputError(
                f"problem.loss(params, example) failed on one {dataset} example (leaf shapes "
                f"{shapes}): {_first_line(error)}; the {dataset} data must have the keys and "
                "feature sizes the model expects"
            ) from error
        if not hasattr(loss, "shape") or loss.shape != ():
            shape = getattr(loss, "shape", type(loss).__name__)
            hint = ""
            if shape == (1,):
                hint = (
                    " (a Dense(1) head or targets shaped [N, 1]: return loss[0] or "
                    "jnp.squeeze(loss), or give targets of shape [N]); a (1,) loss would "
                    "broadcast in the batch mean and scale the loss and gradient by the "
                    "batch size"
                )
            raise InputError(
                f"problem.loss returned shape {shape} for one {dataset} example; it must "
                f"return a scalar (shape ()), the loss of that one example{hint}"
            )
        if not jnp.issubdtype(loss.dtype, jnp.floating):
            raise InputError(
                f"problem.loss returned dtype {loss.dtype}; it must return a floating-point scalar"
            )
        if problem.metrics is None:
            continue
        try:
            metrics = jax.eval_shape(problem.metrics, params, example)
        except Exception as error:
            raise InputError(
                f"problem.metrics(params, example) failed on one {dataset} example: "
                f"{_first_line(error)}"
            ) from error
        if not isinstance(metrics, Mapping):
            raise InputError(
                f"problem.metrics returned {type(metrics).__name__}; it must return a dict "
                "{name: scalar}, e.g. {'accuracy': ...}"
            )
        for name, value in metrics.items():
            if getattr(value, "shape", None) != ():
                raise InputError(
                    f"problem.metrics returned {name!r} of shape "
                    f"{getattr(value, 'shape', type(value).__name__)} for one {dataset} "
                    "example; every metric must be a scalar"
                )


def check_hyperparameters(configs: ResolvedConfigs) -> None:
    """Seeds in ``[0, MAX_SEED]``; every numeric hyperparameter finite and inside the
    interval its family declares (``Optimizer.range_of``). Checked column by column; the
    message names the first config at fault."""
    faults = []  # (config, order within a config, message)
    bad_seed = _first((configs.seed < 0) | (configs.seed > MAX_SEED))
    if bad_seed is not None:
        faults.append(
            (
                bad_seed,
                -1,
                f"config {bad_seed}: seed={int(configs.seed[bad_seed])}: seeds must lie in "
                f"[0, {MAX_SEED}] (they are int32 on the device)",
            )
        )
    for optimizer, _, members in configs.groups(by_batch_size=False):
        whole = members.size == len(configs)
        for order, name in enumerate(optimizer.hyperparameter_names):
            values = configs.hyperparams[name] if whole else configs.hyperparams[name][members]
            interval = optimizer.range_of(name)
            bad = ~np.isfinite(values)
            if interval:
                bad |= ~in_interval(values, interval)
            first = _first(bad)
            if first is None:
                continue
            index = int(members[first])
            expected = f"in {interval}" if interval else "finite"
            faults.append(
                (
                    index,
                    order,
                    f"config {index}: {name}={float(values[first])!r} for optimizer "
                    f"{optimizer.name!r}: must be {expected}; remove it from the space or "
                    f"declare another range with jaxgd.optimizer(..., ranges={{{name!r}: ...}})",
                )
            )
    if faults:
        raise InputError(min(faults)[2])


def _first(bad: np.ndarray) -> int | None:
    return int(np.argmax(bad)) if bad.any() else None


def _path(path) -> str:
    return jax.tree_util.keystr(path) or "(the data itself)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
