"""Successive halving against the full sweep: wall time of a cold sweep, same best config?

The work: the digits MLP 64-64-10 (``jaxgd.problems.digits_mlp()``), SGD with heavy-ball
momentum, 81 configs = learning rate (9 values log-spaced over [1e-3, 10], so that the
smallest learn slowly and the largest are poor or diverge) x momentum (0, 0.5, 0.9) x
seed (0, 1, 2), 27 epochs, 20% of the examples held out for ``val_loss``, batch size 32.

Batch size 32 is a common default (Masters and Luschi 2018, arXiv:1804.07612, find small
batches of 2 to 32 generalise best): 1438 training examples make 45 updates an epoch,
about 1200 in 27 epochs, enough for the good configs to converge and the rankings at the
rungs to mean something, while the per-step cost stays small enough that the sweep is
not all compilation.

Two methods, each timed as one ``jaxgd.sweep`` call in a FRESH process (no compiled
program is shared; compiles included; the data is loaded and the backend started before
the clock starts):

- ``full``: the 81 configs for 27 epochs;
- ``halving``: the same sweep with ``callbacks=[jaxgd.SuccessiveHalving(metric="val_loss",
  eta=3, min_epochs=1)]``: 81 -> 27 (after epoch 1) -> 9 (after 3) -> 3 (after 9), about
  243 config-epochs of 2187.

The two alternate (full, halving, then halving, full, ...) for ``--repeats`` rounds so
that drifts of a shared machine hit both alike. Reported: the median and spread of each
method's sweep seconds, their ratio (goal: halving / full <= 0.35), the compile counts
(``jaxgd.compile_count()`` in each process), each sweep's best config and its final
val_loss, and whether the full sweep's best config survived every rung (if it did, the
two best val_loss must be equal to rounding: a config's result does not depend on the
configs that share its sweep).

    python benchmarks/successive_halving.py                 # writes runs/halving/
    python benchmarks/successive_halving.py --quick         # 9 configs, 9 epochs, 1 round
    python benchmarks/successive_halving.py --warm          # second sweep of each process
    python benchmarks/successive_halving.py --rebuild false # stopped configs keep computing

The JSON (``OUT/successive_halving.json``, or ``successive_halving_quick.json``) names
the device, the JAX version, the dtype, the worker command lines and every round's times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

METHODS = ("full", "halving")
GOAL_RATIO = 0.35


def _workload(args) -> dict:
    """The sweep's settings, the same for both methods."""
    import numpy as np

    if args.quick:
        learning_rates, seeds, epochs = np.geomspace(1e-2, 1.0, 3), [0], 9
    else:
        learning_rates, seeds, epochs = np.geomspace(1e-3, 10.0, 9), [0, 1, 2], 27
    return {
        "problem": "digits_mlp 64-64-10",
        "optimizer": "sgd",
        "learning_rate": [float(f"{lr:.4g}") for lr in learning_rates],
        "momentum": [0.0, 0.5, 0.9],
        "seed": seeds,
        "epochs": epochs,
        "batch_size": args.batch_size,
        "validation": 0.2,
        "eta": args.eta,
        "min_epochs": args.min_epochs,
    }


def _best_index(final_val_loss, status) -> int | None:
    """The config with the lowest final val_loss among those that trained to the end."""
    import numpy as np

    final = np.where(np.asarray(status) == "running", final_val_loss, np.nan)
    final = np.where(np.isfinite(final), final, np.inf)
    return None if not np.isfinite(final).any() else int(np.argmin(final))


def worker(args) -> dict:
    """In a fresh process: one sweep of ``args.worker``, timed with its compiles."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxgd

    workload = _workload(args)
    problem, data = jaxgd.problems.digits_mlp()
    space = jaxgd.grid(
        learning_rate=workload["learning_rate"],
        momentum=workload["momentum"],
        seed=workload["seed"],
    )

    def run_sweep():
        callbacks = []
        if args.worker == "halving":
            halving = jaxgd.SuccessiveHalving(
                metric="val_loss", eta=args.eta, min_epochs=args.min_epochs
            )
            callbacks = [halving]
        return jaxgd.sweep(
            problem,
            data,
            space=space,
            epochs=workload["epochs"],
            optimizer=workload["optimizer"],
            batch_size=workload["batch_size"],
            validation=workload["validation"],
            callbacks=callbacks,
            options=jaxgd.SweepOptions(
                rebuild={"auto": "auto", "true": True, "false": False}[args.rebuild]
            ),
        )

    jax.devices()  # start the backend before the clock: it is not what is compared
    if args.warm:  # the same sweep once before the clock: every program is compiled
        run_sweep()
    start = time.perf_counter()
    result = run_sweep()
    seconds = time.perf_counter() - start  # the history is on the host: nothing pending

    final = np.asarray(result.history["val_loss"], np.float64)[:, -1]
    status = np.asarray(result.status).astype(str)
    stopped_epoch = np.asarray(result.stopped_epoch)
    best = _best_index(final, status)
    trained_epochs = np.where(stopped_epoch >= 0, stopped_epoch, workload["epochs"])
    return {
        "method": args.worker,
        "sweep_seconds": seconds,
        "compile_count": jaxgd.compile_count(),
        "compile_seconds": result.total_compile_seconds,
        "programs": [
            {k: g[k] for k in ("program", "slots", "compile_seconds", "seconds")}
            for g in result.groups
        ],
        "configs": len(result.configs),
        "config_epochs": int(trained_epochs.sum()),
        "status_counts": {s: int(np.sum(status == s)) for s in ("running", "diverged", "stopped")},
        "status": status.tolist(),
        "stopped_epoch": stopped_epoch.tolist(),
        "final_val_loss": [None if not math.isfinite(v) else float(v) for v in final],
        "best_index": best,
        "best_config": None if best is None else result.configs[best],
        "best_val_loss": None if best is None else float(final[best]),
        "dtype": str(jnp.result_type(float)),
        "jax_version": jax.__version__,
    }


def _worker_command(args, method: str) -> list[str]:
    command = [sys.executable, os.path.abspath(__file__), "--worker", method]
    command += ["--batch-size", str(args.batch_size), "--eta", str(args.eta)]
    command += ["--min-epochs", str(args.min_epochs), "--rebuild", args.rebuild]
    command += ["--warm"] if args.warm else []
    return command + (["--quick"] if args.quick else [])


def _run_worker(command: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    process_seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(
            f"worker {' '.join(command)} failed ({completed.returncode}):\n{completed.stderr}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1]), process_seconds


def _spread(values: list[float]) -> dict:
    return {
        "median_seconds": statistics.median(values),
        "min_seconds": min(values),
        "max_seconds": max(values),
        "seconds": values,
    }


def compare(full: dict, halving: dict) -> dict:
    """Did the full sweep's best config survive every rung, and do the two agree?"""
    index = full["best_index"]
    survived = index is not None and halving["status"][index] == "running"
    comparison = {
        "full_best_index": index,
        "halving_best_index": halving["best_index"],
        "full_best_val_loss": full["best_val_loss"],
        "halving_best_val_loss": halving["best_val_loss"],
        "full_best_survived": survived,
        "full_best_stopped_at_epoch": None if index is None else halving["stopped_epoch"][index],
    }
    if survived:
        # Then it is also the halving sweep's best (its survivors are a subset of the full
        # sweep's configs), with the same result to rounding.
        comparison["equal"] = halving["best_index"] == index and math.isclose(
            full["best_val_loss"], halving["best_val_loss"], rel_tol=1e-5, abs_tol=1e-6
        )
    return comparison


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (full, halving)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="9 configs, 9 epochs, 1 round")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="time each sweep's second run in its process (programs compiled by the first)",
    )
    parser.add_argument(
        "--rebuild",
        choices=("auto", "true", "false"),
        default="auto",
        help="SweepOptions(rebuild=...) of the halving sweep (default auto)",
    )
    parser.add_argument("--out", default="runs/halving", help="the folder the JSON goes to")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args), default=str))  # configs may hold objects
        return 0
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give at least 1 round")
    repeats = 1 if args.quick else args.repeats

    commands = {method: _worker_command(args, method) for method in METHODS}
    rounds = []
    for repeat in range(repeats):
        order = METHODS if repeat % 2 == 0 else METHODS[::-1]
        runs = {}
        for method in order:
            runs[method], process_seconds = _run_worker(commands[method])
            runs[method]["process_seconds"] = process_seconds
            print(
                f"round {repeat + 1}/{repeats} {method:>7}: {runs[method]['sweep_seconds']:.2f} s"
                f" (process {process_seconds:.2f} s, {runs[method]['compile_count']} compiles)",
                flush=True,
            )
        rounds.append(runs)

    summary = {
        method: {
            **_spread([r[method]["sweep_seconds"] for r in rounds]),
            "process_median_seconds": statistics.median(
                r[method]["process_seconds"] for r in rounds
            ),
            "compile_count": [r[method]["compile_count"] for r in rounds],
            "compile_median_seconds": statistics.median(
                r[method]["compile_seconds"] for r in rounds
            ),
            "config_epochs": rounds[0][method]["config_epochs"],
            "status_counts": rounds[0][method]["status_counts"],
        }
        for method in METHODS
    }
    ratio = summary["halving"]["median_seconds"] / summary["full"]["median_seconds"]
    comparison = compare(rounds[0]["full"], rounds[0]["halving"])

    from harness.measure import device_info

    document = {
        "benchmark": "successive_halving",
        "device": device_info(),
        "jax_version": rounds[0]["full"]["jax_version"],
        "dtype": rounds[0]["full"]["dtype"],
        "quick": args.quick,
        "rebuild": args.rebuild,
        "warm": args.warm,
        "workload": _workload(args),
        "commands": {method: " ".join(command) for method, command in commands.items()},
        "order": "rounds alternate: full, halving, then halving, full, ...",
        "rounds": rounds,
        "summary": summary,
        "ratio_halving_to_full": ratio,
        "goal_ratio": GOAL_RATIO,
        "comparison": comparison,
    }
    os.makedirs(args.out, exist_ok=True)
    name = "successive_halving" + ("_quick" if args.quick else "") + ("_warm" if args.warm else "")
    path = os.path.join(args.out, name + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(document, f, indent=1)
    os.replace(path + ".tmp", path)

    print()
    for method in METHODS:
        s = summary[method]
        print(
            f"{method:>7}: median {s['median_seconds']:.2f} s "
            f"[{s['min_seconds']:.2f}, {s['max_seconds']:.2f}] over {repeats}, "
            f"compiles {s['compile_count']} ({s['compile_median_seconds']:.2f} s), "
            f"{s['config_epochs']} config-epochs, "
            f"best val_loss {rounds[0][method]['best_val_loss']}"
        )
    verdict = "meets" if ratio <= GOAL_RATIO else "misses"
    print(f"halving / full: {ratio:.3f} ({verdict} the goal <= {GOAL_RATIO})")
    if comparison["full_best_survived"]:
        print(f"full sweep's best config survived every rung; equal: {comparison['equal']}")
    else:
        print(
            "full sweep's best config did not survive: stopped after epoch "
            f"{comparison['full_best_stopped_at_epoch']}"
        )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
