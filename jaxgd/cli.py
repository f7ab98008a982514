"""The ``jaxgd`` command line.

- ``jaxgd run SWEEP.toml`` runs the sweep a TOML file describes (``jaxgd.runfile``) with
  live progress, and writes ``results.csv``, the result, the resolved config and a
  report (``report.html``, ``report.md``) to its output folder.
- ``jaxgd demo`` runs a sweep on scikit-learn's 8x8 digits (learning rate x momentum x
  batch size x 2 seeds, SGD) and the classic regression exercises, and writes
  ``results.csv``, ``results.json``, ``exercises.json`` and PNG plots to ``--out``.
- ``jaxgd bench`` runs the throughput benchmark of a source checkout
  (``benchmarks/throughput.py``; the harness is not part of the installed package).
- ``jaxgd --version``.

Refused input (``jaxgd.InputError``, or a command line argparse refuses) prints one
line, ``jaxgd: error: ...``, and exits with status 2 before anything is written; any
other exception is a bug and keeps its traceback.

A subcommand is a function ``add(commands)`` in ``SUBCOMMANDS`` that adds its parser
with ``commands.add_parser(...)`` and sets ``handler=function(args) -> exit status``.

Example:
    $ jaxgd run examples/digits_adam.toml --set sweep.epochs=3 --out runs/digits
    $ jaxgd demo --quick --out runs/quick
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._io import atomic_write, format_table
from .errors import InputError
from .science import cli as science_cli

__all__ = ["main", "build_parser", "SUBCOMMANDS"]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The digits grid and the epochs of each part of the demo."""

    learning_rates: tuple[float, ...]
    momenta: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    digits_epochs: int
    multiple_regression_epochs: int
    parabola_steps: int


# The full demo takes about 30 s on a 2-core CPU, most of it compiling one program per
# batch size; the quick one keeps two batch sizes so that every plot still has panels.
FULL = DemoSettings(
    learning_rates=(0.03, 0.1, 0.3, 1.0),
    momenta=(0.0, 0.5, 0.9),
    batch_sizes=(16, 64, 256),
    seeds=(0, 1),
    digits_epochs=30,
    multiple_regression_epochs=8,
    parabola_steps=60,
)
QUICK = DemoSettings(
    learning_rates=(0.1, 0.5),
    momenta=(0.0, 0.9),
    batch_sizes=(32, 128),
    seeds=(0, 1),
    digits_epochs=3,
    multiple_regression_epochs=5,
    parabola_steps=20,
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``jaxgd: error: ...``, exit status 2."""

    def error(self, message: str):
        hint = f" (see {self.prog} --help)"
        self.exit(2, f"jaxgd: error: {message}{hint}\n")


EXAMPLES = """examples:
  jaxgd run examples/digits_adam.toml                 a sweep from a TOML file
  jaxgd run sweep.toml --set sweep.epochs=3 --quiet   override a key, no progress
  jaxgd run sweep.toml --out runs/again --overwrite   replace an earlier run's files
  jaxgd demo --quick                                  a seconds-long demo sweep
  jaxgd bench --quick                                 the throughput benchmark (checkout)
  jaxgd science --quick                               which batch size? (noise scale, B_crit)
"""


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run",
        help="run the sweep a TOML file describes and write its results and report",
        description="Run the sweep described by a TOML file (see the README's `jaxgd run` "
        "section) with live progress; write results.csv, the result, the resolved config "
        "and report.html / report.md to the output folder.",
        epilog="example: jaxgd run examples/digits_adam.toml --set sweep.epochs=3",
    )
    run.add_argument("config", metavar="CONFIG.toml", help="the sweep file")
    run.add_argument("--out", help="output folder (default: [output] folder, or runs/<name>)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the file, e.g. --set sweep.epochs=5 (repeatable)",
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier run in --out"
    )
    run.add_argument("--quiet", action="store_true", help="no progress and no tables")
    run.set_defaults(handler=run_file)


def _add_demo(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="a digits sweep (learning rate x momentum x batch size x seeds) and the "
        "regression exercises, with a results table, CSV/JSON and plots",
        description="Sweep SGD on the 8x8 digits over learning rate x momentum x batch size "
        "x 2 seeds, run the classic regression exercises, and write the results.",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="a seconds-long version (for tests)")
    demo.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    demo.add_argument(
        "--overwrite", action="store_true", help="replace an earlier demo's files in --out"
    )
    demo.set_defaults(
        handler=lambda args: run_demo(
            args.out, quick=args.quick, plots=not args.no_plots, overwrite=args.overwrite
        )
    )


def _add_bench(commands) -> None:
    # Listed here for --help; main() hands `jaxgd bench ...` to the harness's own parser.
    bench = commands.add_parser(
        "bench",
        add_help=False,
        help="the throughput benchmark of a source checkout (jaxgd bench --help: its options)",
    )
    bench.set_defaults(handler=lambda args: run_bench([]))


def _add_science(commands) -> None:
    science_cli.add_parser(commands).set_defaults(handler=science_cli.run)


SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_run, _add_demo, _add_bench, _add_science)


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxgd`` parser with every subcommand of ``SUBCOMMANDS``."""
    from . import __version__

    parser = _Parser(
        prog="jaxgd",
        description="Train many gradient-descent configurations in one compiled JAX program.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jaxgd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxgd`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:
            return run_bench(argv[1:])
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.handler(args)
    except InputError as error:
        message = " ".join(str(error).split())
        print(f"jaxgd: error: {message}", file=sys.stderr)
        return 2


def _option_value(argv: Sequence[str], name: str) -> str | None:
    """The value of option ``name`` in ``argv`` as argparse reads it, ``--out PATH`` or
    ``--out=PATH`` (the last one given wins); None if absent."""
    value = None
    for i, item in enumerate(argv):
        if item == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif item.startswith(name + "="):
            value = item[len(name) + 1 :]
    return value


def run_bench(argv: Sequence[str]) -> int:
    """``benchmarks/throughput.py``'s harness, from the source checkout this package is in
    (or the current folder's ``benchmarks/``). An installed package has no harness: the
    error says where to get it."""
    import pathlib

    package_root = pathlib.Path(__file__).resolve().parent.parent
    candidates = [package_root / "benchmarks", pathlib.Path.cwd() / "benchmarks"]
    folder = next((c for c in candidates if (c / "harness" / "cli.py").is_file()), None)
    if folder is None:
        raise InputError(
            "jaxgd bench runs benchmarks/throughput.py of a source checkout, and neither "
            f"{candidates[0]} nor {candidates[1]} has it: clone the jaxgd repository and run "
            "jaxgd bench (or python benchmarks/throughput.py) inside it"
        )
    out = _option_value(argv, "--out")
    if out is not None:
        if os.path.exists(out) and not os.path.isdir(out):
            raise InputError(
                f"--out {out!r} is a file; the benchmark writes JSON and plots into a folder: "
                "give a folder path"
            )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    from harness.cli import main as harness_main

    return harness_main(list(argv))


# What `jaxgd run` writes into its folder. A folder holding any of them is another run's,
# refused before anything runs unless --overwrite or --resume.
RUN_FILES = (
    "results.csv",
    "results.json",
    "result",
    "config.toml",
    "report.html",
    "report.md",
    "plots",
    "checkpoints",
)


def _check_out(out: str, *, overwrite: bool, resume: bool, names=RUN_FILES) -> None:
    """Refuse, before anything runs or is written, an output path that is a file, a
    folder holding another run's results (unless --overwrite or --resume), or both
    flags. ``jaxgd._io.prepare_output_dir`` claims the folder once the sweep has passed
    its own checks."""
    if overwrite and resume:
        raise InputError(
            "--overwrite and --resume contradict each other: --resume continues the run in "
            "the folder, --overwrite deletes it; choose one"
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out!r} is a file; give a folder for the run's results")
    held = [name for name in names if os.path.exists(os.path.join(out, name))]
    if held and not (overwrite or resume):
        raise InputError(
            f"--out {out!r} holds another run's results ({', '.join(held)}); pass --overwrite "
            "to replace them, --resume to continue that run, or choose another folder"
        )


def _remove_checkpoints(folder: str) -> None:
    """An earlier run's checkpoints, when this run keeps none: the files jaxgd wrote
    there (its manifest lists them), then the folder if nothing else is left."""
    from ._io import MANIFEST, prepare_output_dir

    if not os.path.isdir(folder):
        return
    prepare_output_dir(folder, overwrite=True)
    if os.listdir(folder) == [MANIFEST]:
        os.remove(os.path.join(folder, MANIFEST))
        os.rmdir(folder)


def run_file(args: argparse.Namespace) -> int:
    """``jaxgd run``: check the file, run the sweep, write the results and the report."""
    import jaxgd

    from . import report as reporting
    from . import runfile
    from ._io import prepare_output_dir, record_output

    start = time.perf_counter()
    plan = runfile.load(args.config, args.overrides)
    out = args.out or plan.out
    _check_out(out, overwrite=args.overwrite, resume=args.resume)
    if args.resume and not plan.checkpoint:
        raise InputError(
            f"--resume: {plan.source} has no [checkpoint] table, so its runs leave nothing "
            "to resume from; add [checkpoint] (every = 1) and run again"
        )
    metric = plan.report.metric or ("val_loss" if plan.sweep_kwargs["validation"] else "train_loss")
    callbacks = list(plan.callbacks)
    if not args.quiet:
        callbacks.append(jaxgd.Progress(metric=metric))
        print(
            f"jaxgd {jaxgd.__version__} run {plan.source}: {plan.problem_name}, "
            f"{len(plan.space)} configs ({plan.space_method}), {plan.sweep_kwargs['epochs']} "
            f"epochs -> {out}",
            flush=True,
        )
    checkpoints = os.path.join(out, "checkpoints") if plan.checkpoint else None
    # The sweep checks its input before it claims the checkpoint folder: a refused input
    # leaves nothing behind. The output folder is claimed once the sweep has run.
    result = jaxgd.sweep(
        plan.problem,
        plan.data,
        space=plan.space,
        callbacks=callbacks,
        options=plan.options,
        checkpoint_dir=checkpoints,
        resume=args.resume,
        # The sweep's own overwrite= clears a checkpoint folder; without one there is
        # nothing of the sweep's to clear (the folder's files are handled below).
        overwrite=args.overwrite and checkpoints is not None,
        **plan.sweep_kwargs,
    )
    prepare_output_dir(out, overwrite=args.overwrite, resume=args.resume)
    if args.overwrite and checkpoints is None:
        _remove_checkpoints(os.path.join(out, "checkpoints"))
    result.save(os.path.join(out, "result"), overwrite=True)
    record_output(os.path.join(out, "result"))
    result.to_csv(os.path.join(out, "results.csv"))
    result.to_json(os.path.join(out, "results.json"))
    atomic_write(os.path.join(out, "config.toml"), runfile.dump_toml(plan.document))
    written = ["results.csv", "results.json", "result/", "config.toml"]
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    record_output(os.path.join(out, "plots"))
    written += reporting.write_report(
        result,
        out,
        metric=metric,
        top=plan.report.top,
        title=f"{plan.problem_name}: {len(result)} configs, {result.epochs} epochs",
        space_method=plan.space_method,
        wall_seconds=time.perf_counter() - start,
        plots=plan.report.plots,
        env=reporting.environment(command=" ".join(["jaxgd", *map(str, args.argv)])),
    )
    if not args.quiet:
        best = reporting.best_configs(result, metric, 10)
        print(f"\nThe best {len(best)} by final {metric}" + " (mean over seeds):")
        print(format_table(best, list(best[0]) if best else []))
        print(
            f"\n{result.total_compile_seconds:.1f} s compiling {len(result.groups)} "
            f"program(s), {result.total_seconds:.1f} s training, "
            f"{time.perf_counter() - start:.1f} s in all"
        )
    shown = [w for w in written if not w.startswith("plots/")]
    plots = len(written) - len(shown)
    print(f"Wrote {', '.join(shown)}{f' and {plots} plots' if plots else ''} to {out}")
    return 0


def _group_timings(result) -> tuple[float, float, int]:
    """Compile and run seconds summed over the compiled groups, and the group count."""
    return result.total_compile_seconds, result.total_seconds, len(result.groups)


@functools.cache
def _builtin(name: str, **options: Any):
    """``jaxgd.problems.<name>(**options)``, built once per process: the compiled programs
    are keyed by the problem, so a second demo in the same process compiles nothing."""
    import jaxgd

    return getattr(jaxgd.problems, name)(**options)


def _digits_sweep(settings: DemoSettings):
    import jaxgd

    problem, data = _builtin("digits_mlp")
    space = jaxgd.grid(
        learning_rate=list(settings.learning_rates),
        momentum=list(settings.momenta),
        batch_size=list(settings.batch_sizes),
        seed=list(settings.seeds),
    )
    return jaxgd.sweep(
        problem, data, optimizer="sgd", space=space, epochs=settings.digits_epochs, validation=0.2
    )


def _linear_regression() -> dict[str, Any]:
    """The classic exercise: lr 0.1, batch 10, 10 epochs, seed 0, against least squares."""
    import jaxgd

    problem, data = _builtin("linear_regression")
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.1, seed=0),
        batch_size=10,
        epochs=10,
        validation=None,
        return_params=True,
    )
    exact = jaxgd.problems.least_squares(data)
    x, y = data["x"][:, 0].astype(np.float64), data["y"].astype(np.float64)
    exact_mse = float(np.mean((exact["b"] + exact["w"][0] * x - y) ** 2))
    return {
        "sgd": {"b": float(result.params["b"][0]), "w": float(result.params["w"][0, 0])},
        "least_squares": {"b": float(exact["b"]), "w": float(exact["w"][0])},
        "final_train_loss": float(result.history["train_loss"][0, -1]),
        "least_squares_loss": exact_mse,
        "updates": int(result.updates[0]),
        "result": result,
    }


def _multiple_regression(epochs: int) -> dict[str, Any]:
    """SGD with momentum 0, 0.5 and 0.9 on 3 features; distance to least squares."""
    import jaxgd

    problem, data = _builtin("multiple_regression")
    momenta = [0.0, 0.5, 0.9]
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.01, momentum=momenta),
        batch_size=20,
        epochs=epochs,
        validation=None,
        return_params=True,
    )
    exact = jaxgd.problems.least_squares(data)
    distance = np.sqrt(
        np.sum((result.params["w"] - exact["w"]) ** 2, axis=1)
        + (result.params["b"] - exact["b"]) ** 2
    )
    return {
        "momentum": momenta,
        "final_train_loss": result.history["train_loss"][:, -1].tolist(),
        "distance_to_least_squares": distance.tolist(),
        "result": result,
    }


def _parabola(steps: int) -> dict[str, Any]:
    """f(x) = x²/6 from x = 3, learning rate 0.3, momentum 0, 0.5 and 0.9."""
    import jaxgd

    problem, data = _builtin("parabola", x0=3.0)
    momenta = [0.0, 0.5, 0.9]
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.3, momentum=momenta),
        batch_size=1,
        epochs=steps,
        options=jaxgd.SweepOptions(epochs_per_chunk=steps),
        validation=None,
        return_params=True,
    )
    return {
        "momentum": momenta,
        "final_x": result.params["x"].tolist(),
        "final_f": (result.params["x"].astype(np.float64) ** 2 / 6).tolist(),
        "steps": steps,
        "result": result,
    }


def run_demo(out: str, *, quick: bool = False, plots: bool = True, overwrite: bool = False) -> int:
    """Run the demo and write its files to ``out``; returns 0.

    A folder holding an earlier run's files is refused unless ``overwrite`` (which
    removes exactly those files first: ``jaxgd._io.prepare_output_dir``).
    """
    from ._io import prepare_output_dir, record_output

    start = time.perf_counter()
    settings = QUICK if quick else FULL
    prepare_output_dir(out, overwrite=overwrite)
    import jaxgd

    grid_text = (
        f"{len(settings.learning_rates)} learning rates x {len(settings.momenta)} momenta x "
        f"{len(settings.batch_sizes)} batch sizes x {len(settings.seeds)} seeds"
    )
    print(
        f"jaxgd {jaxgd.__version__} demo{' (quick)' if quick else ''}: digits MLP 64-64-10, "
        f"SGD, {grid_text}, {settings.digits_epochs} epochs, 20% validation",
        flush=True,
    )
    digits = _digits_sweep(settings)
    linear = _linear_regression()
    multiple = _multiple_regression(settings.multiple_regression_epochs)
    parabola = _parabola(settings.parabola_steps)
    sweeps = {
        "digits": digits,
        "linear_regression": linear["result"],
        "multiple_regression": multiple["result"],
        "parabola": parabola["result"],
    }

    digits.save(os.path.join(out, "result"))
    record_output(os.path.join(out, "result"))
    digits.to_csv(os.path.join(out, "results.csv"))
    digits.to_json(os.path.join(out, "results.json"))
    written = ["results.csv", "results.json", "result/"]
    timings = {name: _group_timings(result) for name, result in sweeps.items()}
    exercises = {
        name: {k: v for k, v in part.items() if k != "result"}
        for name, part in (
            ("linear_regression", linear),
            ("multiple_regression", multiple),
            ("parabola", parabola),
        )
    }
    if plots:
        from . import plots as plotting

        plotting.loss_curves(digits, os.path.join(out, "loss_curves.png"), title="Digits MLP, SGD")
        plotting.final_loss_heatmap(
            digits,
            os.path.join(out, "val_loss_heatmap.png"),
            title="Digits MLP, SGD: final validation loss",
        )
        plotting.loss_curves(
            multiple["result"],
            os.path.join(out, "multiple_regression.png"),
            metrics=("train_loss",),
            color="momentum",
            style="",
            title="Multiple regression, SGD",
        )
        plotting.loss_curves(
            parabola["result"],
            os.path.join(out, "parabola.png"),
            metrics=("train_loss",),
            color="momentum",
            style="",
            title="Parabola f(x) = x²/6, gradient descent",
        )
        written += [
            "loss_curves.png",
            "val_loss_heatmap.png",
            "multiple_regression.png",
            "parabola.png",
        ]

    compile_seconds = sum(t[0] for t in timings.values())
    run_seconds = sum(t[1] for t in timings.values())
    wall_seconds = time.perf_counter() - start
    summary = {
        "quick": quick,
        "settings": dataclasses.asdict(settings),
        "exercises": exercises,
        "compile_seconds": compile_seconds,
        "run_seconds": run_seconds,
        "compiled_groups": sum(t[2] for t in timings.values()),
        "wall_seconds": wall_seconds,
        "backend": _backend(),
    }
    atomic_write(os.path.join(out, "exercises.json"), json.dumps(summary, indent=1))
    written.append("exercises.json")

    _print_digits(digits, timings["digits"])
    _print_exercises(linear, multiple, parabola)
    print(
        f"\nTime: {wall_seconds:.1f} s wall, {compile_seconds:.1f} s compiling "
        f"{summary['compiled_groups']} groups, {run_seconds:.1f} s training "
        f"({summary['backend']})"
    )
    print(f"Wrote {', '.join(written)} to {out}")
    return 0


def _backend() -> str:
    import jax

    device = jax.devices()[0]
    return f"{jax.default_backend()}: {device.device_kind}, jax {jax.__version__}"


def _print_digits(digits, timing: tuple[float, float, int]) -> None:
    rows = digits.table()
    usable = [r for r in rows if not r["diverged"] and np.isfinite(r["final_val_loss"])]
    ranked = sorted(usable, key=lambda r: r["final_val_loss"])
    columns = [
        "learning_rate",
        "momentum",
        "batch_size",
        "seed",
        "final_train_loss",
        "final_val_loss",
        "final_val_accuracy",
        "updates",
    ]
    print(
        f"\nDigits: the best {min(10, len(ranked))} of {len(rows)} configs by final validation "
        f"loss ({len(rows) - len(usable)} diverged)"
    )
    print(format_table(ranked[:10], columns))

    print("\nBest config per batch size (updates per epoch fall as the batch grows):")
    best_rows = []
    for size in sorted({r["batch_size"] for r in rows}):
        group = [r for r in ranked if r["batch_size"] == size]
        if not group:
            continue
        best = dict(group[0])
        best["updates_per_epoch"] = best["updates"] // digits.epochs
        best["train_seconds"] = best.pop("seconds")
        best_rows.append(best)
    print(
        format_table(
            best_rows,
            [
                "batch_size",
                "learning_rate",
                "momentum",
                "final_val_loss",
                "final_val_accuracy",
                "updates_per_epoch",
                "train_seconds",
                "compile_seconds",
            ],
        )
    )
    compile_seconds, run_seconds, groups = timing
    print(
        f"Digits sweep: {len(rows)} configs in {groups} compiled group{'s' * (groups != 1)}, "
        f"{compile_seconds:.1f} s compiling, {run_seconds:.1f} s training"
    )


def _print_exercises(linear, multiple, parabola) -> None:
    sgd, exact = linear["sgd"], linear["least_squares"]
    print(
        "\nLinear regression y = 4 + 3x + N(0,1), 20 points, lr 0.1, batch 10, "
        f"{linear['updates']} updates:"
    )
    print(
        f"  SGD           b = {sgd['b']:.3f}  w = {sgd['w']:.3f}  "
        f"mean squared error {linear['final_train_loss']:.3f} (epoch mean)"
    )
    print(
        f"  least squares b = {exact['b']:.3f}  w = {exact['w']:.3f}  "
        f"mean squared error {linear['least_squares_loss']:.3f}"
    )
    print("Multiple regression (3 features, lr 0.01, batch 20): momentum helps")
    for momentum, loss, distance in zip(
        multiple["momentum"],
        multiple["final_train_loss"],
        multiple["distance_to_least_squares"],
        strict=True,
    ):
        print(f"  momentum {momentum:<4g} train loss {loss:8.4f}  |θ - θ_ls| = {distance:.4f}")
    print(f"Parabola f(x) = x²/6 from x = 3, lr 0.3, {parabola['steps']} steps:")
    for momentum, x in zip(parabola["momentum"], parabola["final_x"], strict=True):
        print(f"  momentum {momentum:<4g} x = {x: .2e}")
