"""``SweepResult``: one row per config plus per-epoch histories, and its writers."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._io import atomic_write, format_table, optional_import
from .columns import ConfigRows, python_values
from .errors import InputError
from .persist import is_complete, load_result, save_result, strict_json

__all__ = ["SweepResult", "Deferred", "StatusNames", "GroupRecords", "names_of"]

PyTree = Any


def names_of(codes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``names[codes]`` as an array of strings (one fill when every code is the same)."""
    table = np.asarray(names)
    if codes.size and codes.min() == codes.max():
        return np.full(codes.size, table[int(codes[0])], table.dtype)
    return table[codes]


class Deferred:
    """A ``SweepResult`` field built when first read (``status``, ``groups``): what a
    sweep of a million configs would otherwise spend on names and Python lists that
    nobody may read. Reading the field gives the built value, as if it had been given."""

    def build(self) -> Any:
        raise NotImplementedError


class StatusNames(Deferred):
    """``status`` from ``[K]`` integer codes: ``names[code]`` per config."""

    def __init__(self, codes: np.ndarray, names: Sequence[str]):
        self.codes, self.names = codes, tuple(names)

    def build(self) -> np.ndarray:
        return names_of(self.codes, self.names)


class GroupRecords(Deferred):
    """``groups`` from records whose ``configs`` entry is still to fill, and per record
    its config indices as an array."""

    def __init__(self, records: Sequence[dict[str, Any]], members: Sequence[np.ndarray]):
        self.records, self.members = list(records), list(members)

    def build(self) -> list[dict[str, Any]]:
        return [
            {**record, "configs": np.asarray(members).tolist()}
            for record, members in zip(self.records, self.members)
        ]


def _deferred_field(name: str, doc: str) -> property:
    """A dataclass field stored as ``_<name>``; a ``Deferred`` value is built (once) when
    the field is read."""
    private = f"_{name}"

    def get(self):
        value = self.__dict__[private]
        if isinstance(value, Deferred):
            value = self.__dict__[private] = value.build()
        return value

    def set(self, value):
        self.__dict__[private] = value

    return property(get, set, doc=doc)


def _shown(config: dict[str, Any]) -> dict[str, Any]:
    """A config as a table shows it: numbers, strings and bools as they are, else text."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in config.items()}


def _shown_column(values: np.ndarray) -> list[Any]:
    """``_shown``'s values for one column of configs."""
    if values.dtype.kind in "if":
        return values.tolist()
    return [v if isinstance(v, (int, float, str, bool)) else str(v) for v in python_values(values)]


def _without_seed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "seed"}


@dataclasses.dataclass
class SweepResult:
    """The outcome of ``jaxgd.sweep``, in the order of the space's configs.

    Attributes:
        configs: per config, its hyperparameters with ``optimizer``, ``batch_size`` and
            ``seed`` filled in.
        history: ``{metric: array [config, epoch]}``: ``train_loss`` (mean over the
            epoch's examples), ``val_loss`` and ``val_<metric>`` when there is a
            validation set, ``eval_*`` for a separate evaluation set, ``updates``
            (cumulative), ``examples_seen`` (cumulative) and ``batch_size``.
        updates, examples_seen: ``[config]`` totals.
        diverged: ``[config]`` bool; ``diverged_step``: the update index at which the loss
            or update first turned non-finite (-1 if never). A diverged config is frozen.
        status: ``[config]`` "running" (trained to the end), "diverged" or "stopped" (by a
            callback such as ``EarlyStopping``; frozen from then on, its measured history
            NaN after ``stopped_epoch``).
        stopped_epoch: ``[config]`` epochs a stopped config trained; -1 if not stopped.
        seconds: ``[config]`` wall time of the run that trained it (its group's, shared by
            the configs trained together), compilation excluded; ``compile_seconds`` alike.
        params: final parameters with a leading config axis, if asked for.
        strategy: how configs of different batch sizes ran ("grouped", "nested" or
            "accumulate").
        groups: one entry per compiled program (rebuilt programs included): ``program``
            (its label), ``configs`` (indices), ``slots`` (configs computed, padding
            included), ``compile_seconds`` and ``seconds``.
        compiled: the compiled chunk programs that trained the sweep (``jax.stages.Compiled``,
            one or more per group, in group order): ``.cost_analysis()`` gives XLA's FLOPs.
            Kept in memory only; never written.
        meta: how it was run: the versions of jaxgd, JAX, optax and Python, the backend
            and device kind, the sweep's settings and options, and the git commit of
            jaxgd when it runs from a checkout.

    ``status`` and ``groups`` may be given as ``Deferred`` values (``jaxgd.sweep`` gives
    ``StatusNames`` and ``GroupRecords``): each is built the first time it is read, so a
    sweep of a million configs builds a million names or Python ints only when asked.
    Arrays that hold one value for every config (``seconds`` of a one-program sweep, a
    fixed ``batch_size`` or ``examples_seen`` history, ``stopped_epoch`` when none
    stopped) may be read-only broadcast views: copy one (``np.array``) to write into it.
    """

    configs: list[dict[str, Any]]
    history: dict[str, np.ndarray]
    updates: np.ndarray
    examples_seen: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    seconds: np.ndarray
    compile_seconds: np.ndarray
    params: PyTree | None = None
    strategy: str = "grouped"
    groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    compiled: list[Any] = dataclasses.field(default_factory=list, repr=False)
    status: np.ndarray | None = None
    stopped_epoch: np.ndarray | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.__dict__["_status"] is None:  # (read without building a deferred one)
            self.status = np.where(np.asarray(self.diverged), "diverged", "running")
        if self.stopped_epoch is None:
            self.stopped_epoch = np.full(len(self.configs), -1, np.int64)

    def _group_records(self) -> list[dict[str, Any]]:
        """``groups``, their ``configs`` lists possibly not built (for the totals)."""
        groups = self.__dict__["_groups"]
        return groups.records if isinstance(groups, GroupRecords) else self.groups

    @property
    def total_compile_seconds(self) -> float:
        """Compile time of the whole sweep: each compiled group counted once."""
        return float(sum(g["compile_seconds"] for g in self._group_records()))

    @property
    def total_seconds(self) -> float:
        """Run time of the whole sweep (groups run interleaved, so their times add)."""
        return float(sum(g["seconds"] for g in self._group_records()))

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def epochs(self) -> int:
        return next(iter(self.history.values())).shape[1]

    def _metric_names(self) -> list[str]:
        skip = {"updates", "examples_seen", "batch_size", "status"}
        return [name for name in self.history if name not in skip]

    def table(self) -> list[dict[str, Any]]:
        """One row per config: hyperparameters, final and best metrics, counters, time.

        ``best_<metric>`` is the minimum over epochs for losses and the maximum for other
        metrics (accuracy); diverged epochs (NaN) are skipped.
        """
        # Built column by column (the rows ``_row`` gives, one at a time, for ``best``):
        # a million rows cost a dict each, not a NumPy reduction each.
        if isinstance(self.configs, ConfigRows):
            rows = self.configs.to_dicts(_shown_column)
        else:
            rows = [_shown(config) for config in self.configs]
        columns: dict[str, list[Any]] = {}
        for name in self._metric_names():
            values = np.asarray(self.history[name], np.float64)
            finite = np.isfinite(values)
            if name.endswith("loss"):
                best = np.where(finite, values, np.inf).min(axis=1)
            else:
                best = np.where(finite, values, -np.inf).max(axis=1)
            best[~finite.any(axis=1)] = np.nan
            columns[f"final_{name}"] = values[:, -1].tolist()
            columns[f"best_{name}"] = best.tolist()
        for name, dtype in (
            ("updates", np.int64),
            ("examples_seen", np.int64),
            ("diverged", bool),
            ("diverged_step", np.int64),
            ("status", str),
            ("stopped_epoch", np.int64),
            ("seconds", np.float64),
            ("compile_seconds", np.float64),
        ):
            columns[name] = np.asarray(getattr(self, name)).astype(dtype).tolist()
        names = list(columns)
        for row, values in zip(rows, zip(*columns.values())):
            row.update(zip(names, values))
        return rows

    def _config_dicts(self) -> list[dict[str, Any]]:
        """The configs as a list of dicts (configs held as columns: built column by
        column, each once)."""
        if isinstance(self.configs, ConfigRows):
            return self.configs.to_dicts()
        return list(self.configs)

    def _row(self, i: int, config: dict[str, Any]) -> dict[str, Any]:
        """Config ``i``'s row of ``table()``."""
        row = _shown(config)
        for name in self._metric_names():
            values = self.history[name][i]
            row[f"final_{name}"] = float(values[-1])
            finite = values[np.isfinite(values)]
            if finite.size:
                best = finite.min() if name.endswith("loss") else finite.max()
                row[f"best_{name}"] = float(best)
            else:
                row[f"best_{name}"] = float("nan")
        row["updates"] = int(self.updates[i])
        row["examples_seen"] = int(self.examples_seen[i])
        row["diverged"] = bool(self.diverged[i])
        row["diverged_step"] = int(self.diverged_step[i])
        row["status"] = str(self.status[i])
        row["stopped_epoch"] = int(self.stopped_epoch[i])
        row["seconds"] = float(self.seconds[i])
        row["compile_seconds"] = float(self.compile_seconds[i])
        return row

    def best(
        self, metric: str = "val_loss", mode: str | None = None, over: str | None = None
    ) -> dict[str, Any]:
        """The row of the config with the best final ``metric``, with its index as
        ``row["config"]``.

        Only configs that trained to the end (status "running") compete: diverged and
        stopped ones are skipped, and so are final values that are not finite. With
        ``over="seed"`` the configs that differ only in their seed form one candidate,
        scored by the mean of its seeds' final values (every seed must have trained to
        the end); the row is its first config's, with ``row["configs"]`` listing the
        seeds' configs and ``row["mean_final_<metric>"]`` the mean.

        Args:
            metric: a recorded metric, e.g. "val_loss" or "val_accuracy".
            mode: "min" (the default for names ending in "loss") or "max".
            over: None, or "seed" to average over seeds.

        Raises:
            jaxgd.InputError: an unknown metric, mode or ``over``.
            ValueError: no config trained to the end (says how many diverged / stopped).
        """
        if metric not in self.history:
            raise InputError(
                f"metric={metric!r} is not recorded; choose one of {sorted(self.history)}"
            )
        mode = mode or ("min" if metric.endswith("loss") else "max")
        if mode not in ("min", "max"):
            raise InputError(f"mode={mode!r}: use 'min' or 'max'")
        if over not in (None, "seed"):
            raise InputError(f"over={over!r}: use None or 'seed' (mean over seeds)")
        final = self.history[metric][:, -1].astype(float)
        eligible = (np.asarray(self.status) == "running") & np.isfinite(final)
        if over is None:  # one candidate per config: no dict per config is built
            index = np.flatnonzero(eligible)
            if index.size:  # the first of the best (ties go to the lowest index)
                sign = 1.0 if mode == "min" else -1.0
                pick = int(index[np.argmin(sign * final[index])])
                candidates = [([pick], float(final[pick]))]
            else:
                candidates = []
        else:
            groups: dict[Any, list[int]] = {}
            for index, config in enumerate(self._config_dicts()):
                groups.setdefault(repr(sorted(_without_seed(config).items())), []).append(index)
            candidates = [
                (m, float(np.mean(final[m]))) for m in groups.values() if eligible[m].all()
            ]
        if not candidates:
            counts = {s: int(np.sum(np.asarray(self.status) == s)) for s in ("diverged", "stopped")}
            raise ValueError(
                f"best({metric!r}): no config trained to the end with a finite {metric} "
                f"({counts['diverged']} diverged, {counts['stopped']} stopped, of "
                f"{len(self)}); lower the learning rates or train longer"
            )
        sign = 1.0 if mode == "min" else -1.0
        members, score = min(candidates, key=lambda c: (sign * c[1], c[0][0]))
        row = {"config": members[0], **self._row(members[0], self.configs[members[0]])}
        if over == "seed":
            row["configs"] = members
            row[f"mean_final_{metric}"] = score
        return row

    def to_csv(self, path: str | os.PathLike) -> None:
        rows = self.table()
        orders = {tuple(row) for row in rows}
        lines = io.StringIO()
        if len(orders) == 1:  # every row has the same columns: written as they come
            writer = csv.writer(lines)
            writer.writerow(next(iter(orders)))
            writer.writerows(row.values() for row in rows)
        else:
            columns = list(dict.fromkeys(k for row in rows for k in row))
            writer = csv.DictWriter(lines, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        atomic_write(path, lines.getvalue())

    def to_json(self, path: str | os.PathLike) -> None:
        """Rows and histories as strictly valid JSON: NaN and ±inf are written as null
        (JSON has no such tokens; ``save`` keeps them exactly)."""
        document = {"rows": self.table(), "history": self.history_lists()}
        atomic_write(path, strict_json(document, indent=None))  # (one line: the C encoder)

    def history_lists(self) -> dict[str, list[list[float]]]:
        return {name: np.asarray(v, np.float64).tolist() for name, v in self.history.items()}

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the result to ``folder`` so that ``SweepResult.load`` gives it back
        exactly: configs with their types (schedules included), histories, statuses,
        strategy, groups, timings, ``meta`` and the parameters when kept.

        Files: ``result.json`` (strict JSON), ``arrays.npz`` (every array, exactly) and
        ``COMPLETE``, written last with their checksums: a folder without it is
        incomplete. A folder holding a saved result is refused unless ``overwrite``;
        other files in it are left alone.
        """
        save_result(self, folder, overwrite=overwrite)

    @staticmethod
    def load(folder: str | os.PathLike) -> SweepResult:
        """The result ``save`` wrote to ``folder``; refuses an incomplete or damaged one
        (``jaxgd.InputError``)."""
        return load_result(folder)

    @staticmethod
    def is_complete(folder: str | os.PathLike) -> bool:
        """Whether ``folder`` holds a result that finished saving."""
        return is_complete(folder)

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas: ``pip install jaxgd[pandas]``)."""
        pandas = optional_import("pandas", extra="pandas", feature="SweepResult.to_pandas()")
        return pandas.DataFrame(self.table())

    def history_frame(self):
        """The histories in long form, one row per (config, epoch), as a
        ``pandas.DataFrame`` (what ``groupby`` and seaborn expect; needs pandas).

        Columns: ``config`` (the index in the space), the config's hyperparameters
        (``optimizer``, ``learning_rate``, ..., ``batch_size`` as given, ``seed``),
        ``status``, ``epoch`` (1-based), then every recorded history (``train_loss``,
        ``val_loss``, ..., ``updates``, ``examples_seen`` and the ``batch_size`` in
        force, named ``batch_size_now``). A stopped config's metrics are NaN after its
        last epoch.

        Example:
            >>> import numpy as np, jaxgd
            >>> result = jaxgd.SweepResult(
            ...     configs=[{"learning_rate": 0.1}, {"learning_rate": 0.3}],
            ...     history={"train_loss": np.array([[1.0, 0.5], [0.9, 0.2]])},
            ...     updates=np.array([2, 2]), examples_seen=np.array([20, 20]),
            ...     diverged=np.array([False, False]), diverged_step=np.array([-1, -1]),
            ...     seconds=np.zeros(2), compile_seconds=np.zeros(2))
            >>> frame = result.history_frame()
            >>> frame.groupby("learning_rate")["train_loss"].min().to_dict()
            {0.1: 0.5, 0.3: 0.2}
        """
        pandas = optional_import("pandas", extra="pandas", feature="SweepResult.history_frame()")
        count, epochs = len(self.configs), self.epochs
        configs = self._config_dicts()  # each built once, not once per key
        columns: dict[str, Any] = {"config": np.repeat(np.arange(count), epochs)}
        for key in dict.fromkeys(k for c in configs for k in c):
            values = [c.get(key) for c in configs]
            if not all(isinstance(v, (int, float, str, bool)) for v in values):
                values = [None if v is None else str(v) for v in values]
            columns[key] = np.repeat(np.asarray(values, dtype=object), epochs)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                columns[key] = np.repeat(np.asarray(values), epochs)
        columns["status"] = np.repeat(np.asarray(self.status, dtype=str), epochs)
        columns["epoch"] = np.tile(np.arange(1, epochs + 1), count)
        for name, values in self.history.items():
            column = f"{name}_now" if name in columns else name
            columns[column] = np.asarray(values).reshape(-1)
        return pandas.DataFrame(columns)

    def format_table(self, columns: list[str] | None = None, max_rows: int | None = 40) -> str:
        """A plain-text table of the rows, for terminals (``max_rows=None`` shows all).

        By default the columns are the table's minus the ``best_*`` ones (but
        ``best_val_loss``), ``diverged`` (``status`` says it), ``diverged_step``,
        ``stopped_epoch`` and ``compile_seconds``.
        """
        rows = self.table()
        if columns is None:
            columns = [c for c in rows[0] if not c.startswith("best_") or c == "best_val_loss"]
            hidden = ("diverged", "diverged_step", "stopped_epoch", "compile_seconds")
            columns = [c for c in columns if c not in hidden]
        return format_table(rows, columns, max_rows)


# ``status`` and ``groups`` may be given as ``Deferred`` (``jaxgd.sweep`` does): built on
# first read. Set after the class is made, so the dataclass keeps them as fields.
SweepResult.status = _deferred_field("status", "``[config]`` status names (see the class).")
SweepResult.groups = _deferred_field("groups", "One record per compiled program (see the class).")
