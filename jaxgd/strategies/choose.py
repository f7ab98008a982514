"""The ``auto`` rule: which strategy runs a sweep's configs, and the refusals.

``grouped`` compiles one program per distinct batch size (or schedule) and runs each at
its own batch size; ``nested`` compiles one program holding an inner scan per batch size
(the grouped arithmetic, one compilation); ``accumulate`` compiles one program that walks
every config in micro-batches of m = gcd of all batch sizes. ``auto``: one batch size →
grouped; several fixed sizes → nested; the norm test → accumulate; schedules →
accumulate unless ``accumulate_overhead`` exceeds ``AUTO_MAX_OVERHEAD``, then grouped. On
a mesh with an ``"examples"`` axis, grouped always (it alone splits each batch).
"""

from __future__ import annotations

import math

import numpy as np

from ..configs import ResolvedConfigs
from ..schedules import BatchSchedule
from .accumulate import micro_batch_size
from .base import PlanContext

__all__ = ["choose_strategy", "accumulate_overhead", "AUTO_MAX_OVERHEAD"]

# With schedules, auto takes accumulate (one program whatever the sizes) unless it would
# compute more than this many optimizer updates per update needed: every micro-step runs
# (and masks) an update for every config. Fixed mixed sizes go to nested, which runs the
# grouped arithmetic, update for update, in one program (benchmarks/README.md).
AUTO_MAX_OVERHEAD = 2.0


def accumulate_overhead(configs: ResolvedConfigs, micro_size, num_train, epochs) -> float:
    """Optimizer updates the accumulate program computes (one per config per micro-step)
    relative to those the configs need (one per config per batch)."""
    micro_steps = len(configs) * epochs * math.ceil(num_train / micro_size)
    needed = int(np.sum(-(-num_train // configs.batch_sizes(epochs))))
    return micro_steps / needed


def choose_strategy(
    configs: ResolvedConfigs, strategy: str, context: PlanContext, strategies
) -> str:
    """Resolve ``strategy="auto"`` and check the choice (``strategies``: name → Strategy)."""
    if strategy not in ("auto", *strategies):
        raise ValueError(f"strategy={strategy!r}: choose one of {('auto', *strategies)}")
    all_sizes = {b for s in configs.used_batch_sizes() for b in _per_epoch(s, context.epochs)}
    micro = context.micro_batch_size
    if micro is not None and any(b % micro for b in all_sizes):
        raise ValueError(
            f"micro_batch_size={micro} must divide every batch size; "
            f"got batch sizes {sorted(all_sizes)}"
        )
    if strategy == "auto":
        strategy = _auto(configs, context, all_sizes)
    strategies[strategy].check(configs, context)
    return strategy


def _per_epoch(size, epochs: int) -> list[int]:
    return size.per_epoch(epochs) if isinstance(size, BatchSchedule) else [size] * epochs


def _auto(configs: ResolvedConfigs, context: PlanContext, all_sizes) -> str:
    if configs.adaptive.any():
        return "accumulate"
    if context.placement is not None and context.placement.examples is not None:
        return "grouped"  # the one that splits batches over an "examples" mesh axis
    schedules = configs.used_batch_sizes()
    if not any(isinstance(b, BatchSchedule) for b in schedules):
        return "grouped" if len(schedules) == 1 else "nested"
    m = context.micro_batch_size or micro_batch_size(all_sizes)
    overhead = accumulate_overhead(configs, m, context.num_train, context.epochs)
    return "accumulate" if overhead <= AUTO_MAX_OVERHEAD else "grouped"
