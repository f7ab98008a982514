"""Steps-to-result, the critical batch size, and time-to-target on this device.

Shallue et al. measure, per batch size B, the fewest updates S(B) any tuned config needs
to reach a target; S(B) falls as 1/B (perfect scaling) for small B, then flattens.
McCandlish et al.'s model of that curve is

    S(B) = S_min (1 + B_crit / B),    E(B) = B·S(B) = E_min (1 + B / B_crit)

(S_min: fewest steps, E_min = S_min·B_crit: fewest examples). Multiplying S(B) by the
seconds an update takes at batch size B on this device gives the wall time to target.

References:
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl (2018), "Measuring the Effects
    of Data Parallelism on Neural Network Training", arXiv:1811.03600.
    McCandlish, Kaplan, Amodei et al. (2018), arXiv:1812.06162, eq. (2.11).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..problem import Problem
from ..results import SweepResult

__all__ = [
    "StepsToResult",
    "steps_to_result",
    "CriticalBatchFit",
    "fit_critical_batch",
    "seconds_per_update",
    "TimeToTarget",
    "time_to_target",
]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class StepsToResult:
    """Per batch size that reached the target, sorted by batch size.

    Attributes:
        batch_sizes: the batch sizes with an entry.
        steps: the fewest updates to the target among each batch size's configs.
        examples: examples seen by then, and ``epochs``: epochs trained by then.
        config: the index (in the sweep) of the config that got there first.
        missing: batch sizes of the sweep where no config reached the target.
        metric, target, mode: what was asked.
    """

    batch_sizes: np.ndarray
    steps: np.ndarray
    examples: np.ndarray
    epochs: np.ndarray
    config: np.ndarray
    missing: tuple[int, ...]
    metric: str
    target: float
    mode: str

    def as_dict(self) -> dict[int, int]:
        """``{batch_size: steps}``."""
        return {int(b): int(s) for b, s in zip(self.batch_sizes, self.steps)}


def steps_to_result(
    result: SweepResult, metric: str, target: float, mode: str = "min"
) -> StepsToResult:
    """Per batch size, the fewest updates at which any of its configs' ``metric`` strictly
    crosses ``target`` (below it with ``mode="min"``, above with ``"max"``).

    Shallue et al.'s definition: each config's history is in update order; a config that
    diverged or was stopped, or never crosses, contributes nothing; a batch size none of
    whose configs crosses has no entry (it is listed in ``missing``), not 0 and not the
    maximum.

    Resolution: jaxgd records metrics at epoch ends, so the count is the updates done at
    the end of the first epoch where the metric is past the target, an upper bound on
    the true crossing by less than one epoch's updates, ⌈N/B⌉ (relatively coarser for
    small batch sizes in updates, but the same fraction of an epoch for all).

    Args:
        result: a sweep with fixed integer batch sizes.
        metric: a history entry, e.g. "val_loss" or "val_accuracy".
        target: the threshold.
        mode: "min" (lower is better) or "max".

    Example:
        >>> import numpy as np
        >>> history = {"val_loss": np.array([[0.9, 0.4, 0.2], [0.8, 0.6, 0.5]]),
        ...            "updates": np.array([[10, 20, 30], [5, 10, 15]])}
        >>> result = SweepResult(configs=[{"batch_size": 8}, {"batch_size": 16}],
        ...     history=history, updates=np.array([30, 15]), examples_seen=np.zeros(2),
        ...     diverged=np.zeros(2, bool), diverged_step=np.full(2, -1),
        ...     seconds=np.zeros(2), compile_seconds=np.zeros(2))
        >>> found = steps_to_result(result, "val_loss", 0.5)
        >>> found.as_dict(), found.missing  # batch 16 reaches 0.5 but never crosses it
        ({8: 20}, (16,))
    """
    if not isinstance(result, SweepResult):
        raise InputError(f"result={type(result).__name__}: expected a jaxgd.SweepResult")
    if metric not in result.history:
        raise InputError(
            f"metric={metric!r} is not in the history; choose one of {sorted(result.history)}"
        )
    if mode not in ("min", "max"):
        raise InputError(f"mode={mode!r}: expected 'min' (lower is better) or 'max'")
    if (
        isinstance(target, bool)
        or not isinstance(target, (int, float))
        or not math.isfinite(target)
    ):
        raise InputError(f"target={target!r}: expected a finite number")
    sizes = [config.get("batch_size") for config in result.configs]
    bad = [b for b in sizes if isinstance(b, bool) or not isinstance(b, (int, np.integer))]
    if bad:
        raise InputError(
            f"batch sizes {bad[:3]}: steps_to_result compares fixed integer batch sizes; "
            "sweep schedules and the norm test separately"
        )
    values = np.asarray(result.history[metric], np.float64)
    crossed = values < target if mode == "min" else values > target
    updates = np.asarray(result.history["updates"])
    seen = result.history.get("examples_seen")
    best: dict[int, tuple[int, int]] = {}
    for index, size in enumerate(sizes):
        best.setdefault(int(size), None)
        if str(result.status[index]) != "running" or not crossed[index].any():
            continue
        epoch = int(np.argmax(crossed[index]))
        steps = int(updates[index, epoch])
        if best[int(size)] is None or steps < best[int(size)][0]:
            best[int(size)] = (steps, index, epoch)
    reached = sorted(b for b, entry in best.items() if entry is not None)
    entries = [best[b] for b in reached]
    return StepsToResult(
        batch_sizes=np.array(reached, np.int64),
        steps=np.array([e[0] for e in entries], np.int64),
        examples=np.array(
            [int(seen[e[1], e[2]]) if seen is not None else -1 for e in entries], np.int64
        ),
        epochs=np.array([e[2] + 1 for e in entries], np.int64),
        config=np.array([e[1] for e in entries], np.int64),
        missing=tuple(sorted(b for b, entry in best.items() if entry is None)),
        metric=metric,
        target=float(target),
        mode=mode,
    )


@dataclasses.dataclass(frozen=True)
class CriticalBatchFit:
    """S(B) = S_min (1 + B_crit / B) fitted to measured steps.

    Attributes:
        s_min: the fewest steps (B → ∞); ``e_min`` = S_min·B_crit, the fewest examples
            (B → 0); ``b_crit``: the critical batch size.
        batch_sizes, steps: the data fitted.
        residuals: log(measured / fitted) per batch size.
    """

    s_min: float
    e_min: float
    b_crit: float
    batch_sizes: np.ndarray
    steps: np.ndarray
    residuals: np.ndarray

    def predict(self, batch_sizes: Any) -> np.ndarray:
        """S(B) of the fit."""
        return self.s_min * (1 + self.b_crit / np.asarray(batch_sizes, np.float64))


def fit_critical_batch(batch_sizes: Sequence[float], steps: Sequence[float]) -> CriticalBatchFit:
    """Fit S(B) = S_min + E_min / B (linear in 1/B) to steps-to-result.

    Least squares in relative error, minimising Σ_i ((S_i − S_min − E_min/B_i) / S_i)²:
    still linear, and every batch size counts alike although S spans decades (plain least
    squares would fit the small batch sizes only). B_crit = E_min / S_min.

    Args:
        batch_sizes, steps: at least two distinct positive batch sizes and their steps.

    Returns:
        A ``CriticalBatchFit``; B_crit is inf if the fitted S_min ≤ 0 (no plateau seen)
        and 0 if E_min ≤ 0 (no 1/B regime seen).

    Example:
        >>> fit = fit_critical_batch([8, 32, 128, 512], [1100, 350, 162.5, 115.625])
        >>> round(fit.s_min, 6), round(fit.b_crit, 6)  # S = 100 (1 + 80/B)
        (100.0, 80.0)
    """
    b = np.asarray(batch_sizes, np.float64)
    s = np.asarray(steps, np.float64)
    if b.ndim != 1 or b.shape != s.shape:
        raise InputError(
            f"batch_sizes {b.shape} and steps {s.shape}: expected two 1-d sequences of equal "
            "length, e.g. StepsToResult.batch_sizes and .steps"
        )
    if np.unique(b).size < 2 or not (np.all(b > 0) and np.all(s > 0)):
        raise InputError(
            f"batch_sizes={b.tolist()}, steps={s.tolist()}: need at least two distinct "
            "positive batch sizes with positive steps (did few batch sizes reach the target?)"
        )
    design = np.stack([np.ones_like(b), 1 / b], axis=1) / s[:, None]
    (s_min, e_min), *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    if s_min <= 0:
        b_crit = math.inf
    else:
        b_crit = max(e_min, 0.0) / s_min
    fitted = s_min + e_min / b
    with np.errstate(invalid="ignore", divide="ignore"):
        residuals = np.log(s / fitted)
    return CriticalBatchFit(float(s_min), float(e_min), float(b_crit), b, s, residuals)


def seconds_per_update(
    problem: Problem,
    data: PyTree,
    batch_sizes: Sequence[int],
    *,
    hyperparams: Mapping[str, Any] | None = None,
    epochs: int = 2,
    repeats: int = 3,
    **sweep_kwargs: Any,
) -> dict[int, float]:
    """Seconds per update of one config at each batch size, on this device.

    Each batch size trains one config with ``jaxgd.sweep`` (the same engine and, through
    ``sweep_kwargs``, the same per-epoch evaluation as the study's sweep): one call to
    compile and warm up, then ``repeats`` calls, batch sizes interleaved so that the
    machine's drifts hit all alike. The result is the median of the sweep's own run
    seconds (compilation excluded) divided by its updates.

    Args:
        problem, data: as for ``jaxgd.sweep``.
        batch_sizes: the batch sizes to time.
        hyperparams: the one config's (default ``{"learning_rate": 0.01}``; the time of an
            update does not depend on the values).
        epochs: epochs per timed call.
        repeats: timed calls per batch size.
        sweep_kwargs: further ``jaxgd.sweep`` keywords (optimizer, validation, ...).

    Returns:
        ``{batch_size: seconds per update}``.
    """
    from ..sweep import sweep

    config = dict(hyperparams or {"learning_rate": 0.01})
    sizes = sorted({int(b) for b in batch_sizes})
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats={repeats!r}: expected a positive integer")

    def one(size: int) -> float:
        space = [dict(config, batch_size=size)]
        result = sweep(problem, data, space=space, epochs=epochs, **sweep_kwargs)
        return result.total_seconds / max(int(result.updates[0]), 1)

    for size in sizes:
        one(size)
    timings: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(repeats):
        for size in sizes:
            timings[size].append(one(size))
    return {size: statistics.median(times) for size, times in timings.items()}


@dataclasses.dataclass(frozen=True)
class TimeToTarget:
    """Predicted wall time to the target per batch size, and the recommendations.

    Attributes:
        batch_sizes, steps, seconds_per_update: per batch size with an entry.
        seconds: steps × seconds per update.
        examples: examples seen to the target.
        fastest: the batch size with the least predicted time.
        fewest_examples: the batch size with the fewest examples.
    """

    batch_sizes: np.ndarray
    steps: np.ndarray
    seconds_per_update: np.ndarray
    seconds: np.ndarray
    examples: np.ndarray
    fastest: int
    fewest_examples: int


def time_to_target(steps: StepsToResult, seconds_per_update: Mapping[int, float]) -> TimeToTarget:
    """Predicted seconds to the target at each batch size: S(B) · t(B).

    Args:
        steps: from ``steps_to_result``.
        seconds_per_update: ``{batch_size: seconds}`` (``seconds_per_update(...)``) for
            every batch size in ``steps``.

    Example:
        >>> import numpy as np
        >>> steps = StepsToResult(np.array([8, 64]), np.array([800, 150]),
        ...     np.array([6400, 9600]), np.array([5, 8]), np.array([0, 1]), (), "val_loss",
        ...     0.3, "min")
        >>> ttt = time_to_target(steps, {8: 1e-3, 64: 2e-3})
        >>> ttt.seconds.tolist(), ttt.fastest, ttt.fewest_examples
        ([0.8, 0.3], 64, 8)
    """
    if not isinstance(steps, StepsToResult):
        raise InputError(f"steps={type(steps).__name__}: expected steps_to_result(...)'s result")
    if steps.batch_sizes.size == 0:
        raise InputError(
            "steps: no batch size reached the target; train longer or choose an easier target"
        )
    missing = [int(b) for b in steps.batch_sizes if int(b) not in seconds_per_update]
    if missing:
        raise InputError(
            f"seconds_per_update has no timing for batch sizes {missing}; time them with "
            "jaxgd.science.seconds_per_update"
        )
    per_update = np.array([float(seconds_per_update[int(b)]) for b in steps.batch_sizes])
    seconds = steps.steps * per_update
    examples = np.where(steps.examples >= 0, steps.examples, steps.steps * steps.batch_sizes)
    return TimeToTarget(
        batch_sizes=steps.batch_sizes,
        steps=steps.steps,
        seconds_per_update=per_update,
        seconds=seconds,
        examples=examples,
        fastest=int(steps.batch_sizes[np.argmin(seconds)]),
        fewest_examples=int(steps.batch_sizes[np.argmin(examples)]),
    )
