"""A sweep of many configs of the digits CNN: memory planned into slices, throughput and
peak memory.

python benchmarks/large_sweep.py --configs 100000 --out benchmarks/results
python benchmarks/large_sweep.py --configs 1000 --num-examples 200       # quick

The configs are a learning-rate x momentum grid (rates log-spaced in [1e-3, 3e-2],
momenta in [0, 0.9], seeds 0..3). Reports the wall seconds, the slices the memory plan
chose and the bytes it planned per config, the throughput in config-examples per second
(configs x training examples x epochs / wall seconds, compile included and apart), the
programs compiled and XLA's memory analysis of them, and the process's peak resident
memory (``getrusage``), with the load average and device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxgd
from jaxgd.core.memory import compiled_bytes, config_bytes, default_budget


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=100_000)
    parser.add_argument("--num-examples", type=int, default=None, help="first N digits")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-memory", type=int, default=None, help="bytes per device")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    problem, data = jaxgd.problems.digits_cnn()
    if args.num_examples:
        data = {k: v[: args.num_examples] for k, v in data.items()}
    rates = np.geomspace(1e-3, 3e-2, 250)
    momenta = np.linspace(0.0, 0.9, 100)
    grid = [
        {"learning_rate": float(lr), "momentum": float(m), "seed": s}
        for s in range(4)
        for lr in rates
        for m in momenta
    ]
    space = (grid * (args.configs // len(grid) + 1))[: args.configs]
    options = jaxgd.SweepOptions(max_memory=args.max_memory)
    example = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in data.items()}
    validation = round(0.2 * len(data["y"]))  # sweep's default validation split
    planned = config_bytes(
        problem,
        jaxgd.optimizer("sgd"),
        example,
        args.batch_size,
        options.eval_batch_size,
        validation,
    )
    compiles_before = {name: jaxgd.compile_count(name) for name in ("grouped_chunk", "init")}
    start = time.perf_counter()
    result = jaxgd.sweep(
        problem,
        data,
        space=space,
        batch_size=args.batch_size,
        epochs=args.epochs,
        options=options,
    )
    wall = time.perf_counter() - start
    train_examples = int(result.history["examples_seen"][0, -1]) // args.epochs
    config_examples = args.configs * train_examples * args.epochs
    budget, source = (
        (args.max_memory, "--max-memory") if args.max_memory else default_budget(jax.devices())
    )
    report = {
        "benchmark": "large_sweep",
        "problem": "digits_cnn (8, 16)",
        "configs": args.configs,
        "train_examples": train_examples,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "wall_seconds": wall,
        "compile_seconds": result.total_compile_seconds,
        "compiles": {n: jaxgd.compile_count(n) - c for n, c in compiles_before.items()},
        "slices": len(result.groups),
        "slice_configs": [len(g["configs"]) for g in result.groups],
        "slice_slots": [g["slots"] for g in result.groups],
        "budget_bytes_per_device": budget,
        "planned_bytes_per_config": planned,
        "planned_bytes_largest_slice": planned * max(g["slots"] for g in result.groups),
        # XLA's analysis of each distinct compiled chunk program (None: not reported)
        "compiled_bytes": sorted({compiled_bytes(e) for e in result.compiled}, key=str),
        "budget_source": source,
        "config_examples_per_second": config_examples / wall,
        "config_examples_per_second_excluding_compile": config_examples
        / (wall - result.total_compile_seconds),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "final_train_loss_median": float(np.nanmedian(result.history["train_loss"][:, -1])),
        "diverged": int(result.diverged.sum()),
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"large_sweep_{args.configs}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
