"""Host-side bookkeeping at a million configs: the share of a sweep's wall time spent
outside compiled programs.

python benchmarks/bookkeeping.py --out benchmarks/results            # 1,000,000 configs
python benchmarks/bookkeeping.py --configs 10000 --profile            # where the host time goes

A linear-regression sweep of K configs (a learning-rate x momentum grid, 4 seeds) on 64
examples, batch 16, one epoch. Inside compiled programs = compiling (tracing included)
plus running: each chunk is blocked on right after its dispatch (this run only), so its
device time is counted whole. Everything else (resolving configs, planning, laying out
slots, reading metrics back, assembling the result) is bookkeeping; the goal is at most
10% of the wall time. ``--profile`` prints cProfile's top functions.

Each of ``--repeats`` sweeps runs in a fresh process (a second sweep in one process would
find its programs compiled: another workload); the JSON's headline numbers are the run
with the median share, ``runs`` has every run. On a shared machine the share moves by
several points from run to run with the other jobs' load.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxgd
from jaxgd.strategies.base import Program


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=3, help="sweeps, each in a fresh process")
    args = parser.parse_args(argv)
    if args.repeats > 1 and not args.profile:
        report = _repeated(args)
    else:
        report = _measure(args)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bookkeeping.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _repeated(args) -> dict:
    """``args.repeats`` runs of this script, one sweep each; the median run's numbers."""
    load_before = os.getloadavg()
    command = [sys.executable, __file__, "--configs", str(args.configs), "--epochs"]
    command += [str(args.epochs), "--repeats", "1"]
    runs = [
        json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        for _ in range(args.repeats)
    ]
    shares = sorted(run["outside_share"] for run in runs)
    median = sorted(runs, key=lambda run: run["outside_share"])[(len(runs) - 1) // 2]
    keys = ("wall_seconds", "compile_seconds", "run_seconds", "outside_compiled_seconds")
    return {
        **median,
        "repeats": len(runs),
        "outside_share_range": [shares[0], shares[-1]],
        "runs": [{k: run[k] for k in keys + ("outside_share", "load_average")} for run in runs],
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


def _measure(args) -> dict:
    """One sweep in this process: its wall time, compiling, running and the rest."""
    load_before = os.getloadavg()
    problem, data = jaxgd.problems.linear_regression(num_examples=64)
    side = int(np.ceil(np.sqrt(args.configs / 4)))
    space = jaxgd.grid(
        seed=[0, 1, 2, 3],
        learning_rate=np.geomspace(1e-3, 1e-1, side).tolist(),
        momentum=np.linspace(0.0, 0.9, side).tolist(),
    )
    space = space[: args.configs]  # sliced as columns: no dict per config

    running = [0.0]
    run_chunk = Program.run_chunk

    def blocking_run_chunk(self, first_epoch, stop):
        start = time.perf_counter()
        metrics = run_chunk(self, first_epoch, stop)
        jax.block_until_ready((self.states, metrics))
        running[0] += time.perf_counter() - start
        return metrics

    Program.run_chunk = blocking_run_chunk
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = jaxgd.sweep(
        problem,
        data,
        space=space,
        batch_size=16,
        epochs=args.epochs,
        validation=None,
        options=jaxgd.SweepOptions(cache_dir=None),
    )
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - start
    Program.run_chunk = run_chunk
    compiling = result.total_compile_seconds
    outside = wall - compiling - running[0]
    report = {
        "benchmark": "bookkeeping",
        "configs": args.configs,
        "problem": "linear_regression, 64 examples, batch 16",
        "epochs": args.epochs,
        "wall_seconds": wall,
        "compile_seconds": compiling,
        "run_seconds": running[0],
        "outside_compiled_seconds": outside,
        "outside_share": outside / wall,
        "goal_share": 0.10,
        "programs": len(result.groups),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    return report


if __name__ == "__main__":
    sys.exit(main())
