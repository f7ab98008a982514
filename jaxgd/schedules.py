"""Batch-size schedules: the batch size in force at each epoch.

"Don't decay the learning rate, increase the batch size" (Smith, Kindermans, Ying, Le
2017, arXiv:1711.00489): where a step schedule would divide the learning rate by a at
epoch e, multiply the batch size by a instead. A schedule is a value of a config's
``batch_size`` key, so schedules, fixed sizes and learning rates sweep together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

__all__ = ["BatchSchedule", "batch_schedule", "increase_batch_size"]


@dataclasses.dataclass(frozen=True)
class BatchSchedule:
    """Piecewise-constant batch size: ``sizes[j]`` from epoch ``boundaries[j]`` on.

    Example:
        >>> schedule = batch_schedule(32, {10: 64, 20: 128})
        >>> [schedule.at(e) for e in (0, 9, 10, 25)]
        [32, 32, 64, 128]
    """

    boundaries: tuple[int, ...]
    sizes: tuple[int, ...]

    def at(self, epoch: int) -> int:
        size = self.sizes[0]
        for start, value in zip(self.boundaries, self.sizes):
            if epoch >= start:
                size = value
        return size

    def per_epoch(self, epochs: int) -> list[int]:
        return [self.at(e) for e in range(epochs)]

    def __str__(self) -> str:
        return (
            "schedule(" + ", ".join(f"{b}:{s}" for b, s in zip(self.boundaries, self.sizes)) + ")"
        )


def batch_schedule(initial: int, changes: Mapping[int, int]) -> BatchSchedule:
    """A schedule starting at ``initial`` and switching to ``changes[e]`` at epoch e."""
    points = sorted((int(e), int(s)) for e, s in changes.items())
    if any(e <= 0 for e, _ in points):
        raise ValueError(f"batch_schedule changes={dict(changes)}: epochs must be positive")
    sizes = [int(initial)] + [s for _, s in points]
    if any(s < 1 for s in sizes):
        raise ValueError(f"batch_schedule sizes {sizes}: must be positive integers")
    return BatchSchedule((0,) + tuple(e for e, _ in points), tuple(sizes))


def increase_batch_size(initial: int, factor: int, at: Sequence[int]) -> BatchSchedule:
    """Multiply the batch size by ``factor`` at each epoch of ``at``: the schedule that
    replaces dividing the learning rate by ``factor`` there."""
    changes, size = {}, int(initial)
    for epoch in sorted(at):
        size *= int(factor)
        changes[epoch] = size
    return batch_schedule(initial, changes)
