"""Running the benchmark: warm-up, budgeted repeats, the timing of one point, a whole run.

Each point reports compile seconds apart, the median and spread of the run seconds over
``repeats`` timed calls after a warm-up, throughput, and (added by ``report``) model-FLOPs
utilisation. Looped baselines whose full work would take longer than ``budget`` seconds
per call time a subset (the first configs, or the first steps) and extrapolate linearly;
such a point says so (``extrapolated``, ``timed_configs``, ``timed_steps``).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import measure, report
from .methods import JaxgdSingle, JaxgdSweep, JaxScanVmap, OptaxLoop
from .torch_methods import TorchEager, TorchFunc
from .workload import (
    JaxgdPrograms,
    Method,
    Outcome,
    Work,
    Workload,
    initial_params,
    load_problem,
    make_configs,
)

__all__ = [
    "SCHEMA",
    "METHODS",
    "TORCH_METHODS",
    "METHOD_CLASSES",
    "RunSettings",
    "Measurement",
    "plan_work",
    "measure_point",
    "run_benchmark",
]

# The name dates from when the harness was jaxgd/benchmark.py; kept so that results
# written before and after the move compare (benchmarks/results/*.json).
SCHEMA = "jaxgd.benchmark/1"
METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (JaxgdSweep, JaxgdSingle, OptaxLoop, JaxScanVmap, TorchEager, TorchFunc)
}
METHODS = tuple(METHOD_CLASSES)
TORCH_METHODS = (TorchEager.name, TorchFunc.name)
JAXGD_METHODS = (JaxgdSweep.name, JaxgdSingle.name)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """One benchmark run, every option resolved (see ``cli`` for their meaning).

    ``batch_sizes`` None: the powers of two up to 4096 and the dataset size.
    """

    problem: str
    num_examples: int | None
    batch_sizes: list[int] | None
    sweep_configs: int
    configs: list[int]
    configs_batch_size: int
    epochs: int
    repeats: int
    methods: list[str]
    budget: float
    quick: bool
    command: str


class Measurement(NamedTuple):
    """One timed point (a JSON row), and jaxgd's programs that trained it (jaxgd only)."""

    point: dict[str, Any]
    programs: JaxgdPrograms | None


def plan_work(method: Method, count: int, budget: float) -> tuple[Work, float, Outcome]:
    """Warm up, then choose how much of the work one timed call does.

    Returns the work, the factor from its time to the full work's, and the warm-up call
    (whose compile seconds jaxgd reports apart from its run time)."""
    full = Work(count)
    if method.truncate_by is None:
        warmup = method.run(full)  # compiles jaxgd's program; its compile time is apart
        return full, 1.0, warmup
    if method.truncate_by == "configs":
        small = Work(1)
        warmup = method.run(small)
        estimate = method.run(small).seconds * count
        if estimate <= budget:
            return full, 1.0, warmup
        configs = max(1, min(count, int(budget / estimate * count)))
        return Work(configs), count / configs, warmup
    small_steps = min(method.total_steps, 20)
    warmup = method.run(Work(count, small_steps))
    estimate = method.run(Work(count, small_steps)).seconds * method.total_steps / small_steps
    if estimate <= budget:
        return full, 1.0, warmup
    steps = max(small_steps, min(method.total_steps, int(budget / estimate * method.total_steps)))
    return Work(count, steps), method.total_steps / steps, warmup


def measure_point(
    workload: Workload,
    method_name: str,
    batch_size: int,
    count: int,
    repeats: int,
    budget: float,
) -> Measurement:
    """Time one method at one (batch size, configs) point."""
    configs = make_configs(count)
    method = METHOD_CLASSES[method_name](workload, configs, batch_size)
    compile_seconds = method.prepare()
    first_call = time.perf_counter()
    work, scale, warmup = plan_work(method, count, budget)
    compile_seconds += warmup.compile_seconds
    warmup_seconds = time.perf_counter() - first_call
    outcomes = [method.run(work) for _ in range(repeats)]
    if method_name in JAXGD_METHODS:
        compiled_in_timed_calls = sum(o.compile_seconds for o in outcomes)
        if compiled_in_timed_calls:
            raise RuntimeError(f"{method_name} recompiled during timed calls")
    seconds = sorted(o.seconds * scale for o in outcomes)
    median = statistics.median(seconds)
    quartiles = np.percentile(seconds, [25, 75])
    examples = workload.epochs * workload.num_examples
    point = {
        "method": method_name,
        "batch_size": batch_size,
        "configs": count,
        "epochs": workload.epochs,
        "steps_per_config": method.total_steps,
        "compile_seconds": compile_seconds,
        "warmup_seconds": warmup_seconds,
        "run_seconds_median": median,
        "run_seconds_min": seconds[0],
        "run_seconds_max": seconds[-1],
        "run_seconds_iqr": float(quartiles[1] - quartiles[0]),
        "run_seconds": seconds,
        "relative_spread": (seconds[-1] - seconds[0]) / median,
        "extrapolated": scale != 1.0,
        "timed_configs": work.configs,
        "timed_steps": method.total_steps if work.steps is None else work.steps,
        "steps_per_second": method.total_steps / median,
        "examples_per_second_per_config": examples / median,
        "config_examples_per_second": count * examples / median,
        "peak_device_memory_bytes": measure.peak_device_memory(),
        "final_train_loss": outcomes[-1].final_losses if scale == 1.0 else None,
    }
    if method_name == JaxgdSweep.name:
        point["engine_run_seconds_median"] = statistics.median(o.engine_seconds for o in outcomes)
    return Measurement(point, warmup.programs)


def _methods_available(methods: list[str], log) -> tuple[list[str], dict[str, str]]:
    """The methods that can run here, and why the others are skipped (no PyTorch)."""
    wanted_torch = [m for m in methods if m in TORCH_METHODS]
    if not wanted_torch:
        return methods, {}
    try:
        import torch  # noqa: F401
    except ImportError:
        message = "PyTorch is not installed (pip install 'jaxgd[bench]')"
        log(f"skipping {', '.join(wanted_torch)}: {message}")
        return [m for m in methods if m not in wanted_torch], dict.fromkeys(wanted_torch, message)
    _torch_first_call()
    return methods, {}


def _torch_first_call() -> None:
    """PyTorch's one-off start-up (about 2 s on the first backward) kept out of every point."""
    import torch

    weight = torch.ones(4, 4, requires_grad=True)
    (weight @ weight).sum().backward()


def _add_jaxgd_cost(
    point: dict[str, Any],
    programs: JaxgdPrograms | None,
    workload: Workload,
    counted_once: bool,
) -> None:
    """FLOPs per step of jaxgd's programs for this point, and their compile seconds when
    another method of this run compiled them first (the same program serves ``jaxgd`` at
    K=1 and ``jaxgd_single``, and jaxgd's cache then compiles nothing)."""
    if programs is None:
        point["flops_per_step"] = None
        return
    if point["compile_seconds"] == 0.0:
        point["compile_seconds"] = programs.compile_seconds
    point["flops_per_step"] = measure.jaxgd_flops_per_step(
        programs, workload, point["batch_size"], counted_once
    )


def run_benchmark(settings: RunSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Every point of the run, with the device's peak measured before and after; returns
    the JSON record (schema ``SCHEMA``)."""
    problem, data = load_problem(settings.problem, settings.num_examples)
    workload = Workload(settings.problem, problem, data, settings.epochs)
    n = workload.num_examples
    batch_sizes = settings.batch_sizes or [2**i for i in range(13) if 2**i <= n]
    for size in [*batch_sizes, settings.configs_batch_size]:
        if not 1 <= size <= n:
            raise ValueError(f"batch size {size}: must lie in [1, {n}] (the training examples)")
    if settings.epochs < 1 or settings.repeats < 1 or settings.sweep_configs < 1:
        raise ValueError("--epochs, --repeats and --sweep-configs must be positive")
    methods, skipped = _methods_available(settings.methods, log)

    log(f"device: {jax.devices()[0]}; measuring the float32 matmul peak")
    peak_sizes = (256,) if settings.quick else (512, 1024, 2048)
    peak_before = measure.matmul_peak(peak_sizes)
    counted_once = measure.scan_body_counted_once()
    log(f"peak {peak_before['flops_per_second'] / 1e9:.1f} GFLOP/s")

    wanted = [("batch_size", size, settings.sweep_configs) for size in batch_sizes]
    wanted += [("configs", settings.configs_batch_size, k) for k in settings.configs]
    points: list[dict[str, Any]] = []
    measured: dict[tuple[str, int, int], dict[str, Any]] = {}
    # jaxgd's programs by (batch size, configs at once), the first that compiled them.
    programs: dict[tuple[int, int], JaxgdPrograms] = {}
    for sweep_name, size, count in wanted:
        for method in methods:
            key = (method, size, count)
            if key not in measured:
                point, made = measure_point(
                    workload, method, size, count, settings.repeats, settings.budget
                )
                if made is not None:
                    known = programs.get((size, made.configs))
                    if known is None or not known.compile_seconds:
                        programs[(size, made.configs)] = made
                if method == JaxgdSweep.name:
                    _add_jaxgd_cost(point, programs.get((size, count)), workload, counted_once)
                measured[key] = point
                log(
                    f"{method:>13} B={size:<5} K={count:<4} "
                    f"run {point['run_seconds_median']:8.3f}s"
                    f"{' (extrapolated)' if point['extrapolated'] else ''}  "
                    f"compile {point['compile_seconds']:.2f}s  "
                    f"{point['config_examples_per_second']:.3g} config-examples/s"
                )
            points.append({"sweep": sweep_name, **measured[key]})
    # Measured before and after the points; the better one is the device's peak.
    peak_after = measure.matmul_peak(peak_sizes)
    peak = {
        "flops_per_second": max(p["flops_per_second"] for p in (peak_before, peak_after)),
        "before": peak_before,
        "after": peak_after,
    }
    log(f"peak after the points {peak_after['flops_per_second'] / 1e9:.1f} GFLOP/s")
    report.add_utilisation(points, peak["flops_per_second"])
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": settings.command,
        "device": measure.device_info(),
        "dtype": str(jnp.result_type(float)),
        "problem": {
            "name": settings.problem,
            "model": problem.name,
            "num_examples": n,
            "parameters": int(
                sum(np.size(leaf) for leaf in jax.tree.leaves(initial_params(problem, 0)))
            ),
        },
        "epochs": settings.epochs,
        "repeats": settings.repeats,
        "budget_seconds": settings.budget if math.isfinite(settings.budget) else None,
        "methods": methods,
        "skipped": skipped,
        "peak": peak,
        "xla_counts_loop_body_once": counted_once,
        "host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "points": points,
        "goals": report.goal_ratios(points, settings.sweep_configs),
    }
