"""Streaming from host memory: the MLP sweep on device data against the same sweep with
its training set streamed (``jaxgd.HostData``), from arrays in memory and from
memory-mapped ``.npy`` files.

flock /tmp/jaxgd-bench.lock python benchmarks/streaming.py --out benchmarks/results
python benchmarks/streaming.py --repeats 1 --num-examples 2048 --configs 4   # quick

Methods, each warmed up once (compiling) and then timed ``--repeats`` times, interleaved:
- ``device``: the arrays on the device, the grouped strategy (what a sweep does today);
- ``streamed``: ``HostData`` of the same arrays, default windows (up to 64 MiB);
- ``streamed_npy``: ``HostData`` of ``.npy`` paths (memory-mapped; the page cache holds
  them after the warm-up, as it would for a set that fits the host's memory);
- ``streamed_step``: ``HostData(window_steps=1)``: windows of two steps, the fewest a
  window takes (``HostData.windows``), one transfer and dispatch per two steps.
Each timed call is a whole ``jaxgd.sweep`` (nothing compiles: the programs are cached).
Throughput is configs x examples x epochs per second. ``host_gather_seconds`` is the
host's own work per sweep (orders cut into batches, gathered with NumPy), timed alone:
streaming hides it behind the device's work when ``streamed`` takes less than ``device``
plus it. The JSON also records that every method's results equal ``device``'s bitwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import jaxgd
from jaxgd.data import BatchPlan, host_batch_indices

METHODS = ("device", "streamed", "streamed_npy", "streamed_step")


def host_gather_seconds(data: jaxgd.HostData, plan: BatchPlan, epochs: int) -> float:
    """The host's gathering for ``epochs`` epochs of one seed, without any device work."""
    order = np.random.default_rng(0).permutation(plan.num_examples)[None].astype(np.int32)
    steps = data.steps_per_window(plan, 1)
    start = time.perf_counter()
    for _ in range(epochs):
        for first in range(0, plan.steps_per_epoch, steps):
            count = min(steps, plan.steps_per_epoch - first)
            indices, _ = host_batch_indices(plan, order, first, count)
            data.gather(indices)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-examples", type=int, default=32768)
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    problem = jaxgd.problems.mlp((64, 256, 10))
    data = jaxgd.problems.synthetic_classification(args.num_examples)
    data = {name: np.asarray(value) for name, value in data.items()}
    rates = np.logspace(-3, np.log10(3e-2), args.configs)
    space = [{"learning_rate": float(r), "momentum": 0.9} for r in rates]
    kwargs = dict(space=space, batch_size=args.batch_size, epochs=args.epochs, validation=None)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jaxgd-stream-") as folder:
        paths = {}
        for name, value in data.items():
            paths[name] = os.path.join(folder, f"{name}.npy")
            np.save(paths[name], value)
        sources = {
            "device": lambda: data,
            "streamed": lambda: jaxgd.HostData(data),
            "streamed_npy": lambda: jaxgd.HostData(paths),
            "streamed_step": lambda: jaxgd.HostData(data, window_steps=1),
        }
        results, seconds = {}, {method: [] for method in METHODS}
        for method in METHODS:  # warm-up: compiles
            results[method] = jaxgd.sweep(problem, sources[method](), **kwargs)
        for _ in range(args.repeats):
            for method in METHODS:
                start = time.perf_counter()
                result = jaxgd.sweep(problem, sources[method](), **kwargs)
                seconds[method].append(time.perf_counter() - start)
                assert result.total_compile_seconds == 0, method
        plan = BatchPlan(args.num_examples, args.batch_size)
        gather = [host_gather_seconds(jaxgd.HostData(data), plan, args.epochs)]
        gather += [host_gather_seconds(jaxgd.HostData(paths), plan, args.epochs)]
    load_after = os.getloadavg()

    work = args.configs * args.num_examples * args.epochs
    median = {method: statistics.median(values) for method, values in seconds.items()}
    device = results["device"]
    identical = {
        method: all(
            np.array_equal(results[method].history[name], device.history[name], equal_nan=True)
            for name in device.history
        )
        for method in METHODS
    }
    report = {
        "benchmark": "streaming",
        "workload": {
            "problem": "mlp 64-256-10, synthetic classification",
            "num_examples": args.num_examples,
            "configs": args.configs,
            "seeds": 1,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "training_set_bytes": int(sum(v.nbytes for v in data.values())),
        },
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "dtype": "float32",
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_average": {"before": load_before, "after": load_after},
        "repeats": args.repeats,
        "seconds": seconds,
        "median_seconds": median,
        "throughput_example_steps_per_second": {m: work / s for m, s in median.items()},
        "over_device": {m: median[m] / median["device"] for m in METHODS},
        "host_gather_seconds": {"arrays": gather[0], "npy": gather[1]},
        "identical_to_device": identical,
    }
    print(
        json.dumps(
            {k: report[k] for k in ("median_seconds", "over_device", "host_gather_seconds")},
            indent=2,
        )
    )
    print("identical_to_device", identical)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "streaming.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
