"""Plots of a ``SweepResult``: loss curves and a final-loss heatmap.

Matplotlib is optional (``pip install 'jaxgd[plot]'``) and imported inside the functions.
Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, so
no GUI backend is touched and pyplot's global state is left alone. Each function writes
its PNG atomically (a temporary name, then a rename), and returns the path written.

Example:
    >>> import jaxgd, jaxgd.plots  # doctest: +SKIP
    >>> jaxgd.plots.loss_curves(result, "runs/demo/loss_curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._io import atomic_write, optional_import
from .results import SweepResult

__all__ = ["loss_curves", "final_loss_heatmap"]

_LINESTYLES = ("-", "--", ":", "-.")


def _matplotlib():
    """matplotlib, its ``Figure`` and the Agg canvas (no GUI backend, no pyplot state)."""
    matplotlib = optional_import("matplotlib", extra="plot", feature="jaxgd.plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return matplotlib, Figure, FigureCanvasAgg


def _save(figure, canvas_class, path: str | os.PathLike) -> str:
    """Render the PNG in memory, then write it atomically: never a half file."""
    png = io.BytesIO()
    canvas_class(figure).print_png(png)
    atomic_write(path, png.getvalue())
    return os.fspath(path)


def _values(result: SweepResult, key: str) -> list[Any]:
    """The distinct values of a config key, sorted, or [] when no config has it."""
    values = {config[key] for config in result.configs if key in config}
    return sorted(values, key=lambda v: (isinstance(v, str), v))


def _spans_decades(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values) & (values > 0)]
    return finite.size > 1 and finite.max() / finite.min() > 30


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _finite_mean(curves: np.ndarray) -> np.ndarray:
    """The mean over the first axis of the finite values; NaN where there are none
    (a diverged config's epochs), without numpy's empty-slice warning."""
    finite = np.isfinite(curves)
    count = finite.sum(axis=0)
    total = np.where(finite, curves, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _seed_groups(result: SweepResult) -> dict[tuple, list[int]]:
    """Configs that differ only in their seed, keyed by the rest of the config."""
    groups: dict[tuple, list[int]] = {}
    for index, config in enumerate(result.configs):
        key = tuple(sorted((k, str(v)) for k, v in config.items() if k != "seed"))
        groups.setdefault(key, []).append(index)
    return groups


def loss_curves(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("train_loss", "val_loss"),
    panel: str = "batch_size",
    color: str = "learning_rate",
    style: str = "momentum",
    title: str | None = None,
) -> str:
    """Loss against epoch: one row of panels per metric, one column per value of ``panel``.

    Configs that differ only in their seed are one line (the mean over seeds) with a band
    from the lowest to the highest seed. Colour encodes ``color`` (e.g. the learning
    rate), line style encodes ``style`` (e.g. the momentum). The y axis is logarithmic
    when the losses span more than a factor of 30. Metrics the result lacks are skipped.

    Returns:
        ``path``, as a string.
    """
    matplotlib, Figure, Canvas = _matplotlib()
    requested, metrics = list(metrics), [m for m in metrics if m in result.history]
    if not metrics:
        raise ValueError(
            f"none of the metrics {requested} are recorded; have {sorted(result.history)}"
        )
    panels = _values(result, panel) or [None]
    colors = _values(result, color)
    styles = _values(result, style)
    cmap = matplotlib.colormaps["viridis"]
    color_of = {v: cmap(i / max(1, len(colors) - 1) * 0.9) for i, v in enumerate(colors)}
    style_of = {v: _LINESTYLES[i % len(_LINESTYLES)] for i, v in enumerate(styles)}
    epochs = np.arange(1, result.epochs + 1)
    groups = _seed_groups(result)

    figure = Figure(figsize=(4.2 * len(panels) + 1.5, 3.3 * len(metrics)), layout="constrained")
    axes = figure.subplots(len(metrics), len(panels), squeeze=False, sharex=True)
    for row, metric in enumerate(metrics):
        values = result.history[metric]
        for column, panel_value in enumerate(panels):
            ax = axes[row, column]
            for members in groups.values():
                config = result.configs[members[0]]
                if panel_value is not None and config.get(panel) != panel_value:
                    continue
                curves = values[members].astype(float)
                ax.plot(
                    epochs,
                    _finite_mean(curves),
                    color=color_of.get(config.get(color), "tab:blue"),
                    linestyle=style_of.get(config.get(style), "-"),
                    linewidth=1.4,
                )
                if len(members) > 1 and np.isfinite(curves).all():
                    ax.fill_between(
                        epochs,
                        curves.min(0),
                        curves.max(0),
                        color=color_of.get(config.get(color), "tab:blue"),
                        alpha=0.12,
                        linewidth=0,
                    )
            if _spans_decades(values.astype(float)):
                ax.set_yscale("log")
            heading = metric.replace("_", " ")
            if panel_value is not None:
                heading += f" — {panel.replace('_', ' ')} {_label(panel_value)}"
            ax.set_title(heading, fontsize=10)
            ax.set_ylabel(metric.replace("_", " "))
            if row == len(metrics) - 1:
                ax.set_xlabel("epoch")
            ax.grid(True, alpha=0.3, which="both")

    handles = [
        matplotlib.lines.Line2D(
            [], [], color=color_of[v], label=f"{color.replace('_', ' ')} {_label(v)}"
        )
        for v in colors
    ]
    if len(styles) > 1:
        handles += [
            matplotlib.lines.Line2D(
                [],
                [],
                color="0.3",
                linestyle=style_of[v],
                label=f"{style.replace('_', ' ')} {_label(v)}",
            )
            for v in styles
        ]
    if handles:
        figure.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    seeds = _values(result, "seed")
    subtitle = f" (mean of {len(seeds)} seeds, band: min–max)" if len(seeds) > 1 else ""
    figure.suptitle((title or "Loss curves") + subtitle)
    return _save(figure, Canvas, path)


def final_loss_heatmap(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    metric: str = "val_loss",
    x: str = "learning_rate",
    y: str = "momentum",
    panel: str = "batch_size",
    title: str | None = None,
) -> str:
    """The final ``metric`` over ``x`` x ``y``, one panel per value of ``panel``.

    Each cell is the mean over the seeds of that cell's configs; a cell where any seed
    diverged is drawn grey and marked "div". The colour scale is shared by the panels and
    logarithmic when the values span more than a factor of 30; the best cell of each
    panel is outlined.

    Returns:
        ``path``, as a string.
    """
    matplotlib, Figure, Canvas = _matplotlib()
    if metric not in result.history:
        raise ValueError(f"metric={metric!r} is not recorded; have {sorted(result.history)}")
    xs, ys = _values(result, x), _values(result, y)
    if not xs or not ys:
        raise ValueError(f"the configs need both {x!r} and {y!r} keys for a heatmap")
    panels = _values(result, panel) or [None]
    final = result.history[metric][:, -1].astype(float)
    lower_is_better = metric.endswith("loss")

    cells = np.full((len(panels), len(ys), len(xs)), np.nan)
    diverged = np.zeros(cells.shape, bool)
    for p, panel_value in enumerate(panels):
        for j, y_value in enumerate(ys):
            for i, x_value in enumerate(xs):
                members = [
                    k
                    for k, c in enumerate(result.configs)
                    if c.get(x) == x_value
                    and c.get(y) == y_value
                    and (panel_value is None or c.get(panel) == panel_value)
                ]
                if not members:
                    continue
                if result.diverged[members].any() or not np.isfinite(final[members]).all():
                    diverged[p, j, i] = True
                else:
                    cells[p, j, i] = final[members].mean()

    finite = cells[np.isfinite(cells)]
    norm = None
    if finite.size and _spans_decades(finite) and finite.min() > 0:
        norm = matplotlib.colors.LogNorm(finite.min(), finite.max())
    elif finite.size:
        norm = matplotlib.colors.Normalize(finite.min(), finite.max())
    cmap = matplotlib.colormaps["viridis" if lower_is_better else "viridis_r"].with_extremes(
        bad="0.8"
    )

    figure = Figure(figsize=(3.6 * len(panels) + 1.2, 0.45 * len(ys) + 2.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for p, panel_value in enumerate(panels):
        ax = axes[p]
        image = ax.imshow(cells[p], cmap=cmap, norm=norm, origin="lower", aspect="auto")
        ax.set_xticks(range(len(xs)), [_label(v) for v in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel(y.replace("_", " "))
        if panel_value is not None:
            ax.set_title(f"{panel.replace('_', ' ')} {_label(panel_value)}", fontsize=10)
        for j in range(len(ys)):
            for i in range(len(xs)):
                text = (
                    "div"
                    if diverged[p, j, i]
                    else (f"{cells[p, j, i]:.3g}" if np.isfinite(cells[p, j, i]) else "")
                )
                # Dark text on the light (yellow) end of viridis, light text elsewhere.
                light_cell = np.isfinite(cells[p, j, i]) and norm(cells[p, j, i]) > 0.6
                dark_text = light_cell != (not lower_is_better) or diverged[p, j, i]
                ax.text(
                    i,
                    j,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="k" if dark_text else "w",
                )
        if np.isfinite(cells[p]).any():
            flat = np.where(np.isfinite(cells[p]), cells[p], np.inf if lower_is_better else -np.inf)
            j, i = np.unravel_index(
                np.argmin(flat) if lower_is_better else np.argmax(flat), flat.shape
            )
            ax.add_patch(
                matplotlib.patches.Rectangle(
                    (i - 0.5, j - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2
                )
            )
    if image is not None and finite.size:
        figure.colorbar(image, ax=list(axes), label=f"final {metric.replace('_', ' ')}")
    seeds = _values(result, "seed")
    subtitle = f" (mean of {len(seeds)} seeds; red: best)" if len(seeds) > 1 else " (red: best)"
    figure.suptitle((title or f"Final {metric.replace('_', ' ')}") + subtitle)
    return _save(figure, Canvas, path)
