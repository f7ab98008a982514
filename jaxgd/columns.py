"""Configs held as columns: one NumPy array per hyperparameter, rows built only when asked.

A sweep of a million configs is a few arrays, not a million dicts: spaces are built,
sliced and resolved column by column, and ``ConfigRows`` turns columns into the familiar
list of dicts lazily (one dict per config asked for). ``factorize`` and ``group_members``
group configs by a column's values in O(K) array passes where the values allow
(radix sorts of small integer codes).

Example:
    >>> import numpy as np
    >>> rows = ConfigRows.from_columns({"learning_rate": np.array([0.1, 0.01]), "seed": [0, 1]})
    >>> len(rows), rows[1]
    (2, {'learning_rate': 0.01, 'seed': 1})
    >>> factorize(np.array([3, 1, 3, 2]))[1].tolist()
    [0, 1, 0, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ConfigRows",
    "column",
    "factorize",
    "group_members",
    "most_repeated",
    "plain",
    "python_values",
    "value_counts",
]

Columns = dict[str, np.ndarray]


def plain(value: Any) -> Any:
    """A NumPy or JAX scalar (or 0-d array) as a Python number; anything else unchanged."""
    if isinstance(value, np.generic) or (hasattr(value, "__array__") and np.ndim(value) == 0):
        return np.asarray(value).item()
    return value


def column(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """``values`` as one column: int64 when all are Python ints, float64 when all are
    Python floats (so a row gives back the same Python values), else an object array.
    A NumPy array of integers or floats is kept as such."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iu" and values.ndim == 1:
            return values.astype(np.int64, copy=False)
        if values.dtype.kind == "f" and values.ndim == 1:
            return values.astype(np.float64, copy=False)
        values = values.tolist()
    values = list(values)
    types = set(map(type, values))
    if types == {float}:
        return np.array(values, np.float64)
    if types == {int}:
        try:
            return np.array(values, np.int64)
        except OverflowError:
            pass
    return np.fromiter(values, dtype=object, count=len(values))


def _value(col: np.ndarray, index: int) -> Any:
    value = col[index]
    return value.item() if isinstance(value, np.generic) else value


class ConfigRows(Sequence):
    """A sequence of config dicts stored as columns.

    Args:
        blocks: column tables; every config of a block has the block's keys, in order.
        sizes: configs per block (needed only for a block without keys).
        block_of, position: ``[K]`` per config, its block and row there (None: the
            blocks one after the other).
        cache: keep each dict once built, so that the same dict comes back (and edits
            to it stay), as a list of dicts would behave.
    """

    def __init__(
        self,
        blocks: Sequence[Columns],
        block_of: np.ndarray | None = None,
        position: np.ndarray | None = None,
        cache: bool = False,
        sizes: Sequence[int] | None = None,
    ):
        self.blocks = tuple(blocks)
        self.block_of, self.position = block_of, position
        if sizes is None:
            sizes = [len(next(iter(b.values()))) if b else 0 for b in self.blocks]
        self.sizes = [int(n) for n in sizes]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._count = int(self._offsets[-1]) if block_of is None else len(block_of)
        self._cache: dict[int, dict[str, Any]] | None = {} if cache else None

    @staticmethod
    def from_columns(columns: Mapping[str, Any]) -> ConfigRows:
        """One block from ``{name: values}`` (all the same length)."""
        block = {name: column(values) for name, values in columns.items()}
        lengths = {len(c) for c in block.values()}
        if len(lengths) > 1:
            lengths = {n: len(c) for n, c in block.items()}
            raise ValueError(f"columns of different lengths: {lengths}")
        return ConfigRows([block] if block else [])

    @staticmethod
    def from_dicts(configs: Sequence[Mapping[str, Any]]) -> ConfigRows:
        """Columns from dicts: one block per run of configs with the same keys."""
        blocks, sizes, run, keys = [], [], [], None
        for config in configs:
            config_keys = tuple(config)
            if config_keys != keys and run:
                blocks.append(_block_of_dicts(keys, run))
                sizes.append(len(run))
                run = []
            keys = config_keys
            run.append(config)
        if run:
            blocks.append(_block_of_dicts(keys, run))
            sizes.append(len(run))
        return ConfigRows(blocks, sizes=sizes)

    def with_cache(self) -> ConfigRows:
        """The same rows, each dict kept once built (what a result hands out)."""
        return ConfigRows(self.blocks, self.block_of, self.position, True, self.sizes)

    def __len__(self) -> int:
        return self._count

    def locate(self, index: int) -> tuple[int, int]:
        """``(block, row in block)`` of config ``index``."""
        if self.block_of is not None:
            return int(self.block_of[index]), int(self.position[index])
        block = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return block, index - int(self._offsets[block])

    def _row(self, index: int) -> dict[str, Any]:
        block, row = self.locate(index)
        return {name: _value(col, row) for name, col in self.blocks[block].items()}

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(np.arange(self._count)[index])
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"config indices are integers or slices, not {type(index).__name__}")
        index = int(index)
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"config {index} out of range for {self._count} configs")
        if self._cache is None:
            return self._row(index)
        if index not in self._cache:
            self._cache[index] = self._row(index)
        return self._cache[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.block_of is None and self._cache is None:
            for block, size in zip(self.blocks, self.sizes):
                names = list(block)
                if not names:
                    yield from ({} for _ in range(size))
                for values in zip(*(block[n].tolist() for n in names)):
                    yield dict(zip(names, values))
            return
        for index in range(self._count):
            yield self[index]

    def to_dicts(self, column: Callable[[np.ndarray], list[Any]] | None = None) -> list[dict]:
        """Every row as a new dict, built column by column: ``column(values)`` gives a
        block's column as a list (default: its Python values); rows handed out before
        (with ``with_cache``) are taken as they are now, each value through ``column``."""
        column = column or python_values
        rows: list[Any] = [None] * self._count
        for block, where, size in self.spans():
            names = list(block)
            lists = [column(block[name]) for name in names]
            built = [dict(zip(names, values)) for values in zip(*lists)] if names else None
            built = built or [{} for _ in range(size)]
            if isinstance(where, slice):
                rows[where] = built
            else:
                for index, row in zip(where.tolist(), built):
                    rows[index] = row
        for index, row in (self._cache or {}).items():
            one = np.empty(1, object)
            converted = {}
            for name, value in row.items():
                one[0] = value
                converted[name] = column(one)[0]
            rows[index] = converted
        return rows

    def spans(self) -> Iterator[tuple[Columns, slice | np.ndarray, int]]:
        """``(block, where, size)`` per block: ``where`` is the slice of config indices
        the block covers when the blocks follow one another, else its rows' ``[n]``
        config indices."""
        if self.block_of is None:
            for block, offset, size in zip(self.blocks, self._offsets, self.sizes):
                if size:
                    yield block, slice(int(offset), int(offset) + size), size
            return
        for b, members in enumerate(group_members(self.block_of, len(self.blocks))):
            if members.size:
                order = np.argsort(self.position[members], kind="stable")
                if self.position[members][order].tolist() != list(range(members.size)):
                    raise ValueError("ConfigRows: a block's rows are not each used once")
                yield self.blocks[b], members[order], members.size

    def take(self, indices: Sequence[int] | np.ndarray) -> ConfigRows:
        """The configs at ``indices``, in that order (columns gathered, no dicts built)."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        if self.block_of is None and len(self.blocks) == 1:
            block = {n: c[indices] for n, c in self.blocks[0].items()}
            return ConfigRows([block], sizes=[indices.size])
        if self.block_of is None:
            block_of = np.searchsorted(self._offsets, indices, side="right") - 1
            position = indices - self._offsets[block_of]
        else:
            block_of, position = self.block_of[indices], self.position[indices]
        used, codes = factorize(block_of)
        blocks, sizes, new_position = [], [], np.empty(indices.size, np.int64)
        for code, members in enumerate(group_members(codes, len(used))):
            source = self.blocks[int(used[code])]
            blocks.append({n: c[position[members]] for n, c in source.items()})
            sizes.append(members.size)
            new_position[members] = np.arange(members.size)
        if len(blocks) == 1:
            return ConfigRows(blocks, sizes=sizes)
        return ConfigRows(blocks, codes, new_position, sizes=sizes)

    def __add__(self, other: Sequence[Mapping[str, Any]]) -> ConfigRows:
        if not isinstance(other, ConfigRows):
            other = ConfigRows.from_dicts(list(other))
        if self.block_of is None and other.block_of is None:
            blocks, sizes = _merge_runs(self.blocks + other.blocks, self.sizes + other.sizes)
            return ConfigRows(blocks, sizes=sizes)
        mine = self.block_of if self.block_of is not None else _block_index(self)
        theirs = other.block_of if other.block_of is not None else _block_index(other)
        return ConfigRows(
            self.blocks + other.blocks,
            np.concatenate([mine, theirs + len(self.blocks)]),
            np.concatenate([_positions(self), _positions(other)]),
            sizes=self.sizes + other.sizes,
        )

    def __radd__(self, other: Sequence[Mapping[str, Any]]) -> ConfigRows:
        return ConfigRows.from_dicts(list(other)) + self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # mutable rows (with a cache), compared by value

    def __repr__(self) -> str:
        head = ", ".join(repr(self[i]) for i in range(min(3, len(self))))
        more = f", ... ({len(self)} configs)" if len(self) > 3 else ""
        return f"ConfigRows([{head}{more}])"


def python_values(values: np.ndarray) -> list[Any]:
    """A column's values as a row gives them (NumPy scalars as Python numbers)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]


def _block_of_dicts(keys: tuple[str, ...], configs: list[Mapping[str, Any]]) -> Columns:
    return {key: column([plain(c[key]) for c in configs]) for key in keys}


def _block_index(rows: ConfigRows) -> np.ndarray:
    return np.repeat(np.arange(len(rows.blocks)), rows.sizes)


def _positions(rows: ConfigRows) -> np.ndarray:
    if rows.position is not None:
        return rows.position
    return np.concatenate([np.arange(n) for n in rows.sizes] or [np.zeros(0, np.int64)])


def _merge_runs(blocks: Sequence[Columns], sizes: Sequence[int]) -> tuple[list, list]:
    """Neighbouring blocks with the same keys and column types as one block."""
    merged: list[Columns] = []
    counts: list[int] = []
    for block, size in zip(blocks, sizes):
        if not size:
            continue
        last = merged[-1] if merged else None
        if (
            last is not None
            and list(last) == list(block)
            and all(last[n].dtype == block[n].dtype for n in block)
        ):
            merged[-1] = {n: np.concatenate([last[n], block[n]]) for n in block}
            counts[-1] += size
        else:
            merged.append(block)
            counts.append(size)
    return merged, counts


def _small_codes(values: np.ndarray) -> np.ndarray | None:
    """Integer values as uint8/uint16 offsets from their minimum (radix-sortable), or
    None when their range is too wide."""
    if values.dtype.kind not in "iub":
        return None
    values = values.astype(np.int64, copy=False)
    low, high = int(values.min()), int(values.max())
    if high - low < 256:
        return (values - low).astype(np.uint8)
    if high - low < 65536:
        return (values - low).astype(np.uint16)
    return None


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniques, codes)``: the distinct values in order of first appearance and, per
    value, the index of its distinct value (``uniques[codes] == values``)."""
    values = np.asarray(values)
    count = values.size
    if count == 0:
        return values[:0], np.zeros(0, np.int64)
    if values.dtype != object:
        if (values == values[0]).all():
            return values[:1], np.zeros(count, np.int64)
        keys = _small_codes(values)
        if keys is None:
            keys = np.unique(values, return_inverse=True)[1].reshape(-1)
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        starts = np.empty(count, bool)
        starts[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
        firsts = order[starts]  # first config of each value (the sort is stable)
        by_appearance = np.argsort(firsts, kind="stable")
        relabel = np.empty(by_appearance.size, np.int64)
        relabel[by_appearance] = np.arange(by_appearance.size)
        codes = np.empty(count, np.int64)
        codes[order] = relabel[np.cumsum(starts) - 1]
        return values[firsts[by_appearance]], codes
    seen: dict[Any, int] = {}
    unhashable: list[Any] = []
    uniques: list[Any] = []
    codes = np.empty(count, np.int64)
    for i, value in enumerate(values.tolist()):
        try:
            code = seen.get(value)
            if code is None:
                code = seen[value] = len(uniques)
                uniques.append(value)
        except TypeError:  # an unhashable value: compared one by one
            matches = [j for j, u in unhashable if u == value]
            if matches:
                code = matches[0]
            else:
                code = len(uniques)
                uniques.append(value)
                unhashable.append((code, value))
        codes[i] = code
    out = np.empty(len(uniques), object)
    for j, value in enumerate(uniques):
        out[j] = value
    return out, codes


def group_members(codes: np.ndarray, count: int) -> list[np.ndarray]:
    """Per code ``0..count-1``, the indices holding it, in order (a stable radix sort
    when the codes are few)."""
    codes = np.asarray(codes)
    if count == 1:
        return [np.arange(codes.size)]
    keys = codes.astype(np.uint8 if count <= 256 else np.uint16 if count <= 65536 else np.int64)
    order = np.argsort(keys, kind="stable")
    sizes = np.bincount(codes, minlength=count)
    return np.split(order, np.cumsum(sizes)[:-1])


def value_counts(values: np.ndarray) -> np.ndarray:
    """How many times each distinct value occurs, in no particular order (a count, no
    sort, for values in a small range)."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, np.int64)
    if values.dtype.kind == "i" and values.min() >= 0 and values.max() < 65536:
        counts = np.bincount(values)  # small non-negative integers (seeds): counted as they are
    else:
        keys = _small_codes(values)
        counts = np.bincount(factorize(values)[1] if keys is None else keys)
    return counts[counts > 0]


def most_repeated(values: np.ndarray) -> int:
    """How many times the most frequent value occurs (a count, no sort, for values in a
    small range)."""
    counts = value_counts(values)
    return int(counts.max()) if counts.size else 0
