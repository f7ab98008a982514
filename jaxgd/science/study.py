"""The whole batch-size study on one problem: one sweep over batch sizes x learning rates
with the noise scale measured, steps-to-result and the critical-batch fit, seconds per
update on this device, the recommended batch size, and a check of its predicted time by
training it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .._io import atomic_write
from ..problem import Problem
from .noise import noise_scale_ema
from .steps import fit_critical_batch, seconds_per_update, steps_to_result, time_to_target

__all__ = ["StudySettings", "batch_size_study"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What the study sweeps and what counts as reaching the target.

    Attributes:
        batch_sizes: the batch sizes compared.
        learning_rates: tried at every batch size (Shallue et al. tune per batch size:
            each batch size's steps-to-result is its best learning rate's).
        momentum, optimizer, seeds: of every config.
        epochs: epochs of the sweep (enough for the largest batch size to get there).
        metric, target, mode: the target, e.g. ``val_loss < 0.1``.
        validation: the held-out fraction the metric is measured on.
        timing_epochs, timing_repeats: of ``seconds_per_update``.
    """

    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
    learning_rates: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    momentum: float = 0.9
    optimizer: str = "sgd"
    seeds: tuple[int, ...] = (0,)
    epochs: int = 50
    metric: str = "val_loss"
    target: float = 0.1
    mode: str = "min"
    validation: float = 0.2
    timing_epochs: int = 5
    timing_repeats: int = 5


def _pooled_b_simple(result, members, epochs) -> float:
    """Σ tr Σ / Σ |G|² over the given configs' first ``epochs[i]`` epochs: the ratio of the
    averages (``noise_scale_ema`` says why)."""
    trace = sum(np.nansum(result.history["grad_trace"][i, :e]) for i, e in zip(members, epochs))
    g2 = sum(np.nansum(result.history["grad_sq_norm"][i, :e]) for i, e in zip(members, epochs))
    return float(trace / g2) if g2 > 0 else math.nan


def batch_size_study(
    problem: Problem,
    data: PyTree,
    settings: StudySettings = StudySettings(),
    *,
    out: str | os.PathLike | None = None,
    plots: bool = True,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run the study; write ``summary.json``, ``report.md`` and figures to ``out``.

    Steps: (1) sweep every batch size x learning rate with ``measure=["noise_scale"]``;
    (2) ``steps_to_result`` and ``fit_critical_batch``; (3) B_simple averaged over the
    winning configs' epochs up to the target; (4) ``seconds_per_update`` of one config at
    each batch size; (5) ``time_to_target``; (6) the fastest batch size trained again as
    one config with its winning learning rate, for as many epochs as it needed: the median
    run seconds of ``timing_repeats`` such runs after a warm-up is the measured
    time-to-target (compilation excluded, the per-epoch evaluation included, as in the
    prediction).

    Returns:
        The summary (what ``summary.json`` holds).
    """
    from ..space import grid
    from ..sweep import sweep

    space = grid(
        batch_size=list(settings.batch_sizes),
        learning_rate=list(settings.learning_rates),
        momentum=[settings.momentum],
        seed=list(settings.seeds),
    )
    common = {"optimizer": settings.optimizer, "validation": settings.validation}
    log(f"sweep: {len(space)} configs x {settings.epochs} epochs, noise scale measured")
    result = sweep(
        problem, data, space=space, epochs=settings.epochs, measure=["noise_scale"], **common
    )
    log(
        f"  {result.strategy}: {result.total_compile_seconds:.1f} s compiling, "
        f"{result.total_seconds:.1f} s running"
    )
    steps = steps_to_result(result, settings.metric, settings.target, settings.mode)
    fit = fit_critical_batch(steps.batch_sizes, steps.steps) if steps.steps.size >= 2 else None

    winners = steps.config.tolist()
    b_simple = _pooled_b_simple(result, winners, steps.epochs.tolist())
    per_size = []
    for k, size in enumerate(steps.batch_sizes.tolist()):
        i, e = winners[k], int(steps.epochs[k])
        # per-epoch estimates are noisy where few steps measure (small B): report the
        # ratio of the bias-corrected running averages (noise_scale_ema)
        curve = noise_scale_ema(
            result.history["grad_sq_norm"][i], result.history["grad_trace"][i], decay=0.8
        )
        per_size.append(
            {
                "batch_size": size,
                "steps": int(steps.steps[k]),
                "epochs": e,
                "examples": int(steps.examples[k]),
                "learning_rate": result.configs[i]["learning_rate"],
                "b_simple_first_epoch": float(curve[0]),
                "b_simple_at_target": float(curve[e - 1]),
                "b_simple_mean_to_target": _pooled_b_simple(result, [i], [e]),
            }
        )

    log(f"timing one config per batch size ({settings.timing_repeats} repeats)")
    per_update = seconds_per_update(
        problem,
        data,
        steps.batch_sizes.tolist(),
        epochs=settings.timing_epochs,
        repeats=settings.timing_repeats,
        hyperparams={"learning_rate": 0.01, "momentum": settings.momentum},
        **common,
    )
    ttt = time_to_target(steps, per_update) if steps.steps.size else None
    measured = None
    if ttt is not None:
        k = int(np.flatnonzero(steps.batch_sizes == ttt.fastest)[0])
        config = dict(result.configs[winners[k]])
        config.pop("optimizer", None)
        epochs = int(steps.epochs[k])
        runs = [
            sweep(problem, data, space=[config], epochs=epochs, **common)
            for _ in range(settings.timing_repeats + 1)  # the first compiles and warms up
        ]
        again = steps_to_result(runs[-1], settings.metric, settings.target, settings.mode)
        measured = {
            "batch_size": ttt.fastest,
            "learning_rate": config["learning_rate"],
            "epochs": epochs,
            "seconds": float(np.median([run.total_seconds for run in runs[1:]])),
            "seconds_each": [run.total_seconds for run in runs[1:]],
            "compile_seconds": runs[0].total_compile_seconds,
            "reached_target": bool(again.steps.size),
            "steps": int(again.steps[0]) if again.steps.size else None,
            "predicted_seconds": float(ttt.seconds[k]),
        }
        for entry in per_size:
            entry["seconds_per_update"] = per_update[entry["batch_size"]]
            entry["predicted_seconds"] = float(
                ttt.seconds[steps.batch_sizes == entry["batch_size"]][0]
            )

    summary = {
        "problem": problem.name,
        "settings": dataclasses.asdict(settings),
        "strategy": result.strategy,
        "sweep_seconds": result.total_seconds,
        "sweep_compile_seconds": result.total_compile_seconds,
        "configs": len(result),
        "diverged": int(np.sum(result.status == "diverged")),
        "target": {"metric": settings.metric, "target": settings.target, "mode": settings.mode},
        "steps_to_result": per_size,
        "missing": list(steps.missing),
        "fit": None
        if fit is None
        else {
            "s_min": fit.s_min,
            "e_min": fit.e_min,
            "b_crit": fit.b_crit,
            "residuals": fit.residuals.tolist(),
        },
        "b_simple_mean_to_target": b_simple,
        "b_simple_first_epoch_median": _median([r["b_simple_first_epoch"] for r in per_size]),
        "b_simple_at_target_median": _median([r["b_simple_at_target"] for r in per_size]),
        "b_crit_over_b_simple": (fit.b_crit / b_simple) if fit is not None and b_simple else None,
        "fastest": None if ttt is None else ttt.fastest,
        "fewest_examples": None if ttt is None else ttt.fewest_examples,
        "measured": measured,
    }
    if out is not None:
        _write(out, summary, result, steps, fit, ttt, plots)
    return summary


def _write(out, summary, result, steps, fit, ttt, plots: bool) -> None:
    atomic_write(os.path.join(out, "summary.json"), json.dumps(_plain(summary), indent=1))
    figures = []
    if plots:
        from . import plots as science_plots

        figures.append(
            science_plots.noise_scale_curves(result, os.path.join(out, "b_simple.png"), steps=steps)
        )
        if steps.steps.size:
            figures.append(
                science_plots.steps_to_result_curve(
                    steps,
                    fit,
                    os.path.join(out, "steps_to_result.png"),
                    b_simple=summary["b_simple_mean_to_target"],
                )
            )
        if ttt is not None:
            m = summary["measured"]
            figures.append(
                science_plots.time_to_target_curve(
                    ttt,
                    os.path.join(out, "time_to_target.png"),
                    measured=(m["batch_size"], m["seconds"]) if m else None,
                )
            )
    atomic_write(os.path.join(out, "report.md"), report_markdown(summary, figures))


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def report_markdown(summary: dict[str, Any], figures: list[str] = ()) -> str:
    """The study's summary as a short markdown report."""
    t = summary["target"]
    sign = "<" if t["mode"] == "min" else ">"
    lines = [
        f"# Which batch size? {summary['problem']}",
        "",
        f"{summary['configs']} configs ({len(summary['settings']['batch_sizes'])} batch sizes x "
        f"{len(summary['settings']['learning_rates'])} learning rates, "
        f"{summary['settings']['optimizer']} momentum {summary['settings']['momentum']}), "
        f"{summary['settings']['epochs']} epochs, one sweep ({summary['strategy']}): "
        f"{summary['sweep_compile_seconds']:.1f} s compiling, {summary['sweep_seconds']:.1f} s "
        f"running; {summary['diverged']} diverged.",
        "",
        f"Target: {t['metric']} {sign} {t['target']} (checked at epoch ends).",
        "",
        "| batch size | best lr | steps | epochs | B_simple epoch 1 | B_simple at target "
        "(EMA 0.8) | B_simple mean to target | s/update | predicted s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary["steps_to_result"]:
        lines.append(
            f"| {row['batch_size']} | {row['learning_rate']:g} | {row['steps']} | {row['epochs']} "
            f"| {row['b_simple_first_epoch']:.3g} | {row['b_simple_at_target']:.3g} "
            f"| {row['b_simple_mean_to_target']:.3g} "
            f"| {row.get('seconds_per_update', math.nan):.3g} "
            f"| {row.get('predicted_seconds', math.nan):.3g} |"
        )
    if summary["missing"]:
        lines += ["", f"Never reached the target: batch sizes {summary['missing']}."]
    fit = summary["fit"]
    lines.append("")
    if fit is not None:
        lines.append(
            f"Fit S(B) = S_min (1 + B_crit / B): S_min = {fit['s_min']:.4g}, "
            f"E_min = {fit['e_min']:.4g} examples, **B_crit = {fit['b_crit']:.4g}**; "
            f"residuals log(measured/fit): {', '.join(f'{r:+.2f}' for r in fit['residuals'])}."
        )
    lines.append(
        f"B_simple averaged to the target (ratio of the averages, winning configs): "
        f"**{summary['b_simple_mean_to_target']:.4g}**"
        + (
            f"; B_crit / B_simple = {summary['b_crit_over_b_simple']:.3g}."
            if summary["b_crit_over_b_simple"] is not None
            else "."
        )
    )
    lines.append(
        f"B_simple over training (median over batch sizes): "
        f"{summary['b_simple_first_epoch_median']:.3g} after epoch 1, "
        f"{summary['b_simple_at_target_median']:.3g} at the target."
    )
    m = summary["measured"]
    if m is not None:
        lines += [
            "",
            f"Recommended on this machine: **batch size {summary['fastest']}** (least predicted "
            f"time); fewest examples: batch size {summary['fewest_examples']}.",
            f"Predicted time-to-target at batch size {m['batch_size']}: "
            f"{m['predicted_seconds']:.3g} s; measured (one config, lr {m['learning_rate']:g}, "
            f"{m['epochs']} epochs, median of {len(m['seconds_each'])} runs, compile "
            f"excluded): {m['seconds']:.3g} s, "
            f"target {'reached' if m['reached_target'] else 'NOT reached'}"
            + (f" after {m['steps']} updates." if m["steps"] is not None else "."),
        ]
    if figures:
        lines += [""] + [f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in figures]
    return "\n".join(lines) + "\n"
