"""Plots of a ``SweepResult``: loss curves, final-metric heatmaps, the final metric
against each hyperparameter, parallel coordinates, and the best curve per batch size.

Matplotlib is optional (``pip install 'jaxgd[plot]'``) and imported inside the functions.
Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, so
no GUI backend is touched and pyplot's global state is left alone. Each function writes
its PNG atomically (a temporary name, then a rename), and returns the path written.

Every plot stays readable and fast at 10,000 configs: curves are drawn for a chosen few
(``configs=``) as one ``LineCollection`` per panel, many colour values get a colour bar
instead of a legend, scatter clouds are rasterised, heatmap cells are summed with
``numpy.add.at`` and annotated only when they are few (benchmarks/report_speed.py).

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

__all__ = [
    "loss_curves",
    "final_loss_heatmap",
    "metric_vs_hyperparameters",
    "parallel_coordinates",
    "best_curves_by_batch_size",
    "final_values",
]

_LINESTYLES = ("-", "--", ":", "-.")
# Past this many colour values a legend would be a wall of text: use a colour bar.
_MAX_LEGEND = 8
# Heatmap cells are annotated with their value only when a panel has at most this many.
_MAX_ANNOTATED_CELLS = 120


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


def _values(result: SweepResult, key: str, configs: Sequence[int] | None = None) -> list[Any]:
    """The distinct values of a config key, sorted, or [] when no config has it."""
    chosen = result.configs if configs is None else [result.configs[i] for i in configs]
    values = {config[key] for config in chosen if key in config}
    return sorted(values, key=lambda v: (isinstance(v, str), v))


def _spans_decades(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values) & (values > 0)]
    return finite.size > 1 and finite.max() / finite.min() > 30


def _label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _log_axis(values: np.ndarray) -> bool:
    """Whether values read better on a log axis: positive, spanning decades, and spread
    like a log-uniform draw (their median nearer the geometric than the arithmetic
    middle of the range: learning rates yes, momenta drawn uniformly from [0, 1) no)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2 or values.min() <= 0 or not _spans_decades(values):
        return False
    low, high, median = values.min(), values.max(), np.median(values)
    geometric, arithmetic = np.sqrt(low * high), (low + high) / 2
    return abs(np.log(median / geometric)) < abs(np.log(median / arithmetic))


def final_values(result: SweepResult, metric: str) -> np.ndarray:
    """``[K]`` each config's last recorded ``metric``: the final epoch's, or for a config
    stopped early (its history NaN afterwards) the value at the epoch it stopped."""
    history = np.asarray(result.history[metric], dtype=float)
    final = history[:, -1].copy()
    stopped = np.asarray(result.status) == "stopped"
    if stopped.any():
        finite = np.isfinite(history[stopped])
        last = history.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
        values = history[stopped][np.arange(len(last)), last]
        final[stopped] = np.where(finite.any(axis=1), values, np.nan)
    return final


def _title(name: str) -> str:
    return name.replace("_", " ")


def _is_numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values
    )


def _finite_mean(curves: np.ndarray) -> np.ndarray:
    """The mean over the first axis of the finite values; NaN where there are none
    (a diverged config's epochs), without numpy's empty-slice warning."""
    finite = np.isfinite(curves)
    count = finite.sum(axis=0)
    total = np.where(finite, curves, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _seed_groups(result: SweepResult, configs: Sequence[int] | None = None) -> dict[tuple, list]:
    """Configs that differ only in their seed, keyed by the rest of the config."""
    groups: dict[tuple, list[int]] = {}
    indices = range(len(result.configs)) if configs is None else configs
    for index in indices:
        config = result.configs[index]
        key = tuple(sorted((k, str(v)) for k, v in config.items() if k != "seed"))
        groups.setdefault(key, []).append(int(index))
    return groups


def _colours(matplotlib, values: list[Any]):
    """``(colour_of, norm, cmap)``: discrete colours for a few values; for many numeric
    values a continuous map (logarithmic when they span decades) shown as a colour bar."""
    cmap = matplotlib.colormaps["viridis"]
    if len(values) > _MAX_LEGEND and _is_numeric(values):
        array = np.asarray(values, dtype=float)
        if _log_axis(array):
            norm = matplotlib.colors.LogNorm(array.min(), array.max())
        else:
            norm = matplotlib.colors.Normalize(array.min(), array.max())
        return {v: cmap(float(norm(v)) * 0.9) for v in values}, norm, cmap
    if len(values) > _MAX_LEGEND:
        tab = matplotlib.colormaps["tab20"]
        return {v: tab(i % 20) for i, v in enumerate(values)}, None, None
    return {v: cmap(i / max(1, len(values) - 1) * 0.9) for i, v in enumerate(values)}, None, None


def loss_curves(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("train_loss", "val_loss"),
    panel: str | None = "batch_size",
    color: str = "learning_rate",
    style: str | None = "momentum",
    title: str | None = None,
    configs: Sequence[int] | None = None,
) -> str:
    """Loss against epoch: one row of panels per metric, one column per value of ``panel``.

    Configs that differ only in their seed are one line (the mean over seeds) with a band
    from the lowest to the highest seed. Colour encodes ``color`` (e.g. the learning
    rate): a legend for up to 8 values, else a colour bar. Line style encodes ``style``
    (e.g. the momentum) when it has at most 4 values. The y axis is logarithmic when the
    losses span more than a factor of 30. Metrics the result lacks are skipped.

    Args:
        configs: the indices of the configs to draw (default: all). With thousands of
            configs, draw the best few: the report draws the top 10.

    Returns:
        ``path``, as a string.
    """
    matplotlib, Figure, Canvas = _matplotlib()
    requested, metrics = list(metrics), [m for m in metrics if m in result.history]
    if not metrics:
        raise ValueError(
            f"none of the metrics {requested} are recorded; have {sorted(result.history)}"
        )
    configs = list(range(len(result.configs))) if configs is None else [int(i) for i in configs]
    panels = (_values(result, panel, configs) if panel else []) or [None]
    colors = _values(result, color, configs)
    styles = _values(result, style, configs) if style else []
    if len(styles) > len(_LINESTYLES):
        styles = []  # more styles than can be told apart: colour alone
    color_of, norm, cmap = _colours(matplotlib, colors)
    style_of = {v: _LINESTYLES[i] for i, v in enumerate(styles)}
    epochs = np.arange(1, result.epochs + 1, dtype=float)
    groups = _seed_groups(result, configs)

    figure = Figure(
        figsize=(min(4.2 * len(panels), 17) + 1.8, 3.3 * len(metrics)), layout="constrained"
    )
    axes = figure.subplots(len(metrics), len(panels), squeeze=False, sharex=True)
    for row, metric in enumerate(metrics):
        values = result.history[metric]
        for column, panel_value in enumerate(panels):
            ax = axes[row, column]
            segments, colours, linestyles = [], [], []
            for members in groups.values():
                config = result.configs[members[0]]
                if panel_value is not None and config.get(panel) != panel_value:
                    continue
                curves = values[members].astype(float)
                mean = _finite_mean(curves)
                colour = color_of.get(config.get(color), "tab:blue")
                segments.append(np.column_stack([epochs, mean]))
                colours.append(colour)
                linestyles.append(style_of.get(config.get(style), "-") if style else "-")
                if len(members) > 1 and len(groups) <= 50 and np.isfinite(curves).all():
                    ax.fill_between(
                        epochs, curves.min(0), curves.max(0), color=colour, alpha=0.12, linewidth=0
                    )
            if segments:
                ax.add_collection(
                    matplotlib.collections.LineCollection(
                        segments, colors=colours, linestyles=linestyles, linewidths=1.4
                    )
                )
                ax.autoscale_view()
            shown = values[configs].astype(float)
            if _spans_decades(shown):
                ax.set_yscale("log")
            heading = _title(metric)
            if panel_value is not None:
                heading += f" — {_title(panel)} {_label(panel_value)}"
            ax.set_title(heading, fontsize=10)
            ax.set_ylabel(_title(metric))
            if row == len(metrics) - 1:
                ax.set_xlabel("epoch")
            ax.grid(True, alpha=0.3, which="both")

    if norm is not None:
        mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        figure.colorbar(mappable, ax=axes.ravel().tolist(), label=_title(color))
    handles = []
    if norm is None:
        shown_colors = colors[:_MAX_LEGEND]
        handles = [
            matplotlib.lines.Line2D([], [], color=color_of[v], label=f"{_title(color)} {_label(v)}")
            for v in shown_colors
        ]
        if len(colors) > len(shown_colors):
            handles.append(
                matplotlib.lines.Line2D([], [], color="none", label=f"... {len(colors) - 8} more")
            )
    if len(styles) > 1:
        handles += [
            matplotlib.lines.Line2D(
                [], [], color="0.3", linestyle=style_of[v], label=f"{_title(style)} {_label(v)}"
            )
            for v in styles
        ]
    if handles:
        figure.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    seeds = _values(result, "seed", configs)
    subtitle = f" (mean of {len(seeds)} seeds, band: min–max)" if len(seeds) > 1 else ""
    figure.suptitle((title or "Loss curves") + subtitle)
    return _save(figure, Canvas, path)


def _positions(result: SweepResult, key: str, values: list[Any]) -> np.ndarray:
    """Each config's index into ``values`` for ``key``; -1 where it lacks the key."""
    index = {v: i for i, v in enumerate(values)}
    return np.array([index.get(c.get(key), -1) for c in result.configs], dtype=np.int64)


def _thin_ticks(count: int, most: int = 12) -> np.ndarray:
    return np.arange(0, count, max(1, -(-count // most)))


def final_loss_heatmap(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    metric: str = "val_loss",
    x: str = "learning_rate",
    y: str = "momentum",
    panel: str | None = "batch_size",
    title: str | None = None,
) -> str:
    """The final ``metric`` over ``x`` x ``y``, one panel per value of ``panel``.

    Each cell is the mean over the seeds of that cell's configs; a cell where any seed
    diverged is drawn grey and marked "div". The colour scale is shared by the panels and
    logarithmic when the values span more than a factor of 30; the best cell of each
    panel is outlined. Cells are annotated with their values when a panel has at most
    120 of them, and tick labels are thinned to about 12 per axis.

    Returns:
        ``path``, as a string.
    """
    matplotlib, Figure, Canvas = _matplotlib()
    if metric not in result.history:
        raise ValueError(f"metric={metric!r} is not recorded; have {sorted(result.history)}")
    xs, ys = _values(result, x), _values(result, y)
    if not xs or not ys:
        raise ValueError(f"the configs need both {x!r} and {y!r} keys for a heatmap")
    panels = (_values(result, panel) if panel else []) or [None]
    final = final_values(result, metric)
    lower_is_better = metric.endswith("loss")

    shape = (len(panels), len(ys), len(xs))
    p_at = _positions(result, panel, panels) if panels != [None] else np.zeros(len(final), int)
    j_at, i_at = _positions(result, y, ys), _positions(result, x, xs)
    inside = (p_at >= 0) & (j_at >= 0) & (i_at >= 0)
    cell = np.ravel_multi_index((p_at[inside], j_at[inside], i_at[inside]), shape)
    bad = np.asarray(result.diverged, bool)[inside] | ~np.isfinite(final[inside])
    sums = np.zeros(np.prod(shape))
    counts = np.zeros(np.prod(shape))
    bad_cells = np.zeros(np.prod(shape), bool)
    np.add.at(sums, cell, np.where(bad, 0.0, final[inside]))
    np.add.at(counts, cell, 1.0)
    np.logical_or.at(bad_cells, cell, bad)
    with np.errstate(invalid="ignore", divide="ignore"):
        cells = np.where((counts > 0) & ~bad_cells, sums / counts, np.nan).reshape(shape)
    diverged = bad_cells.reshape(shape)

    finite = cells[np.isfinite(cells)]
    norm = None
    if finite.size and _spans_decades(finite) and finite.min() > 0:
        norm = matplotlib.colors.LogNorm(finite.min(), finite.max())
    elif finite.size:
        norm = matplotlib.colors.Normalize(finite.min(), finite.max())
    cmap = matplotlib.colormaps["viridis" if lower_is_better else "viridis_r"].with_extremes(
        bad="0.8"
    )
    annotate = len(xs) * len(ys) <= _MAX_ANNOTATED_CELLS

    width = min(3.6 * len(panels), 18) + 1.2
    height = min(0.45 * len(ys), 4.5) + 2.6
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    image = None
    x_ticks, y_ticks = _thin_ticks(len(xs)), _thin_ticks(len(ys))
    for p, panel_value in enumerate(panels):
        ax = axes[p]
        image = ax.imshow(cells[p], cmap=cmap, norm=norm, origin="lower", aspect="auto")
        ax.set_xticks(x_ticks, [_label(xs[i]) for i in x_ticks], rotation=45)
        ax.set_yticks(y_ticks, [_label(ys[j]) for j in y_ticks])
        ax.set_xlabel(_title(x))
        ax.set_ylabel(_title(y))
        if panel_value is not None:
            ax.set_title(f"{_title(panel)} {_label(panel_value)}", fontsize=10)
        for j, i in zip(*np.nonzero(np.isfinite(cells[p]) | diverged[p])) if annotate else ():
            text = "div" if diverged[p, j, i] else f"{cells[p, j, i]:.3g}"
            # Dark text on the light (yellow) end of viridis, light text elsewhere.
            light_cell = np.isfinite(cells[p, j, i]) and norm(cells[p, j, i]) > 0.6
            dark_text = light_cell != (not lower_is_better) or diverged[p, j, i]
            ax.text(
                i, j, text, ha="center", va="center", fontsize=7, color="k" if dark_text else "w"
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
        figure.colorbar(image, ax=list(axes), label=f"final {_title(metric)}")
    seeds = _values(result, "seed")
    subtitle = f"mean of {len(seeds)} seeds; " if len(seeds) > 1 else ""
    subtitle += "red: best" + ("; grey: diverged" if diverged.any() else "")
    figure.suptitle((title or f"Final {_title(metric)}") + f" ({subtitle})")
    return _save(figure, Canvas, path)


def _axis_values(result: SweepResult, name: str) -> tuple[np.ndarray, list[str] | None, bool]:
    """A hyperparameter as plot coordinates: ``(x [K], category labels or None, log)``.

    Numbers are used as they are (log-scaled when they span decades); anything else
    (optimizer names, schedules) becomes the index of its sorted value, with labels.
    """
    raw = [c.get(name) for c in result.configs]
    present = [v for v in raw if v is not None]
    distinct = sorted(set(present), key=lambda v: (isinstance(v, str), v))
    if _is_numeric(present) and len(distinct) > 6:
        x = np.array([np.nan if v is None else float(v) for v in raw])
        return x, None, _log_axis(x)
    # A few values (a grid axis, batch sizes) or names: evenly spaced, labelled.
    labels = [_label(v) for v in distinct]
    index = {v: i for i, v in enumerate(distinct)}
    x = np.array([np.nan if v is None else index[v] for v in raw], dtype=float)
    return x, labels, False


def _plain_log_ticks(matplotlib, axis) -> None:
    """Label only the decades of a log axis (minor labels overlap on short axes)."""
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def metric_vs_hyperparameters(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    metric: str = "val_loss",
    names: Sequence[str],
    title: str | None = None,
) -> str:
    """The final ``metric`` against each hyperparameter of ``names``, the others
    marginalised: one panel per hyperparameter, every config a dot, the median over the
    configs sharing a value (or, for more than 24 distinct values, a quantile bin of
    them) as a line, the best as a second line. Diverged configs (and non-finite
    values) are red crosses along the top edge.

    Returns:
        ``path``, as a string.
    """
    matplotlib, Figure, Canvas = _matplotlib()
    if metric not in result.history:
        raise ValueError(f"metric={metric!r} is not recorded; have {sorted(result.history)}")
    if not names:
        raise ValueError("names=[]: give the hyperparameters to plot against")
    final = final_values(result, metric)
    bad = np.asarray(result.diverged, bool) | ~np.isfinite(final)
    stopped = (np.asarray(result.status) == "stopped") & ~bad
    lower_is_better = metric.endswith("loss")
    columns = min(len(names), 3)
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(4.3 * columns, 3.3 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes, names):
        x, labels, log = _axis_values(result, name)
        good = ~bad & np.isfinite(x)
        jitter = np.zeros(len(x))
        if labels is not None:
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(x))
        for members, colour, label in (
            (good & ~stopped, "tab:blue", "trained to the end"),
            (good & stopped, "0.6", "stopped early (value at the stop)"),
        ):
            if members.any():
                ax.scatter(
                    (x + jitter)[members],
                    final[members],
                    s=7,
                    alpha=0.5,
                    color=colour,
                    linewidths=0,
                    rasterized=True,
                    label=label,
                )
        centres, medians, bests = _marginal(x[good], final[good], log, lower_is_better)
        ax.plot(centres, medians, color="k", linewidth=1.6, label="median")
        ax.plot(centres, bests, color="tab:orange", linewidth=1.2, linestyle="--", label="best")
        diverged = bad & np.isfinite(x)
        if diverged.any():
            ax.scatter(
                (x + jitter)[diverged],
                np.full(int(diverged.sum()), 0.97),
                marker="x",
                s=12,
                color="tab:red",
                transform=ax.get_xaxis_transform(),
                rasterized=True,
                label="diverged",
            )
        if log:
            ax.set_xscale("log")
            _plain_log_ticks(matplotlib, ax.xaxis)
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
        if _spans_decades(final[good]) and final[good].min() > 0:
            ax.set_yscale("log")
            _plain_log_ticks(matplotlib, ax.yaxis)
        ax.set_xlabel(_title(name))
        ax.set_ylabel(f"final {_title(metric)}")
        ax.set_title(f"{_title(name)}: {int(diverged.sum())} diverged", fontsize=10)
        ax.grid(True, alpha=0.3, which="both")
    legend = {}
    for ax in axes[: len(names)]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(text, handle)
    figure.legend(
        list(legend.values()), list(legend), loc="outside lower center", ncols=5, fontsize=8
    )
    figure.suptitle(title or f"Final {_title(metric)} against each hyperparameter")
    return _save(figure, Canvas, path)


def _marginal(x: np.ndarray, y: np.ndarray, log: bool, lower_is_better: bool):
    """Median and best of ``y`` per distinct ``x`` (at most 24), else per quantile bin."""
    if x.size == 0:
        return np.array([]), np.array([]), np.array([])
    distinct = np.unique(x)
    if distinct.size <= 24:
        keys, centres = np.searchsorted(distinct, x), distinct
    else:
        edges = np.quantile(np.log(x) if log else x, np.linspace(0, 1, 13))
        keys = np.clip(np.searchsorted(edges, np.log(x) if log else x, side="right") - 1, 0, 11)
        mids = (edges[:-1] + edges[1:]) / 2
        centres = np.exp(mids) if log else mids
    medians, bests, kept = [], [], []
    order = np.argsort(keys, kind="stable")
    split = np.split(y[order], np.flatnonzero(np.diff(keys[order])) + 1)
    present = np.unique(keys)
    for key, values in zip(present, split):
        medians.append(np.median(values))
        bests.append(values.min() if lower_is_better else values.max())
        kept.append(centres[key])
    return np.array(kept), np.array(medians), np.array(bests)


def parallel_coordinates(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    metric: str = "val_loss",
    names: Sequence[str],
    top: int = 20,
    title: str | None = None,
) -> str:
    """Parallel coordinates: one vertical axis per hyperparameter of ``names`` and one
    for the final ``metric``; every config a grey polyline, the best ``top`` coloured by
    their rank (dark: best). Axes are logarithmic where the values span decades;
    diverged configs reach a "div" mark above the metric axis, in light red.

    Returns:
        ``path``, as a string.
    """
    matplotlib, Figure, Canvas = _matplotlib()
    if metric not in result.history:
        raise ValueError(f"metric={metric!r} is not recorded; have {sorted(result.history)}")
    if not names:
        raise ValueError("names=[]: give the hyperparameters to draw as axes")
    final = final_values(result, metric)
    bad = np.asarray(result.diverged, bool) | ~np.isfinite(final)
    lower_is_better = metric.endswith("loss")
    coordinates, ticks = [], []
    for name in names:
        x, labels, log = _axis_values(result, name)
        scaled, tick = _unit_scale(x, labels, log)
        coordinates.append(scaled)
        ticks.append(tick)
    good_final = final[~bad]
    log_metric = good_final.size > 1 and _spans_decades(good_final) and good_final.min() > 0
    metric_axis, metric_ticks = _unit_scale(np.where(bad, np.nan, final), None, log_metric)
    metric_axis = np.where(bad, 1.08, metric_axis)
    coordinates.append(metric_axis)
    ticks.append(metric_ticks + ([(1.08, "div")] if bad.any() else []))
    points = np.column_stack(coordinates)  # [K, axes]
    positions = np.arange(points.shape[1], dtype=float)

    figure = Figure(figsize=(max(6.0, 1.9 * len(positions) + 1.5), 4.6), layout="constrained")
    ax = figure.subplots()
    lines = [np.column_stack([positions, row]) for row in points]
    ranked = np.argsort(np.where(bad, np.inf, final if lower_is_better else -final))
    best = ranked[: min(top, int((~bad).sum()))]
    rest = np.setdiff1d(np.arange(len(lines)), best)
    alpha = float(np.clip(30 / max(1, len(rest)), 0.03, 0.5))
    colours = np.where(bad[rest], "tab:red", "0.55")
    ax.add_collection(
        matplotlib.collections.LineCollection(
            [lines[i] for i in rest],
            colors=list(colours),
            linewidths=0.8,
            alpha=alpha,
            rasterized=True,
        )
    )
    cmap = matplotlib.colormaps["viridis"]
    ax.add_collection(
        matplotlib.collections.LineCollection(
            [lines[i] for i in best[::-1]],
            colors=[cmap(0.85 * r / max(1, len(best) - 1)) for r in range(len(best))][::-1],
            linewidths=2.0,
        )
    )
    for position, tick in zip(positions, ticks):
        ax.axvline(position, color="k", linewidth=0.8)
        for value, text in tick:
            ax.text(
                position + 0.04,
                value,
                text,
                fontsize=8,
                va="center",
                ha="left",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
                zorder=5,
            )
    axis_names = [_title(n) for n in names] + [f"final {_title(metric)}"]
    ax.set_xticks(positions, axis_names)
    ax.set_xlim(-0.2, positions[-1] + 0.6)
    ax.set_ylim(-0.05, 1.14)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    figure.suptitle(
        title
        or f"Parallel coordinates: the best {len(best)} of {len(lines)} configs coloured "
        f"(dark: best), {int(bad.sum())} diverged in red"
    )
    return _save(figure, Canvas, path)


def _unit_scale(x: np.ndarray, labels: list[str] | None, log: bool):
    """Map values onto [0, 1]; ``(scaled, [(position, tick label), ...])``."""
    if labels is not None:
        span = max(1, len(labels) - 1)
        ticks = [(i / span, label) for i, label in enumerate(labels)]
        return x / span, ticks
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.full(x.shape, 0.5), []
    low, high = finite.min(), finite.max()
    transform = np.log if log else (lambda v: v)
    with np.errstate(invalid="ignore", divide="ignore"):
        if high > low:
            scaled = (transform(x) - transform(low)) / (transform(high) - transform(low))
        else:
            scaled = np.full(x.shape, 0.5)
    marks = [low, high] if high > low else [low]
    if high > low:
        middle = np.exp((np.log(low) + np.log(high)) / 2) if log else (low + high) / 2
        marks.insert(1, middle)
    ticks = []
    for value in marks:
        position = (
            0.5
            if high == low
            else float((transform(value) - transform(low)) / (transform(high) - transform(low)))
        )
        ticks.append((position, f"{value:.3g}"))
    return scaled, ticks


def best_curves_by_batch_size(
    result: SweepResult,
    path: str | os.PathLike,
    *,
    metric: str = "val_loss",
    title: str | None = None,
) -> str:
    """For each batch size, the curve of the config with the best final ``metric``,
    against epochs (equal examples seen) and against updates (a larger batch takes fewer,
    larger steps).

    Returns:
        ``path``, as a string.
    """
    matplotlib, Figure, Canvas = _matplotlib()
    if metric not in result.history:
        raise ValueError(f"metric={metric!r} is not recorded; have {sorted(result.history)}")
    final = final_values(result, metric)
    usable = ~np.asarray(result.diverged, bool) & np.isfinite(final)
    stopped = np.asarray(result.status) == "stopped"
    signed = final if metric.endswith("loss") else -final
    sizes = _values(result, "batch_size") or [None]
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    by_epoch, by_update = figure.subplots(1, 2)
    colour_of, _, _ = _colours(matplotlib, sizes)
    epochs = np.arange(1, result.epochs + 1)
    swept = [k for k in result.configs[0] if k not in ("batch_size", "seed", "optimizer")]
    for size in sizes:
        members = [
            i for i, c in enumerate(result.configs) if size is None or c.get("batch_size") == size
        ]
        members = [i for i in members if usable[i]]
        if not members:
            continue
        best = min(members, key=lambda i: (stopped[i], signed[i]))  # trained to the end first
        config = result.configs[best]
        details = ", ".join(
            f"{_title(k)} {config[k]:.3g}"
            if isinstance(config[k], float)
            else f"{_title(k)} {config[k]}"
            for k in swept
            if k in config
        )
        label = (f"batch {_label(size)}: " if size is not None else "") + details
        curve = result.history[metric][best].astype(float)
        colour = colour_of.get(size, "tab:blue")
        by_epoch.plot(epochs, curve, color=colour, label=label)
        if "updates" in result.history:
            by_update.plot(result.history["updates"][best], curve, color=colour, label=label)
    for ax, xlabel in ((by_epoch, "epoch"), (by_update, "updates")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(_title(metric))
        ax.grid(True, alpha=0.3, which="both")
        if _spans_decades(result.history[metric][usable]):
            ax.set_yscale("log")
    by_update.set_xscale("log")
    by_epoch.set_title(f"{_title(metric)} per epoch", fontsize=10)
    by_update.set_title(f"{_title(metric)} per update (log scale)", fontsize=10)
    handles, labels = by_epoch.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    figure.suptitle(title or f"The best config per batch size, by final {_title(metric)}")
    return _save(figure, Canvas, path)
