"""What ``sweep(measure=["noise_scale"])`` costs: step time with and without it.

The MLP benchmark problem (64-256-10 on 4096 synthetic examples, ``harness.workload``),
K configs (a learning-rate x momentum grid) at one batch size per sweep, for each batch
size 8 ... 1024; ``validation=None`` so that the time is the steps'. Per batch size and
strategy the two variants are compiled and warmed up, then ``--repeats`` rounds call each
once in turn (interleaved, so the machine's drifts hit both alike); reported: the median
of the engine's run seconds (compilation excluded) per update, and the ratio measured /
plain. ``grouped`` (what one batch size runs, and ``nested`` does the same arithmetic)
takes the gradient over the batch's two halves; ``accumulate`` takes per-example gradient
norms, as the norm test does. Goal (issue 10): at most 1.3x at B >= 64 (grouped).

    python benchmarks/noise_scale_cost.py --out benchmarks/results/noise_scale_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess

BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)


def measure(batch_size: int, strategy: str, configs: int, epochs: int, repeats: int) -> dict:
    import jax
    from harness.workload import load_problem, make_configs

    import jaxgd

    problem, data = load_problem("mlp", None)
    data = {name: jax.device_put(values) for name, values in data.items()}
    space = make_configs(configs)

    def call(measure):
        result = jaxgd.sweep(
            problem,
            data,
            space=space,
            optimizer="sgd",
            batch_size=batch_size,
            epochs=epochs,
            validation=None,
            measure=measure,
            options=jaxgd.SweepOptions(strategy=strategy),
        )
        return result.total_seconds / int(result.updates[0])

    variants = {"plain": [], "noise_scale": ["noise_scale"]}
    for measure_names in variants.values():
        call(measure_names)
    seconds = {name: [] for name in variants}
    for _ in range(repeats):
        for name, measure_names in variants.items():
            seconds[name].append(call(measure_names))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    row = {
        "batch_size": batch_size,
        "strategy": strategy,
        "configs": configs,
        "seconds_per_update": median,
        "spread": {name: [min(v), max(v)] for name, v in seconds.items()},
        "ratio": median["noise_scale"] / median["plain"],
    }
    print(
        f"B={batch_size:<5} {strategy:<10} plain {median['plain'] * 1e3:8.3f} ms/update  "
        f"measured {median['noise_scale'] * 1e3:8.3f} ms/update  ratio {row['ratio']:.2f}",
        flush=True,
    )
    return row


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--strategies", default="grouped,accumulate")
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="runs/noise_scale_cost.json")
    args = parser.parse_args()
    import jax

    load_before, loadavg_before = _load(), os.getloadavg()
    results = [
        measure(int(b), strategy, args.configs, args.epochs, args.repeats)
        for strategy in args.strategies.split(",")
        for b in args.batch_sizes.split(",")
    ]
    document = {
        "benchmark": "noise_scale_cost",
        "problem": "mlp 64-256-10, 4096 synthetic examples",
        "device": str(jax.devices()[0].device_kind),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "dtype": "float32",
        "configs": args.configs,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": _load(),
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(document, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
