"""The same sweep on 1, 2, 4, ... devices: seconds per run against the device count.

python benchmarks/device_scaling.py --out benchmarks/results          # CPU: 8 simulated
python benchmarks/device_scaling.py --devices 1,2,4,8                # on a GPU machine

``--split 2x2,1x4`` (the default) adds rows on meshes of ``configs x examples`` devices
(``jax.make_mesh((2, 2), ("configs", "examples"))``): each batch and the training set
split over the "examples" axis too (README, "Many devices and many hosts").

On a CPU the devices are simulated (``--xla_force_host_platform_device_count``) and share
the machine's cores, so the figure shows the overhead of splitting the config axis, not a
speed-up. On a machine with several accelerators the same script splits over real
devices and names them in the JSON. Each device count runs in the same process, the
counts interleaved over ``--repeats`` rounds; the run time excludes compiling (a warm-up
call compiles each program first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--configs", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--split", default="2x2,1x4", help="configs x examples meshes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.devices.split(",")]
    meshes = [tuple(int(n) for n in m.split("x")) for m in args.split.split(",") if m]
    needed = max(counts + [a * b for a, b in meshes])
    if "jax" not in sys.modules and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        flag = f"--xla_force_host_platform_device_count={needed}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    import jax
    import numpy as np

    import jaxgd

    if jax.device_count() < needed:
        raise SystemExit(
            f"--devices={args.devices} --split={args.split}: only {jax.device_count()} devices"
        )
    load_before = os.getloadavg()
    problem = jaxgd.problems.mlp((64, 256, 10))
    data = jaxgd.problems.synthetic_classification(4096)
    rates = np.geomspace(1e-3, 3e-2, 16)
    momenta = np.linspace(0.0, 0.9, args.configs // 16 + 1)
    space = [{"learning_rate": float(r), "momentum": float(m)} for r in rates for m in momenta]
    space = space[: args.configs]

    def options_for(row):
        """A device count ("4": the configs split), or a mesh ("2x2": configs x examples)."""
        if "x" not in row:
            return jaxgd.SweepOptions(devices=jax.devices()[: int(row)], cache_dir=None)
        shape = tuple(int(n) for n in row.split("x"))
        devices = jax.devices()[: shape[0] * shape[1]]
        mesh = jax.make_mesh(shape, ("configs", "examples"), devices=devices)
        return jaxgd.SweepOptions(mesh=mesh, cache_dir=None)

    rows = [str(c) for c in counts] + [f"{a}x{b}" for a, b in meshes]

    def run(row):
        options = options_for(row)
        start = time.perf_counter()
        result = jaxgd.sweep(
            problem,
            data,
            space=space,
            batch_size=128,
            epochs=args.epochs,
            validation=None,
            options=options,
        )
        return time.perf_counter() - start - result.total_compile_seconds, result

    losses = {}
    for row in rows:  # warm-up: compiles
        losses[row] = run(row)[1].history["train_loss"][:, -1]
    seconds = {row: [] for row in rows}
    for _ in range(args.repeats):
        for row in rows:
            seconds[row].append(run(row)[0])
    base = statistics.median(seconds[rows[0]])
    report = {
        "benchmark": "device_scaling",
        "workload": f"mlp 64-256-10, 4096 examples, {args.configs} configs, batch 128, "
        f"{args.epochs} epochs",
        "rows": "N: the configs split over N devices; AxB: a mesh of A (configs) x B "
        "(examples) devices, each batch and the training set split over B",
        "device": jax.devices()[0].device_kind,
        "simulated": jax.default_backend() == "cpu",
        "note": "simulated CPU devices share the machine's cores: overhead, not speed-up"
        if jax.default_backend() == "cpu"
        else "",
        "jax": jax.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": seconds,
        "median_seconds": {c: statistics.median(s) for c, s in seconds.items()},
        "relative_to_one": {c: statistics.median(s) / base for c, s in seconds.items()},
        "max_loss_difference_vs_one": {
            row: float(np.max(np.abs(losses[row] - losses[rows[0]]))) for row in rows
        },
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "device_scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
