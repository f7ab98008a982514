"""How many configs to run at once on the CPU: sweep time against ``config_block``.

For each problem and batch size, trains K configs with
``jaxgd.sweep(options=SweepOptions(config_block=k))`` for every k (and ``None``: all
configs in one vmap) and reports the engine's run seconds (median of ``--repeats`` calls
after a warm-up; compilation excluded), the best block, and what ``config_block="auto"``
picks. This is the measurement behind
``jaxgd.core.blocks.default_config_block``.

    python benchmarks/config_blocks.py --out runs/config_blocks.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics

CASES = {
    # problem: [(batch size, configs), ...]
    "mlp": [(16, 64), (64, 64), (128, 64), (256, 64), (1024, 64), (4096, 64), (128, 256)],
    "digits_cnn": [(16, 64), (64, 64), (128, 64), (512, 64), (1797, 64)],
}
BLOCKS = (None, 1, 2, 4, 8, 16, 32)


def measure(problem_name: str, batch_size: int, configs: int, repeats: int) -> dict:
    import jax
    from harness.workload import load_problem, make_configs

    import jaxgd
    from jaxgd.core import blocks

    problem, data = load_problem(problem_name, None)
    data = {name: jax.device_put(values) for name, values in data.items()}
    space = make_configs(configs)
    seconds = {}
    for block in BLOCKS:
        if block is not None and block >= configs:
            continue

        def call(block=block):
            return jaxgd.sweep(
                problem,
                data,
                space=space,
                optimizer="sgd",
                batch_size=batch_size,
                epochs=2,
                validation=None,
                options=jaxgd.SweepOptions(config_block=block),
            ).total_seconds

        call()
        seconds[str(block)] = statistics.median(call() for _ in range(repeats))
        print(
            f"{problem_name} B={batch_size} K={configs} block={block}: {seconds[str(block)]:.3f}s"
        )
    footprint = blocks.footprint(problem, {k: v[0] for k, v in data.items()})
    auto = blocks.default_config_block(batch_size, configs, jax.default_backend(), footprint)
    best = min(seconds, key=seconds.get)
    return {
        "problem": problem_name,
        "batch_size": batch_size,
        "configs": configs,
        "seconds": seconds,
        "best": best,
        "footprint": footprint._asdict(),
        "auto": str(auto),
        "auto_over_best": seconds.get(str(auto), float("nan")) / seconds[best],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/config_blocks.json")
    args = parser.parse_args()
    import jax

    results = [
        measure(name, batch_size, configs, args.repeats)
        for name in args.problems.split(",")
        for batch_size, configs in CASES[name]
    ]
    for row in results:
        print(
            f"{row['problem']:>10} B={row['batch_size']:<5} K={row['configs']:<4} "
            f"best={row['best']:>4} auto={row['auto']:>4} auto/best={row['auto_over_best']:.2f}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "device": str(jax.devices()[0]),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "jax": jax.__version__,
                "results": results,
            },
            f,
            indent=1,
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
