"""The space's configs, validated and split into what keys a program and what is data.

Resolving works column by column (``jaxgd.columns``): the configs are grouped by what is
static (optimizer family and options, hyperparameter names) and every check and
conversion is one NumPy pass over a group's columns, so a million configs resolve in
array time; a refusal still names the first config at fault.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .columns import ConfigRows, factorize, group_members
from .columns import plain as scalar
from .data import BatchPlan
from .errors import InputError
from .optimizers import Optimizer, epochs_name, step_parameters
from .optimizers import optimizer as make_optimizer
from .schedules import BatchSchedule
from .space import Space

__all__ = ["ConfigKind", "ResolvedConfig", "ResolvedConfigs", "resolve_configs"]


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


def _check_int(name: str, value: Any, index: int) -> int:
    value = scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"config {index}: {name}={value!r} must be an integer")
    return int(value)


@dataclasses.dataclass(frozen=True)
class ConfigKind:
    """What configs of one group share: the optimizer (its static options fixed), the
    static options as the configs gave them, and the hyperparameter names in row order."""

    optimizer: Optimizer
    static: tuple[tuple[str, Any], ...]
    names: tuple[str, ...]


class ResolvedConfigs(Sequence):
    """The resolved configs as columns; indexing gives one ``ResolvedConfig``.

    Attributes:
        kinds, kind: the distinct ``ConfigKind``s and ``[K]`` each config's.
        optimizers, optimizer_code: the distinct optimizers and ``[K]`` each config's.
        batch_size_values, batch_size_code: the distinct batch sizes (ints or
            ``BatchSchedule``s) and ``[K]`` each config's.
        seed: ``[K]`` int64; norm_test: ``[K]`` θ (inf: off).
        hyperparams: ``{name: [K] float64}``, NaN where a config's optimizer has no such
            hyperparameter.
    """

    def __init__(
        self, kinds, kind, batch_size_values, batch_size_code, seed, norm_test, hyperparams
    ):
        self.kinds, self.kind = list(kinds), np.asarray(kind, np.int64)
        self.batch_size_values = list(batch_size_values)
        self.batch_size_code = np.asarray(batch_size_code, np.int64)
        self.seed, self.norm_test = seed, norm_test
        self.hyperparams = hyperparams
        self.optimizers = list(dict.fromkeys(k.optimizer for k in self.kinds))
        to_optimizer = np.array([self.optimizers.index(k.optimizer) for k in self.kinds])
        self.optimizer_code = to_optimizer[self.kind] if len(self.kinds) > 1 else self.kind
        self._rows: ConfigRows | None = None

    def __len__(self) -> int:
        return self.kind.size

    def __getitem__(self, index: int) -> ResolvedConfig:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        kind = self.kinds[self.kind[index]]
        hyperparams = {name: float(self.hyperparams[name][index]) for name in kind.names}
        return ResolvedConfig(
            kind.optimizer,
            self.batch_size_values[self.batch_size_code[index]],
            int(self.seed[index]),
            hyperparams,
            self.rows[index],
            float(self.norm_test[index]),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def take(self, indices: np.ndarray) -> ResolvedConfigs:
        """The configs at ``indices``, in that order."""
        indices = np.asarray(indices, np.int64)
        return ResolvedConfigs(
            self.kinds,
            self.kind[indices],
            self.batch_size_values,
            self.batch_size_code[indices],
            self.seed[indices],
            self.norm_test[indices],
            {name: values[indices] for name, values in self.hyperparams.items()},
        )

    def used_batch_sizes(self) -> list[int | BatchSchedule]:
        """The distinct batch sizes (ints or schedules) the configs use, in order."""
        if len(self.batch_size_values) == 1:
            return list(self.batch_size_values)
        used = np.bincount(self.batch_size_code, minlength=len(self.batch_size_values)) > 0
        return [b for b, u in zip(self.batch_size_values, used) if u]

    def fixed_batch_sizes(self) -> np.ndarray:
        """``[K]`` each config's batch size (every one fixed, no schedules)."""
        values = [b if isinstance(b, int) else -1 for b in self.batch_size_values]
        return np.asarray(values, np.int64)[self.batch_size_code]

    @functools.cached_property
    def adaptive(self) -> np.ndarray:
        """``[K]`` whether the norm test sets each config's batch size."""
        return np.isfinite(self.norm_test)

    def batch_sizes(self, epochs: int) -> np.ndarray:
        """``[K, epochs]``: each config's batch size at each epoch's start."""
        per_value = np.array([_per_epoch(b, epochs) for b in self.batch_size_values], np.int64)
        if len(self.batch_size_values) == 1:
            return np.broadcast_to(per_value, (len(self), epochs))  # read-only view
        return per_value[self.batch_size_code]

    def groups(self, by_batch_size: bool = True) -> list[tuple[Optimizer, Any, np.ndarray]]:
        """``(optimizer, batch size or None, members)`` per distinct optimizer (and batch
        size), in order of first appearance; members are config indices, in order."""
        if len(self.optimizers) == 1 and (not by_batch_size or len(self.batch_size_values) == 1):
            size = self.batch_size_values[0] if by_batch_size else None
            return [(self.optimizers[0], size, self.every_index)]
        if not by_batch_size:
            codes = self.optimizer_code
            members = group_members(codes, len(self.optimizers))
            return [(o, None, m) for o, m in zip(self.optimizers, members) if m.size]
        combined = self.optimizer_code * len(self.batch_size_values) + self.batch_size_code
        uniques, codes = factorize(combined)
        members = group_members(codes, len(uniques))
        return [
            (
                self.optimizers[int(u) // len(self.batch_size_values)],
                self.batch_size_values[int(u) % len(self.batch_size_values)],
                m,
            )
            for u, m in zip(uniques.tolist(), members)
        ]

    @functools.cached_property
    def every_index(self) -> np.ndarray:
        """``0..K-1``, read-only: one array for every caller of ``groups`` (a million
        indices each time cost fresh memory each time)."""
        indices = np.arange(len(self))
        indices.flags.writeable = False
        return indices

    def seeds_of(self, members: np.ndarray) -> np.ndarray:
        """``[len(members)]`` the seeds of ``members`` (ascending config indices, as
        ``groups`` gives them; every config: the column itself, not a gathered copy)."""
        return self.seed if len(members) == len(self) else self.seed[members]

    def hyperparams_of(self, members: np.ndarray, optimizer: Optimizer) -> dict[str, np.ndarray]:
        """``{name: [len(members)]}`` the hyperparameters of ``optimizer`` for ``members``
        (ascending config indices, as ``groups`` gives them)."""
        whole = len(members) == len(self)  # every config, in order (as ``groups`` gives)
        return {
            name: self.hyperparams[name] if whole else self.hyperparams[name][members]
            for name in optimizer.hyperparameter_names
        }

    @property
    def rows(self) -> ConfigRows:
        """Per config, the row a result shows: ``optimizer``, static options,
        hyperparameters, ``batch_size`` (a schedule as text), ``seed`` and ``norm_test``
        when on; dicts built only when asked."""
        if self._rows is None:
            self._rows = self._build_rows()
        return self._rows

    def _build_rows(self) -> ConfigRows:
        count = len(self)
        adaptive = self.adaptive
        if len(self.kinds) == 1 and not adaptive.any():  # one block of every config
            used, codes, members_by = np.zeros(1, np.int64), None, [range(count)]
        else:
            shapes = self.kind * 2 + adaptive if adaptive.any() else self.kind
            used, codes = factorize(shapes)
            members_by = group_members(codes, len(used))
        shown = [str(b) if isinstance(b, BatchSchedule) else b for b in self.batch_size_values]
        sizes = np.array(shown, dtype=object if str in map(type, shown) else np.int64)
        blocks, block_sizes = [], []
        for shape, members in zip(used.tolist(), members_by):
            whole = len(members) == count
            kind = self.kinds[shape // 2 if adaptive.any() else shape]

            def pick(values, whole=whole, members=members):
                return values if whole else values[members]

            n = len(members)
            block = {"optimizer": _repeat(kind.optimizer.name, n)}
            for name, value in kind.static:
                block[name] = _repeat(value, n)
            for name in kind.names:
                block[name] = pick(self.hyperparams[name])
            block["batch_size"] = (
                _repeat(sizes[0], n) if sizes.size == 1 else sizes[pick(self.batch_size_code)]
            )
            block["seed"] = pick(self.seed)
            if adaptive.any() and shape % 2:
                block["norm_test"] = pick(self.norm_test)
            blocks.append(block)
            block_sizes.append(n)
        if len(blocks) == 1:
            return ConfigRows(blocks, sizes=block_sizes)
        position = np.empty(count, np.int64)
        for members in members_by:
            position[members] = np.arange(members.size)
        return ConfigRows(blocks, codes, position, sizes=block_sizes)


def _repeat(value: Any, count: int) -> np.ndarray:
    """``count`` copies of ``value`` as a column (a broadcast view, no copy)."""
    one = np.empty(1, object)
    one[0] = value.item() if isinstance(value, np.generic) else value
    if isinstance(one[0], (int, float)) and not isinstance(one[0], bool):
        one = np.array([one[0]])
    return np.broadcast_to(one, (count,))


def _per_epoch(size: int | BatchSchedule, epochs: int) -> list[int]:
    return size.per_epoch(epochs) if isinstance(size, BatchSchedule) else [size] * epochs


def _first(bad: np.ndarray) -> int | None:
    """The first index where ``bad`` holds, or None."""
    return int(np.argmax(bad)) if bad.any() else None


class _Part:
    """Configs of one block that share an optimizer and static options: their columns
    and where they sit in the sweep (a slice, or indices)."""

    def __init__(self, columns: dict[str, np.ndarray], where: slice | np.ndarray, size: int):
        self.columns, self.where, self.size = columns, where, size

    def index(self, local: int) -> int:
        """The sweep index of the part's config ``local``."""
        if isinstance(self.where, slice):
            return self.where.start + local
        return int(self.where[local])

    def subset(self, local: np.ndarray) -> _Part:
        if local.size == self.size:
            return self
        where = (
            np.arange(self.where.start, self.where.stop)[local]
            if isinstance(self.where, slice)
            else self.where[local]
        )
        return _Part({n: c[local] for n, c in self.columns.items()}, where, local.size)


def _integers(part: _Part, name: str, values: np.ndarray) -> np.ndarray:
    """``values`` (a column) as int64, refusing the first that is not an integer."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if values.dtype == object:
        scalars = [scalar(v) for v in values.tolist()]
        bad = [isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in scalars]
        if not any(bad):
            return np.array(scalars, np.int64)
        first = bad.index(True)
        value = scalars[first]
    else:
        first, value = 0, values[0].item()
    raise InputError(f"config {part.index(first)}: {name}={value!r} must be an integer")


def _numbers(
    part: _Part, name: str, values: np.ndarray, opt: Optimizer, static_names
) -> np.ndarray:
    """A numeric hyperparameter's column as float64, refusing the first non-number."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64, copy=False)
    scalars = [scalar(v) for v in values.tolist()]
    for local, value in enumerate(scalars):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise InputError(
                f"config {part.index(local)}: {name}={value!r} is not a number; numeric "
                f"hyperparameters of {opt.name!r} are {list(opt.hyperparameter_names)}, static "
                f"options are {sorted(static_names)}"
            )
    return np.array(scalars, np.float64)


class _Builder:
    """Collects resolved parts into sweep-wide columns."""

    def __init__(self, count: int, num_train: int, drop_last: bool):
        self.count, self.num_train, self.drop_last = count, num_train, drop_last
        self.kinds: dict[ConfigKind, int] = {}
        self.sizes: dict[Any, int] = {}
        self.parts: list[
            tuple[slice | np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, dict]
        ] = []

    def batch_sizes(self, part: _Part, sizes: np.ndarray | None, default: Any) -> np.ndarray:
        """Check the part's batch sizes; returns ``[n]`` codes into ``self.sizes``."""
        if sizes is None:
            values, codes = np.array([default], dtype=object), np.zeros(part.size, np.int64)
        elif sizes.dtype.kind in "iu":
            bad = (sizes < 1) | (sizes > self.num_train)
            first = _first(bad)
            if first is not None:
                raise InputError(
                    f"config {part.index(first)}: batch_size={int(sizes[first])} must be a "
                    f"positive integer no larger than the {self.num_train} training examples"
                )
            values, codes = factorize(sizes)
        else:
            if sizes.dtype != object:
                raise InputError(
                    f"config {part.index(0)}: batch_size={sizes[0].item()!r} must be an integer"
                )
            scalars = [scalar(v) for v in sizes.tolist()]
            values, codes = factorize(np.fromiter(scalars, dtype=object, count=len(scalars)))
        out = []
        for code, size in enumerate(values.tolist()):
            local = int(np.argmax(codes == code))
            if size is None:
                raise InputError(
                    f"config {part.index(local)} has no batch_size: put batch_size=[...] in the "
                    "space or pass batch_size=... to sweep()"
                )
            for value in size.sizes if isinstance(size, BatchSchedule) else (size,):
                value = scalar(value)
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise InputError(
                        f"config {part.index(local)}: batch_size={value!r} must be an integer"
                    )
                if not 1 <= value <= self.num_train:
                    raise InputError(
                        f"config {part.index(local)}: batch_size={value} must be a positive "
                        f"integer no larger than the {self.num_train} training examples"
                    )
            size = size if isinstance(size, BatchSchedule) else int(size)
            out.append(self.sizes.setdefault(size, len(self.sizes)))
        if len(out) == 1:
            return _constant(out[0], part.size)
        return np.asarray(out, np.int64)[codes]

    def add(self, part: _Part, opt: Optimizer, static: dict, static_names, batch_size) -> None:
        """Check and convert one part's columns, all of optimizer ``opt``."""
        columns = dict(part.columns)
        for name in static:
            columns.pop(name)
        size_code = self.batch_sizes(part, columns.pop("batch_size", None), batch_size)
        theta = columns.pop("norm_test", None)
        if theta is None:
            theta = _constant(math.inf, part.size)
        else:
            if theta.dtype.kind not in "iuf":
                scalars = [scalar(v) for v in theta.tolist()]
                for local, value in enumerate(scalars):
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise InputError(
                            f"config {part.index(local)}: norm_test={value!r} must be a "
                            "positive number (θ)"
                        )
                theta = np.array(scalars, np.float64)
            theta = theta.astype(np.float64)
            first = _first(~(theta > 0))
            if first is not None:
                value = theta[first].item()
                raise InputError(
                    f"config {part.index(first)}: norm_test={value!r} must be a positive number (θ)"
                )
        seed = columns.pop("seed", None)
        seed = _constant(0, part.size) if seed is None else _integers(part, "seed", seed)
        numbers = {
            name: _numbers(part, name, values, opt, static_names)
            for name, values in columns.items()
        }
        numbers = self._steps_from_epochs(part, numbers, opt, size_code, theta)
        names = tuple(opt.resolve(dict.fromkeys(numbers, 0.0)))
        kind = ConfigKind(opt, tuple(static.items()), names)
        code = self.kinds.setdefault(kind, len(self.kinds))
        defaults = opt.resolve(dict.fromkeys(numbers, 0.0))
        values = {name: numbers.get(name, defaults[name]) for name in names}
        self.parts.append((part.where, code, size_code, seed, theta, values))

    def _steps_from_epochs(self, part, numbers, opt, size_code, theta):
        """Replace each ``<name>_epochs`` schedule parameter by ``<name>_steps``: the
        updates this config takes in that many epochs at its own batch size (with a
        BatchSchedule, the cumulative updates of its epochs; a fractional epoch counts
        that part of its updates), rounded to a whole update."""
        sizes = list(self.sizes)
        for steps in step_parameters(opt.schedule):
            name = epochs_name(steps)
            if name not in numbers:
                continue
            epochs = numbers.pop(name)
            if steps in numbers:
                raise InputError(f"config {part.index(0)}: give {steps} or {name}, not both")
            first = _first(np.isfinite(theta))
            if first is not None:
                raise InputError(
                    f"config {part.index(first)}: {name}={epochs[first].item()!r} cannot be "
                    f"converted to updates when the norm test sets the batch size; give {steps} "
                    "instead"
                )
            first = _first(~(epochs >= 0))
            if first is not None:
                raise InputError(
                    f"config {part.index(first)}: {name}={epochs[first].item()!r} must be a "
                    "non-negative number"
                )
            whole = np.floor(epochs).astype(np.int64)
            updates = np.empty(part.size)
            for code in np.unique(size_code).tolist():
                mine = size_code == code
                size = sizes[code]
                top = int(whole[mine].max())
                per_epoch = np.array(
                    [
                        BatchPlan(self.num_train, _at(size, e), self.drop_last).steps_per_epoch
                        for e in range(top + 1)
                    ],
                    np.int64,
                )
                done = np.concatenate([[0], np.cumsum(per_epoch)])
                w = whole[mine]
                updates[mine] = done[w] + (epochs[mine] - w) * per_epoch[w]
            numbers[steps] = np.round(updates)
        return numbers

    def build(self) -> ResolvedConfigs:
        """The parts as sweep-wide columns; one part of every config is taken as it is
        (constants as broadcast views: no copy, no scatter)."""
        count = self.count
        if len(self.parts) == 1 and self.parts[0][0] == slice(0, count):
            _, code, size_code, seed, theta, values = self.parts[0]
            hyperparams = {
                name: v if isinstance(v, np.ndarray) else _constant(float(v), count)
                for name, v in values.items()
            }
            kind = _constant(code, count)
        else:
            kind, size_code = np.zeros(count, np.int64), np.zeros(count, np.int64)
            seed, theta = np.zeros(count, np.int64), np.full(count, math.inf)
            hyperparams: dict[str, np.ndarray] = {}
            for where, code, sizes, seeds, thetas, values in self.parts:
                kind[where], size_code[where], seed[where], theta[where] = (
                    code,
                    sizes,
                    seeds,
                    thetas,
                )
                for name, value in values.items():
                    if name not in hyperparams:
                        hyperparams[name] = np.full(count, math.nan)
                    hyperparams[name][where] = value
        return ResolvedConfigs(
            list(self.kinds), kind, list(self.sizes), size_code, seed, theta, hyperparams
        )


def _constant(value: Any, count: int) -> np.ndarray:
    """``count`` copies of a number as a read-only broadcast view (no memory per config)."""
    return np.broadcast_to(np.asarray(value), (count,))


def _at(size: int | BatchSchedule, epoch: int) -> int:
    return size.at(epoch) if isinstance(size, BatchSchedule) else size


def resolve_configs(
    space: Space | Sequence[Mapping[str, Any]],
    optimizer: str | Callable | Optimizer,
    batch_size: int | None,
    num_train: int,
    drop_last: bool = False,
) -> ResolvedConfigs:
    """Validate every config of the space and split it; raises before anything compiles."""
    if isinstance(space, Mapping):
        raise InputError(
            "space= takes configs (a list of dicts, jaxgd.grid(...) or jaxgd.sample(...)), "
            f"not one dict; for every combination of {dict(space)} write jaxgd.grid(**space)"
        )
    rows = space.configs if isinstance(space, Space) else Space(space).configs
    if not len(rows):
        raise InputError("the space has no configs: build one with jaxgd.grid(...) or sample(...)")
    builder = _Builder(len(rows), num_train, drop_last)
    # Optimizer lookups are cached per family and static options: a sweep of a million
    # configs has a handful.
    families: dict[Any, Optimizer] = {}
    for columns, where, size in rows.spans():
        block = _Part(dict(columns), where, size)
        family_column = block.columns.pop("optimizer", None)
        if family_column is None:
            family_values, family_codes = [optimizer], np.zeros(size, np.int64)
        else:
            family_values, family_codes = factorize(family_column)
            family_values = family_values.tolist()
        for code, members in enumerate(group_members(family_codes, len(family_values))):
            family = family_values[code]
            part = block.subset(members)
            base = _lookup(families, family, lambda family=family: make_optimizer(family))
            static_names = {name for name, _ in base.static_options} | {"schedule"}
            statics = [name for name in part.columns if name in static_names]
            if not statics:
                builder.add(part, base, {}, static_names, batch_size)
                continue
            combos, combo_codes = factorize(_row_tuples(part.columns, statics))
            for j, group in enumerate(group_members(combo_codes, len(combos))):
                static = dict(zip(statics, combos[j]))
                key = (base, tuple(static.items()))
                opt = _lookup(
                    families, key, lambda static=static, base=base: make_optimizer(base, **static)
                )
                builder.add(part.subset(group), opt, static, static_names, batch_size)
    return builder.build()


def _row_tuples(columns: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Per config, the tuple of its values of ``names`` (an object column)."""
    tuples = list(zip(*(columns[n].tolist() for n in names)))
    out = np.empty(len(tuples), object)
    for i, values in enumerate(tuples):
        out[i] = values
    return out


def _lookup(cache: dict, key: Any, make: Callable[[], Optimizer]) -> Optimizer:
    try:
        return cache[key]
    except (KeyError, TypeError):
        value = make()
        try:
            cache[key] = value
        except TypeError:  # an unhashable factory: looked up each time
            pass
        return value
