"""The benchmark's command line: ``python benchmarks/throughput.py --help``.

Writes ``PROBLEM.json`` (schema ``runner.SCHEMA``) and two PNG plots to ``--out``, logs
progress and the goal ratios to stderr, and prints the Markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from . import report
from .runner import METHODS, RunSettings, run_benchmark
from .workload import PROBLEMS

__all__ = ["main", "build_parser", "DEFAULTS", "QUICK"]


DEFAULTS = {
    "num_examples": None,  # the problem's: 4096, digits 1797
    "batch_sizes": None,  # 1, 2, 4, ... up to 4096 and the dataset size
    "sweep_configs": 64,
    "configs": [1, 4, 16, 64, 256],
    "configs_batch_size": 128,
    "repeats": 5,
    "budget": 2.0,
}
QUICK = {
    "num_examples": 200,
    "batch_sizes": [16, 200],
    "sweep_configs": 4,
    "configs": [4],
    "configs_batch_size": 16,
    "repeats": 1,
    "budget": math.inf,  # always the whole work, so every method's final losses exist
}


def _parse_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 1,4,16") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers like 1,4,16")
    return values


def _parse_methods(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: methods are {','.join(METHODS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/throughput.py",
        description="Training throughput vs batch size and vs number of configs: jaxgd side "
        "by side with an optax loop, a hand-written jit(scan(vmap(optax step))), PyTorch "
        "eager and a torch.func ensemble.",
    )
    parser.add_argument("--problem", choices=PROBLEMS, default="mlp")
    parser.add_argument(
        "--num-examples",
        type=int,
        default=None,
        help="training examples (default: 4096; digits: all 1797)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_parse_ints,
        default=None,
        help="batch sizes of the batch-size sweep (default: 1,2,4,...,"
        "up to 4096 and the dataset size)",
    )
    parser.add_argument(
        "--sweep-configs", type=int, default=None, help="K of the batch-size sweep (default 64)"
    )
    parser.add_argument(
        "--configs",
        type=_parse_ints,
        default=None,
        help="K values of the configs sweep (default 1,4,16,64,256)",
    )
    parser.add_argument(
        "--configs-batch-size",
        type=int,
        default=None,
        help="batch size of the configs sweep (default 128)",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats after warm-up (default 5)"
    )
    parser.add_argument(
        "--methods",
        type=_parse_methods,
        default=list(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per timed call above which looped baselines time part "
        "of the work and extrapolate (default 2)",
    )
    parser.add_argument("--out", default="runs/benchmark", help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="write the JSON only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run for smoke tests: 200 examples, B in {16, 200}, K=4, 1 repeat",
    )
    return parser


def settings_from(args: argparse.Namespace, argv: Sequence[str]) -> RunSettings:
    """The run's settings: the options given, else the defaults (or ``--quick``'s)."""
    defaults = QUICK if args.quick else DEFAULTS
    values = {
        name: defaults[name] if getattr(args, name) is None else getattr(args, name)
        for name in DEFAULTS
    }
    return RunSettings(
        problem=args.problem,
        epochs=args.epochs,
        methods=args.methods,
        quick=args.quick,
        command=" ".join(["python benchmarks/throughput.py", *argv]),
        **values,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write ``PROBLEM.json`` and plots to ``--out``; returns 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        result = run_benchmark(settings_from(args, argv), log)
    except ValueError as error:
        parser.error(str(error))
    path = report.write_json(result, os.path.join(args.out, f"{args.problem}.json"))
    log(f"wrote {path}")
    if not args.no_plots:
        try:
            for plot in report.write_plots(result, args.out):
                log(f"wrote {plot}")
        except ImportError:
            log("matplotlib is not installed: no plots (pip install 'jaxgd[plot]')")
    for line in report.goal_lines(result):
        log(line)
    print(report.results_table(result))
    return 0
