"""``jaxgd science``: the batch-size study on the 8x8 digits (``batch_size_study``), its
report written to ``--out``: ``report.md``, ``summary.json`` and PNG figures.

Example:
    $ jaxgd science --quick --out runs/science-quick
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from .study import StudySettings

__all__ = ["FULL", "QUICK", "add_parser", "run"]

# Batch sizes 8 ... 1024, six learning rates each, SGD with momentum 0.9, until
# val_loss < 0.1 (the best configs get below 0.07; batch size 1024 at its best learning
# rate needs about 20 epochs, batch size 8 about 5).
FULL = StudySettings()
QUICK = StudySettings(
    batch_sizes=(32, 128),
    learning_rates=(0.1, 0.3),
    epochs=4,
    target=0.6,
    timing_epochs=1,
    timing_repeats=1,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``science`` on the ``jaxgd`` command's subparsers."""
    parser = subparsers.add_parser(
        "science",
        help="which batch size? noise scale, steps-to-result, critical batch size and "
        "time-to-target on the digits, with a report",
        description="Sweep the digits MLP over batch sizes 8..1024 x learning rates with the "
        "gradient noise scale measured; fit the critical batch size to steps-to-result; "
        "time each batch size on this machine and recommend the fastest to the target.",
    )
    parser.add_argument("--out", default="runs/science", help="output folder (runs/science)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long version (tests)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--epochs", type=int, help=f"epochs of the sweep ({FULL.epochs})")
    parser.add_argument("--target", type=float, help=f"val_loss target ({FULL.target})")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the study with the parsed arguments; returns the exit status."""
    import jaxgd

    from .study import batch_size_study

    settings = QUICK if args.quick else FULL
    changes = {"epochs": args.epochs, "target": args.target}
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
    problem, data = jaxgd.problems.digits_mlp()
    print(
        f"jaxgd {jaxgd.__version__} science{' (quick)' if args.quick else ''}: digits MLP, "
        f"batch sizes {list(settings.batch_sizes)}, learning rates "
        f"{list(settings.learning_rates)}, target {settings.metric} < {settings.target}",
        flush=True,
    )
    summary = batch_size_study(
        problem,
        data,
        settings,
        out=args.out,
        plots=not args.no_plots,
        log=lambda line: print(line, flush=True),
    )
    for row in summary["steps_to_result"]:
        print(
            f"  B={row['batch_size']:>5}  lr={row['learning_rate']:<6g} steps={row['steps']:>6}  "
            f"B_simple {row['b_simple_first_epoch']:.3g} -> {row['b_simple_at_target']:.3g}"
        )
    fit = summary["fit"]
    if fit is not None:
        print(
            f"B_crit = {fit['b_crit']:.4g} (S_min = {fit['s_min']:.4g}); mean B_simple = "
            f"{summary['b_simple_mean_to_target']:.4g}"
        )
    measured = summary["measured"]
    if measured is not None:
        print(
            f"fastest here: batch size {summary['fastest']}: predicted "
            f"{measured['predicted_seconds']:.3g} s, measured {measured['seconds']:.3g} s"
        )
    else:
        print("no batch size reached the target: more --epochs or an easier --target")
    print(f"wrote {os.path.join(args.out, 'report.md')}")
    return 0
