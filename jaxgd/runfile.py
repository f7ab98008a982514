"""Sweep files for ``jaxgd run``: the TOML schema, its validation, and the plan it resolves to.

A sweep file has these tables (every key optional unless marked; the README has a
complete example)::

    [problem]    name (required): a built-in ("digits_mlp", "linear_regression", ...) or
                 "module:function" returning (Problem, data) or a Problem; options: its
                 keyword arguments
    [data]       name ("digits", "synthetic_classification") and options, or files:
                 path (.npz / .csv) with inputs / targets naming arrays or columns in it,
                 or inputs / targets as paths of .npy or IDX files; num_classes, flatten,
                 scale; stream = true keeps the training set in host memory and streams
                 its batches to the device (jaxgd.HostData)
    [validation] a separate validation set from files, keys as [data]'s files (then
                 no [sweep] validation fraction)
    [sweep]      epochs (required), optimizer, batch_size (a size or a schedule table),
                 validation (a fraction, or false), split_seed, shuffle, drop_last,
                 divergence (loss / first loss that counts as diverged; inf: off),
                 schedule (the learning-rate schedule of every config: "cosine", ...;
                 its parameters, e.g. decay_epochs, are axes of [space.parameters]),
                 measure (per-step measurements, e.g. ["noise_scale"])
    [optimizer]  the optimizer family with its static options, as
                 jaxgd.optimizer(name, ranges=ranges, **options) (Hydra's _target_ with
                 its arguments): name, a built-in ("sgd", "adam", ...) or
                 "module:function" naming an optax factory ("optax:lion"), in place of
                 [sweep] optimizer; options, e.g. {nesterov = true}, the static choices
                 (numeric hyperparameters such as momentum stay in [space.parameters]);
                 ranges, e.g. {b1 = "[0, 0.5]"}, the intervals configs' values must lie in
    [space]      method ("grid", "random" or "quasirandom"), count, sample_seed
    [space.parameters]  one entry per hyperparameter, as in W&B sweep files:
                 a value or list; {value = x}; {values = [...]};
                 {min, max, distribution, count} with distribution "uniform",
                 "log_uniform_values" or "int_uniform" (a grid takes count points,
                 evenly or log-spaced; random and quasi-random spaces draw)
    [options]    the fields of jaxgd.SweepOptions (strategy, epochs_per_chunk, ...)
    [early_stopping]  metric, patience, min_delta, mode (jaxgd.EarlyStopping)
    [halving]    metric, eta, min_epochs, mode (jaxgd.SuccessiveHalving)
    [report]     metric (the target of the report), top (loss curves drawn), plots
    [checkpoint] every (chunks between checkpoints) or seconds, format ("auto", "orbax",
                 "npz"): checkpoints go to <output folder>/checkpoints
    [output]     folder (default runs/<file name>)

Errors name the key and its line. ``tomllib`` reports no positions for the values it
parsed, so the lines come from a scan of the source text (``key_lines``): table headers
set the current table, ``key =`` lines and the keys of inline tables on them are
recorded under their dotted path, and an error on a key without a line of its own
(an item of a list, a default) points at the nearest enclosing key that has one. A
value set with ``--set`` is reported as coming from the command line.

Example:
    >>> plan = load_text('''
    ... [problem]
    ... name = "linear_regression"
    ... [sweep]
    ... epochs = 3
    ... batch_size = 10
    ... validation = false
    ... [space.parameters]
    ... learning_rate = {values = [0.1, 0.01]}
    ... ''', "example.toml")
    >>> len(plan.space), plan.sweep_kwargs["batch_size"]
    (2, 10)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import itertools
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .options import SweepOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["RunPlan", "load", "load_text", "key_lines", "apply_overrides", "dump_toml"]

TABLES: dict[str, tuple[str, ...]] = {
    "": (
        "problem",
        "data",
        "validation",
        "sweep",
        "optimizer",
        "space",
        "options",
        "early_stopping",
        "halving",
        "report",
        "checkpoint",
        "output",
    ),
    "problem": ("name", "options"),
    "data": (
        "name",
        "options",
        "path",
        "inputs",
        "targets",
        "num_classes",
        "flatten",
        "scale",
        "stream",
    ),
    "validation": ("path", "inputs", "targets", "num_classes", "flatten", "scale"),
    "sweep": (
        "epochs",
        "optimizer",
        "batch_size",
        "validation",
        "split_seed",
        "shuffle",
        "drop_last",
        "divergence",
        "schedule",
        "measure",
    ),
    "optimizer": ("name", "options", "ranges"),
    "space": ("method", "count", "sample_seed", "parameters"),
    "early_stopping": ("metric", "patience", "min_delta", "mode"),
    "halving": ("metric", "eta", "min_epochs", "mode"),
    "report": ("metric", "top", "plots"),
    "checkpoint": ("every", "seconds", "format"),
    "output": ("folder",),
}
# [options] maps onto jaxgd.SweepOptions one to one: its fields are the keys.
TABLES["options"] = tuple(field.name for field in dataclasses.fields(SweepOptions))
PARAMETER_KEYS = ("value", "values", "min", "max", "distribution", "count")
DISTRIBUTIONS = ("uniform", "log_uniform_values", "int_uniform", "categorical")
METHODS = ("grid", "random", "quasirandom")
SCHEDULE_KEYS = ("initial", "factor", "at", "changes")
BUILTIN_PROBLEMS = (
    "linear_regression",
    "multiple_regression",
    "parabola",
    "digits_mlp",
    "digits_cnn",
    "mlp",
)
BUILTIN_DATA = ("digits", "synthetic_classification")
# Keys of a config that are not optimizer hyperparameters (jaxgd.space).
SPECIAL_PARAMETERS = ("batch_size", "seed", "optimizer", "norm_test")


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """What the report ranks by and how much it draws."""

    metric: str | None = None
    top: int = 10
    plots: bool = True


@dataclasses.dataclass
class RunPlan:
    """A sweep file resolved: everything ``jaxgd.sweep`` needs, checked.

    Attributes:
        source: the file's path (or the name given to ``load_text``).
        problem_name: as written in ``[problem] name``.
        problem, data: the problem and its dataset.
        space: the configs.
        space_method: "grid", "random" or "quasirandom".
        sweep_kwargs: keyword arguments of ``jaxgd.sweep`` (epochs, optimizer, ...).
        options: the ``jaxgd.SweepOptions``.
        callbacks: early stopping or halving, if asked for.
        report: the report settings.
        checkpoint: whether to checkpoint the sweep (``[checkpoint]``; the options hold
            how often).
        out: the output folder.
        document: the file as resolved (``--set`` applied, defaults filled in).
    """

    source: str
    problem_name: str
    problem: Any
    data: Any
    space: Any
    space_method: str
    sweep_kwargs: dict[str, Any]
    options: Any
    callbacks: list[Any]
    report: ReportSettings
    checkpoint: bool
    out: str
    document: dict[str, Any]


# --- locating keys in the source text ---------------------------------------------------

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"' + r"|'[^']*'"
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(_KEY, text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[str, int]:
    """``{dotted key: line number}`` for the tables and keys of a TOML text (1-based).

    Example:
        >>> key_lines('[sweep]\\nepochs = 3\\n[space.parameters]\\nlr = {min = 1, max = 2}')
        {'sweep': 1, 'sweep.epochs': 2, 'space.parameters': 3, 'space': 3, \
'space.parameters.lr': 4, 'space.parameters.lr.min': 4, 'space.parameters.lr.max': 4}
    """
    lines: dict[str, int] = {}
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_dotted(header.group(1))
            for depth in range(len(table), 0, -1):
                lines.setdefault(".".join(table[:depth]), number)
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            continue
        key = table + _split_dotted(assign.group(1))
        lines.setdefault(".".join(key), number)
        rest = line[assign.end() :]
        if rest.lstrip().startswith("{"):
            for inner in _INLINE_KEY.finditer(rest):
                lines.setdefault(".".join(key + _split_dotted(inner.group(1))), number)
    return lines


class _Source:
    """Where each key came from, to put in error messages."""

    def __init__(self, name: str, text: str, overridden: Sequence[str] = ()):
        self.name = name
        self.lines = key_lines(text)
        self.overridden = set(overridden)

    def where(self, key: str) -> str:
        parts = key.split(".")
        for depth in range(len(parts), 0, -1):
            prefix = ".".join(parts[:depth])
            if prefix in self.overridden:
                return f"--set {prefix}"
            if prefix in self.lines:
                return f"{self.name}:{self.lines[prefix]}"
        return self.name

    def error(self, key: str, message: str) -> InputError:
        return InputError(f"{self.where(key)}: {key}: {message}")


def _check_keys(src: _Source, prefix: str, table: Mapping[str, Any], known: Sequence[str]):
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        where = f"{prefix}.{key}" if prefix else key
        raise src.error(where, f"unknown key; {hint}")


def _table(src: _Source, doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise src.error(name, f"must be a table ([{name}]), got {table!r}")
    _check_keys(src, name, table, TABLES[name])
    return table


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(src: _Source, key: str, value: Any, meaning: str) -> int:
    if not _is_int(value) or value < 1:
        hint = f" (write {int(value)})" if isinstance(value, float) and value.is_integer() else ""
        raise src.error(key, f"{value!r}: must be a positive integer, {meaning}{hint}")
    return value


def _boolean(src: _Source, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise src.error(key, f"{value!r}: must be true or false")
    return value


def _string(src: _Source, key: str, value: Any, choices: Sequence[str] | None = None) -> str:
    if not isinstance(value, str):
        raise src.error(key, f"{value!r}: must be a string in quotes")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise src.error(key, f"{value!r}: choose one of {', '.join(choices)}{hint}")
    return value


# --- overrides ------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``3``, ``0.1``, ``[16, 64]``, ``true``, ``"adam"``), or
    the text itself when it is not a TOML value (``adam``)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """Apply ``key=value`` assignments (dotted keys) to ``doc`` in place; returns the keys.

    Example:
        >>> doc = {"sweep": {"epochs": 30}}
        >>> apply_overrides(doc, ["sweep.epochs=2", "space.parameters.seed=[0, 1]"])
        ['sweep.epochs', 'space.parameters.seed']
        >>> doc
        {'sweep': {'epochs': 2}, 'space': {'parameters': {'seed': [0, 1]}}}
    """
    keys = []
    for assignment in overrides:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not all(re.fullmatch(_BARE, p) for p in parts):
            raise InputError(
                f"--set {assignment!r}: expected KEY=VALUE with a dotted key, e.g. "
                "--set sweep.epochs=5 or --set space.parameters.learning_rate=[0.1,0.3]"
            )
        table = doc
        for depth, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise InputError(
                    f"--set {assignment!r}: {'.'.join(parts[: depth + 1])} is a value, not a "
                    "table, so it has no keys to set"
                )
        table[parts[-1]] = _parse_value(text.strip())
        keys.append(key)
    return keys


# --- the parts of the plan --------------------------------------------------------------


def _import_function(src: _Source, key: str, target: str, folder: str):
    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise src.error(key, f"{target!r}: write module:function, e.g. 'mymodels:make_problem'")
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # a module next to the sweep file imports as-is
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise src.error(
            key,
            f"{target!r}: cannot import {module_name!r} ({error}); put it next to the sweep "
            "file or on PYTHONPATH",
        ) from error
    finally:
        if added:
            sys.path.remove(folder)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise src.error(
            key, f"{target!r}: module {module_name!r} has no function {function_name!r}"
        )
    return function


def _call(src: _Source, key: str, function, options: dict[str, Any], what: str):
    try:
        return function(**options)
    except TypeError as error:
        raise src.error(f"{key}.options", f"{what} refused these options: {error}") from error


def _problem(src: _Source, doc: dict, folder: str):
    from . import problems
    from .problem import Problem

    table = _table(src, doc, "problem")
    if "name" not in table:
        raise src.error("problem", "needs name = a built-in problem or 'module:function'")
    name = _string(src, "problem.name", table["name"])
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise src.error("problem.options", f"{options!r}: must be a table of keyword arguments")
    if ":" in name:
        made = _call(
            src, "problem", _import_function(src, "problem.name", name, folder), options, name
        )
    else:
        _string(src, "problem.name", name, BUILTIN_PROBLEMS)
        made = _call(src, "problem", getattr(problems, name), options, name)
    problem, data = (made, None) if isinstance(made, Problem) else (None, None)
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], Problem):
        problem, data = made
    if problem is None:
        raise src.error(
            "problem.name",
            f"{name!r} returned {type(made).__name__}; expected a jaxgd.Problem or a "
            "(Problem, data) pair",
        )
    return name, problem, data


def _data(src: _Source, doc: dict, folder: str, builtin_data):
    """The dataset of ``[data]``; with ``stream = true`` as ``jaxgd.HostData`` (arrays
    read from .npy files stay memory-mapped)."""
    from .data import HostData

    table = dict(_table(src, doc, "data"))
    stream = _boolean(src, "data.stream", table.pop("stream", False))
    data = _load_data(src, table, folder, builtin_data)
    if stream:
        import jax

        # built-in data may hold device arrays; .npy files stay memory-mapped
        return HostData(
            jax.tree.map(lambda x: x if isinstance(x, np.ndarray) else np.asarray(x), data)
        )
    return data


def _load_data(src: _Source, table: dict, folder: str, builtin_data):
    from . import problems

    if not table:
        if builtin_data is None:
            raise src.error(
                "problem.name",
                "this problem brings no data: add a [data] table (a built-in name or files)",
            )
        return builtin_data
    options = table.get("options", {})
    if "name" in table:
        name = _string(src, "data.name", table["name"], BUILTIN_DATA)
        extra = sorted(set(table) - {"name", "options"})
        if extra:
            raise src.error(f"data.{extra[0]}", "files and a built-in name do not mix")
        if not isinstance(options, dict):
            raise src.error("data.options", f"{options!r}: must be a table of keyword arguments")
        loader = problems.load_digits if name == "digits" else problems.synthetic_classification
        return _call(src, "data", loader, options, name)
    if "options" in table:
        raise src.error("data.options", "options go with a built-in data name")
    return _data_files(src, "data", table, folder)


def _data_files(src: _Source, prefix: str, table: dict, folder: str):
    """The dataset that ``[prefix]``'s file keys (path, inputs, targets, num_classes,
    flatten, scale) name, paths relative to the sweep file's folder."""
    from .datafiles import load_dataset

    def resolve(value):
        return value if os.path.isabs(value) else os.path.join(folder, value)

    path = table.get("path")
    inputs, targets = table.get("inputs"), table.get("targets")
    if path is not None:
        path = resolve(_string(src, f"{prefix}.path", path))
    else:
        if inputs is None or targets is None:
            raise src.error(
                prefix,
                "give path (an .npz or .csv file) with inputs and targets naming what is in "
                "it, or inputs and targets as .npy / IDX file paths",
            )
        inputs = resolve(_string(src, f"{prefix}.inputs", inputs))
        targets = resolve(_string(src, f"{prefix}.targets", targets))
    num_classes = table.get("num_classes")
    if num_classes is not None:
        _positive_int(src, f"{prefix}.num_classes", num_classes, "the number of classes")
    flatten = _boolean(src, f"{prefix}.flatten", table.get("flatten", True))
    scale = table.get("scale")
    if scale is not None and (not _is_number(scale) or not math.isfinite(scale) or scale <= 0):
        raise src.error(f"{prefix}.scale", f"{scale!r}: must be a positive number")
    try:
        return load_dataset(
            path,
            inputs=inputs,
            targets=targets,
            num_classes=num_classes,
            flatten=flatten,
            scale=scale,
        )
    except InputError as error:
        key = str(error).split("=", 1)[0].split(":", 1)[0]
        if key in ("path", "inputs", "targets"):
            key = f"{prefix}.{key}"
        key = key if key.startswith(f"{prefix}.") else prefix
        raise src.error(key, str(error)) from error


def _check_mlp_widths(src: _Source, doc: dict, data) -> None:
    """The built-in MLP's first width is the inputs' features and its last the classes:
    an out-of-range label would be clamped by JAX indexing and train on the wrong class."""
    sizes = doc["problem"].get("options", {}).get("layer_sizes", (64, 256, 10))
    data = getattr(data, "arrays", data)  # HostData: its arrays
    features = np.shape(data["x"])[1:] if isinstance(data, dict) and "x" in data else None
    if features is not None and tuple(features) != (sizes[0],):
        raise src.error(
            "problem.options.layer_sizes",
            f"{list(sizes)} starts at {sizes[0]} inputs but the data's examples have shape "
            f"{tuple(features)}; make the first width {int(np.prod(features))}",
        )
    labels = data.get("y") if isinstance(data, dict) else None
    if labels is not None and np.issubdtype(np.asarray(labels).dtype, np.integer):
        top = int(np.max(labels))
        if top >= sizes[-1]:
            raise src.error(
                "problem.options.layer_sizes",
                f"{list(sizes)} ends at {sizes[-1]} classes but the data has label {top}; make "
                f"the last width at least {top + 1}",
            )


def _batch_size(src: _Source, key: str, value: Any):
    from .schedules import batch_schedule, increase_batch_size

    if isinstance(value, dict):
        _check_keys(src, key, value, SCHEDULE_KEYS)
        initial = _positive_int(src, f"{key}.initial", value.get("initial"), "the first batch size")
        try:
            if "changes" in value:
                changes = value["changes"]
                if not isinstance(changes, dict) or "factor" in value or "at" in value:
                    raise ValueError(
                        "changes must be a table {epoch = size, ...} and not mixed with "
                        "factor and at"
                    )
                return batch_schedule(initial, {int(e): s for e, s in changes.items()})
            if not _is_int(value.get("factor")) or not isinstance(value.get("at"), list):
                raise ValueError(
                    "a schedule needs factor (an integer) and at (a list of epochs), e.g. "
                    "{initial = 16, factor = 4, at = [2, 4]}, or changes = {5 = 64}"
                )
            return increase_batch_size(initial, value["factor"], value["at"])
        except ValueError as error:
            raise src.error(key, str(error)) from error
    return _positive_int(src, key, value, "the examples per update (or a schedule table)")


def _parameter(src: _Source, key: str, name: str, spec: Any, method: str):
    """One axis of the space: a list of values (grid) or a sampler ``u in [0, 1) -> value``."""
    if name == "batch_size" and isinstance(spec, dict) and set(spec) & set(SCHEDULE_KEYS):
        spec = [spec]  # one schedule: a constant of the space
    if not isinstance(spec, dict):
        values = spec if isinstance(spec, list) else [spec]
        return _values(src, key, name, values)
    _check_keys(src, key, spec, PARAMETER_KEYS)
    if "value" in spec:
        if len(spec) > 1:
            raise src.error(
                key, "value = x stands alone (a constant); use values = [...] for a list"
            )
        return _values(src, key, name, [spec["value"]])
    if "values" in spec:
        extra = sorted(set(spec) - {"values", "distribution"})
        if extra or spec.get("distribution", "categorical") != "categorical":
            raise src.error(f"{key}.{(extra or ['distribution'])[0]}", "does not go with values")
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise src.error(f"{key}.values", f"{spec['values']!r}: must be a non-empty list")
        return _values(src, key, name, spec["values"])
    if "min" not in spec or "max" not in spec:
        raise src.error(
            key,
            "give value, values, or a range {min = ..., max = ..., distribution = ...}",
        )
    low, high = spec["min"], spec["max"]
    distribution = spec.get("distribution", "uniform")
    if distribution == "log_uniform":
        raise src.error(
            f"{key}.distribution",
            "'log_uniform' takes exponents in W&B sweep files; write 'log_uniform_values' "
            "with min and max as the values themselves",
        )
    _string(src, f"{key}.distribution", distribution, DISTRIBUTIONS[:3])
    for bound, value in (("min", low), ("max", high)):
        if not _is_number(value) or not math.isfinite(value):
            raise src.error(f"{key}.{bound}", f"{value!r}: must be a finite number")
    if not low < high:
        raise src.error(key, f"min = {low!r} must be less than max = {high!r}")
    if distribution == "log_uniform_values" and low <= 0:
        raise src.error(f"{key}.min", f"{low!r}: a log range needs min > 0")
    if distribution == "int_uniform" and not (_is_int(low) and _is_int(high)):
        raise src.error(key, "int_uniform needs integer min and max")
    count = spec.get("count")
    if method == "grid":
        if count is None:
            raise src.error(
                key,
                "a range in a grid needs count = the number of points (or use method = "
                "'random' in [space])",
            )
        count = _positive_int(src, f"{key}.count", count, "the number of grid points")
        unit = np.linspace(0.0, 1.0, count) if count > 1 else np.array([0.0])
        return _values(src, key, name, _from_unit(unit, distribution, low, high, grid=True))
    if count is not None:
        raise src.error(
            f"{key}.count", "count sets grid points; a random space's size is [space] count"
        )
    return lambda unit: _from_unit(unit, distribution, low, high, grid=False)


def _from_unit(unit: np.ndarray, distribution: str, low, high, *, grid: bool) -> list:
    """Map points of [0, 1] onto the range: linear, logarithmic or integers."""
    if distribution == "log_uniform_values":
        values = np.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
        if grid:
            values[[0, -1]] = low, high  # exactly the ends, not exp(log(x)) rounding
        return [float(v) for v in values]
    if distribution == "int_uniform":
        if grid:
            return sorted({int(round(v)) for v in low + unit * (high - low)})
        return [int(v) for v in np.minimum(low + np.floor(unit * (high - low + 1)), high)]
    return [float(v) for v in low + unit * (high - low)]


def _values(src: _Source, key: str, name: str, values: list) -> list:
    resolved = []
    for index, value in enumerate(values):
        if name == "batch_size":
            resolved.append(_batch_size(src, f"{key}.values", value))
        elif name == "seed":
            if not _is_int(value) or value < 0:
                raise src.error(
                    f"{key}.values", f"item {index}: {value!r}: seeds are integers >= 0"
                )
            resolved.append(value)
        elif name in ("optimizer", "schedule") or isinstance(value, bool):
            resolved.append(value)
        elif isinstance(value, str) or not _is_number(value):
            raise src.error(
                f"{key}.values" if len(values) > 1 else key,
                f"item {index}: {value!r}: hyperparameter values are numbers",
            )
        else:
            resolved.append(value)
    return resolved


def _space(src: _Source, doc: dict, optimizer: str):
    from .optimizers import optimizer as make_optimizer
    from .space import Space

    table = _table(src, doc, "space")
    method = _string(src, "space.method", table.get("method", "grid"), METHODS)
    parameters = table.get("parameters", {})
    if not isinstance(parameters, dict) or not parameters:
        raise src.error(
            "space.parameters",
            "needs at least one hyperparameter, e.g. learning_rate = {values = [0.1, 0.01]}",
        )
    if method == "grid":
        for key in ("count", "sample_seed"):
            if key in table:
                raise src.error(f"space.{key}", "applies to random and quasirandom spaces only")
    families = parameters.get("optimizer", optimizer)
    families = families.get("values", []) if isinstance(families, dict) else families
    families = families if isinstance(families, list) else [families]
    known = set(SPECIAL_PARAMETERS)
    schedules = _schedules(src, doc, parameters)
    for family in families:
        try:
            base = make_optimizer(family)
        except (ValueError, TypeError) as error:
            key = "space.parameters.optimizer" if "optimizer" in parameters else "sweep.optimizer"
            raise src.error(key, str(error)) from error
        known |= set(base.hyperparameter_names) | {n for n, _ in base.static_options}
        known |= _schedule_parameters(base, schedules)
    for name in parameters:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
            raise src.error(
                f"space.parameters.{name}",
                f"not a hyperparameter of {', '.join(getattr(f, 'name', f) for f in families)}; "
                f"{hint}",
            )
    axes = {
        name: _parameter(src, f"space.parameters.{name}", name, spec, method)
        for name, spec in parameters.items()
    }
    if method == "grid":
        names = list(axes)
        configs = tuple(dict(zip(names, combo)) for combo in itertools.product(*axes.values()))
        return method, Space(configs)
    count = _positive_int(src, "space.count", table.get("count"), f"the number of {method} configs")
    seed = table.get("sample_seed", 0)
    if not _is_int(seed) or seed < 0:
        raise src.error("space.sample_seed", f"{seed!r}: must be an integer >= 0")
    unit = _unit_points(method, count, len(axes), seed)
    columns = {}
    for column, (name, axis) in enumerate(axes.items()):
        if callable(axis):
            columns[name] = axis(unit[:, column])
        else:
            picks = np.minimum((unit[:, column] * len(axis)).astype(int), len(axis) - 1)
            columns[name] = [axis[i] for i in picks]
    return method, Space(tuple({n: columns[n][i] for n in columns} for i in range(count)))


def _unit_points(method: str, count: int, dimensions: int, seed: int) -> np.ndarray:
    """``[count, dimensions]`` points of [0, 1): independent uniform draws, or the points
    of ``jaxgd.quasi_random`` (its default sequence, scrambled Halton, with ``seed`` as its
    ``sample_seed``), which cover the cube more evenly for the same count; so a sweep
    file's quasi-random space is the one ``jaxgd.quasi_random`` gives for the same
    ranges."""
    if method == "random":
        return np.random.default_rng(seed).random((count, dimensions))
    from .space import quasi_random, uniform

    axes = {f"u{j}": uniform(0.0, 1.0) for j in range(dimensions)}
    space = quasi_random(count, seed, **axes)
    return np.array([[config[name] for name in axes] for config in space], np.float64)


def _sweep_kwargs(src: _Source, doc: dict) -> dict[str, Any]:
    table = _table(src, doc, "sweep")
    if "epochs" not in table:
        raise src.error(
            "sweep", "needs epochs = the passes over the training set, e.g. epochs = 10"
        )
    kwargs: dict[str, Any] = {
        "epochs": _positive_int(src, "sweep.epochs", table["epochs"], "the passes over the data"),
        "optimizer": None,  # _optimizer: [sweep] optimizer or the [optimizer] table
    }
    if "batch_size" in table:
        kwargs["batch_size"] = _batch_size(src, "sweep.batch_size", table["batch_size"])
    validation = table.get("validation", 0.2)
    if validation is False:
        validation = None
    elif not isinstance(validation, float) or not 0 < validation < 1:
        raise src.error(
            "sweep.validation",
            f"{validation!r}: a fraction held out for validation, 0 < validation < 1 (e.g. "
            "0.2), or false for none",
        )
    kwargs["validation"] = validation
    split_seed = table.get("split_seed", 0)
    if not _is_int(split_seed) or split_seed < 0:
        raise src.error("sweep.split_seed", f"{split_seed!r}: must be an integer >= 0")
    kwargs["split_seed"] = split_seed
    for key, default in (("shuffle", True), ("drop_last", False)):
        kwargs[key] = _boolean(src, f"sweep.{key}", table.get(key, default))
    if "divergence" in table:
        value = table["divergence"]
        if not _is_number(value) or not value > 1:
            raise src.error(
                "sweep.divergence",
                f"{value!r}: a loss above divergence x the config's first loss counts as "
                "diverged; give a number > 1 (default 1000), or inf to turn it off",
            )
        kwargs["divergence"] = float(value)
    if "measure" in table:
        kwargs["measure"] = _measure(src, table["measure"])
    return kwargs


def _measure(src: _Source, value: Any) -> list[str]:
    """``[sweep] measure``: the per-step measurements (``jaxgd.sweep(measure=...)``)."""
    from .core.step import MEASUREMENTS

    known = sorted(MEASUREMENTS)
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise src.error(
            "sweep.measure",
            f"{value!r}: must be a list of names from {known}, e.g. ['noise_scale']",
        )
    for name in value:
        _string(src, "sweep.measure", name, known)
    return value


def _optimizer(src: _Source, doc: dict, folder: str):
    """The optimizer family of every config: ``[sweep] optimizer`` (a built-in name), or
    the ``[optimizer]`` table, which is ``jaxgd.optimizer(name, ranges=ranges, **options)``
    with name a built-in or "module:function" (an optax factory such as "optax:lion")."""
    from .optimizers import OPTIMIZERS, SCHEDULES, in_interval
    from .optimizers import optimizer as make_optimizer

    sweep_name = doc.get("sweep", {}).get("optimizer")
    if "optimizer" not in doc:
        return _string(src, "sweep.optimizer", "sgd" if sweep_name is None else sweep_name)
    table = _table(src, doc, "optimizer")
    if "name" in table and sweep_name is not None:
        raise src.error("optimizer.name", "is set in [sweep] optimizer too; set it in one place")
    parameters = doc.get("space", {}).get("parameters", {})
    if isinstance(parameters, dict) and "optimizer" in parameters:
        raise src.error(
            "space.parameters.optimizer",
            "an optimizer axis does not go with an [optimizer] table (the options of one "
            "family); sweep static options as axes instead, e.g. nesterov = [true, false]",
        )
    key = "optimizer.name" if "name" in table else "sweep.optimizer"
    name = _string(src, key, table.get("name", "sgd" if sweep_name is None else sweep_name))
    builtin = ":" not in name
    if builtin:
        family = _string(src, key, name, sorted(OPTIMIZERS))
        static = OPTIMIZERS[name][2]
    else:
        family = _import_function(src, key, name, folder)
        try:
            base = make_optimizer(family)
        except InputError as error:
            raise src.error(key, str(error)) from error
        static = {
            p.name: p.default
            for p in inspect.signature(family).parameters.values()
            if p.name != "learning_rate" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise src.error(
            "optimizer.options",
            f"{options!r}: must be a table of static options, e.g. {{nesterov = true}}",
        )
    hyperparameters = OPTIMIZERS[name][1] if builtin else dict(base.defaults)
    for option, value in options.items():
        option_key = f"optimizer.options.{option}"
        if option == "schedule":
            raise src.error(
                option_key, "the learning-rate schedule is [sweep] schedule; set it there"
            )
        if builtin and option in hyperparameters:
            raise src.error(
                option_key,
                f"is a hyperparameter of {name!r} (a value per config); set it in "
                f"[space.parameters] ({option} = {value!r}); options are the static choices "
                f"{sorted(static)}",
            )
        if option not in static:
            close = difflib.get_close_matches(option, sorted(static), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"it has {sorted(static)}"
            raise src.error(option_key, f"not a static option of {name!r}; {hint}")
        if isinstance(static[option], bool):
            _boolean(src, option_key, value)
        if option in parameters:
            raise src.error(
                f"space.parameters.{option}",
                "is set in [optimizer] options too; set it in one place",
            )
    ranges = table.get("ranges", {})
    if not isinstance(ranges, dict):
        raise src.error(
            "optimizer.ranges",
            f'{ranges!r}: must be a table of intervals, e.g. {{b1 = "[0, 1)"}}',
        )
    parameters = parameters if isinstance(parameters, dict) else {}
    schedules = _schedules(src, doc, parameters)
    rangeable = ["learning_rate", *(n for n in hyperparameters if n not in options)]
    rangeable += [n for s in schedules for n in SCHEDULES[s][1] if n not in rangeable]
    for hyperparameter, interval in ranges.items():
        range_key = f"optimizer.ranges.{hyperparameter}"
        if hyperparameter not in rangeable:
            close = difflib.get_close_matches(hyperparameter, rangeable, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"it takes {rangeable}"
            raise src.error(range_key, f"not a hyperparameter of {name!r}; {hint}")
        _string(src, range_key, interval)
        try:
            make_optimizer(family, ranges={hyperparameter: interval})
        except InputError as error:
            raise src.error(range_key, str(error)) from error
        default = hyperparameters.get(hyperparameter)
        if (
            default is not None
            and hyperparameter not in parameters
            and not in_interval(default, interval)
        ):
            raise src.error(
                range_key,
                f"{interval!r} leaves out the default {hyperparameter}={default!r} that every "
                f"config uses; set {hyperparameter} in [space.parameters] or widen the range",
            )
    try:
        return make_optimizer(family, ranges=ranges or None, **options)
    except InputError as error:  # pragma: no cover - the checks above name the key
        raise src.error("optimizer", str(error)) from error


def _validation_file(src: _Source, doc: dict, folder: str, kwargs: dict[str, Any]) -> None:
    """``[validation]``: a separate validation set read from files, in place of the
    fraction of the training data that ``[sweep] validation`` holds out."""
    if "validation" not in doc:
        return
    table = _table(src, doc, "validation")
    if "validation" in doc.get("sweep", {}):
        raise src.error(
            "sweep.validation",
            "a [validation] table gives the validation set; remove sweep.validation (the "
            "fraction held out) or the table",
        )
    kwargs["validation"] = _data_files(src, "validation", table, folder)


def _schedules(src: _Source, doc: dict, parameters: dict[str, Any]) -> list[str]:
    """The learning-rate schedules the configs use: ``[sweep] schedule`` (every config's)
    or a ``schedule`` axis of ``[space.parameters]``; checked against
    ``jaxgd.optimizers.SCHEDULES``."""
    from .optimizers import SCHEDULES

    known = sorted(SCHEDULES)
    sweep_schedule = doc.get("sweep", {}).get("schedule")
    if sweep_schedule is not None:
        if "schedule" in parameters:
            raise src.error(
                "space.parameters.schedule",
                "is set in [sweep] schedule too; set it in one place",
            )
        return [_string(src, "sweep.schedule", sweep_schedule, known)]
    spec = parameters.get("schedule")
    if spec is None:
        return []
    values = spec.get("values", spec.get("value")) if isinstance(spec, dict) else spec
    values = values if isinstance(values, list) else [values]
    return [_string(src, "space.parameters.schedule", value, known) for value in values]


def _with_schedule(doc: dict, space):
    """``[sweep] schedule`` set on every config (a static option of its optimizer)."""
    from .space import Space

    schedule = doc.get("sweep", {}).get("schedule")
    if schedule is None:
        return space
    return Space(tuple({**config, "schedule": schedule} for config in space))


def _schedule_parameters(optimizer, schedules: Sequence[str]) -> set[str]:
    """The space keys the schedules add to ``optimizer``: their parameters, and those
    counted in updates also in epochs (``decay_epochs``)."""
    from .optimizers import epochs_name, step_parameters
    from .optimizers import optimizer as make_optimizer

    names = {"schedule"} if schedules else set()
    for schedule in schedules:
        family = make_optimizer(optimizer, schedule=schedule)
        names |= set(family.hyperparameter_names)
        names |= {epochs_name(n) for n in step_parameters(schedule)}
    return names


def _options(src: _Source, doc: dict, checkpoint: dict[str, Any] | None):
    table = _table(src, doc, "options")
    epochs = doc["sweep"]["epochs"]
    chunk = table.get("epochs_per_chunk", 1)
    if _is_int(chunk) and chunk > 0 and epochs % chunk:
        raise src.error(
            "options.epochs_per_chunk",
            f"{chunk}: must divide sweep.epochs = {epochs} (chunks end together), e.g. "
            f"{max(d for d in range(1, chunk + 1) if epochs % d == 0)}",
        )
    fields = {**table, **(checkpoint or {})}
    try:
        return SweepOptions(**fields)
    except (ValueError, TypeError) as error:
        field = str(error).split("=", 1)[0]
        if field in table:
            key = f"options.{field}"
        elif field in fields:
            key = "checkpoint." + field.removeprefix("checkpoint_")
        else:
            key = "options"
        raise src.error(key, str(error)) from error


def _callbacks(src: _Source, doc: dict) -> list[Any]:
    from .run.callbacks import EarlyStopping, SuccessiveHalving

    callbacks = []
    for name, kind in (("early_stopping", EarlyStopping), ("halving", SuccessiveHalving)):
        if name not in doc:
            continue
        table = _table(src, doc, name)
        try:
            callbacks.append(kind(**table))
        except (ValueError, TypeError) as error:
            field = next((k for k in table if f"({k}=" in str(error)), None)
            raise src.error(f"{name}.{field}" if field else name, str(error)) from error
    return callbacks


def _report(src: _Source, doc: dict) -> ReportSettings:
    table = _table(src, doc, "report")
    metric = table.get("metric")
    if metric is not None:
        _string(src, "report.metric", metric)
    top = _positive_int(src, "report.top", table.get("top", 10), "the loss curves drawn")
    return ReportSettings(metric, top, _boolean(src, "report.plots", table.get("plots", True)))


def _check_metrics(src: _Source, plan: RunPlan) -> None:
    """The metrics named by the report and the callbacks exist for this problem and split."""
    import jax

    from .problem import Problem

    problem: Problem = plan.problem
    names = ["loss"]
    if problem.metrics is not None:

        def example(leaf):
            dtype = np.asarray(leaf[:1]).dtype
            if np.issubdtype(dtype, np.floating):
                dtype = jax.numpy.result_type(float)
            elif np.issubdtype(dtype, np.integer):
                dtype = np.int32
            return jax.ShapeDtypeStruct(np.shape(leaf)[1:], dtype)

        try:
            params = jax.eval_shape(problem.init, jax.random.key(0))
            values = jax.eval_shape(problem.metrics, params, jax.tree.map(example, plan.data))
        except Exception:  # noqa: BLE001 - the sweep's own checks name what does not fit
            return
        names += list(values)
    available = [f"train_{n}" for n in names[:1]]
    if plan.sweep_kwargs["validation"] is not None:
        available += [f"val_{n}" for n in names]
    keys = [("report.metric", plan.report.metric)]
    keys += [
        (f"{k}.metric", getattr(c, "metric", None))
        for k, c in zip(_callback_keys(plan), plan.callbacks)
    ]
    for key, metric in keys:
        if metric is not None and metric not in available:
            close = difflib.get_close_matches(metric, available, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise src.error(
                key, f"{metric!r} is not recorded by this sweep; it records {available}{hint}"
            )


def _callback_keys(plan: RunPlan) -> list[str]:
    return [k for k in ("early_stopping", "halving") if k in plan.document]


def _check_configs(src: _Source, plan: RunPlan) -> None:
    """Resolve the configs as ``jaxgd.sweep`` will, so that a bad batch size or
    hyperparameter names its key and line before anything compiles."""
    from .configs import resolve_configs
    from .data import num_examples
    from .validate import check_hyperparameters

    try:
        total = num_examples(plan.data)
    except ValueError as error:
        raise src.error("data", str(error)) from error
    validation = plan.sweep_kwargs["validation"]
    fraction = isinstance(validation, float)
    num_train = total - round(total * validation) if fraction else total
    try:
        configs = resolve_configs(
            plan.space,
            plan.sweep_kwargs["optimizer"],
            plan.sweep_kwargs.get("batch_size"),
            num_train,
        )
        check_hyperparameters(configs)
    except (ValueError, TypeError) as error:
        message = str(error).replace("with jaxgd.optimizer(..., ranges=", "in [optimizer] ranges (")
        names = [n for n in plan.document.get("space", {}).get("parameters", {}) if n in message]
        if "batch_size" in message and "batch_size" not in names:
            key = "sweep.batch_size" if "batch_size" in plan.document.get("sweep", {}) else "space"
        else:
            key = f"space.parameters.{names[0]}" if names else "space"
        raise src.error(key, message) from error


def _checkpoint(src: _Source, doc: dict) -> dict[str, Any] | None:
    """``[checkpoint]`` as ``SweepOptions`` fields (``checkpoint_every``, ...), or None
    when the file asks for no checkpoints."""
    if "checkpoint" not in doc:
        return None
    table = _table(src, doc, "checkpoint")
    fields = {f"checkpoint_{key}": value for key, value in table.items()}
    both = sorted(set(fields) & set(doc.get("options", {})))
    if both:
        raise src.error(f"options.{both[0]}", "is set in [checkpoint] too; set it in one place")
    if "every" in table:
        _positive_int(src, "checkpoint.every", table["every"], "chunks between checkpoints")
    return fields


def load_text(
    text: str, name: str = "<sweep>", overrides: Sequence[str] = (), folder: str | None = None
) -> RunPlan:
    """Parse and check a sweep file's text; ``overrides`` are ``--set`` assignments.

    Raises:
        jaxgd.InputError: naming the file, the line and the key.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{name}: not valid TOML: {error}") from error
    overridden = apply_overrides(doc, overrides)
    src = _Source(name, text, overridden)
    _check_keys(src, "", doc, TABLES[""])
    folder = folder if folder is not None else os.path.dirname(os.path.abspath(name))
    problem_name, problem, builtin_data = _problem(src, doc, folder)
    data = _data(src, doc, folder, builtin_data)
    if problem_name == "mlp":
        _check_mlp_widths(src, doc, data)
    sweep_kwargs = _sweep_kwargs(src, doc)
    sweep_kwargs["optimizer"] = _optimizer(src, doc, folder)
    _validation_file(src, doc, folder, sweep_kwargs)
    method, space = _space(src, doc, sweep_kwargs["optimizer"])
    space = _with_schedule(doc, space)
    checkpoint = _checkpoint(src, doc)
    options = _options(src, doc, checkpoint)
    callbacks = _callbacks(src, doc)
    report = _report(src, doc)
    output = _table(src, doc, "output")
    stem = os.path.splitext(os.path.basename(name))[0] or "sweep"
    out = _string(src, "output.folder", output.get("folder", os.path.join("runs", stem)))
    plan = RunPlan(
        source=name,
        problem_name=problem_name,
        problem=problem,
        data=data,
        space=space,
        space_method=method,
        sweep_kwargs=sweep_kwargs,
        options=options,
        callbacks=callbacks,
        report=report,
        checkpoint=checkpoint is not None,
        out=out,
        document=doc,
    )
    _check_metrics(src, plan)
    _check_configs(src, plan)
    plan.document = _resolved_document(plan)
    return plan


def load(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RunPlan:
    """Read, parse and check the sweep file at ``path`` (see ``load_text``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        reason = "is a folder" if os.path.isdir(path) else "does not exist"
        raise InputError(f"CONFIG={path!r}: {reason}; expected a sweep file such as sweep.toml")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a UTF-8 text file ({error})") from error
    return load_text(text, path, overrides)


def _resolved_document(plan: RunPlan) -> dict[str, Any]:
    """The file with ``--set`` applied and the defaults that were used filled in."""
    doc = {name: dict(value) for name, value in plan.document.items() if isinstance(value, dict)}
    sweep = doc.setdefault("sweep", {})
    for key, value in plan.sweep_kwargs.items():
        if key == "batch_size" and not isinstance(value, int):
            continue  # a schedule stays as written
        if key == "optimizer" and not isinstance(value, str):
            if "optimizer" not in sweep:
                doc["optimizer"].setdefault("name", "sgd")
            continue  # the [optimizer] table says it, as written
        if key == "validation" and isinstance(value, Mapping):
            continue  # the [validation] table names its files
        sweep[key] = False if key == "validation" and value is None else value
    options = doc.setdefault("options", {})
    for field in dataclasses.fields(plan.options):
        value = getattr(plan.options, field.name)
        if field.name.startswith("checkpoint_") and field.name not in options:
            continue  # [checkpoint] says it, as written
        if value is not None:
            options[field.name] = value
    doc.setdefault("space", {}).setdefault("method", plan.space_method)
    report = doc.setdefault("report", {})
    for field in dataclasses.fields(plan.report):
        value = getattr(plan.report, field.name)
        if value is not None:
            report[field.name] = value
    doc.setdefault("output", {})["folder"] = plan.out
    return doc


# --- writing TOML back ------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: Any) -> str:
    key = str(key)
    return key if re.fullmatch(_BARE, key) else _toml_value(key)


def dump_toml(doc: Mapping[str, Any]) -> str:
    """A TOML text of ``doc`` (tables of values; nested tables one level deep become
    ``[a.b]`` headers, deeper ones inline tables).

    Example:
        >>> print(dump_toml({"sweep": {"epochs": 3}, "space": {"parameters": {"lr": [0.1]}}}))
        [sweep]
        epochs = 3
        <BLANKLINE>
        [space.parameters]
        lr = [0.1]
        <BLANKLINE>
    """
    lines: list[str] = []

    def table(path: list[str], values: Mapping[str, Any]) -> None:
        inline = len(path) >= 2  # [a.b] holds its entries inline, tables included
        plain = {k: v for k, v in values.items() if inline or not isinstance(v, Mapping)}
        nested = {k: v for k, v in values.items() if k not in plain}
        if plain or not nested:
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in plain.items())
            lines.append("")
        for key, value in nested.items():
            table([*path, key], value)

    for name, value in doc.items():
        if isinstance(value, Mapping):
            table([name], value)
        else:
            lines.insert(0, f"{_toml_key(name)} = {_toml_value(value)}")
    return "\n".join(lines)
