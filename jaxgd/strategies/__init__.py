"""Strategies: peer ways to plan a sweep's configs into compiled programs.

Each follows ``base.Strategy`` (check, plan) and its programs follow ``base.Program``.
A new strategy is a module and one entry here.
"""

from .accumulate import ACCUMULATE
from .base import PlanContext, Program, ProgramSpec, Strategy
from .choose import choose_strategy
from .grouped import GROUPED
from .nested import NESTED
from .streamed import STREAMED

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (GROUPED, NESTED, ACCUMULATE, STREAMED)}

__all__ = ["STRATEGIES", "PlanContext", "Program", "ProgramSpec", "Strategy", "choose_strategy"]
