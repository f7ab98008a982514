"""Figures of the batch-size study: B_simple over training, steps-to-result with the
critical-batch fit, and predicted time-to-target.

Like ``jaxgd.plots``: matplotlib is optional (``pip install 'jaxgd[plot]'``), figures are
rendered by the Agg canvas (no pyplot state), PNGs are written atomically, and each
function returns the path written.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .._io import atomic_write, optional_import
from ..results import SweepResult
from .noise import noise_scale_ema
from .steps import CriticalBatchFit, StepsToResult, TimeToTarget

__all__ = ["noise_scale_curves", "steps_to_result_curve", "time_to_target_curve"]


def _figure(size):
    optional_import("matplotlib", extra="plot", feature="jaxgd.science.plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> str:
    buffer = io.BytesIO()
    figure.canvas.print_png(buffer)
    atomic_write(path, buffer.getvalue())
    return os.fspath(path)


def noise_scale_curves(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    steps: StepsToResult | None = None,
    decay: float = 0.8,
) -> str:
    """B_simple over training, one line per batch size (needs ``measure=["noise_scale"]``).

    Each line is ``noise_scale_ema`` of the epochs' |G|² and tr Σ (the ratio of their
    bias-corrected running averages: near the optimum |G|² is small and its per-epoch
    estimate noisy, so per-epoch ratios spike). With ``steps`` each line is the config
    that reached the target first at that batch size, with a dot where it did; otherwise
    the median over the batch size's configs that trained to the end.
    """
    if "b_simple" not in result.history:
        raise ValueError('result has no b_simple: sweep with measure=["noise_scale"]')
    figure = _figure((6.4, 4.2))
    ax = figure.subplots()
    sizes = sorted({int(c["batch_size"]) for c in result.configs})
    matplotlib = optional_import("matplotlib", extra="plot", feature="jaxgd.science.plots")
    cmap = matplotlib.colormaps["viridis"]
    smoothed = noise_scale_ema(
        result.history["grad_sq_norm"], result.history["grad_trace"], decay=decay
    )
    smoothed = np.where(smoothed > 0, smoothed, np.nan)
    epochs = np.arange(1, result.epochs + 1)
    winners = {} if steps is None else dict(zip(steps.batch_sizes.tolist(), steps.config))
    reached = {} if steps is None else dict(zip(steps.batch_sizes.tolist(), steps.epochs))
    for k, size in enumerate(sizes):
        color = cmap(k / max(1, len(sizes) - 1) * 0.9)
        if size in winners:
            curve = smoothed[winners[size]]
        else:
            members = [
                i
                for i, c in enumerate(result.configs)
                if int(c["batch_size"]) == size and result.status[i] == "running"
            ]
            if not members:
                continue
            with np.errstate(all="ignore"):
                curve = np.nanmedian(smoothed[members], axis=0)
        ax.plot(epochs, curve, color=color, label=f"B = {size}")
        if size in reached:
            e = int(reached[size])
            ax.plot(e, curve[e - 1], "o", color=color)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("B_simple = tr Σ / |G|²")
    title = "Gradient noise scale over training"
    if steps is not None:
        title += f" (dots: {steps.metric} {'<' if steps.mode == 'min' else '>'} {steps.target:g})"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)
    return _save(figure, path)


def steps_to_result_curve(
    steps: StepsToResult,
    fit: CriticalBatchFit | None,
    path: str | os.PathLike,
    *,
    b_simple: float | None = None,
) -> str:
    """Steps to the target against batch size on log-log axes, with the fit S(B) =
    S_min(1 + B_crit/B), the perfect-scaling line S ∝ 1/B through the smallest batch size,
    and B_crit (and the measured B_simple, if given) marked."""
    figure = _figure((6.4, 4.2))
    ax = figure.subplots()
    b, s = steps.batch_sizes.astype(float), steps.steps.astype(float)
    ax.plot(b, s, "o", color="tab:blue", label="measured")
    grid = np.geomspace(b.min(), b.max(), 100)
    ax.plot(grid, s[0] * b[0] / grid, ":", color="0.4", label="perfect scaling")
    if fit is not None:
        ax.plot(grid, fit.predict(grid), "-", color="tab:orange", label="S_min (1 + B_crit / B)")
        if np.isfinite(fit.b_crit) and fit.b_crit > 0:
            ax.axvline(fit.b_crit, color="tab:orange", linestyle="--", alpha=0.6)
            ax.text(fit.b_crit, s.max(), f" B_crit ≈ {fit.b_crit:.3g}", fontsize=8, va="top")
    if b_simple is not None and np.isfinite(b_simple) and b_simple > 0:
        ax.axvline(b_simple, color="tab:green", linestyle="--", alpha=0.6)
        ax.text(b_simple, s.min(), f" B_simple ≈ {b_simple:.3g}", fontsize=8, va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("updates to target")
    ax.set_title(f"Steps to {steps.metric} {'<' if steps.mode == 'min' else '>'} {steps.target:g}")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)
    return _save(figure, path)


def time_to_target_curve(
    ttt: TimeToTarget, path: str | os.PathLike, *, measured: tuple[int, float] | None = None
) -> str:
    """Predicted seconds to the target against batch size (log-log), the fastest batch
    size marked, and a measured ``(batch_size, seconds)`` point if given."""
    figure = _figure((6.4, 4.2))
    ax = figure.subplots()
    ax.plot(ttt.batch_sizes, ttt.seconds, "o-", color="tab:blue", label="predicted: S(B)·t(B)")
    best = int(np.argmin(ttt.seconds))
    ax.plot(
        ttt.batch_sizes[best],
        ttt.seconds[best],
        "*",
        markersize=14,
        color="tab:red",
        label=f"fastest: B = {ttt.fastest}",
    )
    if measured is not None:
        ax.plot(*measured, "s", color="tab:green", label=f"measured at B = {measured[0]}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("seconds to target (this device)")
    ax.set_title("Time to target")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)
    return _save(figure, path)
