"""How far a config's result moves when only the way the sweep runs changes.

Trains the same configs (digits MLP 64-32-10: SGD with momentum and Adam, batch sizes
16 and 64, two seeds, 6 epochs) in several ways and reports, against the reference
(``grouped``, one epoch per chunk, no config blocks, the whole sweep), the largest
difference of the final parameters and of the final validation loss over all configs:
absolute, and relative to the largest magnitude (``max|a - b| / max|a|``). "bitwise"
means every number equal.

- chunk size: ``epochs_per_chunk`` 2, 3, 6;
- config blocks: ``config_block`` 1, 2, 4 (``lax.map`` over blocks instead of one vmap);
- strategies: ``nested``, ``accumulate``;
- a config alone: each config trained in a sweep of its own, against inside the sweep;
- rebuilt programs: successive halving with ``rebuild=True`` against ``False``, over
  the configs that trained to the end;
- same call twice, in this process.

    python benchmarks/reproducibility.py --out benchmarks/results/reproducibility.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np


def _final(result):
    params = np.concatenate(
        [np.asarray(leaf).reshape(len(result), -1) for leaf in _leaves(result.params)], axis=1
    )
    return params, result.history["val_loss"][:, -1]


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def _difference(reference, other, rows=None) -> dict:
    out = {}
    for name, a, b in zip(("params", "val_loss"), _final(reference), _final(other)):
        if rows is not None:
            a, b = a[rows], b[rows]
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        absolute = float(np.max(np.abs(a - b)))
        out[name] = {
            "bitwise": bool(np.array_equal(a, b)),
            "max_abs": absolute,
            "max_rel": absolute / float(np.max(np.abs(a))),
        }
    return out


def _text(difference: dict) -> str:
    if difference["bitwise"]:
        return "bitwise"
    return f"{difference['max_abs']:.1e} abs, {difference['max_rel']:.1e} rel"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/reproducibility.json")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()

    import jax

    import jaxgd

    problem = jaxgd.problems.mlp((64, 32, 10), name="digits_mlp_64-32-10")
    data = jaxgd.problems.load_digits()
    space = jaxgd.grid(
        learning_rate=[0.03, 0.1], momentum=[0.0, 0.9], batch_size=[16, 64], seed=[0, 1]
    ) + jaxgd.grid(optimizer=["adam"], learning_rate=[1e-3, 3e-3], batch_size=[16, 64], seed=[0])

    def sweep(configs=space, callbacks=(), **options):
        return jaxgd.sweep(
            problem,
            data,
            space=configs,
            epochs=args.epochs,
            return_params=True,
            callbacks=list(callbacks),
            options=jaxgd.SweepOptions(config_block=options.pop("config_block", None), **options),
        )

    reference = sweep(strategy="grouped")
    runs = {
        "same call again": sweep(strategy="grouped"),
        "epochs_per_chunk=2": sweep(strategy="grouped", epochs_per_chunk=2),
        "epochs_per_chunk=3": sweep(strategy="grouped", epochs_per_chunk=3),
        "epochs_per_chunk=6": sweep(strategy="grouped", epochs_per_chunk=6),
        "config_block=1": sweep(strategy="grouped", config_block=1),
        "config_block=2": sweep(strategy="grouped", config_block=2),
        "config_block=4": sweep(strategy="grouped", config_block=4),
        "strategy=nested": sweep(strategy="nested"),
        "strategy=accumulate": sweep(strategy="accumulate"),
    }
    results = {name: _difference(reference, run) for name, run in runs.items()}

    alone = [sweep(configs=[config], strategy="grouped") for config in space]
    stacked = jaxgd.SweepResult(
        configs=reference.configs,
        history={"val_loss": np.concatenate([r.history["val_loss"] for r in alone])},
        updates=reference.updates,
        examples_seen=reference.examples_seen,
        diverged=reference.diverged,
        diverged_step=reference.diverged_step,
        seconds=reference.seconds,
        compile_seconds=reference.compile_seconds,
        params=jax.tree.map(lambda *leaves: np.concatenate(leaves), *[r.params for r in alone]),
    )
    results["a config alone vs in the sweep"] = _difference(reference, stacked)

    def halving():
        return [jaxgd.SuccessiveHalving(metric="val_loss", eta=2, min_epochs=1)]

    unrebuilt = sweep(strategy="grouped", callbacks=halving(), rebuild=False)
    rebuilt = sweep(strategy="grouped", callbacks=halving(), rebuild=True)
    finished = np.flatnonzero(unrebuilt.status == "running")
    results["rebuild=True vs False (halving survivors)"] = _difference(
        unrebuilt, rebuilt, rows=finished
    )

    for name, value in results.items():
        print(
            f"{name:42s} params: {_text(value['params']):26s} val_loss: {_text(value['val_loss'])}"
        )
    document = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "dtype": str(np.asarray(reference.history["val_loss"]).dtype) + " history, float32 params",
        "configs": len(space),
        "epochs": args.epochs,
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(document, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
