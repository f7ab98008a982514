"""Measuring: the device's matmul peak, XLA's FLOPs of a compiled program, device facts.

FLOPs per step come from XLA's cost analysis of jaxgd's compiled chunk programs, the
ones the sweep returns (``SweepResult.compiled``): every method at a point does the same
work, so jaxgd's count serves them all.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgd.core.blocks import default_config_block, footprint

from .workload import JaxgdPrograms, Workload

__all__ = [
    "scan_body_counted_once",
    "executable_flops",
    "jaxgd_flops_per_step",
    "matmul_peak",
    "device_info",
    "peak_device_memory",
]


def scan_body_counted_once() -> bool:
    """Whether XLA's cost analysis counts a loop body once (not times its trip count)."""
    matrix = jnp.ones((32, 32), jnp.float32)

    def loop(x):
        return jax.lax.scan(lambda c, _: (c @ c, None), x, None, length=10)[0]

    flops = executable_flops(jax.jit(loop).lower(matrix).compile())
    return flops is not None and flops < 5 * 2 * 32**3


def executable_flops(executable: jax.stages.Compiled) -> float | None:
    """XLA's FLOP count of a compiled program (None where the backend gives none)."""
    analysis = executable.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def jaxgd_flops_per_step(
    programs: JaxgdPrograms, workload: Workload, batch_size: int, counted_once: bool
) -> float | None:
    """FLOPs of one step of all ``programs.configs`` configs, from XLA's cost analysis
    of the sweep's compiled chunk programs.

    At one batch size every chunk program runs the same step; the largest count is
    taken. On the CPU large batches run the configs in blocks (``lax.map``, jaxgd's
    rule in ``jaxgd.core.blocks``), a loop whose body XLA's cost analysis counts once:
    the count is scaled by the number of blocks (the gather outside the loop is then
    over-counted, by well under 1%). Where XLA counts a loop body times its trip count,
    the count covers the whole epoch's steps and is divided by them.
    """
    counts = [executable_flops(executable) for executable in programs.compiled]
    counts = [count for count in counts if count is not None]
    if not counts:
        return None
    flops = max(counts)
    example = {name: values[0] for name, values in workload.data.items()}
    block = default_config_block(
        batch_size,
        programs.configs,
        jax.default_backend(),
        footprint(workload.problem, example),
    )
    if block is not None:
        flops *= math.ceil(programs.configs / block)
    if not counted_once:
        flops /= math.ceil(workload.num_examples / batch_size)
    return flops


def matmul_peak(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 10) -> dict[str, Any]:
    """The device's float32 matmul rate: the best of ``repeats`` timed square matmuls of
    each size (the best, because the peak is what the device can do when nothing else
    runs; other processes only slow it down)."""
    by_size = {}
    for size in sizes:
        key_a, key_b = jax.random.split(jax.random.key(size))
        a = jax.random.normal(key_a, (size, size), jnp.float32)
        b = jax.random.normal(key_b, (size, size), jnp.float32)
        matmul = jax.jit(jnp.matmul).lower(a, b).compile()
        matmul(a, b).block_until_ready()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            matmul(a, b).block_until_ready()
            times.append(time.perf_counter() - start)
        flops = 2.0 * size**3
        by_size[str(size)] = {
            "best_flops_per_second": flops / min(times),
            "median_flops_per_second": flops / statistics.median(times),
        }
    best = max(by_size, key=lambda size: by_size[size]["best_flops_per_second"])
    return {
        "flops_per_second": by_size[best]["best_flops_per_second"],
        "size": int(best),
        "by_size": by_size,
    }


def device_info() -> dict[str, Any]:
    """The device, CPU, core count and library versions, for the JSON."""
    device = jax.devices()[0]
    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "jax_version": jax.__version__,
        "jaxlib_version": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "optax_version": optax.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "torch_version": None,
        "torch_threads": None,
    }
    try:
        import torch

        info["torch_version"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if device.platform == "gpu" and torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def peak_device_memory() -> int | None:
    """Peak bytes in use on the device, where the backend reports it (None on the CPU)."""
    stats = jax.devices()[0].memory_stats()
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")
