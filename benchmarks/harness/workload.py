"""What every method trains, and the interface a method implements.

Every method does the same work: the same model and initial parameters, the same K
configs (a learning-rate x momentum grid, SGD with heavy-ball momentum as ``optax.sgd``
and ``torch.optim.SGD`` define it), the same epochs and per-epoch data order, the partial
last batch averaged over its real examples. The parameters and the data order come from
the seed exactly as jaxgd derives them (``seed_keys``), so the baselines follow jaxgd
step for step and their final losses agree with its own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxgd

if TYPE_CHECKING:
    from jaxgd import Problem

__all__ = [
    "PROBLEMS",
    "Workload",
    "load_problem",
    "make_configs",
    "SeedKeys",
    "seed_keys",
    "initial_params",
    "data_orders",
    "batch_rows",
    "Work",
    "Outcome",
    "JaxgdPrograms",
    "Method",
]

PyTree = Any
PROBLEMS = ("mlp", "digits_cnn", "linear_regression")


@dataclasses.dataclass(frozen=True)
class Workload:
    """What every method trains: problem, data (numpy), epochs, seed."""

    name: str
    problem: Problem
    data: dict[str, np.ndarray]
    epochs: int
    seed: int = 0

    @property
    def num_examples(self) -> int:
        return int(self.data["y"].shape[0])


def load_problem(name: str, num_examples: int | None) -> tuple[Problem, dict[str, np.ndarray]]:
    """The named built-in problem; ``num_examples`` keeps the first N examples."""
    if name == "mlp":
        problem = jaxgd.problems.mlp((64, 256, 10))
        data = jaxgd.problems.synthetic_classification(num_examples or 4096)
    elif name == "digits_cnn":
        problem, data = jaxgd.problems.digits_cnn()
    elif name == "linear_regression":
        problem, data = jaxgd.problems.linear_regression(num_examples=num_examples or 4096)
    else:
        raise ValueError(f"--problem={name!r}: choose one of {list(PROBLEMS)}")
    available = int(data["y"].shape[0])
    if num_examples is not None:
        if not 1 <= num_examples <= available:
            raise ValueError(
                f"--num-examples={num_examples}: the {name} problem has {available} examples"
            )
        data = {key: value[:num_examples] for key, value in data.items()}
    return problem, data


def make_configs(count: int) -> list[dict[str, float]]:
    """``count`` configs from a learning-rate x momentum grid (rates outer, momenta inner).

    Rates are log-spaced in [1e-3, 3e-2], momenta linear in [0, 0.9]: the largest
    effective rate lr/(1-m) = 0.3 trains every built-in problem without diverging, so
    every method runs the same finite arithmetic.
    """
    if count < 1:
        raise ValueError(f"configs={count}: must be a positive integer")
    rates_count = math.ceil(math.sqrt(count))
    momenta_count = math.ceil(count / rates_count)
    rates = np.geomspace(1e-3, 3e-2, rates_count) if rates_count > 1 else np.array([1e-2])
    momenta = np.linspace(0.0, 0.9, momenta_count) if momenta_count > 1 else np.array([0.9])
    grid = [{"learning_rate": float(lr), "momentum": float(m)} for lr in rates for m in momenta]
    return grid[:count]


class SeedKeys(NamedTuple):
    """The two keys a config's seed gives: one draws the initial parameters, the other
    the per-epoch data orders."""

    init_key: jax.Array
    shuffle_key: jax.Array


def seed_keys(seed: int) -> SeedKeys:
    """The keys jaxgd derives from a config's seed, the same as jaxgd:
    ``init_key, shuffle_key = jax.random.split(jax.random.key(seed))``.

    This is the one place the baselines copy jaxgd's convention; if jaxgd changes it,
    the benchmark's "methods agree" test fails here first.
    """
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return SeedKeys(init_key, shuffle_key)


def initial_params(problem: Problem, seed: int) -> PyTree:
    """The parameters jaxgd starts a config of this seed from, as numpy arrays."""
    return jax.tree.map(np.asarray, problem.init(seed_keys(seed).init_key))


def data_orders(seed: int, epochs: int, num_examples: int) -> np.ndarray:
    """``[epochs, N]``: the order in which jaxgd visits the examples in each epoch,
    ``permutation(fold_in(shuffle_key, epoch))``; the baselines follow it exactly."""
    shuffle_key = seed_keys(seed).shuffle_key
    orders = [
        jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), num_examples)
        for epoch in range(epochs)
    ]
    return np.asarray(jnp.stack(orders)).astype(np.int64)


def batch_rows(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """An epoch's order cut into batches; the last one may be partial."""
    return [order[start : start + batch_size] for start in range(0, order.size, batch_size)]


@dataclasses.dataclass(frozen=True)
class Work:
    """How much of a point's work one call does: the first ``configs`` configs, and at
    most ``steps`` steps of each (None: all)."""

    configs: int
    steps: int | None = None


@dataclasses.dataclass
class Outcome:
    """One timed call: wall seconds for the work done, and final epoch losses when the
    whole work was done (the last epoch's mean training loss per config).

    Attributes:
        seconds: wall seconds of the call.
        final_losses: per config, the last epoch's mean training loss; None when the call
            did only part of the work.
        compile_seconds: seconds the call spent compiling (jaxgd compiles inside
            ``sweep``; the benchmark reports them apart from the run time).
        engine_seconds: jaxgd's own run seconds for the call (``SweepResult.seconds``).
        programs: jaxgd's compiled programs that did the work (jaxgd methods only).
    """

    seconds: float
    final_losses: list[float] | None = None
    compile_seconds: float = 0.0
    engine_seconds: float | None = None
    programs: JaxgdPrograms | None = None


class JaxgdPrograms(NamedTuple):
    """The programs of a ``jaxgd.sweep`` that trained ``configs`` configs at once.

    Attributes:
        configs: how many configs the programs train at once (K, or 1 for jaxgd_single).
        compiled: the sweep's compiled chunk programs (``SweepResult.compiled``,
            ``jax.stages.Compiled``): their cost analysis gives the FLOPs.
        compile_seconds: what the sweep spent compiling; 0 when jaxgd's cache already
            held the programs (another method of the run built them first).
    """

    configs: int
    compiled: list[Any]
    compile_seconds: float


class Method:
    """A way to train K configs. ``prepare`` once per point, then ``run(work)``."""

    name = "method"
    # "configs": time a subset of configs; "steps": a prefix of the steps; None: all.
    truncate_by: str | None = None

    def __init__(self, workload: Workload, configs: list[dict[str, float]], batch_size: int):
        self.workload = workload
        self.configs = configs
        self.batch_size = batch_size
        self.steps_per_epoch = math.ceil(workload.num_examples / batch_size)
        self.total_steps = self.steps_per_epoch * workload.epochs
        self.orders = data_orders(workload.seed, workload.epochs, workload.num_examples)

    def prepare(self) -> float:
        """Build and compile what the runs need; returns compile seconds."""
        return 0.0

    def run(self, work: Work) -> Outcome:
        raise NotImplementedError
