"""Cold starts: the same sweep in fresh processes, with and without the persistent
compilation cache, against the hand-written ``jit(scan(vmap))`` compiled cold.

python benchmarks/cold_start.py --out benchmarks/results       # writes cold_start.json
python benchmarks/cold_start.py --repeats 1 --configs 4        # quick
python benchmarks/cold_start.py --before ../main --out runs      # and another checkout's

Each repeat starts fresh Python processes, interleaved in this order:
- ``jaxgd_first``: ``jaxgd.sweep`` with an empty cache folder (compiles and writes);
- ``jaxgd_second``: the same sweep in a new process on that folder (loads);
- ``jaxgd_off``: the same sweep with ``cache_dir=None`` (compiles, writes nothing);
- ``jax_scan_vmap``: the benchmark harness's hand-written ``jit(scan(vmap))`` of the same
  work, AOT-compiled (no cache).
Each process reports the seconds of its first call (compile included) and of compiling
alone (jaxgd's own ``total_compile_seconds``; the baseline's ``lower().compile()``). The
JSON has every repeat, the medians, the second/first compile ratio (goal <= 0.2) and the
cold jaxgd/baseline ratios; it names the device, JAX version and the load average. With
``--before TREE`` the other checkout's first, second and ``cache_dir=None`` processes run
interleaved too (``*_before``; its own cache folder), so both ratios come from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("jaxgd_first", "jaxgd_second", "jaxgd_off", "jax_scan_vmap")


def child(method: str, cache: str, configs: int, batch_size: int, epochs: int) -> dict:
    """Run one cold call in this (fresh) process and return its timings."""
    started = time.perf_counter()
    sys.path.insert(0, str(HERE))
    import jax
    from harness.methods import JaxScanVmap
    from harness.workload import Work, Workload, load_problem, make_configs

    import jaxgd

    imported = time.perf_counter() - started
    problem, data = load_problem("mlp", None)
    workload = Workload("mlp", problem, data, epochs)
    grid = make_configs(configs)
    start = time.perf_counter()
    if method == "jax_scan_vmap":
        baseline = JaxScanVmap(workload, grid, batch_size)
        compile_seconds = baseline.prepare()
        losses = baseline.run(Work(configs)).final_losses
    else:
        result = jaxgd.sweep(
            problem,
            data,
            space=grid,
            batch_size=batch_size,
            epochs=epochs,
            validation=None,
            options=jaxgd.SweepOptions(cache_dir=None if method == "jaxgd_off" else cache),
        )
        compile_seconds = result.total_compile_seconds
        losses = result.history["train_loss"][:, -1].tolist()
    return {
        "method": method,
        "first_call_seconds": time.perf_counter() - start,
        "compile_seconds": compile_seconds,
        "import_seconds": imported,
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "final_loss_mean": float(sum(losses) / len(losses)),
    }


def run_child(method: str, cache: str, args, tree: Path = HERE.parent) -> dict:
    command = [
        sys.executable,
        str(tree / "benchmarks" / "cold_start.py"),
        "--child",
        method,
        "--cache",
        cache,
        "--configs",
        str(args.configs),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=METHODS)
    parser.add_argument("--cache", default="")
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--before",
        type=Path,
        help="another jaxgd checkout: also run its jaxgd_off, interleaved (jaxgd_off_before)",
    )
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.cache, args.configs, args.batch_size, args.epochs)))
        return 0
    load_before = os.getloadavg()
    runs = {method: [] for method in METHODS}
    if args.before:
        for method in ("jaxgd_first", "jaxgd_second", "jaxgd_off"):
            runs[f"{method}_before"] = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="jaxgd-cold-") as folder:
            for method in METHODS:
                runs[method].append(run_child(method, folder, args))
            if args.before:
                tree = args.before.resolve()
                before_folder = str(Path(folder) / "before")
                for method in ("jaxgd_first", "jaxgd_second"):
                    before = run_child(method, before_folder, args, tree)
                    runs[f"{method}_before"].append({**before, "method": f"{method}_before"})
                before = run_child("jaxgd_off", folder, args, tree)
                runs["jaxgd_off_before"].append({**before, "method": "jaxgd_off_before"})
    median = {
        method: {
            key: statistics.median(r[key] for r in rs)
            for key in ("first_call_seconds", "compile_seconds", "import_seconds")
        }
        for method, rs in runs.items()
    }
    summary = {
        "second_over_first_compile": median["jaxgd_second"]["compile_seconds"]
        / median["jaxgd_first"]["compile_seconds"],
        "second_over_first_call": median["jaxgd_second"]["first_call_seconds"]
        / median["jaxgd_first"]["first_call_seconds"],
        "first_over_off_call": median["jaxgd_first"]["first_call_seconds"]
        / median["jaxgd_off"]["first_call_seconds"],
        "off_over_scan_vmap_call": median["jaxgd_off"]["first_call_seconds"]
        / median["jax_scan_vmap"]["first_call_seconds"],
        "off_over_scan_vmap_compile": median["jaxgd_off"]["compile_seconds"]
        / median["jax_scan_vmap"]["compile_seconds"],
    }
    if args.before:
        for key in ("first_call_seconds", "compile_seconds"):
            summary[f"off_over_before_{key.split('_')[0]}"] = (
                median["jaxgd_off"][key] / median["jaxgd_off_before"][key]
            )
        summary["before_second_over_first_compile"] = (
            median["jaxgd_second_before"]["compile_seconds"]
            / median["jaxgd_first_before"]["compile_seconds"]
        )
    report = {
        "benchmark": "cold_start",
        "workload": {
            "problem": "mlp 64-256-10, 4096 examples",
            "configs": args.configs,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
        },
        "device": runs["jaxgd_first"][0]["device"],
        "jax": runs["jaxgd_first"][0]["jax"],
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "repeats": args.repeats,
        "before": str(args.before) if args.before else None,
        "median": median,
        "summary": summary,
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    print(json.dumps({"median": median, "summary": summary}, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cold_start.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
