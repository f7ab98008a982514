"""Search spaces: a ``Space`` is an ordered list of configs (dicts of hyperparameters),
held as columns.

Keys with a special meaning: ``batch_size`` (int), ``seed`` (int: initial parameters and
data order), ``optimizer`` (a name, an optax factory or an ``Optimizer``), and the
optimizer's static options (e.g. ``nesterov``). Every other key is a numeric
hyperparameter of the optimizer (``learning_rate``, ``momentum``, ``b1``, ...).

Example:
    >>> space = grid(learning_rate=[0.1, 0.01], momentum=[0.0, 0.9], seed=[0, 1])
    >>> len(space), space[0]
    (8, {'learning_rate': 0.1, 'momentum': 0.0, 'seed': 0})
    >>> len(sample(5, sample_seed=0, learning_rate=loguniform(1e-4, 1e-1), momentum=[0.0, 0.9]))
    5
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ._io import optional_import
from .columns import ConfigRows, column
from .errors import InputError

__all__ = ["Space", "grid", "sample", "quasi_random", "loguniform", "uniform", "choice"]


class Space:
    """An ordered collection of configs, held as columns (``jaxgd.columns``); ``+``
    concatenates spaces and ``space[a:b]`` (or ``take``) selects configs without building
    a dict per config.

    Args:
        configs: the configs, a sequence of dicts (or another space's ``configs``).
    """

    def __init__(self, configs: Sequence[Mapping[str, Any]] | ConfigRows = ()):
        if isinstance(configs, Space):
            configs = configs.configs
        if not isinstance(configs, ConfigRows):
            configs = list(configs)
            for index, config in enumerate(configs):
                if not isinstance(config, Mapping):
                    raise InputError(
                        f"space: config {index} is {config!r}, not a dict of hyperparameters; "
                        "build the space with jaxgd.grid(...) or jaxgd.sample(...)"
                    )
            configs = ConfigRows.from_dicts(configs)
        self._rows = configs

    @property
    def configs(self) -> ConfigRows:
        """The configs as a sequence of dicts, each built when asked for."""
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._rows)

    def __getitem__(self, index):
        """Config ``index`` as a dict; a slice gives a ``Space``."""
        if isinstance(index, slice):
            return Space(self._rows[index])
        return self._rows[index]

    def take(self, indices: Sequence[int] | np.ndarray) -> Space:
        """The configs at ``indices``, in that order."""
        return Space(self._rows.take(indices))

    def __add__(self, other: Space | Sequence[Mapping[str, Any]]) -> Space:
        other = other.configs if isinstance(other, Space) else Space(other).configs
        return Space(self._rows + other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Space):
            return NotImplemented
        return self._rows == other._rows

    __hash__ = None

    def __repr__(self) -> str:
        return f"Space({self._rows!r})"


def grid(**axes: Sequence[Any] | Any) -> Space:
    """The Cartesian product of the given values, the last axis varying fastest.

    A scalar is a one-value axis: ``grid(learning_rate=[0.1, 0.01], momentum=0.9)``.
    Built column by column: each axis's values are indexed by its position in the
    product (a million configs are a few arrays).
    """
    if not axes:
        raise InputError("grid() needs at least one axis, e.g. grid(learning_rate=[0.1, 0.01])")
    values = {}
    for name, axis in axes.items():
        if hasattr(axis, "__array__") and not isinstance(axis, np.generic):
            axis = np.asarray(axis).tolist()  # NumPy and JAX arrays: values, not one value
        axis = list(axis) if isinstance(axis, (list, tuple, range)) else [axis]
        if not axis:
            raise InputError(f"grid axis {name}=[] is empty: give at least one value")
        values[name] = column([v.item() if isinstance(v, np.generic) else v for v in axis])
    shape = tuple(len(v) for v in values.values())
    columns = {}
    for position, (name, axis) in enumerate(values.items()):
        along = [1] * len(shape)
        along[position] = shape[position]
        index = np.broadcast_to(np.arange(shape[position]).reshape(along), shape).reshape(-1)
        columns[name] = axis[index]
    return Space(ConfigRows([columns]))


@dataclasses.dataclass(frozen=True)
class _Distribution:
    kind: str
    low: float = 0.0
    high: float = 1.0
    values: tuple[Any, ...] = ()

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` draws, as a column."""
        if self.kind == "loguniform":
            return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size))
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, size)
        picks = rng.integers(0, len(self.values), size)
        return column([_plain(v) for v in self.values])[picks]

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """The values at quantiles ``u`` in [0, 1) (the inverse of the distribution's
        CDF), as a column."""
        if self.kind == "loguniform":
            return np.exp(math.log(self.low) + u * math.log(self.high / self.low))
        if self.kind == "uniform":
            return self.low + u * (self.high - self.low)
        picks = np.minimum((u * len(self.values)).astype(int), len(self.values) - 1)
        return column([_plain(v) for v in self.values])[picks]


def loguniform(low: float, high: float) -> _Distribution:
    """log x ~ U(log low, log high): the usual prior for learning rates."""
    if not 0 < low < high:
        raise InputError(f"loguniform({low}, {high}): need 0 < low < high")
    return _Distribution("loguniform", float(low), float(high))


def uniform(low: float, high: float) -> _Distribution:
    """x ~ U(low, high)."""
    if not low < high:
        raise InputError(f"uniform({low}, {high}): need low < high")
    return _Distribution("uniform", float(low), float(high))


def choice(values: Sequence[Any]) -> _Distribution:
    """x drawn uniformly from ``values``."""
    if not len(values):
        raise InputError("choice([]) has nothing to choose from")
    return _Distribution("choice", values=tuple(values))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _drawn(values: Any) -> np.ndarray:
    """A scipy distribution's draws as a column (Python types in rows, as ``.item()``)."""
    values = np.asarray(values).reshape(-1)
    return column(values if values.dtype.kind in "iuf" else [_plain(v) for v in values])


def _constant(value: Any, num: int) -> np.ndarray:
    """``num`` copies of one value, as a column (no copy: a broadcast view)."""
    return np.broadcast_to(column([_plain(value)]), (num,))


def sample(num: int, *, sample_seed: int | None = None, **dimensions: Any) -> Space:
    """``num`` random configs; each dimension is a distribution (``loguniform``,
    ``uniform``, ``choice``, or anything with an ``.rvs(size=, random_state=)`` method
    such as a frozen ``scipy.stats`` distribution), a list (a choice) or a constant.
    Draws use ``numpy.random.default_rng(sample_seed)``, one dimension at a time in the
    order given, so the same call gives the same space on every machine.

    ``seed`` is a dimension like any other (the configs' training seeds, e.g.
    ``seed=[0, 1, 2]``); the draws' own seed is ``sample_seed``.

    Example:
        >>> from scipy import stats
        >>> space = sample(3, sample_seed=0, learning_rate=stats.loguniform(1e-4, 1e-1))
        >>> len(space), all(1e-4 <= c["learning_rate"] <= 1e-1 for c in space)
        (3, True)
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"sample(num={num!r}): need a positive integer number of configs")
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, (int, np.integer)):
        raise InputError(
            f"sample(sample_seed={sample_seed!r}): the draws need an integer seed, e.g. "
            "sample(8, sample_seed=0, learning_rate=loguniform(1e-4, 1e-1)); the configs' "
            "training seeds are the dimension seed=[...]"
        )
    rng = np.random.default_rng(sample_seed)
    columns = {}
    for name, dim in dimensions.items():
        if isinstance(dim, (list, tuple)):
            dim = choice(dim)
        if isinstance(dim, _Distribution):
            columns[name] = dim.draw(rng, num)
        elif hasattr(dim, "rvs"):
            columns[name] = _drawn(dim.rvs(size=num, random_state=rng))
        else:
            columns[name] = _constant(dim, num)
    return Space(ConfigRows([columns]))


def quasi_random(num: int, sample_seed: int, *, method: str = "halton", **dimensions: Any) -> Space:
    """``num`` configs from a scrambled low-discrepancy sequence over the dimensions.

    Quasi-random points cover the space more evenly than random ones, and any prefix is
    itself well spread, as the Deep Learning Tuning Playbook recommends for exploration
    (Godbole et al. 2023, github.com/google-research/tuning_playbook). Point ``i`` is
    ``u_i`` in [0, 1)^d from ``scipy.stats.qmc`` (scrambled Halton, or Sobol with
    ``method="sobol"``, scrambled with ``sample_seed``; ``seed`` is a dimension, the configs'
    training seeds, as in ``sample``); each dimension maps its coordinate through its
    inverse CDF: ``loguniform``, ``uniform``, ``choice`` (or a list), a frozen
    ``scipy.stats`` distribution (its ``ppf``), a ``(low, high)`` pair (uniform), or a
    constant.

    Example:
        >>> space = quasi_random(4, 0, learning_rate=loguniform(1e-3, 1.0),
        ...                      momentum=(0.0, 0.99), batch_size=[32, 128])
        >>> len(space), sorted(space[0])
        (4, ['batch_size', 'learning_rate', 'momentum'])
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"quasi_random(num={num!r}): need a positive integer number of configs")
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, (int, np.integer)):
        raise InputError(
            f"quasi_random(sample_seed={sample_seed!r}): the sequence's scrambling needs an "
            "integer seed, e.g. quasi_random(16, 0, learning_rate=loguniform(1e-4, 1e-1))"
        )
    qmc = optional_import("scipy.stats.qmc", extra="scipy", feature="jaxgd.quasi_random")
    engines = {"halton": qmc.Halton, "sobol": qmc.Sobol}
    if method not in engines:
        raise InputError(f"quasi_random(method={method!r}): choose 'halton' or 'sobol'")
    varying = {}
    for name, dim in dimensions.items():
        if isinstance(dim, list):
            dim = choice(dim)
        elif isinstance(dim, tuple) and len(dim) == 2:
            dim = uniform(*dim)
        if isinstance(dim, _Distribution) or hasattr(dim, "ppf"):
            varying[name] = dim
    columns = {name: _constant(dim, num) for name, dim in dimensions.items() if name not in varying}
    if varying:
        engine = engines[method](d=len(varying), scramble=True, seed=sample_seed)
        with warnings.catch_warnings():
            # Sobol's balance holds at powers of two; other counts are still well spread.
            warnings.filterwarnings("ignore", "The balance properties of Sobol")
            points = engine.random(num)
        for j, (name, dim) in enumerate(varying.items()):
            u = points[:, j]
            if isinstance(dim, _Distribution):
                columns[name] = dim.from_unit(u)
            else:
                columns[name] = _drawn(dim.ppf(u))
    return Space(ConfigRows([{name: columns[name] for name in dimensions}]))
