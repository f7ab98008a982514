"""Mixed batch sizes in one sweep: strategies against the batch-size groups run one
after another with the same engine.

Every method trains the same configs (batch sizes x learning rates x momenta, SGD, MLP
64-256-10 on 4096 synthetic examples, 2 epochs by default). Each method runs in a fresh
process so that its first call pays its own compilations:

- ``sequential``: one ``jaxgd.sweep`` per batch size, one after another;
- ``grouped``: one sweep, one program per batch size, groups interleaved chunk by chunk;
- ``nested``: one sweep, one program, an inner scan per batch size;
- ``accumulate``: one sweep, one program, micro-batches of gcd(batch sizes);
- ``auto``: one sweep, the strategy chosen by ``jaxgd.sweep``.

Reported per method: wall seconds of the first call in a fresh process (compilation
included) and the compile seconds inside it; then, in one process with every method
warmed up, ``--repeats`` rounds that call each method once in turn (so that the
machine's drifts hit all alike): the median and spread of those wall seconds (steady
state, programs cached). Ratios are against ``sequential`` from the same run.

    python benchmarks/mixed_batch.py --out runs/mixed_batch.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

METHODS = ("sequential", "grouped", "nested", "accumulate", "auto")


def _space(batch_sizes, learning_rates, momenta):
    import jaxgd

    return jaxgd.grid(batch_size=batch_sizes, learning_rate=learning_rates, momentum=momenta)


def _make_call(method, args):
    """A function that runs ``method`` once on the benchmark's work; returns the results."""
    import jaxgd

    problem = jaxgd.problems.mlp((64, 256, 10))
    data = jaxgd.problems.synthetic_classification(args.examples)
    learning_rates = [0.01, 0.03, 0.1, 0.3][: args.learning_rates]
    momenta = [0.0, 0.9]

    def call():
        if method == "sequential":
            return [
                jaxgd.sweep(
                    problem,
                    data,
                    space=_space([b], learning_rates, momenta),
                    epochs=args.epochs,
                    validation=None,
                )
                for b in args.batch_sizes
            ]
        space = _space(args.batch_sizes, learning_rates, momenta)
        return [
            jaxgd.sweep(
                problem,
                data,
                space=space,
                epochs=args.epochs,
                validation=None,
                options=jaxgd.SweepOptions(strategy=method),
            )
        ]

    return call


def _timed(call):
    start = time.perf_counter()
    results = call()
    return time.perf_counter() - start, results


def first_call(args) -> dict:
    """In a fresh process: the first call of one method, its compilations included."""
    import jax

    seconds, results = _timed(_make_call(args.worker, args))
    return {
        "method": args.worker,
        "strategy": results[0].strategy if args.worker != "sequential" else "grouped",
        "first_call_seconds": seconds,
        "compile_seconds": sum(r.total_compile_seconds for r in results),
        "configs": sum(len(r) for r in results),
        "final_train_losses": sorted(
            float(loss) for r in results for loss in r.history["train_loss"][:, -1]
        ),
        "device": str(jax.devices()[0].device_kind),
        "jax_version": jax.__version__,
    }


def steady_state(args) -> dict:
    """In one process, every method warmed up, then ``repeats`` rounds that run each
    method once in turn, so that drifts of the machine's speed hit all methods alike."""
    calls = {method: _make_call(method, args) for method in args.methods}
    for call in calls.values():
        call()
    times = {method: [] for method in calls}
    for _ in range(args.repeats):
        for method, call in calls.items():
            times[method].append(_timed(call)[0])
    return {
        method: {
            "steady_median_seconds": statistics.median(values),
            "steady_min_seconds": min(values),
            "steady_max_seconds": max(values),
            "steady_seconds": values,
        }
        for method, values in times.items()
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--learning-rates", type=int, default=4, help="how many (of 4)")
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default="runs/mixed_batch.json")
    parser.add_argument("--worker", choices=(*METHODS, "steady"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "steady":
        print(json.dumps(steady_state(args)))
        return 0
    if args.worker:
        print(json.dumps(first_call(args)))
        return 0

    def run_worker(worker):
        options = ["--batch-sizes", *map(str, args.batch_sizes), "--methods", *args.methods]
        for name in ("learning_rates", "examples", "epochs", "repeats"):
            options += ["--" + name.replace("_", "-"), str(getattr(args, name))]
        command = [sys.executable, __file__, "--worker", worker, *options]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        return json.loads(output.strip().splitlines()[-1])

    rows = []
    for method in args.methods:
        rows.append(run_worker(method))
        print(
            f"{method:>11}: first call {rows[-1]['first_call_seconds']:.2f} s "
            f"(compile {rows[-1]['compile_seconds']:.2f} s)",
            flush=True,
        )
    steady = run_worker("steady")
    for row in rows:
        row.update(steady[row["method"]])

    base = next((r for r in rows if r["method"] == "sequential"), None)
    if base is not None:
        for row in rows:
            row["first_call_ratio"] = row["first_call_seconds"] / base["first_call_seconds"]
            row["steady_ratio"] = row["steady_median_seconds"] / base["steady_median_seconds"]
    document = {
        "benchmark": "mixed_batch",
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "dtype": "float32",
        "workload": {
            "problem": "mlp_64-256-10",
            "examples": args.examples,
            "epochs": args.epochs,
            "batch_sizes": args.batch_sizes,
            "configs": rows[0]["configs"],
        },
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(document, f, indent=1)
    print(
        f"\n{'method':>11} {'strategy':>10} {'first s':>8} {'compile s':>9} {'steady s':>9} "
        f"{'first/seq':>9} {'steady/seq':>10}"
    )
    for r in rows:
        print(
            f"{r['method']:>11} {r['strategy']:>10} {r['first_call_seconds']:8.2f} "
            f"{r['compile_seconds']:9.2f} {r['steady_median_seconds']:9.3f} "
            f"{r.get('first_call_ratio', float('nan')):9.2f} "
            f"{r.get('steady_ratio', float('nan')):10.2f}"
        )
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
